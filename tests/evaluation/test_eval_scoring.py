"""Evaluation: official metrics end to end on a tiny benchmark with known predictions, and the CPU mask
decoder on synthetic shapes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from onethinker.contract import parse_record
from onethinker.contract.schema import StructuredAnswer
from onethinker.data import world as W
from onethinker.data.generate import rle
from onethinker.evaluation.core import model_summary, score_benchmark
from onethinker.evaluation.masks import GrabCutDecoder


def _rec(pid, pt, dt, solution, **kw):
    raw = {
        "problem_id": pid,
        "problem": "q",
        "problem_type": pt,
        "data_type": dt,
        "solution": f"<answer>{solution}</answer>",
        "path": "x",
        **kw,
    }
    return parse_record(raw, "eval")


def _resp(answer: str) -> str:
    return f"<think>because</think><answer>{answer}</answer>"


def test_known_predictions_give_hand_worked_metrics() -> None:
    records = [
        _rec(1, "multiple choice", "image", "A", options=["A. x", "B. y"]),
        _rec(2, "multiple choice", "image", "B", options=["A. x", "B. y"]),
        _rec(3, "temporal grounding", "video", json.dumps({"time": [0.0, 2.0]})),
        _rec(4, "temporal grounding", "video", json.dumps({"time": [1.0, 3.0]})),
        _rec(5, "spatial grounding", "image", json.dumps({"boxes": [0, 0, 100, 100]})),
        _rec(6, "regression", "image", "10"),
        _rec(
            7,
            "tracking",
            "video",
            json.dumps({"boxes": {"1": [0, 0, 10, 10], "2": [0, 0, 10, 10], "3": [0, 0, 10, 10]}}),
        ),
    ]
    responses = [
        _resp("A"),  # right
        "B",  # right answer but malformed: accuracy 1, format 0
        _resp(json.dumps({"time": [0.0, 1.0]})),  # tIoU 0.5
        _resp("not json"),  # unparseable: tIoU 0
        _resp(json.dumps({"boxes": [0, 0, 50, 100]})),  # IoU 0.5
        _resp("8.7"),  # e = 0.13 < 1-θ for θ in 0.50..0.85 -> 8 of 10 thresholds -> MRA 0.8
        _resp(json.dumps({"boxes": {"1": [0, 0, 10, 10], "2": [0, 0, 10, 10], "3": [0, 0, 5, 10]}})),
    ]
    summary, rows = score_benchmark(records, responses)
    t = summary["tasks"]
    assert t["multiple_choice"]["accuracy"] == 1.0 and t["multiple_choice"]["format_rate"] == 0.5
    # tIoUs 0.5 and 0 -> mIoU 0.25, R@0.3 = R@0.5 = 0.5, R@0.7 = 0
    assert t["temporal_grounding"]["mIoU"] == pytest.approx(0.25)
    assert t["temporal_grounding"]["R@0.5"] == pytest.approx(0.5) and t["temporal_grounding"]["R@0.7"] == 0.0
    assert t["spatial_grounding"]["mIoU"] == pytest.approx(0.5) and t["spatial_grounding"]["Acc@0.5"] == 1.0
    assert t["regression"]["MRA"] == pytest.approx(0.8)
    # GOT-10k AO over frames but the first: IoUs 1.0 (frame 2) and 0.5 (frame 3)
    assert t["tracking"]["AO"] == pytest.approx(0.75) and t["tracking"]["SR@0.75"] == pytest.approx(0.5)
    assert len(rows) == 7 and rows[3]["format"] == 1.0
    merged = model_summary({"bench": summary})
    assert merged["n"] == 7
    assert merged["mean_accuracy"] == pytest.approx(np.mean([v["accuracy"] for v in t.values()]))


def _scene_mask(seed: int, shape: str):
    rng = np.random.default_rng(seed)
    while True:
        scene = W.sample_image_scene(rng, 96, 3, min_objects=2)
        idx = [i for i, o in enumerate(scene.objects) if o.shape == shape]
        if idx:
            image, masks = W.render(scene)
            return image, masks, idx[0], rng


@pytest.mark.parametrize("shape", W.SHAPES)
def test_grabcut_recovers_a_synthetic_shape(shape: str) -> None:
    """Prompted with the true box and points, the CPU decoder's mask has IoU >= 0.8 with the true mask."""
    dec = GrabCutDecoder()
    ious = []
    for seed in range(3):
        image, masks, i, rng = _scene_mask(seed, shape)
        box = W.mask_box(masks[i])
        pos, neg = W.prompt_points(masks[i], masks, rng)
        pred = dec.image_mask(image, box, pos, neg)
        inter, union = (pred & masks[i]).sum(), (pred | masks[i]).sum()
        ious.append(inter / union)
    assert min(ious) >= 0.8, ious


def test_grabcut_video_propagates_and_stops_when_the_object_leaves() -> None:
    rng = np.random.default_rng(3)
    scene = W.sample_video_scene(rng, 64, 2, 4.0, 4, 0.5, min_objects=2)
    frames, masks = W.render_video(scene)
    target = max(
        range(len(scene.objects)), key=lambda k: scene.objects[k].disappear - scene.objects[k].appear
    )
    per_frame = [m[target] for m in masks]
    key = next(i for i, m in enumerate(per_frame) if m.any())
    box = W.mask_box(per_frame[key])
    pos, neg = W.prompt_points(per_frame[key], masks[key], rng)
    pred = GrabCutDecoder().video_masks(frames, key, box, pos, neg)
    from onethinker.metrics import jf_metrics

    assert jf_metrics([np.stack(pred)], [[rle(m) for m in per_frame]])["J"] >= 0.8


def test_malformed_segmentation_answers_score_an_empty_mask() -> None:
    mask = np.zeros((8, 8), bool)
    mask[2:5, 2:5] = True
    records = [
        _rec(
            1,
            "segmentation",
            "image",
            json.dumps(
                {
                    "boxes": [250, 250, 625, 625],
                    "positive_points": [[400, 400]] * 3,
                    "negative_points": [[50, 50]] * 3,
                }
            ),
            segmentation_output={"segmentation_rle": rle(mask)},
            resolution={"width": 8, "height": 8},
        )
    ]

    def masks_fn(record, pred):
        assert pred == StructuredAnswer()  # the response did not parse
        ((_, gt),) = record.segmentation.masks()
        return np.zeros((8, 8), bool), gt

    summary, _ = score_benchmark(records, [_resp("{bad")], masks_fn)
    assert summary["tasks"]["segmentation_image"]["gIoU"] == 0.0
