"""Vectorised temporal IoU and box IoU.

Definitions (the OneThinker reward's):

- tIoU of spans [s1, e1], [s2, e2]: inter = max(0, min(e1, e2) - max(s1, s2)),
  union = max(e1, e2) - min(s1, s2); 0 when union <= 1e-12.
- box IoU of [x1, y1, x2, y2] boxes: areas use max(0, x2 - x1) * max(0, y2 - y1),
  union = a1 + a2 - inter; 0 when union <= 1e-12.

Any non-finite result (inf or nan coordinates) is reported as 0, so every value is in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

UNION_EPS = 1e-12


def _as(a: Sequence | np.ndarray, width: int) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.size == 0:
        return arr.reshape(0, width)
    if arr.shape[-1] != width:
        raise ValueError(f"expected rows of {width} numbers, got shape {arr.shape}")
    return arr


def _ratio(inter: np.ndarray, union: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(union > UNION_EPS, inter / np.where(union > UNION_EPS, union, 1.0), 0.0)
    out = np.where(np.isfinite(out), out, 0.0)
    return np.clip(out, 0.0, 1.0)


def tiou(pred: Sequence | np.ndarray, gt: Sequence | np.ndarray) -> np.ndarray:
    """Element-wise temporal IoU. Shapes: (..., 2), (..., 2) -> (...)."""
    p, g = _as(pred, 2), _as(gt, 2)
    with np.errstate(invalid="ignore", over="ignore"):
        inter = np.maximum(0.0, np.minimum(p[..., 1], g[..., 1]) - np.maximum(p[..., 0], g[..., 0]))  # (...)
        union = np.maximum(p[..., 1], g[..., 1]) - np.minimum(p[..., 0], g[..., 0])  # (...)
    return _ratio(inter, union)


def box_iou(pred: Sequence | np.ndarray, gt: Sequence | np.ndarray) -> np.ndarray:
    """Element-wise box IoU of [x1, y1, x2, y2] boxes. Shapes: (..., 4), (..., 4) -> (...)."""
    p, g = _as(pred, 4), _as(gt, 4)
    with np.errstate(invalid="ignore", over="ignore"):
        iw = np.maximum(0.0, np.minimum(p[..., 2], g[..., 2]) - np.maximum(p[..., 0], g[..., 0]))  # (...)
        ih = np.maximum(0.0, np.minimum(p[..., 3], g[..., 3]) - np.maximum(p[..., 1], g[..., 1]))  # (...)
        inter = iw * ih
        a1 = np.maximum(0.0, p[..., 2] - p[..., 0]) * np.maximum(0.0, p[..., 3] - p[..., 1])
        a2 = np.maximum(0.0, g[..., 2] - g[..., 0]) * np.maximum(0.0, g[..., 3] - g[..., 1])
        union = a1 + a2 - inter
    return _ratio(inter, union)


def tiou_one(pred: Sequence[float], gt: Sequence[float]) -> float:
    """tIoU of one pair of spans (plain Python)."""
    s1, e1 = float(pred[0]), float(pred[1])
    s2, e2 = float(gt[0]), float(gt[1])
    inter = max(0.0, min(e1, e2) - max(s1, s2))
    union = max(e1, e2) - min(s1, s2)
    out = inter / union if union > UNION_EPS else 0.0
    return out if 0.0 <= out <= 1.0 else 0.0


def box_iou_one(pred: Sequence[float], gt: Sequence[float]) -> float:
    """Box IoU of one pair (plain Python)."""
    x1, y1, x2, y2 = (float(v) for v in pred)
    gx1, gy1, gx2, gy2 = (float(v) for v in gt)
    inter = max(0.0, min(x2, gx2) - max(x1, gx1)) * max(0.0, min(y2, gy2) - max(y1, gy1))
    a1 = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    a2 = max(0.0, gx2 - gx1) * max(0.0, gy2 - gy1)
    union = a1 + a2 - inter
    out = inter / union if union > UNION_EPS else 0.0
    return out if 0.0 <= out <= 1.0 else 0.0
