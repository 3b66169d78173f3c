"""Mask metrics: gIoU / cIoU through pycocotools RLE, DAVIS J and F, batched vs per-frame loops."""

from __future__ import annotations

import math

import numpy as np
import pytest

from onethinker import metrics as M
from onethinker.metrics.masks import boundary_radius


def _rect(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((h, w), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def _rle_str(mask: np.ndarray) -> dict:
    rle = M.to_rle(mask)
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}  # JSON-style str counts


def test_segmentation_metrics_hand_worked() -> None:
    a = _rect(10, 10, 0, 10, 0, 5)  # 50 px
    b = _rect(10, 10, 0, 10, 0, 10)  # 100 px: IoU(a, b) = 0.5
    empty = np.zeros((10, 10), dtype=bool)
    out = M.segmentation_metrics([_rle_str(a), _rle_str(b), _rle_str(empty)], [_rle_str(b), b, empty])
    assert out["gIoU"] == pytest.approx((0.5 + 1.0 + 1.0) / 3)  # both empty -> 1
    assert out["cIoU"] == pytest.approx((50 + 100) / (100 + 100))


def test_rle_round_trip() -> None:
    m = _rect(7, 9, 1, 5, 2, 8)
    assert (M.decode(_rle_str(m)) == m).all()
    uncompressed = {"size": [2, 2], "counts": [1, 2, 1]}  # column-major runs: 0, 1, 1, 0
    assert M.decode(uncompressed).tolist() == [[False, True], [True, False]]


def _dilate_loop(b: np.ndarray, r: int) -> np.ndarray:
    h, w = b.shape
    out = np.zeros_like(b)
    for y, x in zip(*np.nonzero(b), strict=True):
        for dy in range(-r, r + 1):
            for dx in range(-r, r + 1):
                if dx * dx + dy * dy <= r * r and 0 <= y + dy < h and 0 <= x + dx < w:
                    out[y + dy, x + dx] = True
    return out


def _f_loop(p: np.ndarray, g: np.ndarray) -> float:
    r = boundary_radius(*p.shape)
    pb, gb = M.boundary_map(p), M.boundary_map(g)
    pd, gd = _dilate_loop(pb, r), _dilate_loop(gb, r)
    n_p, n_g = pb.sum(), gb.sum()
    if n_p == 0 and n_g > 0:
        precision, recall = 1.0, 0.0
    elif n_p > 0 and n_g == 0:
        precision, recall = 0.0, 1.0
    elif n_p == 0 and n_g == 0:
        precision, recall = 1.0, 1.0
    else:
        precision, recall = (pb & gd).sum() / n_p, (gb & pd).sum() / n_g
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def test_dilation_matches_loop() -> None:
    rng = np.random.default_rng(0)
    b = rng.random((23, 31)) < 0.03
    for r in (0, 1, 2, 5):
        assert (M.dilate_disk(b, r) == _dilate_loop(b, r)).all()


def test_boundary_map_of_a_square() -> None:
    # DAVIS marks a pixel that differs from its east, south or south-east neighbour, so the map of
    # a 3x3 square at (1..3, 1..3) sits on its top-left outside and its bottom-right inside.
    b = M.boundary_map(_rect(6, 6, 1, 4, 1, 4))
    assert b[0].tolist() == [True, True, True, True, False, False]
    assert b[1].tolist() == [True, False, False, True, False, False]
    assert b[3].tolist() == [True, True, True, True, False, False]
    assert int(b.sum()) == 12


def test_j_and_f_batched_match_per_frame_loops() -> None:
    rng = np.random.default_rng(1)
    h, w = 40, 60
    pred, gt = [], []
    for t in range(6):
        g = _rect(h, w, 5 + t, 25 + t, 10, 40)
        p = np.roll(g, shift=(t - 3, 2 * t - 5), axis=(0, 1)) | (rng.random((h, w)) < 0.01)
        pred.append(p)
        gt.append(g)
    pred.append(np.zeros((h, w), bool))  # both empty: J = F = 1
    gt.append(np.zeros((h, w), bool))
    pred.append(np.zeros((h, w), bool))  # prediction empty: J = F = 0
    gt.append(_rect(h, w, 0, 5, 0, 5))
    j = M.j_per_frame(np.stack(pred), np.stack(gt))
    f = M.f_per_frame([_rle_str(p) for p in pred], [_rle_str(g) for g in gt])
    for t, (p, g) in enumerate(zip(pred, gt, strict=True)):
        union = (p | g).sum()
        assert j[t] == pytest.approx((p & g).sum() / union if union else 1.0)
        assert f[t] == pytest.approx(_f_loop(p, g))
    assert j[-2] == f[-2] == 1.0 and j[-1] == f[-1] == 0.0
    out = M.jf_metrics([np.stack(pred), pred[:2]], [np.stack(gt), gt[:2]])
    jv = [j.mean(), M.j_per_frame(np.stack(pred[:2]), np.stack(gt[:2])).mean()]
    fv = [f.mean(), M.f_per_frame(np.stack(pred[:2]), np.stack(gt[:2])).mean()]
    assert out["J"] == pytest.approx(np.mean(jv)) and out["F"] == pytest.approx(np.mean(fv))
    assert out["J&F"] == pytest.approx((out["J"] + out["F"]) / 2)


def test_boundary_radius() -> None:
    assert boundary_radius(480, 854) == math.ceil(0.008 * math.hypot(480, 854)) == 8
    assert boundary_radius(10, 10, 3) == 3
