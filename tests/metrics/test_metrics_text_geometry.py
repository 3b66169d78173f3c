"""Text metrics and IoU: hand-worked cases, and the fast paths against plain loops / the libraries."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onethinker import metrics as M

FAST = settings(max_examples=300, deadline=None, derandomize=True, database=None)


def _edit_dp(a: list, b: list) -> int:
    d = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        d[i][0] = i
    for j in range(len(b) + 1):
        d[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = (
                d[i - 1][j - 1]
                if a[i - 1] == b[j - 1]
                else 1 + min(d[i - 1][j], d[i][j - 1], d[i - 1][j - 1])
            )
    return d[-1][-1]


def _lcs_dp(a: list, b: list) -> int:
    t = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            t[i][j] = t[i - 1][j - 1] + 1 if a[i - 1] == b[j - 1] else max(t[i - 1][j], t[i][j - 1])
    return t[-1][-1]


seqs = st.lists(st.sampled_from("abcd"), max_size=90)  # > 64 to cross machine-word sizes


@FAST
@given(seqs, seqs)
def test_bit_parallel_edit_distance_and_lcs(a: list, b: list) -> None:
    assert M.edit_distance(a, b) == _edit_dp(a, b)
    assert M.lcs_length(a, b) == _lcs_dp(a, b)


def test_wer_hand_worked() -> None:
    assert M.word_error_rate("the quick brown fox", "the quick brown dog") == 0.25
    assert M.word_error_rate("", "anything here") == 2.0  # divided by max(1, 0)
    assert M.ocr_accuracy("a b", "a b c d e") == 0.0


words = st.lists(
    st.sampled_from(["the", "cats", "cat", "running", "runs", "ran", "a", "dog's", "b2", "!", "É"]),
    max_size=25,
).map(" ".join)


@FAST
@given(words, words)
def test_rouge_matches_rouge_score(target: str, pred: str) -> None:
    from rouge_score import rouge_scorer

    s = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True).score(target, pred)
    assert tuple(M.rouge_f(target, pred)) == (
        s["rouge1"].fmeasure,
        s["rouge2"].fmeasure,
        s["rougeL"].fmeasure,
    )


def test_mra_hand_worked() -> None:
    # e = 0.2 passes θ = 0.50 ... 0.75 (6 of 10); e = 0 passes all; e = 0.5 passes none (strict <).
    out = M.mean_relative_accuracy([12.0, 10.0, 15.0, float("nan")], [10.0, 10.0, 10.0, 1.0])
    assert out == pytest.approx([0.6, 1.0, 0.0, 0.0], abs=1e-7)
    assert M.mra([12.0, 10.0], [10.0, 10.0]) == pytest.approx(0.8, abs=1e-7)


def test_tiou_and_box_iou_hand_worked() -> None:
    assert M.tiou([[2, 8], [0, 1], [5, 5], [0, np.inf]], [[4, 10], [2, 3], [5, 5], [0, 10]]).tolist() == [
        0.5,
        0.0,
        0.0,
        0.0,
    ]
    assert M.box_iou([[0, 0, 10, 10], [10, 10, 0, 0]], [[5, 5, 15, 15], [0, 0, 10, 10]]) == pytest.approx(
        [1 / 7, 0]
    )
    assert M.box_iou(np.zeros((0, 4)), np.zeros((0, 4))).shape == (0,)
    with pytest.raises(ValueError):
        M.box_iou([[0, 0, 1]], [[0, 0, 1]])


coords = st.floats(-50, 50, allow_nan=False)


@FAST
@given(st.lists(st.tuples(*[coords] * 8), min_size=1, max_size=20))
def test_vectorised_iou_matches_loops(rows: list) -> None:
    arr = np.asarray(rows)
    boxes = M.box_iou(arr[:, :4], arr[:, 4:])
    spans = M.tiou(arr[:, :2], arr[:, 2:4])
    for k, r in enumerate(rows):
        assert boxes[k] == M.box_iou_one(r[:4], r[4:])
        assert spans[k] == M.tiou_one(r[:2], r[2:4])
        assert 0.0 <= boxes[k] <= 1.0 and math.isfinite(spans[k])
