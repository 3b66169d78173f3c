"""The batched scorer against the per-item reference and against the published reward's arithmetic."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reward_helpers import assert_in_range, assert_same

from onethinker.contract.tasks import TASK_SLUGS
from onethinker.rewards import batched, clear_caches, compute_score, reference, summarize
from onethinker.rewards import definitions as D
from onethinker.rewards.synthetic import make_items


def test_mixed_batch_matches_reference() -> None:
    items = make_items(1200, seed=7)
    clear_caches()
    fast = compute_score(items)
    ref = reference.compute_score(items)
    for f, r in zip(fast, ref, strict=True):
        assert_same(f, r)
        assert_in_range(f)
    summary = summarize(items, fast)
    assert set(TASK_SLUGS) <= set(summary)  # every task is in the synthetic batch
    assert summary["all"]["n"] == len(items)
    assert 0.0 < summary["all"]["malformed_rate"] < 1.0


def test_batch_composition_does_not_change_scores() -> None:
    """Scoring items one by one, in reverse, or in one batch gives the same results."""
    items = make_items(160, seed=3)
    whole = compute_score(items)
    one_by_one = [compute_score([it])[0] for it in items]
    reversed_ = compute_score(items[::-1])[::-1]
    for a, b, c in zip(whole, one_by_one, reversed_, strict=True):
        assert a == b == c


def test_format_weight() -> None:
    items = make_items(48, seed=5)
    for fw in (0.0, 0.5, 1.0):
        for s in compute_score(items, format_weight=fw):
            assert_in_range(s, fw)
    with pytest.raises(ValueError, match="format_weight"):
        compute_score(items, format_weight=1.5)


def test_mean_relative_accuracy_matches_torch_float32() -> None:
    """The published reward computed MRA with torch float32 tensors; ours is bit-identical."""
    torch = pytest.importorskip("torch")

    def published(pred: float, target: float) -> float:
        pred_t = torch.tensor(pred, dtype=torch.float32)
        tgt_t = torch.tensor(target, dtype=torch.float32)
        rel_error = torch.abs(pred_t - tgt_t) / (torch.abs(tgt_t) + 1e-8)
        thresholds = torch.arange(0.5, 0.95 + 0.05 / 2, 0.05, dtype=torch.float32)
        return (rel_error < (1 - thresholds)).float().mean().item()

    rng = random.Random(0)
    gts = [10.0, 1.0, 0.3, 123.456, 0.0, -5.0, 1e-9]
    cases = [(g * (1 + rng.choice([-1, 1]) * k * 0.05), g) for g in gts for k in range(22)]  # threshold edges
    cases += [(rng.uniform(-100, 100), rng.uniform(-100, 100)) for _ in range(300)]
    preds, targets = zip(*cases, strict=True)
    fast = batched.mean_relative_accuracy(list(preds), list(targets))
    for (p, g), f in zip(cases, fast, strict=True):
        expected = published(p, g)
        assert D.mean_relative_accuracy(p, g) == expected, (p, g)
        assert f == expected, (p, g)


LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def test_option_letter_grades_match_mathruler_sample() -> None:
    """The batched multiple-choice grader compares option letters without sympy; spot-check mathruler."""
    rng = random.Random(1)
    pairs = [(a, a) for a in "AbE"] + [("a", "A"), ("I", "i"), ("(B)", "B"), ("(b)", "C"), ("[E]", "e")]
    pairs += [
        (
            rng.choice(["{}", "({})", "{}.", "{})", "({}, {})"]).format(*rng.sample(LETTERS, 2)),
            rng.choice(LETTERS),
        )
        for _ in range(12)
    ]
    for answer, gt in pairs:
        batched.grade_answer_cached.cache_clear()
        assert batched.grade_answer_cached(answer, gt) == D.grade_answer(answer, gt), (answer, gt)


grade_text = st.lists(
    st.sampled_from(list("Bbc()[],. 12/\\{}-x") + ["\\frac{1}{2}", "0.5", "pi", "or"]), max_size=6
).map("".join)


@settings(max_examples=120, deadline=None, derandomize=True, database=None)
@given(grade_text, grade_text)
def test_batched_grader_matches_mathruler(given_text: str, gt: str) -> None:
    assert batched._mathruler_grade(given_text, gt) == D.grade_answer(given_text, gt)


@pytest.mark.slow
def test_option_letter_grades_match_mathruler_exhaustive() -> None:
    for given_letter, gt in itertools.product(LETTERS, repeat=2):
        for form in ("{}", "({})"):
            given_text = form.format(given_letter)
            expected = D.grade_answer(given_text, gt)
            assert batched._mathruler_grade(given_text, gt) == expected, (given_text, gt)
            batched.grade_answer_cached.cache_clear()
            assert batched.grade_answer_cached(given_text, gt) == expected, (given_text, gt)


def test_point_similarity_vectorised_matches_loop() -> None:
    rng = np.random.default_rng(0)
    pred = rng.normal(0, 80, size=(200, 3, 2))
    gt = rng.normal(0, 80, size=(200, 3, 2))
    pred[0, 0, 0] = np.inf
    pred[1, :, 0] = np.nan
    pred[2, 1, 1] = 1e300
    sims, over = batched._point_similarity(pred, gt)
    for k in range(200):
        p = tuple(tuple(float(v) for v in row) for row in pred[k])
        g = tuple(tuple(float(v) for v in row) for row in gt[k])
        try:
            expected, overflow = D.point_similarity(p, g), False
        except OverflowError:
            expected, overflow = 0.0, True
        assert bool(over[k]) == overflow
        assert sims[k] == pytest.approx(expected, abs=1e-12)
