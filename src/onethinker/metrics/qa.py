"""Question-answering metrics over evaluation sets: accuracy, MRA, OCR (1 - WER) and ROUGE."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from onethinker.metrics.text import (
    RougeTokens,
    mean_relative_accuracy,
    ocr_accuracy,
    rouge_f_prepared,
    rouge_prepare,
)


def _norm(s: str) -> str:
    return " ".join(str(s).split()).casefold()


def accuracy(preds: Sequence[str], gts: Sequence[str]) -> float:
    """Exact-match accuracy after whitespace collapsing and case folding."""
    if len(preds) != len(gts):
        raise ValueError(f"{len(preds)} predictions for {len(gts)} ground truths")
    if not preds:
        return 0.0
    return float(np.mean([_norm(p) == _norm(g) for p, g in zip(preds, gts, strict=True)]))


def mra(preds: Sequence[float], gts: Sequence[float]) -> float:
    """Mean of the per-sample mean relative accuracy (regression)."""
    return float(mean_relative_accuracy(preds, gts).mean()) if len(preds) else 0.0


def ocr_score(preds: Sequence[str], gts: Sequence[str]) -> float:
    """Mean of clip(1 - WER) (OCR)."""
    return float(np.mean([ocr_accuracy(g, p) for p, g in zip(preds, gts, strict=True)])) if preds else 0.0


def rouge_scores(preds: Sequence[str], gts: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F-measures (rouge-score, stemmer on) and their per-sample mean (open-ended QA)."""
    if not preds:
        return {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0, "rouge_mean": 0.0}
    targets: dict[str, RougeTokens] = {}
    rows = []
    for p, g in zip(preds, gts, strict=True):
        if g not in targets:
            targets[g] = rouge_prepare(g, target=True)
        rows.append(tuple(rouge_f_prepared(targets[g], rouge_prepare(p))))
    arr = np.asarray(rows, dtype=np.float64)  # (N, 3)
    means = arr.mean(axis=0)
    return {
        "rouge1": float(means[0]),
        "rouge2": float(means[1]),
        "rougeL": float(means[2]),
        "rouge_mean": float(arr.mean(axis=1).mean()),
    }
