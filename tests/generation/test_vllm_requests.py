"""vLLM's Qwen3-VL requests against the Hugging Face processor, for the same records (no vLLM needed).

A request is handed to the processor the way vLLM's Qwen3-VL code hands it over (the prompt text with its
one placeholder per image or video; images as they are; per video, the frames plus
``VideoMetadata(**metadata)`` without ``do_sample_frames``, which goes to the processor as a keyword): the
token ids, pixel values and grids must be exactly those the trainer's ``encode_chat`` makes, and the
timestamps vLLM computes from the metadata (source frame index / fps, averaged over each temporal patch)
must be the clip's real times that the prompt carries.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
import torch

from onethinker.config import MediaConfig
from onethinker.data.examples import prompt_example
from onethinker.generation.vllm_requests import build_request
from onethinker.modeling import encode_chat, load_processor

MEDIA = MediaConfig()


@pytest.fixture(scope="module")
def processor(tiny_base):
    return load_processor(tiny_base)


def _record(tiny_data: dict, data_type: str, problem_type: str):
    """The first evaluation record of the pair, with its media root."""
    for _, items in tiny_data["eval_sets"]:
        for x in items:
            if x.record.data_type == data_type and x.record.problem_type == problem_type:
                return x
    raise LookupError((data_type, problem_type))


def _as_vllm_does(processor, request: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The Hugging Face processor called on a request the way vLLM's Qwen3-VL processor calls it."""
    from transformers.video_utils import VideoMetadata

    mm = request.get("multi_modal_data", {})
    kwargs: dict[str, Any] = dict(request.get("mm_processor_kwargs", {}))
    if "video" in mm:
        frames, metadata = zip(*mm["video"], strict=True)
        kwargs.setdefault("do_sample_frames", metadata[0]["do_sample_frames"])
        kwargs["videos"] = list(frames)
        kwargs["video_metadata"] = [
            VideoMetadata(**{k: v for k, v in m.items() if k != "do_sample_frames"}) for m in metadata
        ]
    if "image" in mm:
        kwargs["images"] = mm["image"]
    return dict(processor(text=[request["prompt"]], return_tensors="pt", **kwargs))


def _vllm_timestamps(metadata: dict[str, Any], temporal_patch: int) -> list[float]:
    """vLLM's Qwen3-VL timestamps for pre-sampled frames: frames_indices / fps, mean over each patch."""
    t = [i / metadata["fps"] for i in metadata["frames_indices"]]
    t += [t[-1]] * (-len(t) % temporal_patch)
    return [(t[i] + t[i + temporal_patch - 1]) / 2 for i in range(0, len(t), temporal_patch)]


@pytest.mark.parametrize(
    ("data_type", "problem_type"),
    [
        ("image", "spatial grounding"),
        ("image", "multiple choice"),
        ("video", "temporal grounding"),
        ("video", "tracking"),
    ],
)
def test_request_gives_the_processor_what_training_gives_it(
    tiny_data, processor, data_type, problem_type
) -> None:
    item = _record(tiny_data, data_type, problem_type)
    example = prompt_example(item.record, item.root, MEDIA, "compact")
    request = build_request(processor, example)
    trained = encode_chat(
        processor, example.messages, example.images, example.videos, add_generation_prompt=True
    )
    served = _as_vllm_does(processor, request)
    assert set(request) <= {"prompt", "multi_modal_data", "mm_processor_kwargs"}
    assert torch.equal(served["input_ids"], trained["input_ids"])
    assert torch.equal(served["mm_token_type_ids"], trained["mm_token_type_ids"])
    for key in ("pixel_values", "image_grid_thw", "pixel_values_videos", "video_grid_thw"):
        assert (key in served) == (key in trained), key
        if key in trained:
            assert torch.equal(served[key], trained[key]), key
    mm = request["multi_modal_data"]
    if data_type == "image":
        # one placeholder per image in the prompt (vLLM expands it); the image is the one training loads,
        # already held within the media budget
        assert request["prompt"].count("<|vision_start|><|image_pad|><|vision_end|>") == len(mm["image"]) == 1
        assert mm["image"][0] is example.images[0]
        assert mm["image"][0].width * mm["image"][0].height <= MEDIA.image_max_pixels
        assert "mm_processor_kwargs" not in request
    else:
        # a bare video placeholder: Qwen3-VL's processors (HF >= 5.10 and vLLM) expand it per frame
        assert request["prompt"].count("<|video_pad|>") == 1 and "<|vision_start|>" not in request["prompt"]
        frames, metadata = mm["video"][0]
        clip = example.videos[0]
        assert np.array_equal(frames, clip.frames)  # sampled by the shared media code (media.video_fps, cap)
        assert metadata["do_sample_frames"] is False and request["mm_processor_kwargs"] == {
            "do_sample_frames": False
        }
        patch = processor.video_processor.temporal_patch_size
        expected = _vllm_timestamps(metadata, patch)
        clip_times = list(clip.timestamps) + [clip.timestamps[-1]] * (-len(clip.timestamps) % patch)
        real = [(clip_times[i] + clip_times[i + patch - 1]) / 2 for i in range(0, len(clip_times), patch)]
        assert expected == pytest.approx(real, abs=1e-9)
        text = processor.tokenizer.decode(trained["input_ids"][0])
        shown = [float(t) for t in re.findall(r"<([0-9.]+) seconds>", text)]
        assert shown, "the prompt carries per-frame timestamps"
        assert shown == pytest.approx([round(t, 1) for t in expected], abs=1e-9)
