"""The synthetic world: every task present, deterministic, and ground truth that agrees with the pixels."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from onethinker.config import DataConfig, PrepareConfig
from onethinker.contract import PreparedData, read_records
from onethinker.contract.answers import inner_answer as unwrap_answer
from onethinker.contract.tasks import TASK_PAIRS
from onethinker.data import world as W
from onethinker.data.media import decode_video
from onethinker.data.prepare import prepare_synthetic

N_TRAIN, N_EVAL = 6, 3


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("prep") / "data"
    prepare_synthetic(
        PrepareConfig(train_per_task=N_TRAIN, eval_per_task=N_EVAL), DataConfig(root=str(root)), "compact"
    )
    return root


def _colour_mask(rgb: np.ndarray, colour: str, tol: int = 40) -> np.ndarray:
    ref = np.array(W.COLOURS[colour], dtype=int)
    return np.abs(rgb.astype(int) - ref).max(axis=-1) <= tol


def _px_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    return xs.min() / w * 1000, ys.min() / h * 1000, (xs.max() + 1) / w * 1000, (ys.max() + 1) / h * 1000


def _target_colour(problem: str) -> str:
    return next(c for c in W.COLOURS if f" {c} " in f" {problem} ")


def test_every_task_pair_in_train_and_eval(prepared: Path) -> None:
    rl = read_records(prepared / "train" / "rl.json")
    sft = PreparedData.load(prepared).sft_records()
    pairs = {(r["problem_type"], r["data_type"]) for r in rl}
    assert pairs == {(p.problem_type, p.data_type) for p in TASK_PAIRS}
    assert len(pairs) == 16
    # SFT records carry only messages and media, as the release's: their task comes from the RL record they join
    assert {(r.problem_type, r.data_type) for r in sft} == pairs
    assert {r.task_source for r in sft} == {"rl"}
    eval_pairs = set()
    for f in (prepared / "eval").glob("*.json"):
        eval_pairs |= {(r["problem_type"], r["data_type"]) for r in read_records(f)}
    assert eval_pairs == pairs
    assert len(rl) == N_TRAIN * 16


def test_records_have_release_fields(prepared: Path) -> None:
    for r in read_records(prepared / "train" / "rl.json"):
        assert r["answer"].startswith("<answer>") and r["answer"].endswith("</answer>")
        assert ("images" in r) == (r["data_type"] == "image") and ("videos" in r) == (
            r["data_type"] == "video"
        )
        assert (prepared / "media" / (r.get("images") or r.get("videos"))[0]).is_file()
        if r["problem_type"] == "multiple choice":
            letters = [o.split(".")[0] for o in r["options"]]
            assert unwrap_answer(r["answer"]) in letters
        # EasyR1 splits the problem at its placeholder; the reward reads problem_reserved_text
        assert r["problem"] == f"<{r['data_type']}>{r['problem_reserved_text']}"
    for f in (prepared / "eval").glob("*.json"):
        for r in read_records(f):
            assert {"problem", "solution", "problem_type", "data_type", "path", "problem_id"} <= set(r)
            if r["problem_type"] == "segmentation":
                assert {"segmentation_output", "resolution"} <= set(r)
    for name in ("sft_image.json", "sft_video.json"):
        for r in read_records(prepared / "train" / name):
            assert set(r) in ({"messages", "images"}, {"messages", "videos"})


def test_sft_answers_equal_ground_truth(prepared: Path) -> None:
    for r in PreparedData.load(prepared).sft_records():
        assert r.user_text.startswith(f"<{r.data_type}>")
        assert r.user_text == r.prompt("compact")  # the file's user turn is the prompt rule's text
        assert r.response.startswith("<think>") and "</think><answer>" in r.response
        assert unwrap_answer(r.response) == r.answer


def test_train_and_eval_disjoint(prepared: Path) -> None:
    train_media = {
        (r.get("images") or r.get("videos"))[0] for r in read_records(prepared / "train" / "rl.json")
    }
    digests = {hashlib.sha1((prepared / "media" / m).read_bytes()).hexdigest() for m in train_media}
    for f in (prepared / "eval").glob("*.json"):
        for r in read_records(f):
            assert r["path"] not in train_media
            if r["data_type"] == "video":  # images of tiny scenes can coincide by chance; videos cannot
                assert hashlib.sha1((prepared / "media" / r["path"]).read_bytes()).hexdigest() not in digests


def test_deterministic(prepared: Path, tmp_path: Path) -> None:
    again = tmp_path / "data"
    prepare_synthetic(
        PrepareConfig(train_per_task=N_TRAIN, eval_per_task=N_EVAL), DataConfig(root=str(again)), "compact"
    )
    assert (again / "train" / "rl.json").read_bytes() == (prepared / "train" / "rl.json").read_bytes()
    for p in (prepared / "media" / "images" / "train").glob("*.png"):
        assert (again / "media" / "images" / "train" / p.name).read_bytes() == p.read_bytes()


def _by_type(prepared: Path, pt: str, dt: str) -> list[dict]:
    return [
        r
        for r in read_records(prepared / "train" / "rl.json")
        if r["problem_type"] == pt and r["data_type"] == dt
    ]


def _eval_by_type(prepared: Path, pt: str, dt: str) -> list[dict]:
    return [
        r
        for f in sorted((prepared / "eval").glob("*.json"))
        for r in read_records(f)
        if r["problem_type"] == pt and r["data_type"] == dt
    ]


def test_spatial_grounding_box_encloses_the_object_pixels(prepared: Path) -> None:
    for r in _by_type(prepared, "spatial grounding", "image"):
        rgb = np.asarray(Image.open(prepared / "media" / r["images"][0]).convert("RGB"))
        box = json.loads(unwrap_answer(r["answer"]))["boxes"]
        x1, y1, x2, y2 = _px_box(_colour_mask(rgb, _target_colour(r["problem"]), tol=10))
        assert box[0] <= x1 and box[1] <= y1 and box[2] >= x2 and box[3] >= y2
        assert (box[2] - box[0]) - (x2 - x1) < 1000 / 64 * 1.01  # tight: within one pixel


def test_segmentation_mask_box_and_points_agree(prepared: Path) -> None:
    for r in _eval_by_type(prepared, "segmentation", "image"):
        gt = json.loads(unwrap_answer(r["solution"]))
        rle = r["segmentation_output"]["segmentation_rle"]
        m = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()})
        h, w = m.shape
        assert r["resolution"] == {"width": w, "height": h}
        x, y, bw, bh = mask_utils.toBbox({"size": rle["size"], "counts": rle["counts"].encode()})
        expected = [x / w * 1000, y / h * 1000, (x + bw) / w * 1000, (y + bh) / h * 1000]
        assert np.allclose(gt["boxes"], expected, atol=1.0)
        rgb = np.asarray(Image.open(prepared / "media" / r["path"]).convert("RGB"))
        assert (
            m.astype(bool) == _colour_mask(rgb, _target_colour(r["problem"]), tol=10) & m.astype(bool)
        ).all()
        for px, py in gt["positive_points"]:
            assert m[int(py / 1000 * h), int(px / 1000 * w)]
        for px, py in gt["negative_points"]:
            assert not m[int(py / 1000 * h), int(px / 1000 * w)]
        assert len(gt["positive_points"]) == 3 and len(gt["negative_points"]) == 3


def test_temporal_span_matches_decoded_frames(prepared: Path) -> None:
    for r in _by_type(prepared, "temporal grounding", "video"):
        s, e = json.loads(unwrap_answer(r["answer"]))["time"]
        clip = decode_video(prepared / "media" / r["videos"][0], fps=2.0)
        colour = _target_colour(r["problem"])
        for frame, t in zip(clip.frames, clip.timestamps, strict=True):
            present = _colour_mask(frame, colour).sum() >= 4
            # the target's colour is unique in a video scene, so its pixels appear exactly inside the span
            assert present == (s - 1e-6 <= t < e - 1e-6), (r["problem_id"], t, s, e)


def test_tracking_and_st_grounding_boxes_follow_the_object(prepared: Path) -> None:
    for pt in ("tracking", "spatial-temporal grounding"):
        for r in _by_type(prepared, pt, "video"):
            gt = json.loads(unwrap_answer(r["answer"]))
            clip = decode_video(prepared / "media" / r["videos"][0], fps=2.0)
            colour = next((c for c in W.COLOURS if f" {c} " in f" {r['problem']} "), None)
            for key, box in gt["boxes"].items():
                t = float(int(key) - 1) if pt == "tracking" else float(key)
                frame = clip.frames[int(np.argmin(np.abs(clip.timestamps - t)))]
                if colour is None:  # tracking names the shape only: check the box holds object pixels
                    region = frame[
                        int(box[1] * 64 / 1000) : int(box[3] * 64 / 1000),
                        int(box[0] * 64 / 1000) : int(box[2] * 64 / 1000),
                    ]
                    assert (region.astype(int).max(axis=-1) > 100).mean() > 0.3
                    continue
                x1, y1, x2, y2 = _px_box(_colour_mask(frame, colour))
                assert abs(box[0] - x1) <= 32 and abs(box[2] - x2) <= 32, (r["problem_id"], key)


def test_segmentation_video_masks_cover_every_frame(prepared: Path) -> None:
    for r in _eval_by_type(prepared, "segmentation", "video"):
        gt = json.loads(unwrap_answer(r["solution"]))
        seg = r[
            "segmentation_output"
        ]  # seg_post_sam2.py's layout: frame keys, an RLE per key, frame i at i / fps
        assert (
            len(seg["frames"]) == 16
            and r["fps"] == 4.0
            and set(seg["segmentation_rle"]) == set(seg["frames"])
        )
        key = seg["segmentation_rle"][seg["frames"][int(round(gt["time"] * 4))]]
        area = mask_utils.area({"size": key["size"], "counts": key["counts"].encode()})
        assert area > 0, "the key frame must show the object"
