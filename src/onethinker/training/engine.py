"""One training engine interface over plain PyTorch and DeepSpeed, shared by the SFT and GRPO stages.

``build_engine(model, cfg)`` returns an engine with ``backward(loss)``, ``step() -> grad_norm | None``
(optimizer step at the end of each gradient-accumulation window, with clipping and the LR schedule),
``module`` (the trainable model), ``save(dir)`` / ``load(dir)`` of model + optimizer + scheduler state,
and ``lr``.

- ``TorchEngine``: AdamW (torch), cosine schedule with linear warmup, gradient accumulation and clipping.
- ``DeepSpeedEngine``: ``deepspeed.initialize`` with a JSON config from ``infra/deepspeed/`` (ZeRO-2/3,
  optional CPU offload). The client optimizer is torch AdamW, so nothing has to be compiled (DeepSpeed's
  own Adam builds C++ on first use). On a CPU machine it runs in one process with the gloo backend; with
  the ``deepspeed``/``torchrun`` launcher it runs one process per GPU.

Both engines only ever see the parameters with ``requires_grad`` (frozen towers stay untouched).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch


@dataclass(frozen=True)
class OptimConfig:
    lr: float
    weight_decay: float
    warmup_ratio: float
    total_steps: int  # optimizer steps
    grad_accum: int
    max_grad_norm: float
    betas: tuple[float, float] = (0.9, 0.999)
    min_lr_ratio: float = 0.0


def cosine_with_warmup(step: int, total: int, warmup: int, min_ratio: float = 0.0) -> float:
    """LR multiplier: linear warmup over ``warmup`` steps, then cosine decay to ``min_ratio`` at ``total``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig) -> torch.optim.lr_scheduler.LambdaLR:
    warmup = int(round(cfg.warmup_ratio * cfg.total_steps))
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: cosine_with_warmup(s, cfg.total_steps, warmup, cfg.min_lr_ratio)
    )


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "norm" in name.lower() or name.endswith(".bias") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def trainable_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


class TorchEngine:
    """Plain PyTorch: AdamW, cosine schedule, gradient accumulation and clipping."""

    def __init__(self, model: torch.nn.Module, cfg: OptimConfig):
        self.module = model
        self.cfg = cfg
        self.optimizer = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=cfg.betas)
        self.scheduler = _scheduler(self.optimizer, cfg)
        self.micro = 0
        self.world_size = 1
        self.rank = 0

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def backward(self, loss: torch.Tensor, boundary: bool | None = None) -> None:
        """Accumulate gradients. ``boundary=None``: fixed windows of ``grad_accum`` micro-batches, the loss
        scaled by 1/grad_accum; ``boundary=True/False``: the caller weights the loss and marks the window's
        last micro-batch (variable-size windows, as after RL's online filtering)."""
        if boundary is None:
            (loss / self.cfg.grad_accum).backward()
            self.micro += 1
            self._boundary = self.micro % self.cfg.grad_accum == 0
        else:
            loss.backward()
            self.micro += 1
            self._boundary = boundary

    def step(self) -> float | None:
        """Step the optimizer at the end of an accumulation window; returns the pre-clip grad norm then."""
        if not getattr(self, "_boundary", False):
            return None
        self._boundary = False
        params = trainable_parameters(self.module)
        norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(norm)

    def state_dict(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "micro": self.micro,
        }

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        torch.save({k: v for k, v in self.module.state_dict().items()}, directory / "model.pt")
        torch.save(self.state_dict(), directory / "optim.pt")

    def load(self, directory: Path) -> None:
        from onethinker.training.checkpoint import safe_load

        self.module.load_state_dict(safe_load(directory / "model.pt"))
        state = safe_load(directory / "optim.pt")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.micro = int(state["micro"])

    def unwrapped(self) -> torch.nn.Module:
        return self.module


def _ensure_dist_env() -> None:
    """Single-process defaults so deepspeed.initialize does not look for MPI when run without a launcher."""
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("LOCAL_RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    if "MASTER_PORT" not in os.environ:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            os.environ["MASTER_PORT"] = str(s.getsockname()[1])
    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")


def load_deepspeed_config(path: str | Path, cfg: OptimConfig, micro_batch: int) -> dict[str, Any]:
    """Read a DeepSpeed JSON config and fill its "auto" values from our optimisation config."""
    ds = json.loads(Path(path).read_text())
    ds["train_micro_batch_size_per_gpu"] = micro_batch
    ds["gradient_accumulation_steps"] = cfg.grad_accum
    ds.pop("train_batch_size", None)
    ds["gradient_clipping"] = cfg.max_grad_norm
    for key in ("optimizer", "scheduler"):  # we pass a client optimizer and scheduler
        ds.pop(key, None)
    use_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if ds.get("bf16", {}).get("enabled") == "auto":
        ds["bf16"]["enabled"] = use_bf16
    if ds.get("fp16", {}).get("enabled") == "auto":
        ds["fp16"]["enabled"] = False
    zero = ds.get("zero_optimization", {})
    for k, v in list(zero.items()):
        if v == "auto":
            zero.pop(k)
    return ds


DEEPSPEED_GLOBALS = ("torch.", "deepspeed.", "numpy.", "collections.", "argparse.Namespace")
"""What a DeepSpeed checkpoint file may refer to (module prefixes); anything else is refused before loading."""


class DeepSpeedEngine:
    """DeepSpeed ZeRO (1/2/3) with a torch AdamW client optimizer and our cosine schedule."""

    def __init__(self, model: torch.nn.Module, cfg: OptimConfig, config_path: str | Path, micro_batch: int):
        import deepspeed

        _ensure_dist_env()
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if not torch.distributed.is_initialized():
            deepspeed.init_distributed(dist_backend=backend, auto_mpi_discovery=False)
        self.cfg = cfg
        ds_config = load_deepspeed_config(config_path, cfg, micro_batch)
        optimizer = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=cfg.betas)
        scheduler = _scheduler(optimizer, cfg)
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=model,
            optimizer=optimizer,
            lr_scheduler=scheduler,
            config=ds_config,
            model_parameters=[p for p in model.parameters() if p.requires_grad],
        )
        self.module = self.engine
        self.world_size = torch.distributed.get_world_size()
        self.rank = torch.distributed.get_rank()
        self.zero_stage = int(ds_config.get("zero_optimization", {}).get("stage", 0))

    @property
    def lr(self) -> float:
        return float(self.engine.get_lr()[0])

    def backward(self, loss: torch.Tensor, boundary: bool | None = None) -> None:
        if boundary is None:
            self.engine.backward(loss)
        else:
            self.engine.set_gradient_accumulation_boundary(boundary)
            self.engine.backward(loss, scale_wrt_gas=False)

    def step(self) -> float | None:
        boundary = self.engine.is_gradient_accumulation_boundary()
        self.engine.step()
        if not boundary:
            return None
        norm = self.engine.get_global_grad_norm()
        return None if norm is None else float(norm)

    def save(self, directory: Path) -> None:
        self.engine.save_checkpoint(str(directory), tag="engine")

    def load(self, directory: Path) -> None:
        from onethinker.training.checkpoint import check_pickles

        check_pickles(
            Path(directory) / "engine", DEEPSPEED_GLOBALS
        )  # DeepSpeed unpickles with weights_only=False
        self.engine.load_checkpoint(str(directory), tag="engine")

    def unwrapped(self) -> torch.nn.Module:
        return self.engine.module

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """The full (gathered) weights, also under ZeRO-3; on every rank."""
        if self.zero_stage == 3:
            import deepspeed

            params = list(self.engine.module.parameters())
            with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
                return {k: v.detach().clone().cpu() for k, v in self.engine.module.state_dict().items()}
        return {k: v.detach().cpu() for k, v in self.engine.module.state_dict().items()}


def build_engine(model: torch.nn.Module, cfg: OptimConfig, deepspeed_config: str | None, micro_batch: int):
    """DeepSpeed when a config is given, plain PyTorch otherwise."""
    if deepspeed_config:
        return DeepSpeedEngine(model, cfg, deepspeed_config, micro_batch)
    return TorchEngine(model, cfg)
