"""Chat messages plus images and video clips -> the tensors a Qwen3-VL model takes.

``encode_chat`` renders one conversation with the processor's chat template and runs the processor on it:
``input_ids``, ``attention_mask``, ``mm_token_type_ids`` (0 text, 1 image, 2 video; transformers 5.23's
Qwen3-VL needs it for M-RoPE), ``pixel_values`` + ``image_grid_thw`` and/or ``pixel_values_videos`` +
``video_grid_thw``, and on request ``assistant_masks`` and ``labels`` (-100 everywhere but the assistant
replies and their closing ``<|im_end|>``), taken from the template's ``{% generation %}`` spans.

Videos are ``onethinker.data.media.VideoClip`` objects, already sampled by the shared media code; they go to
the processor as frames plus ``VideoMetadata`` whose ``fps`` and ``frames_indices`` reproduce the clip's
timestamps, so the per-frame ``<t seconds>`` markers in the prompt are the clip's real times.

``collate`` stacks encoded examples into a batch: token tensors padded on the right for training (the
default) or on the left for generation (new tokens then follow every prompt directly); visual patches are
concatenated in batch order, which is the order the model consumes them in.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from transformers import ProcessorMixin
from transformers.video_utils import VideoMetadata

from onethinker.data.media import VideoClip

IGNORE_INDEX = -100
"""Label value the loss ignores."""

TOKEN_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids", "assistant_masks", "labels")
"""Per-token tensors, (1, L) per example and (B, L) per batch."""
VISUAL_KEYS = ("pixel_values", "image_grid_thw", "pixel_values_videos", "video_grid_thw")
"""Per-patch / per-item tensors, concatenated along dim 0 when batching."""
MODEL_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids", *VISUAL_KEYS)
"""What ``model(**...)`` / ``model.generate(**...)`` takes (add ``labels`` for a loss)."""


def video_inputs(clip: VideoClip) -> tuple[np.ndarray, VideoMetadata]:
    """A clip as (frames (T, H, W, 3) uint8, metadata) for the Qwen3-VL processor.

    The processor writes frame times as ``frames_indices / fps`` (averaged over each temporal patch), so the
    metadata uses the source fps and the source frame index of each sampled frame (``timestamp * fps``).
    When the source fps is unknown, the sampling rate stands in.
    """
    frames = np.ascontiguousarray(clip.frames, dtype=np.uint8)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected frames of shape (T, H, W, 3), got {frames.shape}")
    if len(clip.timestamps) != len(frames):
        raise ValueError(f"{len(frames)} frames but {len(clip.timestamps)} timestamps")
    fps = clip.info.fps if clip.info.fps > 0 else clip.sample_fps
    indices = np.rint(np.asarray(clip.timestamps, dtype=np.float64) * fps).astype(np.int64)
    total = max(int(clip.info.num_frames), int(indices.max()) + 1 if len(indices) else 0)
    duration = clip.info.duration if clip.info.duration > 0 else total / fps
    metadata = VideoMetadata(
        total_num_frames=total,
        fps=float(fps),
        width=int(frames.shape[2]),
        height=int(frames.shape[1]),
        duration=float(duration),
        video_backend="pyav",
        frames_indices=indices.tolist(),
    )
    return frames, metadata


def _attach_media(
    messages: Sequence[Mapping[str, Any]],
    images: Sequence[Image.Image],
    videos: Sequence[np.ndarray],
) -> list[dict[str, Any]]:
    """A copy of ``messages`` whose image/video blocks carry the media, in order of appearance."""
    out = []
    n_img = n_vid = 0
    for message in messages:
        message = dict(message)
        content = message.get("content")
        if isinstance(content, list):
            blocks = []
            for block in content:
                block = dict(block)
                kind = block.get("type")
                if kind == "image":
                    if n_img >= len(images):
                        raise ValueError(
                            f"the messages have more image blocks than the {len(images)} images given"
                        )
                    block["image"] = images[n_img]
                    n_img += 1
                elif kind == "video":
                    if n_vid >= len(videos):
                        raise ValueError(
                            f"the messages have more video blocks than the {len(videos)} videos given"
                        )
                    block["video"] = videos[n_vid]
                    n_vid += 1
                blocks.append(block)
            message["content"] = blocks
        out.append(message)
    if n_img != len(images) or n_vid != len(videos):
        raise ValueError(
            f"{len(images)} images and {len(videos)} videos given, but the messages have {n_img} image and "
            f"{n_vid} video blocks"
        )
    return out


def encode_chat(
    processor: ProcessorMixin,
    messages: Sequence[Mapping[str, Any]],
    images: Sequence[Image.Image] | None = None,
    videos: Sequence[VideoClip] | None = None,
    add_generation_prompt: bool = False,
    return_assistant_mask: bool = False,
) -> dict[str, torch.Tensor]:
    """Encode one conversation for the model (a batch of one).

    messages: HF chat messages; user content is a list of ``{"type": "image"}``, ``{"type": "video"}`` and
        ``{"type": "text", "text": ...}`` blocks, matched in order with ``images`` / ``videos``.
    add_generation_prompt: end with ``<|im_start|>assistant\\n`` (a prompt for ``generate``).
    return_assistant_mask: also return ``assistant_masks`` (1 on assistant reply tokens and their
        ``<|im_end|>``) and ``labels`` (``input_ids`` there, -100 elsewhere).

    Returns (L tokens, P image patches, Q video patches, D = 3 * temporal_patch * patch^2):
    input_ids, attention_mask, mm_token_type_ids (1, L) int64; pixel_values (P, D) float32 and
    image_grid_thw (n_images, 3) when there are images; pixel_values_videos (Q, D) and video_grid_thw
    (n_videos, 3) when there are videos; assistant_masks and labels (1, L) int64 on request.
    """
    images = list(images or [])
    clips = list(videos or [])
    video_pairs = [video_inputs(clip) for clip in clips]
    conversation = _attach_media(messages, images, [frames for frames, _ in video_pairs])
    processor_kwargs: dict[str, Any] = {}
    if video_pairs:
        processor_kwargs["video_metadata"] = [copy.copy(meta) for _, meta in video_pairs]
        processor_kwargs["do_sample_frames"] = False  # the clips are already sampled by the media code
    out = processor.apply_chat_template(
        conversation,
        add_generation_prompt=add_generation_prompt,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
        return_assistant_tokens_mask=return_assistant_mask,
        processor_kwargs=processor_kwargs,
    )
    encoded = {key: value for key, value in out.items() if isinstance(value, torch.Tensor)}
    for key in ("input_ids", "attention_mask", "mm_token_type_ids"):
        encoded[key] = encoded[key].long()
    if return_assistant_mask:
        mask = encoded["assistant_masks"].long()
        encoded["assistant_masks"] = mask
        encoded["labels"] = encoded["input_ids"].masked_fill(mask == 0, IGNORE_INDEX)
    return encoded


def collate(
    examples: Sequence[Mapping[str, torch.Tensor]],
    pad_token_id: int,
    padding_side: Literal["right", "left"] = "right",
) -> dict[str, torch.Tensor]:
    """Batch ``encode_chat`` outputs: pad the token tensors to the longest, concatenate the visual ones.

    Padding: ``input_ids`` with ``pad_token_id``, ``labels`` with -100, the masks and ``mm_token_type_ids``
    with 0. Use ``padding_side="left"`` for generation, ``"right"`` for training.
    """
    if not examples:
        raise ValueError("collate needs at least one example")
    if padding_side not in ("right", "left"):
        raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
    length = max(int(ex["input_ids"].shape[-1]) for ex in examples)
    fill = {"input_ids": pad_token_id, "labels": IGNORE_INDEX}
    batch: dict[str, torch.Tensor] = {}
    for key in TOKEN_KEYS:
        present = [key in ex for ex in examples]
        if not any(present):
            continue
        if not all(present):
            raise ValueError(f"'{key}' is in some examples but not all")
        rows = []
        for ex in examples:
            row = ex[key].reshape(-1)
            pad = row.new_full((length - row.shape[0],), fill.get(key, 0))
            rows.append(torch.cat([row, pad] if padding_side == "right" else [pad, row]))
        batch[key] = torch.stack(rows)
    for key in VISUAL_KEYS:
        parts = [ex[key] for ex in examples if key in ex]
        if parts:
            batch[key] = torch.cat(parts, dim=0)
    return batch


def model_inputs(batch: Mapping[str, torch.Tensor], with_labels: bool = False) -> dict[str, torch.Tensor]:
    """The subset of an encoded batch the model's ``forward`` / ``generate`` accept."""
    keys = (*MODEL_KEYS, "labels") if with_labels else MODEL_KEYS
    return {key: batch[key] for key in keys if key in batch}
