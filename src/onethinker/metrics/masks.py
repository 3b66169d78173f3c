"""Mask metrics: image segmentation gIoU / cIoU and DAVIS J, F, J&F for video segmentation.

Masks are COCO RLE dicts ``{"size": [h, w], "counts": str | bytes | list[int]}`` (decoded and
measured with pycocotools) or boolean numpy arrays of shape (H, W).

- gIoU: the mean of per-sample mask IoU; a sample whose prediction and ground truth are both empty
  scores 1 (the ReasonSeg/LISA convention). cIoU: sum of intersections / sum of unions.
- J (DAVIS region similarity): mask IoU, 1 when both masks are empty.
- F (DAVIS boundary F-measure): boundaries as in DAVIS' ``_seg2bmap``, matched within
  ceil(0.008 * image diagonal) pixels (dilation by a disk of that radius, as skimage's ``disk``);
  empty-boundary cases follow DAVIS (both empty: 1; one empty: 0).
- J&F of a set of videos: (mean J + mean F) / 2, where the J (F) of a video is the mean over its
  frames and the set's J (F) is the mean over videos.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

Mask = Mapping[str, object] | np.ndarray
BOUNDARY_TH = 0.008


def _mask_utils():  # noqa: ANN202 - pycocotools module
    from pycocotools import mask as mask_utils

    return mask_utils


def to_rle(mask: Mask) -> dict:
    """A compressed RLE dict with bytes counts (what pycocotools' functions take)."""
    mu = _mask_utils()
    if isinstance(mask, np.ndarray):
        if mask.ndim != 2:
            raise ValueError(f"a mask must be 2-D, got shape {mask.shape}")
        return mu.encode(np.asfortranarray(mask.astype(np.uint8)))
    from onethinker.contract.records import coco_rle

    return coco_rle(mask)  # type: ignore[arg-type]


def decode(mask: Mask) -> np.ndarray:
    """A boolean (H, W) array."""
    if isinstance(mask, np.ndarray):
        return mask.astype(bool)
    return _mask_utils().decode(to_rle(mask)).astype(bool)


def rle_inter_union(preds: Sequence[Mask], gts: Sequence[Mask]) -> tuple[np.ndarray, np.ndarray]:
    """Per-pair intersection and union areas (pixels) through pycocotools. (N,), (N,)"""
    mu = _mask_utils()
    p = [to_rle(m) for m in preds]
    g = [to_rle(m) for m in gts]
    if not p:
        return np.zeros(0), np.zeros(0)
    area_p = mu.area(p).astype(np.float64)  # (N,)
    area_g = mu.area(g).astype(np.float64)  # (N,)
    inter = np.asarray(
        [mu.area(mu.merge([a, b], intersect=True)) for a, b in zip(p, g, strict=True)], dtype=np.float64
    )  # (N,)
    return inter, area_p + area_g - inter


def segmentation_metrics(preds: Sequence[Mask], gts: Sequence[Mask]) -> dict[str, float]:
    """{"gIoU": mean per-sample IoU (both empty -> 1), "cIoU": sum(inter) / sum(union)}."""
    if len(preds) != len(gts):
        raise ValueError(f"{len(preds)} predictions for {len(gts)} ground truths")
    if not preds:
        return {"gIoU": 0.0, "cIoU": 0.0}
    inter, union = rle_inter_union(preds, gts)
    per = np.where(union > 0, inter / np.maximum(union, 1.0), 1.0)
    total = union.sum()
    return {"gIoU": float(per.mean()), "cIoU": float(inter.sum() / total) if total > 0 else 1.0}


# ---------------------------------------------------------------------------------------------------
# DAVIS J and F
# ---------------------------------------------------------------------------------------------------


def _stack(masks: Sequence[Mask] | np.ndarray) -> np.ndarray:
    if isinstance(masks, np.ndarray):
        arr = masks.astype(bool)
        return arr[None] if arr.ndim == 2 else arr
    return np.stack([decode(m) for m in masks]) if len(masks) else np.zeros((0, 0, 0), dtype=bool)


def j_per_frame(pred: Sequence[Mask] | np.ndarray, gt: Sequence[Mask] | np.ndarray) -> np.ndarray:
    """Region similarity of each frame: IoU, 1 when both masks are empty. (T, H, W) x2 -> (T,)"""
    p, g = _stack(pred), _stack(gt)
    if p.shape != g.shape:
        raise ValueError(f"prediction shape {p.shape} != ground-truth shape {g.shape}")
    inter = (p & g).sum(axis=(-2, -1)).astype(np.float64)  # (T,)
    union = (p | g).sum(axis=(-2, -1)).astype(np.float64)  # (T,)
    return np.where(union > 0, inter / np.maximum(union, 1.0), 1.0)


def boundary_map(seg: np.ndarray) -> np.ndarray:
    """DAVIS' ``_seg2bmap`` on (..., H, W) boolean masks (same-size case)."""
    seg = seg.astype(bool)
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[..., :, :-1] = seg[..., :, 1:]
    s[..., :-1, :] = seg[..., 1:, :]
    se[..., :-1, :-1] = seg[..., 1:, 1:]
    b = (seg ^ e) | (seg ^ s) | (seg ^ se)
    b[..., -1, :] = seg[..., -1, :] ^ e[..., -1, :]
    b[..., :, -1] = seg[..., :, -1] ^ s[..., :, -1]
    b[..., -1, -1] = False
    return b


def boundary_radius(height: int, width: int, bound_th: float = BOUNDARY_TH) -> int:
    """Matching tolerance in pixels: bound_th if >= 1, else ceil(bound_th * image diagonal)."""
    if bound_th >= 1:
        return int(bound_th)
    return int(math.ceil(bound_th * math.hypot(height, width)))


def dilate_disk(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation of (..., H, W) masks by a disk {dx^2 + dy^2 <= r^2}, zero outside the image.

    The disk is cut into horizontal runs: for each row offset dy, a 1-D dilation of half-width
    isqrt(r^2 - dy^2) (computed once per width with a cumulative sum) shifted by dy.
    """
    m = mask.astype(bool)
    if radius <= 0:
        return m.copy()
    *lead, h, w = m.shape
    out = np.zeros_like(m)
    runs: dict[int, np.ndarray] = {}
    pad = [(0, 0)] * len(lead)
    for dy in range(-radius, radius + 1):
        half = math.isqrt(radius * radius - dy * dy)
        if half not in runs:
            c = np.pad(m.astype(np.int32), [*pad, (0, 0), (half + 1, half)]).cumsum(
                axis=-1
            )  # (..., H, W+2h+1)
            runs[half] = (c[..., 2 * half + 1 :] - c[..., :w]) > 0  # (..., H, W)
        row = runs[half]
        if dy >= 0:  # out[y] |= row[y + dy]
            out[..., : h - dy, :] |= row[..., dy:, :]
        else:
            out[..., -dy:, :] |= row[..., : h + dy, :]
    return out


def f_per_frame(
    pred: Sequence[Mask] | np.ndarray, gt: Sequence[Mask] | np.ndarray, bound_th: float = BOUNDARY_TH
) -> np.ndarray:
    """DAVIS boundary F-measure of each frame. (T, H, W) x2 -> (T,)"""
    p, g = _stack(pred), _stack(gt)
    if p.shape != g.shape:
        raise ValueError(f"prediction shape {p.shape} != ground-truth shape {g.shape}")
    if p.shape[0] == 0:
        return np.zeros(0)
    r = boundary_radius(p.shape[-2], p.shape[-1], bound_th)
    pb, gb = boundary_map(p), boundary_map(g)  # (T, H, W)
    p_dil, g_dil = dilate_disk(pb, r), dilate_disk(gb, r)
    n_p = pb.sum(axis=(-2, -1)).astype(np.float64)  # (T,)
    n_g = gb.sum(axis=(-2, -1)).astype(np.float64)
    p_match = (pb & g_dil).sum(axis=(-2, -1))
    g_match = (gb & p_dil).sum(axis=(-2, -1))
    precision = np.where(n_p > 0, p_match / np.maximum(n_p, 1.0), 1.0)
    recall = np.where(n_g > 0, g_match / np.maximum(n_g, 1.0), 1.0)
    precision = np.where((n_p > 0) & (n_g == 0), 0.0, precision)
    recall = np.where((n_p == 0) & (n_g > 0), 0.0, recall)
    denom = precision + recall
    return np.where(denom > 0, 2 * precision * recall / np.where(denom > 0, denom, 1.0), 0.0)


def jf_metrics(
    pred_videos: Sequence[Sequence[Mask] | np.ndarray],
    gt_videos: Sequence[Sequence[Mask] | np.ndarray],
    bound_th: float = BOUNDARY_TH,
) -> dict[str, float]:
    """{"J": ..., "F": ..., "J&F": ...} over videos (per-video frame means, then the mean over videos)."""
    if len(pred_videos) != len(gt_videos):
        raise ValueError(f"{len(pred_videos)} predicted videos for {len(gt_videos)} ground truths")
    if not pred_videos:
        return {"J": 0.0, "F": 0.0, "J&F": 0.0}
    js, fs = [], []
    for p, g in zip(pred_videos, gt_videos, strict=True):
        pa, ga = _stack(p), _stack(g)
        js.append(float(j_per_frame(pa, ga).mean()) if pa.shape[0] else 0.0)
        fs.append(float(f_per_frame(pa, ga, bound_th).mean()) if pa.shape[0] else 0.0)
    j, f = float(np.mean(js)), float(np.mean(fs))
    return {"J": j, "F": f, "J&F": (j + f) / 2.0}
