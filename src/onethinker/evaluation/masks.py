"""Mask decoders: turn the model's box and points (the segmentation answer) into masks.

OneThinker answers segmentation with one box, 3 positive and 3 negative points (and, for video, a key time);
a promptable segmenter turns them into masks. Two decoders behind one interface:

- ``GrabCutDecoder`` (CPU, no weights): OpenCV GrabCut seeded by the box (outside = background) and the
  points (positives = foreground, negatives = background). For video it segments the key frame, then
  propagates forwards and backwards frame by frame: each frame is seeded from the previous mask (eroded
  core = foreground, a dilated box around it = the search area), and the object is declared gone when the
  segmented region no longer matches the key frame's colour. Good on the synthetic world; a fallback, not a
  substitute for SAM2 on real video.
- ``SAM2Decoder``: SAM2's image predictor and video predictor (propagating from the key frame), when the
  ``sam2`` package is installed and a checkpoint is configured. Written against SAM2's API; it needs a GPU
  worker and its weights, so it is not exercised on CPU machines.

Coordinates come in Qwen3-VL's 0-1000 grid and are scaled to pixels here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Protocol

import numpy as np


def grid_to_px(xy: Sequence[float], w: int, h: int) -> tuple[int, int]:
    x = int(np.clip(round(float(xy[0]) / 1000 * w - 0.5), 0, w - 1))
    y = int(np.clip(round(float(xy[1]) / 1000 * h - 0.5), 0, h - 1))
    return x, y


def box_to_px(box: Sequence[float], w: int, h: int) -> tuple[int, int, int, int]:
    x1 = int(np.clip(np.floor(float(box[0]) / 1000 * w), 0, w - 1))
    y1 = int(np.clip(np.floor(float(box[1]) / 1000 * h), 0, h - 1))
    x2 = int(np.clip(np.ceil(float(box[2]) / 1000 * w), x1 + 1, w))
    y2 = int(np.clip(np.ceil(float(box[3]) / 1000 * h), y1 + 1, h))
    return x1, y1, x2, y2


class MaskDecoder(Protocol):
    def image_mask(
        self,
        image: np.ndarray,
        box: Sequence[float],
        positive: Sequence[Sequence[float]],
        negative: Sequence[Sequence[float]],
    ) -> np.ndarray: ...

    def video_masks(
        self,
        frames: np.ndarray,
        key_index: int,
        box: Sequence[float],
        positive: Sequence[Sequence[float]],
        negative: Sequence[Sequence[float]],
    ) -> list[np.ndarray]: ...


class GrabCutDecoder:
    """OpenCV GrabCut seeded by box and points; colour-checked frame-to-frame propagation for video."""

    def __init__(self, iterations: int = 4, point_radius: int = 1, colour_tolerance: float = 60.0):
        self.iterations = iterations
        self.point_radius = point_radius
        self.colour_tolerance = colour_tolerance

    def _grabcut(self, image: np.ndarray, seed: np.ndarray) -> np.ndarray:
        import cv2

        if not (seed == cv2.GC_FGD).any() and not (seed == cv2.GC_PR_FGD).any():
            return np.zeros(seed.shape, dtype=bool)
        mask = seed.copy()
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        # degenerate seeds (e.g. no background sample) raise: keep the seeds' own labels then
        with contextlib.suppress(cv2.error):
            cv2.grabCut(
                np.ascontiguousarray(image[..., ::-1]),
                mask,
                None,
                bgd,
                fgd,
                self.iterations,
                cv2.GC_INIT_WITH_MASK,
            )
        return (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)

    def _seed(self, shape: tuple[int, int], box_px, positive_px, negative_px) -> np.ndarray:
        import cv2

        h, w = shape
        seed = np.full((h, w), cv2.GC_BGD, np.uint8)
        x1, y1, x2, y2 = box_px
        seed[y1:y2, x1:x2] = cv2.GC_PR_FGD
        r = self.point_radius
        for x, y in negative_px:
            seed[max(0, y - r) : y + r + 1, max(0, x - r) : x + r + 1] = cv2.GC_BGD
        for x, y in positive_px:
            seed[max(0, y - r) : y + r + 1, max(0, x - r) : x + r + 1] = cv2.GC_FGD
        return seed

    def image_mask(self, image, box, positive, negative) -> np.ndarray:
        h, w = image.shape[:2]
        seed = self._seed(
            (h, w),
            box_to_px(box, w, h),
            [grid_to_px(p, w, h) for p in positive],
            [grid_to_px(p, w, h) for p in negative],
        )
        return self._grabcut(image, seed)

    def _propagate(self, frame: np.ndarray, prev: np.ndarray, colour: np.ndarray) -> np.ndarray:
        import cv2

        h, w = prev.shape
        ys, xs = np.nonzero(prev)
        if len(xs) == 0:
            return np.zeros_like(prev)
        pad = max(2, int(0.5 * max(xs.max() - xs.min(), ys.max() - ys.min())))
        x1, y1 = max(0, xs.min() - pad), max(0, ys.min() - pad)
        x2, y2 = min(w, xs.max() + pad + 1), min(h, ys.max() + pad + 1)
        seed = np.full((h, w), cv2.GC_BGD, np.uint8)
        seed[y1:y2, x1:x2] = cv2.GC_PR_BGD
        close = np.abs(frame.astype(float) - colour).max(axis=-1) <= self.colour_tolerance
        seed[(seed == cv2.GC_PR_BGD) & close] = cv2.GC_PR_FGD
        if not (seed == cv2.GC_PR_FGD).any():
            return np.zeros_like(prev)
        mask = self._grabcut(frame, seed)
        mask &= close  # the object's colour: a region of another colour is not the object
        return mask if mask.sum() >= max(3, 0.2 * prev.sum()) else np.zeros_like(prev)

    def video_masks(self, frames, key_index, box, positive, negative) -> list[np.ndarray]:
        frames = np.asarray(frames)
        t = len(frames)
        key_index = int(np.clip(key_index, 0, t - 1))
        key = self.image_mask(frames[key_index], box, positive, negative)
        masks: list[np.ndarray | None] = [None] * t
        masks[key_index] = key
        colour = frames[key_index][key].astype(float).mean(axis=0) if key.any() else np.zeros(3)
        for direction in (1, -1):
            prev = key
            i = key_index + direction
            while 0 <= i < t:
                prev = self._propagate(frames[i], prev, colour) if prev.any() else np.zeros_like(key)
                masks[i] = prev
                i += direction
        return [m if m is not None else np.zeros_like(key) for m in masks]


class SAM2Decoder:  # pragma: no cover - needs the sam2 package, its weights and (in practice) a GPU
    """SAM2 image and video predictors (``pip install sam2`` and a checkpoint)."""

    def __init__(self, config: str, checkpoint: str, device: str = "cuda"):
        try:
            from sam2.build_sam import build_sam2, build_sam2_video_predictor
            from sam2.sam2_image_predictor import SAM2ImagePredictor
        except ImportError as exc:
            raise RuntimeError("the SAM2 decoder needs the `sam2` package and a checkpoint") from exc
        self.image_predictor = SAM2ImagePredictor(build_sam2(config, checkpoint, device=device))
        self.video_predictor = build_sam2_video_predictor(config, checkpoint, device=device)

    @staticmethod
    def _prompts(shape, box, positive, negative):
        h, w = shape
        pts = np.array([grid_to_px(p, w, h) for p in [*positive, *negative]], dtype=np.float32)
        labels = np.array([1] * len(positive) + [0] * len(negative), dtype=np.int32)
        return np.array(box_to_px(box, w, h), dtype=np.float32), pts, labels

    def image_mask(self, image, box, positive, negative) -> np.ndarray:
        box_px, pts, labels = self._prompts(image.shape[:2], box, positive, negative)
        self.image_predictor.set_image(image)
        masks, scores, _ = self.image_predictor.predict(
            point_coords=pts, point_labels=labels, box=box_px, multimask_output=False
        )
        return masks[0].astype(bool)

    def video_masks(self, frames, key_index, box, positive, negative) -> list[np.ndarray]:
        import tempfile
        from pathlib import Path

        from PIL import Image

        with tempfile.TemporaryDirectory() as tmp:
            for i, f in enumerate(frames):
                Image.fromarray(f).save(Path(tmp) / f"{i:05d}.jpg")
            state = self.video_predictor.init_state(video_path=tmp)
            box_px, pts, labels = self._prompts(frames[0].shape[:2], box, positive, negative)
            self.video_predictor.add_new_points_or_box(
                state, frame_idx=key_index, obj_id=1, points=pts, labels=labels, box=box_px
            )
            out: dict[int, np.ndarray] = {}
            for reverse in (False, True):
                for idx, _, logits in self.video_predictor.propagate_in_video(state, reverse=reverse):
                    out[idx] = (logits[0, 0] > 0).cpu().numpy()
        empty = np.zeros(frames[0].shape[:2], dtype=bool)
        return [out.get(i, empty) for i in range(len(frames))]


def make_decoder(
    name: str, sam2_config: str | None = None, sam2_checkpoint: str | None = None
) -> MaskDecoder:
    if name == "grabcut":
        return GrabCutDecoder()
    if name == "sam2":
        if not (sam2_config and sam2_checkpoint):
            raise ValueError(
                "evaluate.mask_decoder: sam2 needs evaluate.sam2_config and evaluate.sam2_checkpoint"
            )
        return SAM2Decoder(sam2_config, sam2_checkpoint)
    raise ValueError(f"unknown mask decoder {name!r} (grabcut or sam2)")


def prediction_masks(record, answer, root, decoder: MaskDecoder) -> tuple[object, object]:
    """(predicted, ground-truth) masks of a segmentation evaluation record, as ``seg_post_sam2.py`` scores them.

    The ground truth is the record's ``segmentation_output`` (``contract.records.SegmentationTruth``) at its
    ``resolution``. The media are brought to that resolution and the answer's box and points (0-1000 grid) are
    prompted on them: an image directly; a video on the frames at ``i / fps`` s for each ground-truth frame key
    ``i`` (the nearest native frame), from the key frame ``round(time * fps)``. Video masks are compared only
    on the frames with a ground-truth mask. An answer without a valid box or 3 positive points predicts empty
    masks (the worst prediction, never a skip).

    record: an ``EvalRecord`` with ``segmentation``; answer: a ``contract.schema.StructuredAnswer``; root: the
    record's ``MediaRoot``. Returns image: ((H, W), (H, W)); video: ((F, H, W), (F, H, W)) over the F frames
    that have a ground-truth mask.
    """
    from PIL import Image

    truth = record.segmentation
    if truth is None:
        raise ValueError(f"{record.where}: no segmentation ground truth (segmentation_output)")
    w, h = truth.width, truth.height
    box = answer.box
    ok = box is not None and box[2] > box[0] and box[3] > box[1] and len(answer.positive) == 3
    path = root.resolve(record.media[0].path, record.kind)
    gts = truth.masks()
    if truth.data_type == "image":
        (_, gt), *_ = gts or [(0, np.zeros((h, w), bool))]
        if not ok:
            return np.zeros((h, w), bool), gt
        image = Image.open(path).convert("RGB")
        if image.size != (w, h):
            image = image.resize((w, h), Image.BILINEAR)
        return decoder.image_mask(np.asarray(image), box, answer.positive, answer.negative), gt
    if not gts:
        return np.zeros((0, h, w), bool), np.zeros((0, h, w), bool)
    order = [i for i, _ in gts]
    gt = np.stack([m for _, m in gts])
    if not ok or answer.seconds is None:
        return np.zeros_like(gt), gt
    from onethinker.data.media import decode_video

    clip = decode_video(path, fps=1e6, max_frames=100000)  # every native frame
    native = clip.info.fps or clip.sample_fps
    n = len(truth.frames)
    picks = [int(np.clip(round(truth.frame_time(i) * native), 0, len(clip.frames) - 1)) for i in range(n)]
    frames = np.stack(
        [
            f if f.shape[:2] == (h, w) else np.asarray(Image.fromarray(f).resize((w, h), Image.BILINEAR))
            for f in clip.frames[picks]
        ]
    )
    key = int(np.clip(round(answer.seconds * float(truth.fps or 1.0)), 0, n - 1))
    pred = np.stack(decoder.video_masks(frames, key, box, answer.positive, answer.negative))
    return pred[order], gt
