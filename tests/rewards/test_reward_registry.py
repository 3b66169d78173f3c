"""Tasks registered by name, the per-task summary, and robustness of the registry plumbing."""

from __future__ import annotations

import pytest
from reward_helpers import assert_in_range, assert_same, wrap

from onethinker.rewards import (
    REGISTRY,
    compute_score,
    get_task,
    reference,
    register_task,
    summarize,
    unregister_task,
)
from onethinker.rewards.registry import BatchScores


@pytest.fixture
def yes_no():
    def accuracy(answer: str, gt: str, data_type: str) -> float:
        return float(answer.strip().lower() == gt.strip().lower())

    def structure(answer: str, gt: str, data_type: str) -> tuple[float, list[str]]:
        ok = answer.strip().lower() in ("yes", "no")
        return (0.5, []) if ok else (0.0, ["not_yes_no"])

    task = register_task("Yes/No", accuracy, structure, slug="yes_no")
    yield task
    unregister_task("yes/no")


def test_register_a_task_without_touching_the_others(yes_no) -> None:
    assert get_task("YES/NO") is yes_no and "multiple choice" in REGISTRY
    items = [
        {"response": wrap("Yes"), "ground_truth": "yes", "problem_type": "yes/no", "data_type": "image"},
        {"response": wrap("maybe"), "ground_truth": "yes", "problem_type": "Yes/No", "data_type": "video"},
        {"response": wrap("B"), "ground_truth": "B", "problem_type": "multiple choice", "data_type": "image"},
    ]
    fast = compute_score(items)
    for f, r in zip(fast, reference.compute_score(items), strict=True):
        assert_same(f, r)
        assert_in_range(f)
    assert fast[0]["overall"] == 1.5
    assert fast[1]["structure"] == 0.0 and fast[1]["reasons"] == ["not_yes_no"]
    summary = summarize(items, fast)
    assert summary["yes_no"]["n"] == 2 and summary["multiple_choice"]["n"] == 1


def test_duplicate_names_are_refused(yes_no) -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_task("yes/no", lambda a, g, d: 0.0)
    with pytest.raises(ValueError, match="non-empty"):
        register_task("  ", lambda a, g, d: 0.0)


def test_a_raising_or_bad_task_scores_zero() -> None:
    def boom(answer: str, gt: str, data_type: str) -> float:
        raise RuntimeError("bug")

    register_task("boom", boom, lambda a, g, d: "not a number")
    register_task("huge", lambda a, g, d: 1e9, lambda a, g, d: float("nan"))
    try:
        items = [
            {"response": wrap("x"), "ground_truth": "x", "problem_type": p, "data_type": "image"}
            for p in ("boom", "huge")
        ]
        a, b = compute_score(items)
        assert a["accuracy"] == 0.0 and a["structure"] == 0.0 and "error" in a["reasons"]
        assert b["accuracy"] == 1.0 and b["structure"] == 0.0  # clipped, nan -> 0
        assert_in_range(a)
        assert_in_range(b)
    finally:
        unregister_task("boom")
        unregister_task("huge")


@pytest.mark.parametrize(
    "bad_batch",
    [
        pytest.param(lambda batch: (_ for _ in ()).throw(RuntimeError("bug in the fast path")), id="raises"),
        pytest.param(lambda batch: BatchScores([], [], []), id="wrong-length"),
    ],
)
def test_a_failing_batch_function_falls_back_logged_and_counted(
    bad_batch, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Outside tests a broken fast path falls back to the definition, with a warning and a count; under
    ONETHINKER_REWARD_STRICT (set for the whole test suite) it raises, so the agreement tests cannot pass on
    the per-item path by accident."""
    from onethinker.rewards import FastPathError, fallbacks

    register_task("echo", lambda a, g, d: float(a == g), batch_fn=bad_batch)
    items = [{"response": wrap("x"), "ground_truth": "x", "problem_type": "echo", "data_type": "image"}]
    try:
        with pytest.raises(FastPathError, match="echo"):
            compute_score(items)
        monkeypatch.delenv("ONETHINKER_REWARD_STRICT")
        before = fallbacks().get("echo", 0)
        with caplog.at_level("WARNING", logger="onethinker.rewards.registry"):
            assert compute_score(items)[0]["overall"] == 1.5
        assert fallbacks()["echo"] == before + 1
        assert "echo" in caplog.text and "per item" in caplog.text
    finally:
        unregister_task("echo")


def test_summarize_counts_reasons() -> None:
    items = [
        {"response": wrap("B"), "ground_truth": "B", "problem_type": "multiple choice", "data_type": "image"},
        {"response": "B", "ground_truth": "A", "problem_type": "multiple choice", "data_type": "video"},
        {
            "response": wrap("{"),
            "ground_truth": '{"time": [1, 2]}',
            "problem_type": "temporal grounding",
            "data_type": "video",
        },
        {"response": wrap("x"), "ground_truth": "x", "problem_type": "segmentation", "data_type": "audio"},
        "not an item",
        {"response": wrap("x"), "ground_truth": "x", "problem_type": "poetry", "data_type": "image"},
    ]
    s = summarize(items, compute_score(items))
    mc = s["multiple_choice"]
    assert mc["n"] == 2 and mc["accuracy"] == 0.5 and mc["format"] == 0.5 and mc["malformed_rate"] == 0.5
    assert mc["reason/no_think_answer"] == 1 and mc["reason/incorrect"] == 1
    assert s["temporal_grounding"]["reason/json_unparseable"] == 1
    assert s["segmentation_unknown"]["reason/unknown_data_type"] == 1
    assert s["invalid"]["reason/bad_item"] == 1
    assert s["unknown"]["reason/unknown_problem_type"] == 1
    assert s["all"]["n"] == 6
    with pytest.raises(ValueError):
        summarize(items, [])


def test_ground_truth_that_is_not_a_string() -> None:
    items = [
        {"response": wrap("3"), "ground_truth": 3, "problem_type": "numerical", "data_type": "image"},
        {"response": wrap("3"), "ground_truth": None, "problem_type": "numerical", "data_type": "image"},
    ]
    a, b = compute_score(items)
    assert a["accuracy"] == 0.0 and a["reasons"] == ["bad_ground_truth"] and a["structure"] == 0.5
    assert b["accuracy"] == 0.0 and b["reasons"] == ["bad_ground_truth"]  # None is the empty ground truth


def test_a_missing_grader_library_is_not_scored_as_wrong(monkeypatch: pytest.MonkeyPatch) -> None:
    """mathruler needs pylatexenc without declaring it; a missing library must raise, not score 0."""
    from onethinker.rewards import batched, definitions

    def missing() -> None:
        raise ImportError("No module named 'pylatexenc'")

    monkeypatch.setattr(definitions, "_libs", missing)
    batched.grade_answer_cached.cache_clear()
    items = [
        {
            "response": wrap("(B)"),
            "ground_truth": "B",
            "problem_type": "multiple choice",
            "data_type": "image",
        }
    ]
    with pytest.raises(ImportError):
        compute_score(items)
    with pytest.raises(ImportError):
        reference.compute_score(items)
    batched.grade_answer_cached.cache_clear()
