"""Grounding and tracking metrics: hand-worked sets."""

from __future__ import annotations

import pytest

from onethinker import metrics as M

B = [0, 0, 10, 10]
HALF = [0, 0, 5, 10]  # IoU 0.5 with B


def test_temporal_grounding_metrics() -> None:
    out = M.temporal_grounding_metrics([[2, 8], [0, 10], [20, 30]], [[4, 10], [0, 10], [0, 5]])
    # tIoU 0.5, 1, 0
    assert out == pytest.approx({"mIoU": 0.5, "R@0.3": 2 / 3, "R@0.5": 2 / 3, "R@0.7": 1 / 3})


def test_spatial_grounding_metrics() -> None:
    out = M.spatial_grounding_metrics([B, HALF, [20, 20, 30, 30]], [B, B, B])
    assert out == pytest.approx({"Acc@0.5": 2 / 3, "mIoU": 0.5})


def test_viou_hand_worked() -> None:
    # frames 0..4; pred span [1, 3], gt span [2, 4]: union {1,2,3,4}, both {2,3}
    pred_boxes = {"1": B, "2": B, "3": HALF}
    gt_boxes = {"2": B, "3": B, "4": B}
    assert M.viou([1, 3], [2, 4], pred_boxes, gt_boxes) == pytest.approx((1 + 0.5) / 4)
    assert M.viou([10, 11], [2, 4], pred_boxes, gt_boxes) == 0.0
    out = M.spatio_temporal_grounding_metrics([[1, 3]], [[2, 4]], [pred_boxes], [gt_boxes])
    assert out == pytest.approx({"m_tIoU": 1 / 3, "m_vIoU": 0.375, "vIoU@0.3": 1.0, "vIoU@0.5": 0.0})


def test_tracking_metrics() -> None:
    # video 1: frames 2..4 -> IoU 1, 0.5, 0 (frame 1 is given); video 2: frames 2..3 -> 1, 1
    pred = [{"1": B, "2": B, "3": HALF}, {"1": [5, 5, 6, 6], "2": B, "3": B}]
    gt = [{"1": B, "2": B, "3": B, "4": B}, {"1": B, "2": B, "3": B}]
    out = M.tracking_metrics(pred, gt)
    assert out["AO"] == pytest.approx((1 + 0.5 + 0 + 1 + 1) / 5)
    assert out["SR@0.5"] == pytest.approx(3 / 5)  # strictly greater than 0.5
    assert out["SR@0.75"] == pytest.approx(3 / 5)
    assert out["per_video_mIoU"] == pytest.approx((0.5 + 1.0) / 2)
    assert out["per_video_SR@0.5"] == 1.0 and out["per_video_SR@0.75"] == 0.5
    # list form: index 0 is the given first frame
    assert M.tracking_metrics([[B, B, HALF]], [[B, B, B]])["AO"] == pytest.approx(0.75)
