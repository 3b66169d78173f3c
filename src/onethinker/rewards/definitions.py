"""The reward definition of every built-in task, one plain per-item function each.

This module is the specification as code: straightforward, one item at a time, calling the
libraries the published OneThinker reward calls (mathruler, math-verify, rouge-score). The batched
scorer (:mod:`onethinker.rewards.batched`) must give the same numbers, and tests hold it to that.

Each accuracy function takes ``(answer, ground_truth, data_type)`` (all ``str``; ``data_type``
lower-cased) and returns ``(accuracy, reasons)``; each structure function takes
``(answer, ground_truth, data_type)`` and returns the structure bonus. The scorer applies the
rules that hold for every task (structure 0 when format is 0, non-finite values to 0, clipping).

Object-level helpers (``*_shape``, ``structure_*``) are shared with the batched path: they only
look at the decoded JSON. The arithmetic (IoU, distances, edit distances, ROUGE) is not shared.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import re
from collections.abc import Callable
from functools import lru_cache
from types import SimpleNamespace

import numpy as np

from onethinker.contract import schema as S
from onethinker.metrics.geometry import UNION_EPS
from onethinker.rewards import parsing as P

Reasons = tuple[str, ...]
AccuracyResult = tuple[float, Reasons]

POINT_SIGMA = 50.0
TIME_TAU = 2.0

# ---------------------------------------------------------------------------------------------------
# Library calls shared by both paths (their results are what the definition is made of)
# ---------------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _libs() -> SimpleNamespace:
    """The graders, imported on first use (sympy is slow to import).

    mathruler imports pylatexenc without declaring it: a missing library is an environment error and
    raises ImportError (never scored as a wrong answer).
    """
    from math_verify import parse, verify
    from mathruler.grader import grade_answer as mathruler_grade

    return SimpleNamespace(parse=parse, verify=verify, grade=mathruler_grade)


def grade_answer_unbounded(given: str, ground_truth: str) -> bool:
    """``mathruler.grader.grade_answer``; False if it raises. No time limit: only the sandbox's worker calls it."""
    grade = _libs().grade
    try:
        return bool(grade(given, ground_truth))
    except Exception:  # noqa: BLE001
        return False


def grade_answer(given: str, ground_truth: str) -> bool | object:
    """``mathruler.grader.grade_answer`` under the reward budget: its verdict, or ``sandbox.TIMEOUT`` when the
    answer is over the size budget or the comparison over the time budget. A missing library raises
    ImportError."""
    from onethinker.rewards import options, sandbox

    _libs()  # raises ImportError here, in the caller, if a grader library is missing
    opts = options.current()
    return sandbox.bounded("grade", [given, ground_truth], (given,), opts.timeout_s, opts.max_answer_chars)


@lru_cache(maxsize=1 << 14)
def math_parse(text: str) -> object:
    """``math_verify.parse``, memoised (a ground truth is parsed once, however many answers it meets)."""
    return _libs().parse(text)


def math_verify(gold: object, pred: object) -> bool:
    return bool(_libs().verify(gold, pred))


def math_equivalent_unbounded(ground_truth: str, answer: str, strict: bool = False) -> bool:
    """math_verify.verify(parse(gt), parse(answer)); if that raises, grade_answer(answer, gt) (the published
    definition). ``strict``: the answer must also be one expression equivalent to the ground truth
    (:func:`whole_answer_equivalent`). No time limit: only the sandbox's worker calls it."""
    try:
        gold, pred = math_parse(ground_truth), math_parse(answer)
        ok = math_verify(gold, pred)
    except ImportError:
        raise
    except Exception:  # noqa: BLE001
        return grade_answer_unbounded(answer, ground_truth)
    return ok and (not strict or whole_answer_equivalent(gold, ground_truth, answer, pred))


_DELIMITERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))
_COMMAND = re.compile(r"\\[A-Za-z]+")
_PROSE = re.compile(r"[A-Za-z]{2,}[^A-Za-z0-9]+[A-Za-z]{2,}")


def _bare(text: str) -> str:
    """The text without outer math delimiters and a final period."""
    text = text.strip()
    for left, right in _DELIMITERS:
        if len(text) >= len(left) + len(right) and text.startswith(left) and text.endswith(right):
            text = text[len(left) : len(text) - len(right)].strip()
            break
    return text.removesuffix(".").strip()


@lru_cache(maxsize=1 << 12)
def _whole(text: str) -> object:
    """``text`` parsed as ONE LaTeX expression, normalised as math-verify normalises LaTeX (units and
    ``\\text`` dropped), except that a ``\\boxed{}`` is not extracted from a longer expression."""
    from dataclasses import replace

    from math_verify.parser import LatexExtractionConfig, normalize_latex, parse_latex_cached

    config = replace(LatexExtractionConfig().normalization_config, boxed="none")
    normalized = normalize_latex(text, config=config)
    return [parse_latex_cached(normalized), normalized]


def _covers(parsed: object, text: str) -> bool:
    """math-verify's extraction (``[expr, extracted text]``) is the whole of ``text``."""
    if not (isinstance(parsed, list) and len(parsed) >= 2):
        return False
    return "".join(str(parsed[-1]).split()) == "".join(text.split())


def whole_answer_equivalent(gold: object, ground_truth: str, answer: str, pred: object = None) -> bool:
    """The strict math check: the answer, as ONE expression, equals the ground truth, as one expression.

    math-verify extracts *an* expression from each side and compares those, so ``\\frac{1}{2}+1``,
    ``2*\\frac{1}{2}`` and ``not \\frac{1}{2}`` all count as ``\\frac{1}{2}`` (it finds the fraction inside
    them; a ground truth ``2\\sqrt{3}`` is even read as 2), and a policy can learn to pad its answers. Here
    both sides, outer ``$..$``, ``\\(..\\)``, ``\\[..\\]`` and a final period aside, are taken whole: as
    math-verify extracted them when the extraction is the whole text (the common case: nothing more is
    parsed), else parsed as one LaTeX expression. Prose (two words in a row) is not an expression.
    ``x = \\frac{1}{2}`` passes (math-verify compares the right-hand side).
    """
    text, gt_text = _bare(answer), _bare(ground_truth)
    if not text:
        return False
    gold_whole, pred_whole = _covers(gold, gt_text), _covers(pred, text)
    if gold_whole and pred_whole:
        return True  # both extractions are the whole texts, and they verified
    if not pred_whole and _PROSE.search(_COMMAND.sub(" ", text)):
        return False
    try:
        whole = pred if pred_whole else _whole(text)
        if not gold_whole:
            with contextlib.suppress(Exception):  # keep math-verify's reading of an odd ground truth
                gold = _whole(gt_text)
        return math_verify(gold, whole)
    except ImportError:
        raise
    except Exception:  # noqa: BLE001 - not one expression
        return False


def math_equivalent(ground_truth: str, answer: str) -> bool | object:
    """:func:`math_equivalent_unbounded` under the reward budget and the options in force (``math_strict``);
    ``sandbox.TIMEOUT`` when over budget."""
    from onethinker.rewards import options, sandbox

    _libs()
    opts = options.current()
    return sandbox.bounded(
        "math", [ground_truth, answer, opts.math_strict], (answer,), opts.timeout_s, opts.max_answer_chars
    )


def graded(verdict: bool | object) -> AccuracyResult:
    """A grader's verdict as (accuracy, reasons): 1, 0, or 0 with ``timeout``."""
    from onethinker.rewards.sandbox import TIMEOUT

    if verdict is TIMEOUT:
        return 0.0, (P.TIMEOUT,)
    return (1.0 if verdict else 0.0), ()


# ---------------------------------------------------------------------------------------------------
# Plain scalar arithmetic (reference versions)
# ---------------------------------------------------------------------------------------------------


def _tiou(p: tuple[float, ...], g: tuple[float, ...]) -> float:
    s1, e1 = p
    s2, e2 = g
    inter = max(0.0, min(e1, e2) - max(s1, s2))
    union = max(e1, e2) - min(s1, s2)
    return inter / union if union > UNION_EPS else 0.0


def _box_iou(p: tuple[float, ...], g: tuple[float, ...]) -> float:
    x1, y1, x2, y2 = p
    gx1, gy1, gx2, gy2 = g
    inter = max(0.0, min(x2, gx2) - max(x1, gx1)) * max(0.0, min(y2, gy2) - max(y1, gy1))
    a1 = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    a2 = max(0.0, gx2 - gx1) * max(0.0, gy2 - gy1)
    union = a1 + a2 - inter
    return inter / union if union > UNION_EPS else 0.0


def point_similarity(pred: tuple[tuple[float, ...], ...], gt: tuple[tuple[float, ...], ...]) -> float:
    """exp(-d^2 / (2 sigma^2)), d = the smallest mean distance over the 6 one-to-one matchings.

    A matching with an infinite distance is skipped, one whose sum is nan is ignored; none left
    gives 0. Raises OverflowError when d^2 overflows (the published reward then scores 0).
    """
    best = math.inf
    for perm in itertools.permutations(range(3)):
        s = 0.0
        good = True
        for i in range(3):
            d = math.hypot(pred[perm[i]][0] - gt[i][0], pred[perm[i]][1] - gt[i][1])
            if math.isinf(d):
                good = False
                break
            s += d
        if good:
            best = min(best, s)
    if math.isinf(best):
        return 0.0
    avg = best / 3.0
    return max(0.0, min(1.0, math.exp(-(avg**2) / (2 * POINT_SIGMA**2))))


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level edit distance / max(1, reference words), by the plain dynamic programme."""
    ref, hyp = reference.split(), hypothesis.split()
    m, n = len(ref), len(hyp)
    d = [[0] * (n + 1) for _ in range(m + 1)]
    for i in range(m + 1):
        d[i][0] = i
    for j in range(n + 1):
        d[0][j] = j
    for i in range(1, m + 1):
        for j in range(1, n + 1):
            if ref[i - 1] == hyp[j - 1]:
                d[i][j] = d[i - 1][j - 1]
            else:
                d[i][j] = 1 + min(d[i - 1][j], d[i][j - 1], d[i - 1][j - 1])
    return d[m][n] / max(1, m)


@lru_cache(maxsize=1)
def _rouge_scorer():  # noqa: ANN202 - rouge_score type
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)


def rouge_mean(reference: str, hypothesis: str) -> float:
    s = _rouge_scorer().score(reference, hypothesis)
    return max(0.0, min(1.0, (s["rouge1"].fmeasure + s["rouge2"].fmeasure + s["rougeL"].fmeasure) / 3.0))


_MRA_ONE_MINUS = [np.float32(1.0) - t for t in (0.5 + 0.05 * np.arange(10)).astype(np.float32)]


def mean_relative_accuracy(pred: float, gt: float) -> float:
    """Fraction of θ in {0.50, ..., 0.95} with |p - g| / (|g| + 1e-8) < 1 - θ, in float32."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        p, g = np.float32(pred), np.float32(gt)
        rel = abs(p - g) / (abs(g) + np.float32(1e-8))
        hits = sum(1 for t in _MRA_ONE_MINUS if rel < t)
        return float(np.float32(hits) / np.float32(10.0))


# ---------------------------------------------------------------------------------------------------
# Shapes of decoded answers (shared)
# ---------------------------------------------------------------------------------------------------


def structure_time_boxes(obj: object, gt_obj: object, need_time: bool) -> float:
    """Spatial-temporal grounding (need_time) and tracking structure: 0.25 + 0.25 * key overlap."""
    part = 0.0
    if isinstance(obj, dict):
        frames = S.read_frames(obj)
        t = obj.get(S.TIME)
        time_ok = not need_time or (isinstance(t, list) and len(t) == S.SPAN_LEN)
        if time_ok and frames is not None and all(v is not None for v in frames.values()):
            part = 0.25
        if isinstance(gt_obj, dict):
            pb, gb = obj.get(S.BOXES, {}), gt_obj.get(S.BOXES, {})
            if isinstance(pb, dict) and isinstance(gb, dict) and len(gb) > 0:
                part += 0.25 * max(0.0, min(1.0, len(pb.keys() & gb.keys()) / float(len(gb))))
    return part


def structure_segmentation(obj: object, data_type: str) -> float:
    if data_type not in ("image", "video") or not isinstance(obj, dict):
        return 0.0
    ok = (
        S.read_box(obj) is not None
        and S.read_points(obj, S.POSITIVE) is not None
        and S.read_points(obj, S.NEGATIVE) is not None
        and (data_type == "image" or S.is_real(obj.get(S.TIME)))
    )
    return 0.5 if ok else 0.0


def boxes_reasons(pb: object, gb: dict) -> list[str]:
    """wrong_shape if a predicted box is not 4 numbers; missing_frames if a ground-truth frame is absent."""
    out = []
    if any(S.numbers(v, S.BOX_LEN) is None for v in pb.values()):  # type: ignore[union-attr]
        out.append(P.WRONG_SHAPE)
    if any(k not in pb for k in gb):  # type: ignore[operator]
        out.append(P.MISSING_FRAMES)
    return out


# ---------------------------------------------------------------------------------------------------
# Accuracy, per task (reference)
# ---------------------------------------------------------------------------------------------------


def acc_multiple_choice(answer: str, gt: str, data_type: str) -> AccuracyResult:
    return graded(grade_answer(answer.strip(), gt.strip()))


def acc_numerical(answer: str, gt: str, data_type: str) -> AccuracyResult:
    g, p = S.to_number(gt), S.to_number(answer)
    reasons = [r for r, v in ((P.NOT_A_NUMBER, p), (P.BAD_GROUND_TRUTH, g)) if v is None]
    if g is None or p is None:
        return 0.0, tuple(reasons)
    return (1.0 if round(g, 2) == round(p, 2) else 0.0), ()


def acc_regression(answer: str, gt: str, data_type: str) -> AccuracyResult:
    g, p = S.to_number(gt), S.to_number(answer)
    reasons = [r for r, v in ((P.NOT_A_NUMBER, p), (P.BAD_GROUND_TRUTH, g)) if v is None]
    if g is None or p is None:
        return 0.0, tuple(reasons)
    return mean_relative_accuracy(p, g), ()


def text_over_budget(answer: str) -> bool:
    """An OCR / open-ended answer too long to compare within the budget (``max_text_chars``)."""
    from onethinker.rewards import options

    return len(answer) > options.current().max_text_chars


def acc_ocr(answer: str, gt: str, data_type: str) -> AccuracyResult:
    if text_over_budget(answer):
        return 0.0, (P.TIMEOUT,)
    return max(0.0, min(1.0, 1.0 - word_error_rate(gt, answer))), ()


def acc_open_ended(answer: str, gt: str, data_type: str) -> AccuracyResult:
    if text_over_budget(answer):
        return 0.0, (P.TIMEOUT,)
    return rouge_mean(gt, answer), ()


def acc_math(answer: str, gt: str, data_type: str) -> AccuracyResult:
    return graded(math_equivalent(gt, answer))


def _objects(answer: str, gt: str) -> tuple[object, object, list[str]]:
    obj, gt_obj = S.parse_json(answer), S.parse_json(gt)
    reasons = []
    why = P.object_reason(obj)
    if why:
        reasons.append(why)
    if not isinstance(gt_obj, dict):
        reasons.append(P.BAD_GROUND_TRUTH)
    return obj, gt_obj, reasons


def _numbers_pair(
    obj: object, gt_obj: object, read: Callable[..., tuple[float, ...] | None], reasons: list[str]
) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    """A field (``read``: a schema reader) of the answer and, finite, of the ground truth; a missing side adds
    its reason."""
    p = read(obj)
    g = read(gt_obj, finite=True)
    if p is None:
        reasons.append(P.WRONG_SHAPE)
    if g is None:
        reasons.append(P.BAD_GROUND_TRUTH)
    return p, g


def acc_temporal_grounding(answer: str, gt: str, data_type: str) -> AccuracyResult:
    obj, gt_obj, reasons = _objects(answer, gt)
    if reasons:
        return 0.0, tuple(reasons)
    p, g = _numbers_pair(obj, gt_obj, S.read_span, reasons)
    return (_tiou(p, g) if p and g else 0.0), tuple(reasons)


def acc_spatial_grounding(answer: str, gt: str, data_type: str) -> AccuracyResult:
    obj, gt_obj, reasons = _objects(answer, gt)
    if reasons:
        return 0.0, tuple(reasons)
    p, g = _numbers_pair(obj, gt_obj, S.read_box, reasons)
    return (_box_iou(p, g) if p and g else 0.0), tuple(reasons)


def acc_spatial_temporal_grounding(answer: str, gt: str, data_type: str) -> AccuracyResult:
    """0.5 * tIoU + 0.5 * mean box IoU over the frame keys present in both."""
    obj, gt_obj, reasons = _objects(answer, gt)
    if reasons:
        return 0.0, tuple(reasons)
    p, g = _numbers_pair(obj, gt_obj, S.read_span, reasons)
    t = _tiou(p, g) if p and g else 0.0
    pb, gb = obj.get(S.BOXES), gt_obj.get(S.BOXES)  # type: ignore[union-attr]
    if not isinstance(gb, dict):
        reasons.append(P.BAD_GROUND_TRUTH)
    if not isinstance(pb, dict):
        reasons.append(P.WRONG_SHAPE)
    box_part = 0.0
    if isinstance(pb, dict) and isinstance(gb, dict):
        reasons += boxes_reasons(pb, gb)
        vals = []
        for k in pb:
            if k in gb:
                pk, gk = S.numbers(pb[k], S.BOX_LEN), S.finite_numbers(gb[k], S.BOX_LEN)
                if gk is None:
                    reasons.append(P.BAD_GROUND_TRUTH)
                vals.append(_box_iou(pk, gk) if pk and gk else 0.0)
        box_part = sum(vals) / len(vals) if vals else 0.0
    return 0.5 * t + 0.5 * box_part, tuple(reasons)


def acc_tracking(answer: str, gt: str, data_type: str) -> AccuracyResult:
    """Mean box IoU over the ground-truth frames; a missing predicted frame counts 0."""
    obj, gt_obj, reasons = _objects(answer, gt)
    gb = gt_obj.get(S.BOXES) if isinstance(gt_obj, dict) else None
    if isinstance(gt_obj, dict) and not (isinstance(gb, dict) and gb):
        reasons.append(P.BAD_GROUND_TRUTH)
    if reasons:
        return 0.0, tuple(reasons)
    pb = obj.get(S.BOXES)  # type: ignore[union-attr]
    if not isinstance(pb, dict):
        return 0.0, (P.WRONG_SHAPE,)
    reasons += boxes_reasons(pb, gb)  # type: ignore[arg-type]
    total = 0.0
    for k, gbox in gb.items():  # type: ignore[union-attr]
        pk, gk = S.numbers(pb.get(k), S.BOX_LEN), S.finite_numbers(gbox, S.BOX_LEN)
        if gk is None:
            reasons.append(P.BAD_GROUND_TRUTH)
        total += _box_iou(pk, gk) if pk and gk else 0.0
    return total / len(gb), tuple(reasons)  # type: ignore[arg-type]


def acc_segmentation(answer: str, gt: str, data_type: str) -> AccuracyResult:
    """Box IoU plus matched-point similarity (and, for video, key-frame time similarity)."""
    if data_type not in ("image", "video"):
        return 0.0, (P.UNKNOWN_DATA_TYPE,)
    obj, gt_obj, reasons = _objects(answer, gt)
    if reasons:
        return 0.0, tuple(reasons)
    pbox, gbox = S.read_box(obj), S.read_box(gt_obj, finite=True)  # type: ignore[arg-type]
    pp, gp = S.read_points(obj, S.POSITIVE), S.read_points(gt_obj, S.POSITIVE, finite=True)  # type: ignore[arg-type]
    pn, gn = S.read_points(obj, S.NEGATIVE), S.read_points(gt_obj, S.NEGATIVE, finite=True)  # type: ignore[arg-type]
    tp, tg = obj.get(S.TIME), gt_obj.get(S.TIME)  # type: ignore[union-attr]
    video = data_type == "video"
    if pbox is None or pp is None or pn is None or (video and not S.is_real(tp)):
        reasons.append(P.WRONG_SHAPE)
    if gbox is None or gp is None or gn is None or (video and not S.finite_real(tg)):
        reasons.append(P.BAD_GROUND_TRUTH)
    iou = _box_iou(pbox, gbox) if pbox and gbox else 0.0
    if pp is None or gp is None or pn is None or gn is None:
        return 0.0, tuple(reasons)
    try:
        pos, neg = point_similarity(pp, gp), point_similarity(pn, gn)
        if not video:
            return 0.5 * iou + 0.25 * pos + 0.25 * neg, tuple(reasons)
        if not (S.is_real(tp) and S.finite_real(tg)):
            return 0.0, tuple(reasons)
        time_sim = math.exp(-abs(float(tp) - float(tg)) / TIME_TAU)
    except OverflowError:
        return 0.0, (*reasons, P.NUMERIC_OVERFLOW)
    return 0.3 * iou + 0.3 * time_sim + 0.2 * pos + 0.2 * neg, tuple(reasons)


# ---------------------------------------------------------------------------------------------------
# Structure, per task
# ---------------------------------------------------------------------------------------------------


def structure_default(answer: str, gt: str, data_type: str) -> float:
    """Tasks without a structured answer: 0.5."""
    return 0.5


def structure_temporal_grounding(answer: str, gt: str, data_type: str) -> float:
    obj = S.parse_json(answer)
    return 0.5 if isinstance(obj, dict) and S.read_span(obj) is not None else 0.0


def structure_spatial_grounding(answer: str, gt: str, data_type: str) -> float:
    obj = S.parse_json(answer)
    return 0.5 if isinstance(obj, dict) and S.read_box(obj) is not None else 0.0


def structure_spatial_temporal_grounding(answer: str, gt: str, data_type: str) -> float:
    return structure_time_boxes(S.parse_json(answer), S.parse_json(gt), need_time=True)


def structure_tracking(answer: str, gt: str, data_type: str) -> float:
    return structure_time_boxes(S.parse_json(answer), S.parse_json(gt), need_time=False)


def structure_segmentation_text(answer: str, gt: str, data_type: str) -> float:
    return structure_segmentation(S.parse_json(answer), data_type)


#: problem_type (lower case) -> (accuracy, structure), for the built-in tasks.
DEFINITIONS: dict[str, tuple[Callable[[str, str, str], AccuracyResult], Callable[[str, str, str], float]]] = {
    "multiple choice": (acc_multiple_choice, structure_default),
    "numerical": (acc_numerical, structure_default),
    "regression": (acc_regression, structure_default),
    "ocr": (acc_ocr, structure_default),
    "open-ended": (acc_open_ended, structure_default),
    "math": (acc_math, structure_default),
    "temporal grounding": (acc_temporal_grounding, structure_temporal_grounding),
    "spatial grounding": (acc_spatial_grounding, structure_spatial_grounding),
    "spatial-temporal grounding": (acc_spatial_temporal_grounding, structure_spatial_temporal_grounding),
    "tracking": (acc_tracking, structure_tracking),
    "segmentation": (acc_segmentation, structure_segmentation_text),
}
