"""Per-task rewards on valid, near-miss and malformed outputs, with hand-worked numbers.

Every case goes through both the batched scorer and the per-item reference (the ``score`` fixture
checks that they agree). overall = 0.9 * accuracy + 0.1 * format + structure.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from reward_helpers import item, wrap

from onethinker.rewards import compute_score, reference

# --------------------------------------------------------------------------------------------------- QA


def test_multiple_choice(score) -> None:
    s = score(wrap("B"), "<answer>B</answer>", "multiple choice")
    assert (s["accuracy"], s["format"], s["structure"], s["overall"]) == (1.0, 1.0, 0.5, 1.5)
    assert s["reasons"] == []
    s = score(wrap("C"), "<answer>B</answer>", "multiple choice")  # near miss: 0.1 + 0.5
    assert (s["accuracy"], s["overall"], s["reasons"]) == (0.0, pytest.approx(0.6), ["incorrect"])
    s = score("B", "<answer>B</answer>", "Multiple Choice")  # no tags: the whole response is the answer
    assert (s["accuracy"], s["format"], s["structure"]) == (1.0, 0.0, 0.0)
    assert s["overall"] == pytest.approx(0.9)
    assert s["reasons"] == ["no_answer", "no_think_answer"]
    s = score(
        "< think > hm < / think >\n< answer > b < / answer >", "B", "multiple choice"
    )  # spaced tags, lower case
    assert s["overall"] == 1.5
    s = score("<think>x</think><answer></answer>", "B", "multiple choice")  # empty answer block
    assert s["format"] == 1.0 and "empty_answer" in s["reasons"]


def test_numerical(score) -> None:
    assert (
        score(wrap("1200.004"), "<answer>1,200</answer>", "numerical")["accuracy"] == 1.0
    )  # 2-decimal rounding
    assert score(wrap("1200.006"), "1,200", "numerical")["accuracy"] == 0.0
    s = score(wrap("twelve"), "12", "numerical")
    assert s["accuracy"] == 0.0 and s["structure"] == 0.5 and s["reasons"] == ["not_a_number"]
    assert score(wrap("12"), "twelve", "numerical")["reasons"] == ["bad_ground_truth"]


def test_regression(score) -> None:
    # e = |12 - 10| / 10 = 0.2 < 1 - θ for θ in {0.50, ..., 0.75}: 6 of 10, in float32.
    s = score(wrap("12"), "10", "regression", "video")
    assert s["accuracy"] == float(np.float32(6) / np.float32(10))
    assert score(wrap("10"), "10", "regression")["accuracy"] == 1.0
    assert score(wrap("30"), "10", "regression")["reasons"] == ["incorrect"]  # e = 2
    assert score(wrap("n/a"), "10", "regression")["reasons"] == ["not_a_number"]


def test_ocr(score) -> None:
    gt = "the quick brown fox"
    assert score(wrap("the quick brown dog"), gt, "OCR")["accuracy"] == 0.75  # 1 substitution / 4 words
    assert score(wrap("quick brown fox"), gt, "ocr")["accuracy"] == 0.75  # 1 deletion
    assert score(wrap("a b c d e f g h i"), gt, "OCR")["accuracy"] == 0.0  # WER > 1 clipped
    assert score(wrap(gt), gt, "OCR")["overall"] == 1.5


def test_open_ended(score) -> None:
    # ROUGE-1 F = 0.8, ROUGE-2 F = 2/3, ROUGE-L F = 0.8 -> mean 0.75556.
    s = score(wrap("the cat"), "the cat sat", "open-ended", "video")
    assert s["accuracy"] == pytest.approx((0.8 + 2 / 3 + 0.8) / 3)
    assert score(wrap("Cats sitting"), "the cat sits", "open-ended")["accuracy"] > 0  # stemmer on
    assert score(wrap("zebra"), "the cat sat", "open-ended")["reasons"] == ["incorrect"]


def test_math(score) -> None:
    assert score(wrap("0.5"), "\\frac{1}{2}", "math")["accuracy"] == 1.0
    assert score(wrap("\\frac{2}{4}"), "<answer>\\frac{1}{2}</answer>", "math")["accuracy"] == 1.0
    assert score(wrap("2"), "\\frac{1}{2}", "math")["accuracy"] == 0.0
    assert score("no idea", "\\frac{1}{2}", "math")["overall"] == 0.0


# --------------------------------------------------------------------------------------------------- grounding


def test_temporal_grounding(score) -> None:
    gt = {"time": [4, 10]}
    s = score(wrap({"time": [2, 8]}), gt, "temporal grounding", "video")  # inter 4, union 8
    assert (s["accuracy"], s["structure"], s["overall"]) == (0.5, 0.5, pytest.approx(1.05))
    assert (
        score(wrap({"time": ["2", "8"]}), gt, "temporal grounding")["accuracy"] == 0.5
    )  # numeric strings count
    s = score(wrap({"time": [2, "x"]}), gt, "temporal grounding")
    assert (s["accuracy"], s["structure"], s["reasons"]) == (0.0, 0.0, ["wrong_shape"])
    s = score(wrap('{"time": [2, 8]'), gt, "temporal grounding")
    assert s["reasons"] == ["json_unparseable"] and s["overall"] == pytest.approx(0.1)
    assert score(wrap("[2, 8]"), gt, "temporal grounding")["reasons"] == ["not_an_object"]
    assert score(wrap({"time": [12, 14]}), gt, "temporal grounding")["reasons"] == ["incorrect"]
    assert score(wrap({"time": [2, 8]}), {"time": [4, "nan"]}, "temporal grounding")["reasons"] == [
        "bad_ground_truth"
    ]
    assert score(wrap({"time": [5, "inf"]}), gt, "temporal grounding")["accuracy"] == 0.0  # union is infinite


def test_spatial_grounding(score) -> None:
    gt = {"boxes": [5, 5, 15, 15]}
    s = score(wrap({"boxes": [0, 0, 10, 10]}), gt, "spatial grounding")  # inter 25 / union 175
    assert s["accuracy"] == pytest.approx(1 / 7) and s["structure"] == 0.5
    assert score(wrap({"boxes": [10, 10, 0, 0]}), gt, "spatial grounding")["accuracy"] == 0.0  # inverted box
    assert score(wrap({"boxes": [0, 0, 10]}), gt, "spatial grounding")["reasons"] == ["wrong_shape"]
    assert score(wrap({"boxes": [0, 0, "nan", 10]}), gt, "spatial grounding")["accuracy"] == 0.0
    assert score(wrap({"box": [0, 0, 10, 10]}), gt, "spatial grounding")["structure"] == 0.0


def test_spatial_temporal_grounding(score) -> None:
    b = [0, 0, 10, 10]
    gt = {"time": [0, 4], "boxes": {"0": b, "1": b, "2": b}}
    pred = {"time": [0, 2], "boxes": {"0": b, "1": [0, 0, 5, 10], "9": [0, 0, 1, 1]}}
    # tIoU 2/4; box IoU over shared frames 0 and 1: (1 + 0.5) / 2; structure 0.25 + 0.25 * 2/3.
    s = score(wrap(pred), gt, "spatial-temporal grounding", "video")
    assert s["accuracy"] == pytest.approx(0.5 * 0.5 + 0.5 * 0.75)
    assert s["structure"] == pytest.approx(0.25 + 0.25 * 2 / 3)
    assert s["reasons"] == ["missing_frames"]
    s = score(wrap({"time": [0, 2], "boxes": [0, 0, 10, 10]}), gt, "spatial-temporal grounding", "video")
    assert s["accuracy"] == pytest.approx(0.25) and s["structure"] == 0.0 and s["reasons"] == ["wrong_shape"]
    s = score(wrap({"time": [0, 2, 3], "boxes": {"5": b}}), gt, "spatial-temporal grounding", "video")
    assert s["accuracy"] == 0.0 and s["structure"] == 0.0  # bad time, no shared frame


def test_tracking(score) -> None:
    b = [0, 0, 10, 10]
    gt = {"boxes": {"1": b, "2": b, "3": b, "4": b}}
    pred = {"boxes": {"1": b, "2": [0, 0, 10, 5], "3": [20, 20, 30, 30]}}  # IoU 1, 0.5, 0; frame 4 missing
    s = score(wrap(pred), gt, "tracking", "video")
    assert s["accuracy"] == pytest.approx(1.5 / 4)
    assert s["structure"] == pytest.approx(0.25 + 0.25 * 3 / 4)
    assert s["reasons"] == ["missing_frames"]
    s = score(wrap({"boxes": {"1": b, "2": [0, 0, 1]}}), gt, "tracking", "video")
    assert s["accuracy"] == pytest.approx(0.25) and s["structure"] == pytest.approx(0.125)
    assert s["reasons"] == ["missing_frames", "wrong_shape"]
    assert (
        score(wrap({"boxes": {}}), gt, "tracking", "video")["structure"] == 0.25
    )  # an empty object is well-formed
    assert score(wrap({"boxes": b}), gt, "tracking", "video")["reasons"] == ["wrong_shape"]


# --------------------------------------------------------------------------------------------------- segmentation

_POS = [[10, 10], [20, 20], [30, 30]]
_NEG = [[200, 200], [210, 210], [220, 220]]
_SEG_GT = {"boxes": [0, 0, 100, 100], "positive_points": _POS, "negative_points": _NEG}


def _seg_pred(**kw: object) -> dict:
    pred = {
        "boxes": [0, 0, 100, 100],
        "positive_points": [[30, 30], [10, 10], [20, 20]],  # a permutation: sim 1
        "negative_points": [[x + 30, y + 40] for x, y in _NEG],
    }  # each 50 px away: sim exp(-0.5)
    pred.update(kw)
    return pred


def test_segmentation_image(score) -> None:
    s = score(wrap(_seg_pred()), _SEG_GT, "segmentation", "image")
    assert s["accuracy"] == pytest.approx(0.5 + 0.25 + 0.25 * math.exp(-0.5))
    assert s["structure"] == 0.5
    s = score(wrap(_seg_pred(positive_points=_POS[:2])), _SEG_GT, "segmentation", "image")
    assert (s["accuracy"], s["structure"], s["reasons"]) == (0.0, 0.0, ["wrong_shape"])
    s = score(wrap(_seg_pred(boxes=[0, 0, 50, 100])), _SEG_GT, "segmentation", "image")
    assert s["accuracy"] == pytest.approx(0.5 * 0.5 + 0.25 + 0.25 * math.exp(-0.5))
    s = score(wrap(_seg_pred(negative_points=[[1e200, 0]] * 3)), _SEG_GT, "segmentation", "image")
    assert s["accuracy"] == 0.0 and s["reasons"] == [
        "numeric_overflow"
    ]  # d^2 overflows: published reward gives 0
    s = score(wrap(_seg_pred()), _SEG_GT, "segmentation", "audio")
    assert (s["accuracy"], s["structure"], s["reasons"]) == (0.0, 0.0, ["unknown_data_type"])


def test_segmentation_video(score) -> None:
    gt = {**_SEG_GT, "time": 5.0}
    s = score(wrap(_seg_pred(time=3)), gt, "segmentation", "video")  # time sim exp(-2/2)
    assert s["accuracy"] == pytest.approx(0.3 + 0.3 * math.exp(-1) + 0.2 + 0.2 * math.exp(-0.5))
    assert s["structure"] == 0.5
    s = score(wrap(_seg_pred(time="3")), gt, "segmentation", "video")  # a string time is not accepted
    assert (s["accuracy"], s["structure"], s["reasons"]) == (0.0, 0.0, ["wrong_shape"])
    s = score(wrap(_seg_pred()), gt, "segmentation", "video")  # no time
    assert s["accuracy"] == 0.0 and s["structure"] == 0.0
    assert score(wrap(_seg_pred(time=10**400)), gt, "segmentation", "video")["reasons"] == [
        "numeric_overflow"
    ]


# --------------------------------------------------------------------------------------------------- any task


@pytest.mark.parametrize(
    "response", [None, "", "   ", "<think>", "</answer>", "\0", "<answer>{}</answer>" * 50]
)
def test_degenerate_responses(score, response: object) -> None:
    for pt, gt in [
        ("multiple choice", "A"),
        ("tracking", {"boxes": {"1": [0, 0, 1, 1]}}),
        ("segmentation", _SEG_GT),
        ("math", "1"),
    ]:
        s = score(response, gt, pt, "video")
        assert s["format"] == 0.0


def test_unknown_problem_type(score) -> None:
    s = score(wrap("B"), "B", "astrology")
    assert (s["accuracy"], s["structure"], s["reasons"]) == (0.0, 0.5, ["unknown_problem_type"])


STRICT_MATH = [  # (answer, ground truth, published accuracy, strict accuracy)
    ("\\frac{1}{2}", "\\frac{1}{2}", 1.0, 1.0),
    ("0.5", "\\frac{1}{2}", 1.0, 1.0),
    ("$\\frac{1}{2}$.", "\\frac{1}{2}", 1.0, 1.0),
    ("x = \\frac{1}{2}", "\\frac{1}{2}", 1.0, 1.0),
    ("\\frac{1}{2}+1", "\\frac{1}{2}", 1.0, 0.0),
    ("2*\\frac{1}{2}", "\\frac{1}{2}", 1.0, 0.0),
    ("not \\frac{1}{2}", "\\frac{1}{2}", 1.0, 0.0),
    ("\\boxed{\\frac{1}{2}} + 1", "\\frac{1}{2}", 1.0, 0.0),
    ("The answer is \\frac{1}{2}", "\\frac{1}{2}", 1.0, 0.0),
    ("2\\sqrt{3}", "2\\sqrt{3}", 1.0, 1.0),
    ("2", "2\\sqrt{3}", 1.0, 0.0),  # math-verify reads the ground truth as 2
    ("45^\\circ", "45", 1.0, 1.0),
]


@pytest.mark.parametrize(("answer", "gt", "published", "strict"), STRICT_MATH)
def test_strict_math_takes_the_whole_answer(
    score, answer: str, gt: str, published: float, strict: float
) -> None:
    from onethinker.rewards import PARITY

    assert score(wrap(answer), gt, "math")["accuracy"] == strict
    parity = [compute_score([item(wrap(answer), gt, "math")], options=PARITY)[0]]
    parity.append(reference.compute_score([item(wrap(answer), gt, "math")], options=PARITY)[0])
    assert [s["accuracy"] for s in parity] == [published, published]
