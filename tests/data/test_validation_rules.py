"""Unit tests of the pure validation checks: answer shapes, options, SFT answers, file parsing.

Each answer-shape rule is tried on a valid answer, a near miss and a malformed one. No Great
Expectations here: these are the functions the suites call row by row.
"""

from __future__ import annotations

import json

import pytest

from onethinker.contract.answers import inner_answer as unwrap
from onethinker.contract.io import RecordFileError, parse_records
from onethinker.contract.records import json_type
from onethinker.validation.rules import (
    ROW_CHECKS,
    RULES,
    answer_problems,
    check_sft_answer_matches,
    option_letters,
    run_check,
)

OPTS = json.dumps(["A. red", "B. green", "C. blue"])
SEG = {
    "boxes": [100, 100, 400, 400],
    "positive_points": [[200, 200], [250, 250], [300, 300]],
    "negative_points": [[10, 10], [900, 900], [10, 900]],
}


def problems(
    pt: str,
    answer: object,
    dt: str = "video",
    options: str | None = None,
    duration: float | None = 4.0,
    fps: float | None = 4.0,
) -> dict[str, str]:
    text = answer if isinstance(answer, str) else json.dumps(answer)
    return answer_problems(pt, dt, text, options, duration, fps)


@pytest.mark.parametrize(
    ("pt", "dt", "answer", "rule"),
    [
        ("multiple choice", "image", "B", None),
        ("multiple choice", "image", "(C)", None),
        ("multiple choice", "image", "D", "option_letter"),
        ("multiple choice", "image", "green", "option_letter"),
        ("numerical", "image", "3", None),
        ("regression", "video", "-2.5e1", None),
        ("numerical", "image", "3 apples", "answer_number"),
        ("numerical", "image", "nan", "answer_number"),
        ("OCR", "image", "  ", "answer_nonempty"),
        ("math", "image", "\\frac{1}{2}", None),
        ("temporal grounding", "video", {"time": [0.5, 4.0]}, None),
        ("temporal grounding", "video", {"time": [0.5, 4.1]}, None),  # within half a frame (0.125 s)
        ("temporal grounding", "video", {"time": [0.5, 4.2]}, "span_in_duration"),
        ("temporal grounding", "video", {"time": [2.0, 2.0]}, "span_order"),
        ("temporal grounding", "video", {"time": [1.0]}, "span_order"),
        ("temporal grounding", "video", {"span": [1, 2]}, "answer_schema"),
        ("temporal grounding", "video", "{time: [1, 2]}", "answer_json"),
        ("temporal grounding", "video", [1, 2], "answer_json"),
        ("spatial grounding", "image", {"boxes": [0, 0, 1000, 1000]}, None),
        ("spatial grounding", "image", {"boxes": [10, 50, 20, 40]}, "box_order"),
        ("spatial grounding", "image", {"boxes": [10, 20, 30, 1001]}, "box_in_range"),
        ("spatial grounding", "image", {"boxes": [10, 20, 30, "40"]}, "box_length"),
        ("spatial grounding", "image", {"boxes": {"1": [1, 2, 3, 4]}}, "answer_schema"),
        (
            "spatial-temporal grounding",
            "video",
            {"time": [0.5, 2.5], "boxes": {"1": [1, 2, 3, 4], "2": [1, 2, 3, 4]}},
            None,
        ),
        (
            "spatial-temporal grounding",
            "video",
            {"time": [0.5, 2.5], "boxes": {"3": [1, 2, 3, 4]}},
            "frame_keys",
        ),
        (
            "spatial-temporal grounding",
            "video",
            {"time": [0.5, 2.5], "boxes": {"1.5": [1, 2, 3, 4]}},
            "frame_keys",
        ),
        ("tracking", "video", {"boxes": {"1": [1, 2, 3, 4], "4": [1, 2, 3, 4]}}, None),
        ("tracking", "video", {"boxes": {"5": [1, 2, 3, 4]}}, "frame_keys"),  # t=4 s: after the last frame
        ("tracking", "video", {"boxes": {"0": [1, 2, 3, 4]}}, "frame_keys"),
        ("tracking", "video", {"boxes": {}}, "frame_keys"),
        ("segmentation", "image", SEG, None),
        ("segmentation", "image", {**SEG, "negative_points": SEG["negative_points"][:2]}, "points_count"),
        ("segmentation", "image", {**SEG, "positive_points": [[1, 2, 3], [1, 2], [1, 2]]}, "points_count"),
        ("segmentation", "image", {**SEG, "positive_points": [[1, 2], [1, 2], [1, 2000]]}, "points_in_range"),
        ("segmentation", "video", {**SEG, "time": 2}, None),
        ("segmentation", "video", SEG, "answer_schema"),
        ("segmentation", "video", {**SEG, "time": "2"}, "keyframe_time"),
        ("segmentation", "video", {**SEG, "time": 3.75}, None),  # the last frame of 16 at 4 fps
        ("segmentation", "video", {**SEG, "time": 4.0}, "keyframe_time"),
        ("segmentation", "video", {**SEG, "time": -1}, "keyframe_time"),
        ("segmentation", "video", {**SEG, "time": True}, "keyframe_time"),
    ],
)
def test_answer_shapes(pt: str, dt: str, answer: object, rule: str | None) -> None:
    found = problems(pt, answer, dt, options=OPTS if pt == "multiple choice" else None)
    if rule is None:
        assert found == {}
    else:
        assert rule in found, found
        assert found[rule]


def test_unknown_duration_skips_end_bounds() -> None:
    assert problems("temporal grounding", {"time": [0.5, 99.0]}, duration=None, fps=None) == {}
    assert "span_order" in problems("temporal grounding", {"time": [5.0, 1.0]}, duration=None, fps=None)


def test_unknown_problem_type_or_missing_answer_is_left_to_other_rules() -> None:
    assert answer_problems("captioning", "image", "x", None, None, None) == {}
    assert answer_problems("numerical", "image", None, None, None, None) == {}


def test_option_letters() -> None:
    assert option_letters(["A. red", "(B) green", "C: blue"]) == (["A", "B", "C"], None)
    assert option_letters(["A. red", "A. again"])[1] == "option letter 'A' appears twice"
    assert option_letters([])[0] is None
    assert "no letter label" in (option_letters(["red"])[1] or "")


def test_sft_answer_equivalence() -> None:
    row = {
        "problem_type_canon": "spatial grounding",
        "answer": '{"boxes": [1, 2, 3, 4]}',
        "ground_truth": '{ "boxes": [1.0, 2, 3, 4] }',
        "ground_truth_source": "record's 'answer'",
    }
    assert check_sft_answer_matches(row) is None
    assert check_sft_answer_matches({**row, "answer": '{"boxes": [1, 2, 3, 5]}'})
    mc = {"problem_type_canon": "multiple choice", "answer": "B", "ground_truth": "B. green"}
    assert check_sft_answer_matches(mc) is None
    num = {"problem_type_canon": "numerical", "answer": "3.0", "ground_truth": "3"}
    assert check_sft_answer_matches(num) is None


def test_checks_never_raise() -> None:
    row = {col: object() for cols, _ in ROW_CHECKS.values() for col in cols}
    for rule in ROW_CHECKS:
        message = run_check(rule, row)
        assert message is None or isinstance(message, str)


def test_every_custom_rule_is_catalogued() -> None:
    assert set(ROW_CHECKS) <= set(RULES)
    assert all(RULES[r].engine == "gx-custom" for r in ROW_CHECKS)


def test_parse_records_and_helpers() -> None:
    assert parse_records('[{"a": 1}]') == [{"a": 1}]
    assert parse_records('{"a": 1}\n\n{"a": 2}\n') == [{"a": 1}, {"a": 2}]
    assert parse_records('{"a": 1}') == [{"a": 1}]  # one-line JSON Lines
    with pytest.raises(RecordFileError, match="line 1 column 8"):
        parse_records('[{"a": }]')
    assert unwrap("<think>x</think><answer> B </answer>") == "B"
    assert unwrap(" B ") == "B"
    # the first <answer> and the first </answer> after it (the published reward's regex), in every stage
    assert unwrap("x</answer><answer>y</answer>") == "y"
    assert [json_type(v) for v in (True, 1, 1.5, "s", [], {}, None)] == [
        "boolean",
        "integer",
        "number",
        "string",
        "array",
        "object",
        None,
    ]
