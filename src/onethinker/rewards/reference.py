"""The straightforward per-item reward: the reference the batched scorer is tested and timed against.

One item at a time: the published reward's regular expressions for tag normalisation, the format
check and answer extraction, then the task's per-item functions from the registry (for the
built-in tasks, :mod:`onethinker.rewards.definitions`: mathruler, math-verify and rouge-score
called per item, the plain edit-distance table, scalar IoU). Same definition, same result dicts as
:func:`onethinker.rewards.compute_score` (without the optional judge).
"""

from __future__ import annotations

from collections.abc import Sequence

from onethinker.rewards.options import RewardConfig, using
from onethinker.rewards.registry import REGISTRY, STRUCTURE_MAX
from onethinker.rewards.scoring import check_format_weight, finalize, prepare


def score_one(item: object, format_weight: float = 0.1) -> dict:
    prep = prepare(item, fast=False)
    if not prep.valid:
        return finalize(prep, 0.0, 0.0, (), format_weight)
    task = REGISTRY.get(prep.key)
    if task is None:
        return finalize(prep, 0.0, STRUCTURE_MAX, (), format_weight, known=False)
    acc, struct, reasons = task.score_item(
        prep.answer, prep.structure_answer, prep.ground_truth, prep.data_type, bool(prep.fmt)
    )
    return finalize(prep, acc, struct, reasons, format_weight)


def compute_score(
    items: Sequence[object], format_weight: float = 0.1, *, options: RewardConfig | None = None
) -> list[dict]:
    """Per-item reference of :func:`onethinker.rewards.compute_score`."""
    fw = check_format_weight(format_weight)
    with using(options):
        return [score_one(item, fw) for item in items]
