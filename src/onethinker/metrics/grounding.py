"""Grounding and tracking metrics over whole evaluation sets.

- Temporal grounding: mIoU and R@m (fraction of samples with tIoU >= m), m in {0.3, 0.5, 0.7}.
- Spatial grounding: Acc@0.5 (fraction with box IoU >= 0.5) and mIoU.
- Spatio-temporal grounding: mean tIoU, mean vIoU and vIoU@{0.3, 0.5}, with
  vIoU = (1 / |S_u|) * sum over t in S_i of IoU(pred box at t, gt box at t), where S_u (S_i) is the
  set of frames lying in the union (intersection) of the predicted and ground-truth spans. Frames are
  the timestamps that carry a box in the prediction or the ground truth (or ``frames`` if given); a
  frame in S_i without a predicted box counts 0.
- Tracking: GOT-10k's AO (mean IoU over all frames but the given first one, pooled over every
  sequence) and SR@0.5 / SR@0.75 (fraction of those frames with IoU > t); plus the OneThinker paper's
  per-video variant: the mean IoU of each video, then ``per_video_mIoU`` (their mean) and
  ``per_video_SR@t`` (the fraction of videos whose mean is >= t).

Boxes are [x1, y1, x2, y2]. Per-frame boxes are mappings from frame key (an int or a numeric string
such as ``"3"``) to box; a missing or malformed predicted box counts IoU 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from onethinker.metrics.geometry import box_iou, tiou

FrameBoxes = Mapping[object, Sequence[float]] | Sequence[Sequence[float] | None]


def _box_or_nan(box: object) -> list[float]:
    try:
        vals = [float(v) for v in box]  # type: ignore[union-attr]
    except (TypeError, ValueError, OverflowError):
        return [math.nan] * 4
    return vals if len(vals) == 4 else [math.nan] * 4


def temporal_grounding_metrics(
    pred_spans: Sequence[Sequence[float]],
    gt_spans: Sequence[Sequence[float]],
    thresholds: Sequence[float] = (0.3, 0.5, 0.7),
) -> dict[str, float]:
    """{"mIoU": ..., "R@0.3": ..., "R@0.5": ..., "R@0.7": ...} over N pairs of [start, end] spans."""
    ious = tiou(pred_spans, gt_spans)  # (N,)
    out = {"mIoU": float(ious.mean()) if ious.size else 0.0}
    for m in thresholds:
        out[f"R@{m:g}"] = float((ious >= m).mean()) if ious.size else 0.0
    return out


def spatial_grounding_metrics(
    pred_boxes: Sequence[Sequence[float]], gt_boxes: Sequence[Sequence[float]], threshold: float = 0.5
) -> dict[str, float]:
    """{"Acc@0.5": ..., "mIoU": ...} over N pairs of boxes."""
    ious = box_iou(pred_boxes, gt_boxes)  # (N,)
    if not ious.size:
        return {f"Acc@{threshold:g}": 0.0, "mIoU": 0.0}
    return {f"Acc@{threshold:g}": float((ious >= threshold).mean()), "mIoU": float(ious.mean())}


def _frame_index(key: object) -> float:
    return float(key)  # type: ignore[arg-type]


def _frame_map(boxes: Mapping[object, Sequence[float]]) -> dict[float, Sequence[float]]:
    out: dict[float, Sequence[float]] = {}
    for k, v in boxes.items():
        try:
            out[_frame_index(k)] = v
        except (TypeError, ValueError):
            continue
    return out


def viou(
    pred_span: Sequence[float],
    gt_span: Sequence[float],
    pred_boxes: Mapping[object, Sequence[float]],
    gt_boxes: Mapping[object, Sequence[float]],
    frames: Sequence[float] | None = None,
) -> float:
    """vIoU of one spatio-temporal prediction (see the module docstring)."""
    pmap, gmap = _frame_map(pred_boxes), _frame_map(gt_boxes)
    ts = np.asarray(
        sorted(set(pmap) | set(gmap)) if frames is None else sorted(set(frames)), dtype=np.float64
    )
    if ts.size == 0:
        return 0.0
    ps, pe = float(pred_span[0]), float(pred_span[1])
    gs, ge = float(gt_span[0]), float(gt_span[1])
    in_p = (ts >= ps) & (ts <= pe)
    in_g = (ts >= gs) & (ts <= ge)
    n_union = int((in_p | in_g).sum())
    both = ts[in_p & in_g]
    if n_union == 0 or both.size == 0:
        return 0.0
    pb = np.asarray([_box_or_nan(pmap.get(t)) for t in both.tolist()])  # (K, 4)
    gb = np.asarray([_box_or_nan(gmap.get(t)) for t in both.tolist()])  # (K, 4)
    return float(box_iou(pb, gb).sum() / n_union)


def spatio_temporal_grounding_metrics(
    pred_spans: Sequence[Sequence[float]],
    gt_spans: Sequence[Sequence[float]],
    pred_boxes: Sequence[Mapping[object, Sequence[float]]],
    gt_boxes: Sequence[Mapping[object, Sequence[float]]],
    thresholds: Sequence[float] = (0.3, 0.5),
) -> dict[str, float]:
    """{"m_tIoU", "m_vIoU", "vIoU@0.3", "vIoU@0.5"} over N samples."""
    n = len(pred_spans)
    if n == 0:
        return {"m_tIoU": 0.0, "m_vIoU": 0.0, **{f"vIoU@{t:g}": 0.0 for t in thresholds}}
    t = tiou(pred_spans, gt_spans)
    v = np.asarray([viou(pred_spans[i], gt_spans[i], pred_boxes[i], gt_boxes[i]) for i in range(n)])
    out = {"m_tIoU": float(t.mean()), "m_vIoU": float(v.mean())}
    for th in thresholds:
        out[f"vIoU@{th:g}"] = float((v >= th).mean())
    return out


def _sequence_pairs(pred: FrameBoxes, gt: FrameBoxes) -> tuple[list[list[float]], list[list[float]]]:
    """Aligned (pred, gt) boxes for every ground-truth frame but the first."""
    if isinstance(gt, Mapping):
        gmap = _frame_map(gt)
        pmap = _frame_map(pred) if isinstance(pred, Mapping) else dict(enumerate(pred, start=1))
        keys = sorted(gmap)[1:]
        return [_box_or_nan(pmap.get(k)) for k in keys], [_box_or_nan(gmap[k]) for k in keys]
    plist = list(pred.values()) if isinstance(pred, Mapping) else list(pred)
    pb = [_box_or_nan(plist[i]) if i < len(plist) else [math.nan] * 4 for i in range(1, len(gt))]
    return pb, [_box_or_nan(b) for b in list(gt)[1:]]


def per_frame_tracking_ious(pred: FrameBoxes, gt: FrameBoxes) -> np.ndarray:
    """IoU of every frame but the first of one sequence. (T-1,)"""
    pb, gb = _sequence_pairs(pred, gt)
    if not gb:
        return np.zeros(0)
    return box_iou(np.asarray(pb, dtype=np.float64), np.asarray(gb, dtype=np.float64))


def tracking_metrics(
    pred_seqs: Sequence[FrameBoxes], gt_seqs: Sequence[FrameBoxes], thresholds: Sequence[float] = (0.5, 0.75)
) -> dict[str, float]:
    """GOT-10k AO / SR@t (pooled over frames) and the per-video variant (see the module docstring)."""
    per_seq = [per_frame_tracking_ious(p, g) for p, g in zip(pred_seqs, gt_seqs, strict=True)]
    pooled = np.concatenate(per_seq) if per_seq else np.zeros(0)
    video_means = np.asarray([s.mean() if s.size else 0.0 for s in per_seq])
    out = {"AO": float(pooled.mean()) if pooled.size else 0.0}
    for t in thresholds:
        out[f"SR@{t:g}"] = float((pooled > t).mean()) if pooled.size else 0.0
    out["per_video_mIoU"] = float(video_means.mean()) if video_means.size else 0.0
    for t in thresholds:
        out[f"per_video_SR@{t:g}"] = float((video_means >= t).mean()) if video_means.size else 0.0
    return out
