"""The held-out summary: per-task accuracy, format rate, size and the number of distinct answers."""

from __future__ import annotations

import pytest

from onethinker.generation.heldout import summarise


def _s(acc: float, fmt: float = 1.0) -> dict[str, float]:
    return {"accuracy": acc, "format": fmt, "overall": acc + fmt}


def test_summary_counts_distinct_answers_per_task() -> None:
    slugs = ["ocr", "ocr", "ocr", "numerical", "numerical"]
    scores = [_s(1.0), _s(0.0), _s(0.0), _s(1.0), _s(0.0, fmt=0.0)]
    responses = [
        "<think>t</think><answer>BEE</answer>",
        "<think>u</think> <answer> BEE </answer>",  # same answer once normalised
        "<think>v</think><answer>BEE</answer>",
        "<think>w</think><answer>3</answer>",
        "no tags at all",  # no answer block: counted as one more distinct answer (None)
    ]
    out = summarise(slugs, scores, responses)
    assert out["tasks"]["ocr"] == {
        "accuracy": pytest.approx(1 / 3),
        "format_rate": 1.0,
        "n": 3,
        "timeouts": 0,
        "distinct_answers": 1,
    }
    assert out["tasks"]["numerical"]["distinct_answers"] == 2
    assert out["tasks"]["numerical"]["format_rate"] == 0.5
    assert out["mean_accuracy"] == pytest.approx((1 / 3 + 1 / 2) / 2)
    assert out["format_rate"] == pytest.approx(4 / 5)


def test_summary_without_responses_keeps_the_old_shape() -> None:
    out = summarise(["math"], [_s(0.5)])
    assert out["tasks"]["math"] == {"accuracy": 0.5, "format_rate": 1.0, "n": 1, "timeouts": 0}


def test_summary_counts_reward_timeouts_and_skipped_prompts() -> None:
    scores = [
        {**_s(0.0), "reasons": ["timeout"]},
        {**_s(1.0), "reasons": []},
        {**_s(0.0), "reasons": ["timeout"]},
    ]
    out = summarise(["math", "math", "multiple_choice"], scores, skipped=[1])
    assert out["tasks"]["math"]["timeouts"] == 1 and out["tasks"]["multiple_choice"]["timeouts"] == 1
    assert out["tasks"]["math"]["skipped_overlong_prompts"] == 1
    assert "skipped_overlong_prompts" not in out["tasks"]["multiple_choice"]
