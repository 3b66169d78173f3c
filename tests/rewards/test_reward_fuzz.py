"""Fuzzing: arbitrary strings and JSON-ish outputs never make a reward raise, and every score is in range.

Each task gets 100 hypothesis examples, each a batch of 100 responses (10,000 responses per task),
scored as one batch, as the trainer calls ``compute_score``; a second fuzz feeds another 10,000 per task
built from adversarial answers (huge numbers, power towers, deep nesting, megabyte answers, near-miss JSON)
under a time budget and checks that no comparison runs past it. To keep generation cheap, hypothesis
draws a handful of fragments (text, JSON values, tag templates) and a seeded ``random.Random``,
and each batch is built by splicing, wrapping, truncating and corrupting those fragments.
"""

from __future__ import annotations

import json
import math
import random
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reward_helpers import assert_in_range, assert_same, wrap

from onethinker.rewards import RewardConfig, compute_score, reference, summarize
from onethinker.rewards.sandbox import sandbox

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
            text = rnd.choice(_TEMPLATES).replace("{}", a, 1)
            for _ in range(
                rnd.randrange(1, 4)
            ):  # slicing, not a list of characters: answers can be megabytes
                pos = rnd.randrange(len(text) + 1)
                text = text[:pos] + rnd.choice(_NOISE) + text[pos:]
            out.append(text)
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


# --------------------------------------------------------------------------------------------------
# Adversarial answers: huge numbers, deep nesting, megabyte answers, near-miss JSON, under a time budget

BUDGET = RewardConfig(timeout_s=3.0)
"""A tighter budget than the default, so a stall would show; a kill takes well under a second on top."""
KILL_SLACK_S = 2.0

KILLERS = [
    "9**9**9",
    "1e999999",
    "10**10**10**10",
    "9^{9^{9}}",
    "2^{2^{2^{100}}}",
    "99999999!",
    "(" * 5000 + "1" + ")" * 5000,
    "\\frac{" * 2000 + "1" + "}{2}" * 2000,
    "1" * 1_000_000,
    "B" * 1_000_000,
]
_BIG = "9" * 5000
ADVERSARIAL = KILLERS + [
    _BIG,
    f"-{_BIG}.{_BIG}e99999",
    "[" * 100_000 + "]" * 100_000,
    '{"time": [' + "1e999999, " * 2 + "]}",
    '{"time": [0, ' + _BIG + "]}",
    '{"boxes": [' + ", ".join(["1e308"] * 4) + "]}",
    '{"boxes": {"1": [0, 0, 10, 10], "1": "x"}',
    '{"boxes": [0, 0, 10, 10],',
    '{"time": [1, 2], "boxes": {' + ", ".join(f'"{i}": [0, 0, 1, 1]' for i in range(20000)) + "}}",
    '{"positive_points": ' + "[" * 3000 + "]" * 3000 + "}",
    "x^{" * 500 + "2" + "}" * 500,
    "\\sqrt{" * 300 + "2" + "}" * 300,
    "2**100000",
    "\\binom{1000000}{500000}",
    "<answer>" * 10_000,
    "a b c d e f g " * 20_000,
]
_adversarial = st.sampled_from(ADVERSARIAL)
adversarial_fragments = st.lists(
    st.one_of(_adversarial, _adversarial.map(lambda a: wrap(a)), responses), min_size=1, max_size=8
)


@pytest.mark.parametrize("slug", sorted(TASKS))
def test_fuzz_adversarial_answers_stay_within_the_budget(slug: str) -> None:
    """10,000 adversarial completions per task (100 batches of 100, as the trainer calls it): nothing raises,
    every score is in range, no symbolic comparison runs past the budget (the worker is killed at the
    deadline), and each batch call ends in bounded time."""
    problem_type, data_type, gt = TASKS[slug]
    gt_text = gt if isinstance(gt, str) else json.dumps(gt)
    box = sandbox()
    seen = 0

    @settings(FUZZ, max_examples=100)
    @given(adversarial_fragments, st.integers(0, 2**32 - 1))
    def run(frags: list, seed: int) -> None:
        nonlocal seen
        batch = build_batch(random.Random(seed), frags, 100)  # a seeded RNG: cheaper than hypothesis draws
        items = [
            {"response": r, "ground_truth": gt_text, "problem_type": problem_type, "data_type": data_type}
            for r in batch
        ]
        timeouts_before = box.stats["timeouts"]
        t0 = time.monotonic()
        scores = compute_score(items, options=BUDGET)
        elapsed = time.monotonic() - t0
        killed = box.stats["timeouts"] - timeouts_before
        assert len(scores) == len(items)
        for s in scores:
            assert_in_range(s)
        # a batch waits at most the budget per comparison it had to kill, plus the normal work
        assert elapsed < 30.0 + killed * (BUDGET.timeout_s + KILL_SLACK_S), (elapsed, killed)
        seen += len(items)

    run()
    assert seen >= 10_000
    assert box.stats["max_call_s"] <= BUDGET.timeout_s + KILL_SLACK_S, box.stats


_KILLER_SCRIPT = """
import json, sys, time
from onethinker.rewards import compute_score
answers = json.loads(sys.stdin.read())
out = []
for task, gt in (("multiple choice", "B"), ("math", "\\\\frac{1}{2}")):
    for a in answers:
        item = {"response": "<think>t</think><answer>" + a + "</answer>", "ground_truth": gt,
                "problem_type": task, "data_type": "image"}
        t0 = time.monotonic()
        s = compute_score([item])[0]
        out.append([task, a[:20], s["accuracy"], s["reasons"], time.monotonic() - t0])
print(json.dumps(out))
"""


def test_known_killers_score_zero_as_timeout_in_time() -> None:
    """The answers that stalled the published reward (``9**9**9`` never returns from mathruler's sympy path;
    ``1e999999``, ``10**10**10**10``, 5,000 nested parentheses and a 1e6-character answer took over 10 s)
    score 0 with the reason ``timeout``, each within the default budget. Run in a child process, so a stall
    fails the test instead of hanging it."""
    import subprocess
    import sys

    killers = ["9**9**9", "1e999999", "10**10**10**10", "(" * 5000 + "1" + ")" * 5000, "1" * 1_000_000]
    budget = RewardConfig().timeout_s
    try:
        done = subprocess.run(
            [sys.executable, "-c", _KILLER_SCRIPT],
            input=json.dumps(killers),
            capture_output=True,
            text=True,
            timeout=120 + 2 * len(killers) * (budget + KILL_SLACK_S),
        )
    except subprocess.TimeoutExpired:
        pytest.fail("scoring the known killer answers stalled")
    assert done.returncode == 0, done.stderr[-2000:]
    for task, answer, accuracy, reasons, seconds in json.loads(done.stdout):
        assert accuracy == 0.0 and reasons == ["timeout"], (task, answer, reasons)
        assert seconds <= budget + KILL_SLACK_S, (task, answer, seconds)
