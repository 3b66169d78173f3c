"""Fuzzing: arbitrary strings and JSON-ish outputs never make a reward raise, and every score is in range.

Each task gets 100 hypothesis examples, each a batch of 100 responses (10,000 responses per task),
scored as one batch, as the trainer calls ``compute_score``. To keep generation cheap, hypothesis
draws a handful of fragments (text, JSON values, tag templates) and a seeded ``random.Random``,
and each batch is built by splicing, wrapping, truncating and corrupting those fragments.
"""

from __future__ import annotations

import json
import math
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reward_helpers import assert_in_range, assert_same

from onethinker.rewards import compute_score, reference, summarize

_B = [0, 0, 10, 10]
# One ground truth per task slug (segmentation twice, for both modalities).
TASKS = {
    "multiple_choice": ("multiple choice", "image", "B"),
    "numerical": ("numerical", "video", "12.5"),
    "regression": ("regression", "video", "3.2"),
    "ocr": ("OCR", "image", "the quick brown fox"),
    "open_ended": ("open-ended", "image", "a dog runs on the beach"),
    "math": ("math", "image", "\\frac{1}{2}"),
    "temporal_grounding": ("temporal grounding", "video", {"time": [2, 8]}),
    "spatial_grounding": ("spatial grounding", "image", {"boxes": _B}),
    "spatial_temporal_grounding": (
        "spatial-temporal grounding",
        "video",
        {"time": [0, 2], "boxes": {"0": _B, "1": _B, "2": _B}},
    ),
    "tracking": ("tracking", "video", {"boxes": {"1": _B, "2": _B, "3": _B}}),
    "segmentation_image": (
        "segmentation",
        "image",
        {
            "boxes": _B,
            "positive_points": [[1, 1], [2, 2], [3, 3]],
            "negative_points": [[9, 9], [8, 8], [7, 7]],
        },
    ),
    "segmentation_video": (
        "segmentation",
        "video",
        {
            "boxes": _B,
            "positive_points": [[1, 1], [2, 2], [3, 3]],
            "negative_points": [[9, 9], [8, 8], [7, 7]],
            "time": 4.5,
        },
    ),
}

_SCALARS = st.one_of(
    st.integers(-(10**6), 10**6),
    st.sampled_from([0, 1, True, None, "1", "nan", "inf", "-inf", 1e308, 10**400, -0.0]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=4),
)
_KEYS = st.sampled_from(["time", "boxes", "positive_points", "negative_points", "0", "1", "2", "3", "x"])
json_values = st.recursive(
    _SCALARS, lambda c: st.lists(c, max_size=5) | st.dictionaries(_KEYS, c, max_size=5), max_leaves=12
)


def _dump(v: object) -> str:
    try:
        return json.dumps(v)
    except ValueError:  # 10**400 and the like
        return str(v)


_TEMPLATES = [
    "<think>t</think><answer>{}</answer>",
    " < think >\n</ think >\n< answer > {} < /answer > ",
    "{}",
    "<answer>{}</answer>",
    "<think>{}</think>",
    "<think>a</think><answer>{}",
    "<answer>{}</answer></answer>",
]
answers = st.one_of(
    st.text(max_size=40), json_values.map(_dump), st.sampled_from(["", "B", "12.5", "[", "{}"])
)
responses = st.one_of(
    st.tuples(st.sampled_from(_TEMPLATES), answers).map(lambda t: t[0].replace("{}", t[1], 1)),
    st.text(max_size=60),
    st.none(),
)
FUZZ = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)


_NOISE = '<>/{}[]",:. \n\t0123456789eE-+abBnNaIi\u2003\x00'


def build_batch(rnd: random.Random, fragments: list, n: int) -> list:
    """``n`` responses made from the fragments by random wrapping, splicing, truncation and noise."""
    texts = [f for f in fragments if isinstance(f, str)] or [""]
    out: list = []
    for _ in range(n):
        op = rnd.randrange(7)
        a, b = rnd.choice(texts), rnd.choice(texts)
        if op == 0:
            out.append(rnd.choice(fragments))
        elif op == 1:
            out.append(rnd.choice(_TEMPLATES).replace("{}", a, 1))
        elif op == 2:
            out.append(a + b)
        elif op == 3:
            full = rnd.choice(_TEMPLATES).replace("{}", a, 1)
            out.append(full[: rnd.randrange(len(full) + 1)])
        elif op == 4:
            chars = list(rnd.choice(_TEMPLATES).replace("{}", a, 1))
            for _ in range(rnd.randrange(1, 4)):
                chars.insert(rnd.randrange(len(chars) + 1), rnd.choice(_NOISE))
            out.append("".join(chars))
        elif op == 5:
            out.append("".join(rnd.choice(_NOISE) for _ in range(rnd.randrange(30))))
        else:
            out.append(None)
    return out


fragments = st.lists(responses, min_size=1, max_size=8)


@pytest.mark.parametrize("slug", sorted(TASKS))
def test_fuzz_never_raises_and_in_range(slug: str) -> None:
    problem_type, data_type, gt = TASKS[slug]
    gt_text = gt if isinstance(gt, str) else json.dumps(gt)
    seen = 0

    @FUZZ
    @given(fragments, st.randoms(use_true_random=False))
    def run(frags: list, rnd: random.Random) -> None:
        batch = build_batch(rnd, frags, 100)
        nonlocal seen
        items = [
            {
                "response": r,
                "ground_truth": f"<answer>{gt_text}</answer>",
                "problem_type": problem_type,
                "data_type": data_type,
            }
            for r in batch
        ]
        scores = compute_score(items)
        assert len(scores) == len(items)
        for s in scores:
            assert_in_range(s)
        summary = summarize(items, scores)
        assert summary[slug]["n"] == len(items) and 0.0 <= summary[slug]["malformed_rate"] <= 1.0
        seen += len(items)

    run()
    assert seen >= 10_000


_CHEAP = [k for k in sorted(TASKS) if k not in ("multiple_choice", "math")]


@pytest.mark.parametrize("slug", _CHEAP)
def test_fuzz_batched_matches_reference(slug: str) -> None:
    """On arbitrary JSON (nan, inf, strings, booleans, huge ints) both paths give the same scores."""
    problem_type, data_type, gt = TASKS[slug]
    gt_text = gt if isinstance(gt, str) else json.dumps(gt)

    @settings(FUZZ, max_examples=60)
    @given(fragments, st.randoms(use_true_random=False))
    def run(frags: list, rnd: random.Random) -> None:
        batch = build_batch(rnd, frags, 20)
        items = [
            {"response": r, "ground_truth": gt_text, "problem_type": problem_type, "data_type": data_type}
            for r in batch
        ]
        for fast, ref in zip(compute_score(items), reference.compute_score(items), strict=True):
            assert_same(fast, ref)

    run()


weird = st.one_of(
    st.none(),
    st.integers(),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(
        st.sampled_from(["response", "ground_truth", "problem_type", "data_type"]),
        st.one_of(
            st.none(),
            st.integers(),
            st.text(max_size=8),
            st.sampled_from(list(TASKS)),
            st.lists(st.text(max_size=3), max_size=2),
            st.sampled_from(["multiple choice", "tracking", "segmentation", "SEGMENTATION ", "video"]),
        ),
        max_size=4,
    ),
)


@settings(FUZZ, max_examples=300)
@given(st.lists(weird, max_size=10))
def test_fuzz_malformed_items(items: list) -> None:
    for fast, ref in zip(compute_score(items), reference.compute_score(items), strict=True):
        assert_in_range(fast)
        assert_same(fast, ref)
        assert all(math.isfinite(fast[k]) for k in ("overall", "accuracy", "format", "structure"))
