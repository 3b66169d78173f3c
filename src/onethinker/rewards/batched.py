"""Batched implementations of the built-in task rewards: the same numbers as
:mod:`onethinker.rewards.definitions`, computed a task-batch at a time.

Where the time goes and what is done about it:

- multiple choice / math: the graders (mathruler, math-verify) cost milliseconds per call and run in the
  sandbox's worker process under the time and size budget (:mod:`onethinker.rewards.sandbox`); every
  distinct (answer, ground truth) pair is graded once and memoised across calls (a pure function of the
  pair and the budget). Option letters ("B", "(b)") are compared without sympy's simplify (two symbols
  are equal exactly when the letters are; tests check this against mathruler, exhaustively over letter
  pairs in a slow test); single letters never leave the process.
- OCR / open-ended: bit-parallel edit distance and LCS, a memoised Porter stemmer, ground truths
  tokenised once per batch.
- grounding, tracking, segmentation: every JSON string is decoded once per batch (answers shared by
  the accuracy and structure parts, ground truths shared by a rollout group) and the IoU / distance
  arithmetic runs as numpy array operations over all items (and frames) at once.
- regression: the float32 mean relative accuracy over the whole batch in one numpy call.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from functools import lru_cache

import numpy as np

from onethinker.contract import schema as S
from onethinker.metrics.geometry import box_iou, tiou
from onethinker.metrics.text import edit_distance, mean_relative_accuracy, rouge_f_prepared, rouge_prepare
from onethinker.rewards import definitions as D
from onethinker.rewards import options
from onethinker.rewards import parsing as P
from onethinker.rewards.registry import BatchScores, TaskBatch
from onethinker.rewards.sandbox import TIMEOUT, bounded_many

_PERMS = ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))  # itertools.permutations order


def _const_structure(batch: TaskBatch) -> list[float]:
    return [0.5] * len(batch)


def _no_reasons(n: int) -> list[list[str]]:
    return [[] for _ in range(n)]


# ---------------------------------------------------------------------------------------------------
# Graders
# ---------------------------------------------------------------------------------------------------

_ASCII_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_LOWER_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyz")


_HELPERS = (
    "normalize_answer",
    "_normalize",
    "split_tuple",
    "_is_frac",
    "_str_is_int",
    "are_equal_under_sympy",
)


@lru_cache(maxsize=1)
def _mathruler_helpers():  # noqa: ANN202 - the mathruler.grader module, or None
    """mathruler's grader module if it has the helpers ``_mathruler_grade`` walks through, else None
    (another mathruler version: then its ``grade_answer`` is called as it is)."""
    from mathruler import grader

    return grader if all(hasattr(grader, name) for name in _HELPERS) else None


def _mathruler_grade(given: str, ground_truth: str) -> bool:
    """``mathruler.grader.grade_answer`` step by step, except that two single lower-case letters are
    compared directly instead of asking sympy whether their difference simplifies to 0.

    For single letters sympy builds two symbols, which are equal exactly when the letters are (a
    slow test checks every pair through mathruler); this is what option letters such as "(B)" meet.
    Every other step is mathruler's own helper, so the result is mathruler's.
    """
    G = _mathruler_helpers()  # noqa: N806 - the module
    if G is None:
        return D.grade_answer(given, ground_truth)
    if G.normalize_answer(ground_truth) == G.normalize_answer(given):
        return True
    gt_norm, given_norm = G._normalize(ground_truth), G._normalize(given)
    if gt_norm is None:
        return False
    if gt_norm == given_norm:
        return True
    if len(given_norm) == 0:
        return False
    gt_elems, given_elems = G.split_tuple(gt_norm), G.split_tuple(given_norm)
    if len(gt_elems) > 1 and (gt_norm[0] != given_norm[0] or gt_norm[-1] != given_norm[-1]):
        return False
    if len(gt_elems) != len(given_elems):
        return False
    for gt_elem, given_elem in zip(gt_elems, given_elems, strict=True):
        if G._is_frac(gt_elem) and G._is_frac(given_elem):
            ok = gt_elem == given_elem
        elif G._str_is_int(gt_elem) != G._str_is_int(given_elem):
            ok = False
        elif gt_elem in _LOWER_LETTERS and given_elem in _LOWER_LETTERS:
            ok = gt_elem == given_elem
        else:
            ok = G.are_equal_under_sympy(gt_elem, given_elem)
        if not ok:
            return False
    return True


_MEMO: OrderedDict[tuple, bool | object] = OrderedDict()
"""Verdicts of symbolic comparisons, keyed by (op, its arguments, the budget): a pure function of those."""
_MEMO_SIZE = 1 << 16


def _letters(given: str, ground_truth: str) -> bool | None:
    """Two single option letters compare without sympy (None when they are not)."""
    if (
        len(given) == 1
        and len(ground_truth) == 1
        and given in _ASCII_LETTERS
        and ground_truth in _ASCII_LETTERS
    ):
        return given.lower() == ground_truth.lower()
    return None


def _verdicts_of(op: str, requests: list[tuple[list, str]]) -> list[bool | object]:
    """The memoised verdict of ``op(*args)`` for each ``(args, answer)``, the misses graded in one pipelined
    round through the sandbox (the answer is what the pre-screen looks at)."""
    opts = options.current()
    keys = [(op, *args, opts.timeout_s, opts.max_answer_chars) for args, _ in requests]
    missing = {k: r for k, r in zip(keys, requests, strict=True) if k not in _MEMO}
    if missing:
        D._libs()  # raises ImportError if a grader library is missing
        todo = list(missing.items())
        verdicts = bounded_many(
            op, [(args, (answer,)) for _, (args, answer) in todo], opts.timeout_s, opts.max_answer_chars
        )
        for (k, _), v in zip(todo, verdicts, strict=True):
            _MEMO[k] = v
        while len(_MEMO) > _MEMO_SIZE:
            _MEMO.popitem(last=False)
    return [_MEMO[k] for k in keys]


def grade_answer_cached(given: str, ground_truth: str) -> bool | object:
    """``definitions.grade_answer``, memoised (per budget), without sympy for option letters; ``TIMEOUT``
    when over budget."""
    letters = _letters(given, ground_truth)
    if letters is not None:
        return letters
    return _verdicts_of("grade_steps", [([given, ground_truth], given)])[0]


grade_answer_cached.cache_clear = _MEMO.clear  # type: ignore[attr-defined]


def _scores(batch: TaskBatch, verdicts: list[bool | object]) -> BatchScores:
    acc, reasons = [], _no_reasons(len(batch))
    for i, verdict in enumerate(verdicts):
        if verdict is TIMEOUT:
            reasons[i].append(P.TIMEOUT)
        acc.append(1.0 if verdict is True else 0.0)
    return BatchScores(acc, _const_structure(batch), reasons)


def multiple_choice(batch: TaskBatch) -> BatchScores:
    pairs = [(a.strip(), g.strip()) for a, g in zip(batch.answers, batch.ground_truths, strict=True)]
    verdicts: list[bool | object] = [_letters(a, g) for a, g in pairs]
    sympy = [i for i, v in enumerate(verdicts) if v is None]
    for i, v in zip(
        sympy, _verdicts_of("grade_steps", [([*pairs[i]], pairs[i][0]) for i in sympy]), strict=True
    ):
        verdicts[i] = v
    return _scores(batch, verdicts)


def math_(batch: TaskBatch) -> BatchScores:
    strict = options.current().math_strict
    requests = [([g, a, strict], a) for a, g in zip(batch.answers, batch.ground_truths, strict=True)]
    return _scores(batch, _verdicts_of("math", requests))


# ---------------------------------------------------------------------------------------------------
# Numbers
# ---------------------------------------------------------------------------------------------------


def _numbers(batch: TaskBatch) -> tuple[list[float | None], list[float | None], list[list[str]]]:
    preds = [S.to_number(a) for a in batch.answers]
    gts = [S.to_number(g) for g in batch.ground_truths]
    reasons = _no_reasons(len(batch))
    for r, p, g in zip(reasons, preds, gts, strict=True):
        if p is None:
            r.append(P.NOT_A_NUMBER)
        if g is None:
            r.append(P.BAD_GROUND_TRUTH)
    return preds, gts, reasons


def numerical(batch: TaskBatch) -> BatchScores:
    preds, gts, reasons = _numbers(batch)
    acc = [
        1.0 if p is not None and g is not None and round(g, 2) == round(p, 2) else 0.0
        for p, g in zip(preds, gts, strict=True)
    ]
    return BatchScores(acc, _const_structure(batch), reasons)


def regression(batch: TaskBatch) -> BatchScores:
    preds, gts, reasons = _numbers(batch)
    ok = [i for i, (p, g) in enumerate(zip(preds, gts, strict=True)) if p is not None and g is not None]
    acc = np.zeros(len(batch))
    if ok:
        acc[ok] = mean_relative_accuracy([preds[i] for i in ok], [gts[i] for i in ok])
    return BatchScores(acc.tolist(), _const_structure(batch), reasons)


# ---------------------------------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------------------------------


def _text(
    batch: TaskBatch, prepare: Callable[[str], object], score: Callable[[object, str], float]
) -> BatchScores:
    """OCR and open-ended: each ground truth prepared once, each distinct (ground truth, answer) scored once;
    an answer over the size budget scores 0 with ``timeout``."""
    targets: dict[str, object] = {}
    seen: dict[tuple[str, str], float] = {}
    acc = []
    reasons = _no_reasons(len(batch))
    for i, (a, g) in enumerate(zip(batch.answers, batch.ground_truths, strict=True)):
        if D.text_over_budget(a):
            reasons[i].append(P.TIMEOUT)
            acc.append(0.0)
            continue
        key = (g, a)
        if key not in seen:
            if g not in targets:
                targets[g] = prepare(g)
            seen[key] = max(0.0, min(1.0, score(targets[g], a)))
        acc.append(seen[key])
    return BatchScores(acc, _const_structure(batch), reasons)


def ocr(batch: TaskBatch) -> BatchScores:
    return _text(batch, str.split, lambda ref, a: 1.0 - edit_distance(ref, a.split()) / max(1, len(ref)))  # type: ignore[arg-type]


def open_ended(batch: TaskBatch) -> BatchScores:
    return _text(
        batch,
        lambda g: rouge_prepare(g, target=True),
        lambda tgt, a: rouge_f_prepared(tgt, rouge_prepare(a)).mean,  # type: ignore[arg-type]
    )


# ---------------------------------------------------------------------------------------------------
# JSON tasks
# ---------------------------------------------------------------------------------------------------


class _Memo:
    """Per-batch memo: text -> ``view(decoded JSON)``. Ground truths repeat across a rollout group
    and an answer is read by both the accuracy and the structure part, so each is decoded once."""

    def __init__(self, view: Callable[[object], tuple]) -> None:
        self._view = view
        self._memo: dict[str, tuple] = {}

    def __call__(self, text: str) -> tuple:
        try:
            return self._memo[text]
        except KeyError:
            out = self._memo[text] = self._view(S.parse_json(text))
            return out


def _pairwise(fn: Callable[[np.ndarray, np.ndarray], np.ndarray], preds: list, gts: list) -> np.ndarray:
    if not preds:
        return np.zeros(0)
    return fn(np.asarray(preds, dtype=np.float64), np.asarray(gts, dtype=np.float64))


def _single_field(
    read: Callable[..., tuple[float, ...] | None], iou: Callable[[np.ndarray, np.ndarray], np.ndarray]
):  # noqa: ANN202
    """Temporal grounding (the span, tIoU) and spatial grounding (the box, box IoU); ``read`` is the schema's
    reader of the field."""

    def answer_view(obj: object) -> tuple:  # (why not an object, values)
        why = P.object_reason(obj)
        return why, (None if why else read(obj))

    def gt_view(obj: object) -> tuple:  # (is an object, finite values)
        ok = isinstance(obj, dict)
        return ok, (read(obj, finite=True) if ok else None)

    def run(batch: TaskBatch) -> BatchScores:
        answers, gts = _Memo(answer_view), _Memo(gt_view)
        n = len(batch)
        reasons = _no_reasons(n)
        rows_p, rows_g, owner = [], [], []
        for i, (a, g) in enumerate(zip(batch.answers, batch.ground_truths, strict=True)):
            (why, p), (gt_ok, gv) = answers(a), gts(g)
            r = reasons[i]
            if why:
                r.append(why)
            if not gt_ok:
                r.append(P.BAD_GROUND_TRUTH)
            if r:
                continue
            if p is None:
                r.append(P.WRONG_SHAPE)
            if gv is None:
                r.append(P.BAD_GROUND_TRUTH)
            if p and gv:
                rows_p.append(p)
                rows_g.append(gv)
                owner.append(i)
        acc = np.zeros(n)
        acc[owner] = _pairwise(iou, rows_p, rows_g)
        struct = [
            0.5 if f and answers(s)[1] is not None else 0.0
            for s, f in zip(batch.structure_answers, batch.formatted, strict=True)
        ]
        return BatchScores(acc.tolist(), struct, reasons)

    return run


temporal_grounding = _single_field(S.read_span, tiou)
spatial_grounding = _single_field(S.read_box, box_iou)


def _frames_answer_view(obj: object) -> tuple:
    """(why not an object, time is a list of 2, time values, {frame: box or None} or None, all boxes ok)."""
    why = P.object_reason(obj)
    if why:
        return why, False, None, None, False
    t = obj.get(S.TIME)  # type: ignore[union-attr]
    frames = S.read_frames(obj)  # type: ignore[arg-type]
    all_ok = frames is not None and all(v is not None for v in frames.values())
    return None, isinstance(t, list) and len(t) == S.SPAN_LEN, S.read_span(obj), frames, all_ok  # type: ignore[arg-type]


def _frames_gt_view(obj: object) -> tuple:
    """(is an object, finite time values, {frame: finite box or None} or None)."""
    if not isinstance(obj, dict):
        return False, None, None
    return True, S.read_span(obj, finite=True), S.read_frames(obj, finite=True)


def _frames(need_time: bool):  # noqa: ANN202
    """Spatial-temporal grounding (need_time) and tracking."""

    def run(batch: TaskBatch) -> BatchScores:
        answers, gts = _Memo(_frames_answer_view), _Memo(_frames_gt_view)
        n = len(batch)
        reasons = _no_reasons(n)
        span_p, span_g, span_owner = [], [], []
        box_p, box_g, box_owner = [], [], []
        denom = np.zeros(n)
        for i, (a, g) in enumerate(zip(batch.answers, batch.ground_truths, strict=True)):
            (why, _, pt, pf, all_ok), (gt_ok, gt_t, gf) = answers(a), gts(g)
            r = reasons[i]
            if why:
                r.append(why)
            if not gt_ok or not need_time and not gf:
                r.append(P.BAD_GROUND_TRUTH)
            if r:
                continue
            if need_time:
                if pt is None:
                    r.append(P.WRONG_SHAPE)
                if gt_t is None:
                    r.append(P.BAD_GROUND_TRUTH)
                if pt and gt_t:
                    span_p.append(pt)
                    span_g.append(gt_t)
                    span_owner.append(i)
                if gf is None:
                    r.append(P.BAD_GROUND_TRUTH)
                if pf is None:
                    r.append(P.WRONG_SHAPE)
                if pf is None or gf is None:
                    continue
                keys = [k for k in pf if k in gf]
            else:
                if pf is None:
                    r.append(P.WRONG_SHAPE)
                    continue
                keys = list(gf)  # type: ignore[arg-type]
            if not all_ok:
                r.append(P.WRONG_SHAPE)
            if any(k not in pf for k in gf):  # type: ignore[union-attr]
                r.append(P.MISSING_FRAMES)
            denom[i] = len(keys)
            for k in keys:
                pk, gk = pf.get(k), gf[k]  # type: ignore[index]
                if gk is None:
                    r.append(P.BAD_GROUND_TRUTH)
                elif pk:
                    box_p.append(pk)
                    box_g.append(gk)
                    box_owner.append(i)
        box_sum = np.bincount(
            np.asarray(box_owner, dtype=np.int64), weights=_pairwise(box_iou, box_p, box_g), minlength=n
        )  # (n,) per-item sums, in frame order
        with np.errstate(invalid="ignore", divide="ignore"):
            box_part = np.where(denom > 0, box_sum / np.where(denom > 0, denom, 1.0), 0.0)  # (n,)
        if need_time:
            t = np.zeros(n)
            t[span_owner] = _pairwise(tiou, span_p, span_g)
            acc = 0.5 * t + 0.5 * box_part
        else:
            acc = box_part
        struct = [0.0] * n
        for i, (s, g, f) in enumerate(
            zip(batch.structure_answers, batch.ground_truths, batch.formatted, strict=True)
        ):
            if not f:
                continue
            why, time_ok, _, pf, all_ok = answers(s)
            if why:
                continue
            part = 0.25 if (time_ok or not need_time) and all_ok else 0.0
            _, _, gf = gts(g)
            if gf:
                part += 0.25 * max(0.0, min(1.0, len((pf or {}).keys() & gf.keys()) / float(len(gf))))
            struct[i] = part
        return BatchScores(acc.tolist(), struct, reasons)

    return run


spatial_temporal_grounding = _frames(need_time=True)
tracking = _frames(need_time=False)


def _point_similarity(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised ``definitions.point_similarity``. (K, 3, 2) x2 -> similarity (K,), overflowed (K,)."""
    best = np.full(pred.shape[0], np.inf)
    with np.errstate(over="ignore", invalid="ignore"):
        for perm in _PERMS:
            d = np.hypot(pred[:, perm, 0] - gt[:, :, 0], pred[:, perm, 1] - gt[:, :, 1])  # (K, 3)
            s = d[:, 0] + d[:, 1] + d[:, 2]  # (K,) same order as the loop
            s = np.where(np.isinf(d).any(axis=1) | np.isnan(s), np.inf, s)
            best = np.minimum(best, s)
        avg = best / 3.0
        sq = avg**2
        sim = np.exp(-sq / (2 * D.POINT_SIGMA**2))
    found = np.isfinite(best)
    overflow = found & np.isinf(sq)
    return np.where(found & ~overflow, np.clip(sim, 0.0, 1.0), 0.0), overflow


def _seg_answer_view(obj: object) -> tuple:
    """(why not an object, box, positive points, negative points, time, time is int/float)."""
    why = P.object_reason(obj)
    if why:
        return why, None, None, None, None, False
    t = obj.get(S.TIME)  # type: ignore[union-attr]
    return (
        None,
        S.read_box(obj),  # type: ignore[arg-type]
        S.read_points(obj, S.POSITIVE),  # type: ignore[arg-type]
        S.read_points(obj, S.NEGATIVE),  # type: ignore[arg-type]
        t,
        S.is_real(t),
    )


def _seg_gt_view(obj: object) -> tuple:
    """(is an object, box, positive points, negative points, time, time finite) -- all finite."""
    if not isinstance(obj, dict):
        return False, None, None, None, None, False
    t = obj.get(S.TIME)
    return (
        True,
        S.read_box(obj, finite=True),
        S.read_points(obj, S.POSITIVE, finite=True),
        S.read_points(obj, S.NEGATIVE, finite=True),
        t,
        S.finite_real(t),
    )


def segmentation(batch: TaskBatch) -> BatchScores:
    answers, gts = _Memo(_seg_answer_view), _Memo(_seg_gt_view)
    n = len(batch)
    reasons = _no_reasons(n)
    box_p, box_g, box_owner = [], [], []
    pts: list[list[float]] = []  # pp, gp, pn, gn flattened: 24 numbers per item
    pts_owner: list[int] = []
    times: dict[int, tuple[object, object]] = {}
    for i, (a, g, dt) in enumerate(zip(batch.answers, batch.ground_truths, batch.data_types, strict=True)):
        r = reasons[i]
        if dt not in ("image", "video"):
            r.append(P.UNKNOWN_DATA_TYPE)
            continue
        (why, pbox, pp, pn, tp, tp_ok), (gt_ok, gbox, gp, gn, tg, tg_ok) = answers(a), gts(g)
        if why:
            r.append(why)
        if not gt_ok:
            r.append(P.BAD_GROUND_TRUTH)
        if r:
            continue
        video = dt == "video"
        if pbox is None or pp is None or pn is None or (video and not tp_ok):
            r.append(P.WRONG_SHAPE)
        if gbox is None or gp is None or gn is None or (video and not tg_ok):
            r.append(P.BAD_GROUND_TRUTH)
        if pbox and gbox:
            box_p.append(pbox)
            box_g.append(gbox)
            box_owner.append(i)
        if pp is None or gp is None or pn is None or gn is None:
            continue
        pts.append([v for group in (pp, gp, pn, gn) for xy in group for v in xy])
        pts_owner.append(i)
        if video:
            times[i] = (tp, tg) if tp_ok and tg_ok else (None, None)
    iou = np.zeros(n)
    iou[box_owner] = _pairwise(box_iou, box_p, box_g)
    acc = np.zeros(n)
    if pts:
        arr = np.asarray(pts, dtype=np.float64).reshape(-1, 4, 3, 2)  # (K, 4, 3, 2)
        pos, pos_over = _point_similarity(arr[:, 0], arr[:, 1])
        neg, neg_over = _point_similarity(arr[:, 2], arr[:, 3])
        for k, i in enumerate(pts_owner):
            if pos_over[k] or neg_over[k]:
                reasons[i].append(P.NUMERIC_OVERFLOW)
                continue
            if i not in times:
                acc[i] = 0.5 * iou[i] + 0.25 * pos[k] + 0.25 * neg[k]
                continue
            tp, tg = times[i]
            if tp is None:
                continue
            try:
                time_sim = math.exp(-abs(float(tp) - float(tg)) / D.TIME_TAU)  # type: ignore[arg-type]
            except OverflowError:
                reasons[i].append(P.NUMERIC_OVERFLOW)
                continue
            acc[i] = 0.3 * iou[i] + 0.3 * time_sim + 0.2 * pos[k] + 0.2 * neg[k]
    struct = [0.0] * n
    for i, (s, dt, f) in enumerate(
        zip(batch.structure_answers, batch.data_types, batch.formatted, strict=True)
    ):
        if f and dt in ("image", "video"):
            why, pbox, pp, pn, _, tp_ok = answers(s)
            ok = (
                not why
                and pbox is not None
                and pp is not None
                and pn is not None
                and (dt == "image" or tp_ok)
            )
            struct[i] = 0.5 if ok else 0.0
    return BatchScores(acc.tolist(), struct, reasons)


#: problem_type (lower case) -> batched implementation.
BATCHED: dict[str, Callable[[TaskBatch], BatchScores]] = {
    "multiple choice": multiple_choice,
    "numerical": numerical,
    "regression": regression,
    "ocr": ocr,
    "open-ended": open_ended,
    "math": math_,
    "temporal grounding": temporal_grounding,
    "spatial grounding": spatial_grounding,
    "spatial-temporal grounding": spatial_temporal_grounding,
    "tracking": tracking,
    "segmentation": segmentation,
}


def clear_caches() -> None:
    """Forget memoised grades and stems (for cold-start timings)."""
    from onethinker.metrics.text import clear_caches as clear_text

    _MEMO.clear()
    clear_text()
