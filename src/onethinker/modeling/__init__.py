"""The model side of OneThinker: a tiny Qwen3-VL built from a config (or a real checkpoint) and its inputs.

- ``config``: ``BaseModelConfig``, the ``base_model`` section of ``params.yaml`` (light: no torch import).
- ``tokenizer``: an offline byte-level BPE with Qwen's special tokens and chat template.
- ``video_processor``: Qwen3-VL's video processor without torchvision.
- ``builder``: ``build_base_model`` (the stage's core), ``load_model``, ``load_processor``.
- ``inputs``: ``encode_chat`` / ``collate`` turn chat messages plus images and video clips into model inputs.

Names are imported lazily, so ``onethinker.config.load_params`` (which imports ``onethinker.modeling.config``)
does not pull in torch and transformers. The one side effect, registering the torchvision-free
``Qwen3VLVideoProcessor`` for ``Qwen3VLConfig`` with ``AutoVideoProcessor`` (so saved folders and real
Qwen3-VL checkpoints load through ``AutoProcessor`` without torchvision), happens when
``onethinker.modeling.video_processor`` is imported: by ``builder``, or by using any name below other than the
config classes.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from onethinker.modeling.config import BaseModelConfig, TextConfig, VisionConfig

if TYPE_CHECKING:
    from onethinker.modeling.builder import (
        build_base_model,
        build_model,
        build_processor,
        build_text_model,
        count_parameters,
        load_model,
        load_processor,
    )
    from onethinker.modeling.inputs import collate, encode_chat, model_inputs, video_inputs
    from onethinker.modeling.tokenizer import train_tokenizer
    from onethinker.modeling.video_processor import Qwen3VLVideoProcessor, register_video_processor

_LAZY = {
    "build_base_model": "builder",
    "build_model": "builder",
    "build_processor": "builder",
    "build_text_model": "builder",
    "count_parameters": "builder",
    "load_model": "builder",
    "load_processor": "builder",
    "collate": "inputs",
    "encode_chat": "inputs",
    "model_inputs": "inputs",
    "video_inputs": "inputs",
    "train_tokenizer": "tokenizer",
    "Qwen3VLVideoProcessor": "video_processor",
    "register_video_processor": "video_processor",
}

__all__ = [
    "BaseModelConfig",
    "Qwen3VLVideoProcessor",
    "TextConfig",
    "VisionConfig",
    "build_base_model",
    "build_model",
    "build_processor",
    "build_text_model",
    "collate",
    "count_parameters",
    "encode_chat",
    "load_model",
    "load_processor",
    "model_inputs",
    "register_video_processor",
    "train_tokenizer",
    "video_inputs",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    importlib.import_module(f"{__name__}.video_processor")  # registers the video processor
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
