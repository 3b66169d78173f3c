"""Scoring predictions on a benchmark with the field's official metrics (pure functions).

For each record the response is scored with the reward (accuracy, format, structure), and each task adds
its official metrics over the benchmark:

| task | metrics |
|---|---|
| multiple choice, numerical, math | accuracy |
| regression | MRA |
| OCR | 1 - WER |
| open-ended | ROUGE (mean of R-1, R-2, R-L F) |
| temporal grounding | mIoU, R@0.3/0.5/0.7 |
| spatial grounding | Acc@0.5, mIoU |
| spatial-temporal grounding | m_tIoU, m_vIoU, vIoU@0.3/0.5 |
| tracking | AO, SR@0.5, SR@0.75 (GOT-10k), and the per-video variant |
| segmentation (image) | gIoU, cIoU (masks from the mask decoder) |
| segmentation (video) | J, F, J&F (DAVIS) |

An answer that does not parse counts as the worst prediction (empty span / box / mask), never as a skip.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from onethinker import metrics as M
from onethinker.contract.answers import graded_answer, truth_answer
from onethinker.contract.records import Record
from onethinker.contract.schema import StructuredAnswer, parse_structured, to_number

EMPTY_BOX = (0.0, 0.0, 0.0, 0.0)
EMPTY_SPAN = (0.0, 0.0)


def _number(text: str) -> float | None:
    v = to_number(text)
    return v if v is not None and math.isfinite(v) else None


MaskFn = Callable[[Record, StructuredAnswer], tuple[Any, Any]]
"""(record, predicted answer) -> (predicted mask(s), ground-truth mask(s)); see ``evaluation.masks``."""


def task_metrics(
    slug: str, records: Sequence[Record], responses: Sequence[str], masks: MaskFn | None = None
) -> dict[str, float]:
    """Official metrics of one task over its records (all of the same slug). Responses are read as the reward
    reads them (``graded_answer``), ground truths by the contract's rule (``truth_answer``)."""
    answers = [graded_answer(r) for r in responses]
    truths = [truth_answer(r.ground_truth) for r in records]
    if slug in ("multiple_choice", "numerical", "math"):
        return {}  # accuracy comes from the reward
    if slug == "regression":
        pairs = [(_number(a), _number(t)) for a, t in zip(answers, truths, strict=True)]
        vals = [
            float(M.mean_relative_accuracy([p], [g])[0]) if p is not None and g is not None else 0.0
            for p, g in pairs
        ]
        return {"MRA": float(np.mean(vals)) if vals else 0.0}
    if slug == "ocr":
        return {"1-WER": float(np.mean([M.ocr_accuracy(t, a) for a, t in zip(answers, truths, strict=True)]))}
    if slug == "open_ended":
        return {"ROUGE": float(np.mean([M.rouge_mean(t, a) for a, t in zip(answers, truths, strict=True)]))}
    preds = [parse_structured(a) for a in answers]
    gold = [parse_structured(t) for t in truths]
    spans = [list(p.span or EMPTY_SPAN) for p in preds], [list(g.span or EMPTY_SPAN) for g in gold]
    frames = [dict(p.frames or {}) for p in preds], [dict(g.frames or {}) for g in gold]
    if slug == "temporal_grounding":
        return M.temporal_grounding_metrics(*spans)
    if slug == "spatial_grounding":
        return M.spatial_grounding_metrics(
            [list(p.box or EMPTY_BOX) for p in preds], [list(g.box or EMPTY_BOX) for g in gold]
        )
    if slug == "spatial_temporal_grounding":
        return M.spatio_temporal_grounding_metrics(*spans, *frames)
    if slug == "tracking":
        return M.tracking_metrics(*frames)
    if slug in ("segmentation_image", "segmentation_video") and masks is not None:
        pm, gm = zip(*(masks(r, p) for r, p in zip(records, preds, strict=True)), strict=True)
        if slug == "segmentation_image":
            return M.segmentation_metrics(list(pm), list(gm))
        return M.jf_metrics(list(pm), list(gm))
    return {}


def score_benchmark(
    records: Sequence[Record],
    responses: Sequence[str],
    masks: MaskFn | None = None,
    reward_options: Any = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Reward parts per sample and official metrics per task. Returns (summary, per-sample rows).

    A task whose answers ran over the reward's time or size budget gets ``timeout_rate`` (the share of its
    samples scored 0 for that reason); ``reward_options`` are the reward's (default: strict math)."""
    from onethinker.rewards import compute_score
    from onethinker.rewards.parsing import TIMEOUT

    items = [r.reward_item(resp) for r, resp in zip(records, responses, strict=True)]
    scores = compute_score(items, options=reward_options)
    rows, by_slug = [], defaultdict(list)
    for i, (r, item, s) in enumerate(zip(records, items, scores, strict=True)):
        slug = r.slug
        rows.append(
            {
                **item,
                "task": slug,
                "accuracy": s["accuracy"],
                "format": s["format"],
                "structure": s["structure"],
                "overall": s["overall"],
                "reasons": s.get("reasons", []),
            }
        )
        by_slug[slug].append(i)
    tasks: dict[str, dict[str, float]] = {}
    for slug, idx in sorted(by_slug.items()):
        part = [rows[i] for i in idx]
        t = {
            "n": len(idx),
            "accuracy": float(np.mean([x["accuracy"] for x in part])),
            "format_rate": float(np.mean([x["format"] >= 1.0 for x in part])),
            "structure": float(np.mean([x["structure"] for x in part])),
            "overall": float(np.mean([x["overall"] for x in part])),
        }
        timeouts = sum(1 for x in part if TIMEOUT in x["reasons"])
        if timeouts:
            t["timeout_rate"] = timeouts / len(part)
        t.update(task_metrics(slug, [records[i] for i in idx], [responses[i] for i in idx], masks))
        tasks[slug] = t
    summary = {
        "n": len(rows),
        "accuracy": float(np.mean([x["accuracy"] for x in rows])) if rows else 0.0,
        "format_rate": float(np.mean([x["format"] >= 1.0 for x in rows])) if rows else 0.0,
        "tasks": tasks,
    }
    return summary, rows


def merge_tasks(benchmarks: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per-task metrics over all benchmarks, weighted by sample count."""
    acc: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for bench in benchmarks.values():
        for slug, t in bench["tasks"].items():
            n = t["n"]
            acc[slug]["n"] += n
            for k, v in t.items():
                if k != "n":
                    acc[slug][k] += v * n
    return {
        slug: {k: (v / d["n"] if k != "n" else int(v)) for k, v in d.items()}
        for slug, d in sorted(acc.items())
    }


def benchmark_headline(bench: dict[str, Any]) -> dict[str, Any]:
    """A benchmark's headline: size, accuracy, format rate and, for a one-task benchmark (Charades-STA,
    RefCOCO, ...), that task's official metrics. Per-task detail lives once, under the model's ``tasks``."""
    out = {"n": bench["n"], "accuracy": bench["accuracy"], "format_rate": bench["format_rate"]}
    if len(bench["tasks"]) == 1:
        (t,) = bench["tasks"].values()
        out.update({k: v for k, v in t.items() if k not in ("n", "accuracy", "format_rate", "structure")})
    return out


def model_summary(benchmarks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    tasks = merge_tasks(benchmarks)
    n = sum(b["n"] for b in benchmarks.values())
    return {
        "mean_accuracy": float(np.mean([t["accuracy"] for t in tasks.values()])) if tasks else 0.0,
        "format_rate": (sum(b["format_rate"] * b["n"] for b in benchmarks.values()) / n) if n else 0.0,
        "n": n,
        "tasks": tasks,
        "benchmarks": {name: benchmark_headline(b) for name, b in benchmarks.items()},
    }
