"""Shared helpers for the reward tests (imported by name: this folder is on sys.path under pytest)."""

from __future__ import annotations

import json
import math

KEYS = ("overall", "accuracy", "format", "structure")


def item(response: object, gt: object, problem_type: str, data_type: str = "image") -> dict:
    if not isinstance(gt, str) and gt is not None:
        gt = f"<answer>{json.dumps(gt)}</answer>"
    return {"response": response, "ground_truth": gt, "problem_type": problem_type, "data_type": data_type}


def wrap(answer: object) -> str:
    text = answer if isinstance(answer, str) else json.dumps(answer)
    return f"<think>reasoning</think>\n<answer>{text}</answer>"


def assert_same(fast: dict, ref: dict) -> None:
    for k in KEYS:
        assert math.isclose(fast[k], ref[k], rel_tol=0, abs_tol=1e-9), (k, fast, ref)
    assert fast["reasons"] == ref["reasons"], (fast, ref)


def assert_in_range(s: dict, format_weight: float = 0.1) -> None:
    for k in KEYS:
        assert isinstance(s[k], float) and math.isfinite(s[k]), (k, s)
    assert 0.0 <= s["accuracy"] <= 1.0
    assert s["format"] in (0.0, 1.0)
    assert 0.0 <= s["structure"] <= 0.5
    if not s["format"]:
        assert s["structure"] == 0.0
    expected = (1 - format_weight) * s["accuracy"] + format_weight * s["format"] + s["structure"]
    assert math.isclose(s["overall"], expected, abs_tol=1e-12)
    assert isinstance(s["reasons"], list) and all(isinstance(r, str) for r in s["reasons"])
