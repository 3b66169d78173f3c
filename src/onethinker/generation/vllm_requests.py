"""vLLM requests for our prompts, built without importing vLLM (so they are tested anywhere).

A request is what ``LLM.generate`` takes for one prompt:

- a text-only model (a bare tokenizer): ``{"prompt_token_ids": [...]}``, the exact ids the Hugging Face
  engine feeds (``encode_prompt``), so both engines see the same tokens;
- Qwen3-VL: ``{"prompt": text, "multi_modal_data": {...}, "mm_processor_kwargs": {...}}`` where ``text`` is
  the processor's chat template rendered with one placeholder per image (``<|vision_start|><|image_pad|>
  <|vision_end|>``) and a bare ``<|video_pad|>`` per video, which vLLM's Qwen3-VL processor expands exactly
  as the Hugging Face processor does (image tokens; per frame ``<t seconds><|vision_start|>…<|vision_end|>``);
  ``multi_modal_data`` holds the PIL images and, per video, ``(frames (T, H, W, 3) uint8, metadata)``
  with the metadata of ``onethinker.modeling.inputs.video_inputs`` (source fps and the source index of
  every sampled frame, so the timestamps are the clip's real times) and ``do_sample_frames: False``, since
  the frames were already sampled by the shared media code with the ``media:`` budgets.

The images and frames are the ones ``prompt_example`` loaded (``media:`` pixel budgets, fps, frame cap) and
the processor is the one saved with the model, so vLLM computes the same pixel values, grids and prompt as
training does (``tests/generation/test_vllm_requests.py`` checks this against the Hugging Face processor).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from onethinker.data.examples import Example
from onethinker.generation.hf import encode_prompt, is_text_only


def video_metadata_dict(clip: Any) -> dict[str, Any]:
    """The clip's ``VideoMetadata`` as the plain dict vLLM takes next to the frames (plus
    ``do_sample_frames: False``: the frames are already sampled)."""
    from onethinker.modeling.inputs import video_inputs

    _, meta = video_inputs(clip)
    out = {
        f.name: getattr(meta, f.name) for f in dataclasses.fields(meta) if getattr(meta, f.name) is not None
    }
    out["do_sample_frames"] = False
    return out


def build_request(processor: Any, example: Example) -> dict[str, Any]:
    """One vLLM prompt for ``example`` (see the module docstring for the two shapes)."""
    if is_text_only(processor):
        return {"prompt_token_ids": encode_prompt(processor, example)["input_ids"][0].tolist()}
    from onethinker.modeling.inputs import video_inputs

    prompt = processor.apply_chat_template(example.messages, add_generation_prompt=True, tokenize=False)
    request: dict[str, Any] = {"prompt": prompt}
    mm: dict[str, Any] = {}
    if example.images:
        mm["image"] = list(example.images)
    if example.videos:
        mm["video"] = [(video_inputs(clip)[0], video_metadata_dict(clip)) for clip in example.videos]
        request["mm_processor_kwargs"] = {"do_sample_frames": False}
    if mm:
        request["multi_modal_data"] = mm
    return request
