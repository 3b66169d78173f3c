"""Model set-up shared by the training stages: freezing, precision, gradient checkpointing, saving."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from onethinker.config import Switch


def freeze_vision(model: torch.nn.Module, vision_tower: bool, projector: bool) -> dict[str, int]:
    """Freeze Qwen-VL's vision tower (patch embedding, position embedding, blocks) and/or its projector
    (the merger and Qwen3-VL's deepstack mergers). Returns counts of frozen and trainable parameters."""
    visual = _visual(model)
    if visual is not None:
        for name, p in visual.named_parameters():
            is_projector = name.startswith("merger") or name.startswith("deepstack_merger")
            if (is_projector and projector) or (not is_projector and vision_tower):
                p.requires_grad_(False)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"frozen": frozen, "trainable": trainable}


def _visual(model: torch.nn.Module) -> torch.nn.Module | None:
    for path in ("model.visual", "visual"):
        obj: Any = model
        try:
            for part in path.split("."):
                obj = getattr(obj, part)
            return obj
        except AttributeError:
            continue
    return None


def use_bf16(switch: Switch) -> bool:
    if switch == "off":
        return False
    available = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if switch == "on" and not available:
        raise RuntimeError("bf16: on needs a GPU with bf16 support")
    return available


def use_gradient_checkpointing(switch: Switch) -> bool:
    return switch == "on" or (switch == "auto" and torch.cuda.is_available())


def device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


# Keys transformers copies from the loading call into a saved tokenizer_config.json although they describe how
# it was loaded, not the tokenizer: HF_HUB_OFFLINE=1 (set by the Makefile) becomes "local_files_only": true,
# so `make pipeline` and a plain `dvc repro` wrote different bytes for the same model.
LOADING_KWARGS = (
    "local_files_only",
    "cache_dir",
    "force_download",
    "proxies",
    "token",
    "revision",
    "subfolder",
)


@contextlib.contextmanager
def _without_loading_kwargs(processor: Any) -> Iterator[None]:
    """``processor``'s tokenizer without :data:`LOADING_KWARGS` in its ``init_kwargs`` (restored after)."""
    tok = getattr(processor, "tokenizer", processor)
    kwargs = getattr(tok, "init_kwargs", None)
    if not isinstance(kwargs, dict):
        yield
        return
    removed = {k: kwargs.pop(k) for k in LOADING_KWARGS if k in kwargs}
    try:
        yield
    finally:
        kwargs.update(removed)


def save_hf_folder(
    model: torch.nn.Module,
    processor: Any,
    out_dir: str | Path,
    state_dict: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Save model (safetensors) and processor into ``out_dir`` atomically (written aside, then moved)."""
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp, state_dict=state_dict, safe_serialization=True)
    with _without_loading_kwargs(processor):
        processor.save_pretrained(tmp)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    return out_dir


def pin_cpu_threads(n: int | None) -> None:
    """Fix torch's intra-op CPU threads (None: leave torch's default). Float sums split over threads round
    differently for another count, so CPU training is bit-for-bit repeatable only at a fixed count."""
    if n is not None:
        torch.set_num_threads(n)


def seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
