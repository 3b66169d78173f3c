"""``compute_score``: the OneThinker-compatible reward for a batch of responses, and ``summarize``.

For each item (``response``, ``ground_truth``, ``problem_type``, ``data_type``; optionally
``problem``, ``problem_id``)::

    overall = (1 - format_weight) * accuracy + format_weight * format + structure

- The response is normalised (whitespace around every ``<``, ``>``, ``/`` deleted); ``format`` is 1
  iff it is ``<think>...</think><answer>...</answer>`` up to outer whitespace.
- The answer is the stripped content of the first answer block; if there is none (or it is empty),
  accuracy uses the whole stripped response and structure an empty answer.
- ``accuracy`` in [0, 1] and ``structure`` in [0, 0.5] come from the task registered under the
  lower-cased ``problem_type`` (see :mod:`onethinker.rewards.definitions`); structure is 0 when format
  is 0. An unknown problem_type scores accuracy 0 and structure 0.5 (the published default).

Departures from the published reward, all on inputs it does not define: an item that is not a
mapping, or whose response / problem_type / data_type is neither a string nor None, scores 0
everywhere (``bad_item``); a ground truth that is not a string scores accuracy 0
(``bad_ground_truth``); non-finite ground-truth numbers count as malformed; a non-finite score is 0;
problem_type and data_type are stripped before matching.

Every score also carries ``reasons``: sorted short strings saying why points were lost (see
:mod:`onethinker.rewards.parsing`), which :func:`summarize` counts per task slug.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from onethinker.rewards import parsing as P
from onethinker.rewards.options import RewardConfig, using
from onethinker.rewards.registry import REGISTRY, STRUCTURE_MAX, TaskBatch, finite_or_zero, task_key

UNKNOWN_SLUG = "unknown"
INVALID_SLUG = "invalid"
ALL_SLUG = "all"


@dataclass(slots=True)
class Prepared:
    """One item after parsing, before its task scores it."""

    valid: bool = False  # False: bad_item, everything scores 0
    key: str = ""  # registry key (lower-cased, stripped problem_type)
    data_type: str = ""
    fmt: float = 0.0
    answer: str = ""
    structure_answer: str = ""
    ground_truth: str = ""
    gt_ok: bool = True  # the ground truth was a string (or None)
    reasons: list[str] = field(default_factory=list)


def _read(item: object) -> tuple[str, str, str, object] | None:
    """(response, problem_type, data_type, ground_truth) or None for a bad item."""
    try:
        if type(item) is dict:  # the common case, without the Mapping ABC check
            r, pt, dt = item.get("response"), item.get("problem_type"), item.get("data_type")
            if type(r) is str and type(pt) is str and type(dt) is str:
                return r, pt, dt, item.get("ground_truth")
        if not isinstance(item, Mapping):
            return None
        fields = []
        for name in ("response", "problem_type", "data_type"):
            v = item.get(name)
            if v is None:
                v = ""
            if not isinstance(v, str):
                return None
            fields.append(v)
        return fields[0], fields[1], fields[2], item.get("ground_truth")
    except Exception:  # noqa: BLE001 - a broken Mapping is a bad item
        return None


def prepare(item: object, fast: bool = True, gt_memo: dict[str, str] | None = None) -> Prepared:
    """Parse one item (``fast``: linear-time text steps; else the published regexes)."""
    read = _read(item)
    if read is None:
        return Prepared(reasons=[P.BAD_ITEM])
    response, problem_type, data_type, raw_gt = read
    normalize = P.normalize if fast else P.normalize_reference
    has_format = P.has_format if fast else P.has_format_reference
    extract = P.extract_answer if fast else P.extract_answer_reference

    norm = normalize(response)
    fmt = 1.0 if has_format(norm) else 0.0
    ext = extract(norm)
    reasons = [] if fmt else [P.NO_THINK_ANSWER]
    if ext is None:
        reasons.append(P.NO_ANSWER)
    elif not ext:
        reasons.append(P.EMPTY_ANSWER)

    gt_ok = True
    if raw_gt is None:
        raw_gt = ""
    elif not isinstance(raw_gt, str):
        gt_ok, raw_gt = False, ""
    gt = gt_memo.get(raw_gt) if gt_memo is not None else None
    if gt is None:
        gt = extract(raw_gt) or raw_gt
        if gt_memo is not None:
            gt_memo[raw_gt] = gt
    return Prepared(
        True,
        task_key(problem_type),
        data_type.strip().lower(),
        fmt,
        ext or norm.strip(),
        ext or "",
        gt,
        gt_ok,
        reasons,
    )


def finalize(
    prep: Prepared,
    accuracy: object,
    structure: object,
    task_reasons: Iterable[str],
    format_weight: float,
    known: bool = True,
) -> dict:
    """Sanitise one item's raw scores and assemble its result dict."""
    if not prep.valid:
        return {"overall": 0.0, "accuracy": 0.0, "format": 0.0, "structure": 0.0, "reasons": [P.BAD_ITEM]}
    task_reasons = tuple(task_reasons)
    acc = (
        accuracy
        if type(accuracy) is float and 0.0 <= accuracy <= 1.0
        else min(1.0, max(0.0, finite_or_zero(accuracy)))
    )
    extra: list[str] = []
    if not known:
        acc = 0.0
        extra.append(P.UNKNOWN_PROBLEM_TYPE)
    if not prep.gt_ok:
        acc = 0.0
        extra.append(P.BAD_GROUND_TRUTH)
    struct = min(STRUCTURE_MAX, max(0.0, finite_or_zero(structure))) if prep.fmt else 0.0
    if acc == 0.0 and known and prep.gt_ok and not task_reasons:
        extra.append(P.INCORRECT)
    if task_reasons or extra:
        reasons = sorted({*prep.reasons, *task_reasons, *extra})
    else:
        reasons = sorted(prep.reasons)
    overall = (1.0 - format_weight) * acc + format_weight * prep.fmt + struct
    return {"overall": overall, "accuracy": acc, "format": prep.fmt, "structure": struct, "reasons": reasons}


def check_format_weight(format_weight: float) -> float:
    fw = float(format_weight)
    if not (math.isfinite(fw) and 0.0 <= fw <= 1.0):
        raise ValueError(f"format_weight must be in [0, 1], got {format_weight!r}")
    return fw


def group_batches(preps: Sequence[Prepared]) -> dict[str, tuple[list[int], TaskBatch]]:
    """Valid items grouped by registry key, each group as a TaskBatch."""
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(preps):
        if p.valid:
            groups.setdefault(p.key, []).append(i)
    out = {}
    for key, idxs in groups.items():
        out[key] = (
            idxs,
            TaskBatch(
                answers=[preps[i].answer for i in idxs],
                structure_answers=[preps[i].structure_answer for i in idxs],
                ground_truths=[preps[i].ground_truth for i in idxs],
                data_types=[preps[i].data_type for i in idxs],
                formatted=[bool(preps[i].fmt) for i in idxs],
            ),
        )
    return out


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for one batch.

    Scoring allocates many short-lived acyclic objects (freed by reference counting), and with
    sympy's caches alive every automatic collection walks a large heap: pausing it saves about a
    third of the batched scorer's time. The previous state is restored on exit.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def compute_score(
    items: Sequence[object],
    format_weight: float = 0.1,
    *,
    judge: object | None = None,
    options: RewardConfig | None = None,
) -> list[dict]:
    """Score a batch of responses; one dict per item with float ``overall``, ``accuracy``,
    ``format``, ``structure`` and a ``reasons`` list. Never raises on item contents, and never
    stalls: every symbolic comparison has a time and size budget (``timeout`` when over it).

    ``judge``: an optional :class:`onethinker.rewards.judge.HttpJudge` for open-ended accuracy
    (falls back to ROUGE per judge batch on any failure). Off by default.
    ``options``: :class:`onethinker.rewards.options.RewardConfig` (default: strict math, 2 s budget);
    ``onethinker.rewards.PARITY`` gives the published reward's numbers.
    """
    fw = check_format_weight(format_weight)
    items = list(items)
    with gc_paused(), using(options):
        return _compute(items, fw, judge)


def _compute(items: list, fw: float, judge: object | None) -> list[dict]:
    gt_memo: dict[str, str] = {}
    preps = [prepare(item, fast=True, gt_memo=gt_memo) for item in items]
    acc: list[object] = [0.0] * len(preps)
    struct: list[object] = [STRUCTURE_MAX] * len(preps)
    task_reasons: list[Sequence[str]] = [()] * len(preps)
    known = [True] * len(preps)
    for key, (idxs, batch) in group_batches(preps).items():
        task = REGISTRY.get(key)
        if task is None:
            for i in idxs:
                known[i] = False
            continue
        scores = task.score_batch(batch)
        for j, i in enumerate(idxs):
            acc[i], struct[i], task_reasons[i] = scores.accuracy[j], scores.structure[j], scores.reasons[j]
    if judge is not None:
        from onethinker.rewards.judge import apply_judge

        apply_judge(judge, items, preps, acc, task_reasons)
    return [finalize(p, acc[i], struct[i], task_reasons[i], fw, known[i]) for i, p in enumerate(preps)]


def item_slug(item: object) -> str:
    """The metric slug of an item: the task's slug, ``unknown`` or ``invalid``."""
    read = _read(item)
    if read is None:
        return INVALID_SLUG
    task = REGISTRY.get(task_key(read[1]))
    if task is None:
        return UNKNOWN_SLUG
    try:
        return task.slug_for(read[2].strip().lower())
    except Exception:  # noqa: BLE001
        return UNKNOWN_SLUG


def summarize(items: Sequence[object], scores: Sequence[Mapping]) -> dict[str, dict[str, float]]:
    """Per-slug counters for logging: ``n``, mean ``overall`` / ``accuracy`` / ``format`` /
    ``structure``, ``malformed_rate`` (share of items with a malformed-output reason) and
    ``reason/<name>`` counts. The key ``all`` aggregates the whole batch."""
    if len(items) != len(scores):
        raise ValueError(f"{len(items)} items but {len(scores)} scores")
    sums: dict[str, dict[str, float]] = {}
    for item, score in zip(items, scores, strict=True):
        for slug in (item_slug(item), ALL_SLUG):
            s = sums.setdefault(
                slug,
                {
                    "n": 0,
                    "overall": 0.0,
                    "accuracy": 0.0,
                    "format": 0.0,
                    "structure": 0.0,
                    "malformed_rate": 0.0,
                },
            )
            s["n"] += 1
            for k in ("overall", "accuracy", "format", "structure"):
                s[k] += float(score.get(k, 0.0))
            reasons = list(score.get("reasons", ()))
            if any(r in P.MALFORMED_REASONS for r in reasons):
                s["malformed_rate"] += 1
            for r in reasons:
                s[f"reason/{r}"] = s.get(f"reason/{r}", 0) + 1
    for s in sums.values():
        for k in ("overall", "accuracy", "format", "structure", "malformed_rate"):
            s[k] /= s["n"]
    return dict(sorted(sums.items()))
