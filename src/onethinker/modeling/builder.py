"""The base model: a tiny Qwen3-VL built from a config, or a real checkpoint, saved as a plain HF folder.

``build_base_model`` is the pure core of the ``base_model`` stage. Either

- it trains a byte-level BPE tokenizer on the corpus (``tokenizer.train_tokenizer``), builds the *real*
  ``Qwen3VLForConditionalGeneration`` from ``Qwen3VLConfig`` at the configured size with its token ids wired
  to that tokenizer, and a real ``Qwen3VLProcessor`` (``Qwen2VLImageProcessorPil`` for images, the
  torchvision-free ``Qwen3VLVideoProcessor`` for videos); or
- with ``cfg.name_or_path`` set, it loads that checkpoint (a local folder or a hub id) and re-saves it.

The output folder holds ``config.json``, ``generation_config.json``, ``model.safetensors`` and the processor
files, and reloads with ``AutoProcessor`` / ``AutoModelForImageTextToText.from_pretrained`` (after importing
``onethinker.modeling``, which registers the video processor). Weights are read and written as safetensors
only, and remote code runs only when ``trust_remote_code`` is set.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoProcessor,
    GenerationConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    ProcessorMixin,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
    Qwen3VLProcessor,
)
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from onethinker.modeling.config import BaseModelConfig, TextConfig
from onethinker.modeling.tokenizer import (
    IM_END,
    IMAGE_PAD,
    PAD_TOKEN,
    VIDEO_PAD,
    VISION_END,
    VISION_START,
    train_tokenizer,
)
from onethinker.modeling.video_processor import Qwen3VLVideoProcessor

# Qwen3-VL's released processors normalise with mean = std = 0.5 per channel.
_IMAGE_MEAN = [0.5, 0.5, 0.5]
_IMAGE_STD = [0.5, 0.5, 0.5]
_MAX_VIDEO_FRAMES = 768


def build_processor(cfg: BaseModelConfig, tokenizer: PreTrainedTokenizerFast) -> Qwen3VLProcessor:
    """A ``Qwen3VLProcessor`` with the configured pixel budgets.

    Images: each is resized to ``image_min_pixels``..``image_max_pixels`` with sides multiples of
    patch * merge. Videos: frames are taken as given (``do_sample_frames=False``: our media code samples them
    at the configured fps), and each frame is held within ``video_min_pixels``..``video_max_pixels`` through
    the processor's per-frame cap (``cap_pixels_per_frame=True``, ``max_video_tokens`` = the budget in
    visual tokens).
    """
    v = cfg.vision
    factor = cfg.merge_factor
    image_processor = Qwen2VLImageProcessorPil(
        size={"shortest_edge": cfg.image_min_pixels, "longest_edge": cfg.image_max_pixels},
        patch_size=v.patch_size,
        temporal_patch_size=v.temporal_patch_size,
        merge_size=v.spatial_merge_size,
        image_mean=_IMAGE_MEAN,
        image_std=_IMAGE_STD,
    )
    video_processor = Qwen3VLVideoProcessor(
        size={
            "shortest_edge": cfg.video_min_pixels,
            "longest_edge": cfg.video_max_pixels * _MAX_VIDEO_FRAMES,
        },
        patch_size=v.patch_size,
        temporal_patch_size=v.temporal_patch_size,
        merge_size=v.spatial_merge_size,
        image_mean=_IMAGE_MEAN,
        image_std=_IMAGE_STD,
        do_sample_frames=False,
        cap_pixels_per_frame=True,
        max_video_tokens=max(1, cfg.video_max_pixels // (factor * factor)),
        max_frames=_MAX_VIDEO_FRAMES,
        min_frames=1,
    )
    return Qwen3VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=tokenizer.chat_template,
    )


def language_config(t: TextConfig, tokenizer: PreTrainedTokenizerFast) -> dict[str, Any]:
    """The language model's config fields (Qwen3 / Qwen3-VL text), vocabulary and special ids from ``tokenizer``
    (plain rotary embeddings: Qwen3-VL's M-RoPE sections are added by ``model_config``)."""
    return {
        "vocab_size": len(tokenizer),
        "hidden_size": t.hidden_size,
        "intermediate_size": t.intermediate_size,
        "num_hidden_layers": t.num_hidden_layers,
        "num_attention_heads": t.num_attention_heads,
        "num_key_value_heads": t.num_key_value_heads,
        "head_dim": t.head_dim,
        "max_position_embeddings": t.max_position_embeddings,
        "rms_norm_eps": t.rms_norm_eps,
        "rope_parameters": {"rope_type": "default", "rope_theta": t.rope_theta},
        "tie_word_embeddings": t.tie_word_embeddings,
        "pad_token_id": tokenizer.convert_tokens_to_ids(PAD_TOKEN),
        "eos_token_id": tokenizer.convert_tokens_to_ids(IM_END),
        "bos_token_id": None,
    }


def model_config(cfg: BaseModelConfig, tokenizer: PreTrainedTokenizerFast) -> Qwen3VLConfig:
    """``Qwen3VLConfig`` at the configured size, its vocabulary and special ids taken from ``tokenizer``."""
    t, v = cfg.text, cfg.vision
    ids = {
        tok: tokenizer.convert_tokens_to_ids(tok)
        for tok in (PAD_TOKEN, IM_END, VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD)
    }
    text_config = language_config(t, tokenizer)
    text_config["rope_parameters"].update(mrope_section=t.mrope_section, mrope_interleaved=True)
    vision_config: dict[str, Any] = {
        "depth": v.depth,
        "hidden_size": v.hidden_size,
        "intermediate_size": v.intermediate_size,
        "num_heads": v.num_heads,
        "patch_size": v.patch_size,
        "spatial_merge_size": v.spatial_merge_size,
        "temporal_patch_size": v.temporal_patch_size,
        "out_hidden_size": t.hidden_size,
        "num_position_embeddings": v.num_position_embeddings,
        "deepstack_visual_indexes": list(v.deepstack_visual_indexes),
    }
    return Qwen3VLConfig(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=ids[IMAGE_PAD],
        video_token_id=ids[VIDEO_PAD],
        vision_start_token_id=ids[VISION_START],
        vision_end_token_id=ids[VISION_END],
        tie_word_embeddings=t.tie_word_embeddings,
    )


def generation_config(tokenizer: PreTrainedTokenizerFast) -> GenerationConfig:
    """Greedy by default; stops at ``<|im_end|>`` (end of turn) or ``<|endoftext|>``."""
    im_end = tokenizer.convert_tokens_to_ids(IM_END)
    pad = tokenizer.convert_tokens_to_ids(PAD_TOKEN)
    return GenerationConfig(eos_token_id=[im_end, pad], pad_token_id=pad, bos_token_id=None, do_sample=False)


def build_model(cfg: BaseModelConfig, tokenizer: PreTrainedTokenizerFast) -> Qwen3VLForConditionalGeneration:
    """A freshly initialised Qwen3-VL (weights drawn after ``torch.manual_seed(cfg.seed)``), in float32."""
    torch.manual_seed(cfg.seed)
    model = Qwen3VLForConditionalGeneration(model_config(cfg, tokenizer))
    model.generation_config = generation_config(tokenizer)
    return model.eval()


def build_base_model(cfg: BaseModelConfig, corpus: Iterable[str], out_dir: str | Path) -> Path:
    """Build (or, with ``cfg.name_or_path``, load) the base model and its processor; save them to ``out_dir``.

    ``corpus`` is the text the tokenizer is trained on (ignored when loading a checkpoint). The folder is
    written next to ``out_dir`` and moved into place at the end, so an interrupted run leaves no half folder.
    Returns ``out_dir``.
    """
    out_dir = Path(out_dir)
    if cfg.name_or_path is not None:
        processor = load_processor(cfg.name_or_path, trust_remote_code=cfg.trust_remote_code)
        model = load_model(cfg.name_or_path, trust_remote_code=cfg.trust_remote_code)
    else:
        tokenizer = train_tokenizer(corpus, cfg.vocab_size)
        processor = build_processor(cfg, tokenizer)
        model = build_model(cfg, tokenizer)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    return out_dir


def load_model(
    path: str | Path,
    trust_remote_code: bool = False,
    dtype: torch.dtype | str | None = None,
    device: torch.device | str | None = None,
) -> PreTrainedModel:
    """Load a saved base model (or any image-text-to-text checkpoint) from safetensors weights only.

    A checkpoint without a vision config (a text-only causal LM, such as the tiny Qwen3 the vLLM engine is
    tested with on CPU) loads as ``AutoModelForCausalLM``. ``dtype=None`` keeps the checkpoint's dtype
    (``"auto"``); ``device`` moves the model after loading. The model is returned in eval mode.
    """
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code, "use_safetensors": True}
    kwargs["dtype"] = dtype if dtype is not None else "auto"
    config = AutoConfig.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    auto = AutoModelForImageTextToText if hasattr(config, "vision_config") else AutoModelForCausalLM
    model = auto.from_pretrained(str(path), **kwargs)
    if device is not None:
        model = model.to(device)
    return model.eval()


def load_processor(path: str | Path, trust_remote_code: bool = False) -> ProcessorMixin:
    """Load the processor (tokenizer, chat template, image and video processors) saved with a model."""
    return AutoProcessor.from_pretrained(str(path), trust_remote_code=trust_remote_code)


def count_parameters(model: torch.nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (shared ones, such as tied embeddings, counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def build_text_model(
    text: TextConfig,
    corpus: Iterable[str],
    vocab_size: int,
    out_dir: str | Path,
    seed: int = 0,
    init_std: float = 0.02,
) -> Path:
    """A tiny text-only ``Qwen3ForCausalLM`` (the language half of the tiny Qwen3-VL: same sizes, tokenizer
    and stop tokens), saved with its tokenizer to ``out_dir``.

    vLLM's CPU build cannot run Qwen3-VL (its Qwen3-VL code needs torchvision), so the vLLM engine is tested
    on CPU with this model; the trainer, the engines and ``load_model`` accept it (a folder without a
    processor is a text-only model). ``init_std``: the weights' initial standard deviation (at the usual
    0.02 an untrained model repeats one token; 0.25 makes its greedy answers differ from prompt to prompt).
    Returns ``out_dir``.
    """
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tokenizer = train_tokenizer(corpus, vocab_size)
    config = Qwen3Config(**language_config(text, tokenizer), initializer_range=init_std)
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config)
    model.generation_config = generation_config(tokenizer)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
