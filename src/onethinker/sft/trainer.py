"""SFT cold start: next-token loss on the assistant's chain of thought and answer, nothing else.

What it implements (OneThinker's SFT, run through our own loop rather than LLaMA-Factory):
- the sharegpt CoT records go through the processor's chat template, their user turn rendered by the
  contract's prompt rule (the same text RL and evaluation show for the same record) and their task derived by
  the contract's SFT task rule (so the per-task loss covers every task); labels are -100 everywhere but the
  assistant reply (and its closing ``<|im_end|>``); the loss is the mean over those tokens in a micro-batch;
- images and video frames come from the same media code as evaluation (``onethinker.data.examples``);
- vision tower and projector frozen by default, the language model fully trained; AdamW, cosine schedule
  with warmup ratio, gradient accumulation, clipping; gradient checkpointing and bf16 when a GPU is present;
- plain PyTorch or DeepSpeed (ZeRO-2/3) through ``onethinker.training.engine``;
- atomic checkpoints every ``save_every`` optimizer steps with model, optimizer, scheduler, RNG and the data
  position; re-running resumes from the newest checkpoint written under the same settings.

Data order is a pure function of (seed, position): sample k of the stream is ``perm(epoch)[k % N]`` with
``epoch = k // N``, so a resumed run reads exactly the samples the interrupted one would have read.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from onethinker.config import MediaConfig
from onethinker.contract.manifest import RootedRecord
from onethinker.contract.prompts import PromptStyle
from onethinker.data.examples import sft_example
from onethinker.sft.config import SFTConfig
from onethinker.training import checkpoint as ckpt
from onethinker.training.engine import OptimConfig, build_engine
from onethinker.training.model_utils import (
    device,
    freeze_vision,
    pin_cpu_threads,
    save_hf_folder,
    seed_everything,
    use_bf16,
    use_gradient_checkpointing,
)

Logger = Callable[[dict[str, float], int], None]


@dataclass
class SFTResult:
    steps: int
    seconds: float
    tokens: int
    final_loss: float
    skipped_overlong: int
    resumed_from: int
    parameters: dict[str, int] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    export_state: dict[str, torch.Tensor] | None = None  # gathered weights under ZeRO-3

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


class SFTData:
    """SFT records, encoded on demand (and cached), addressed by stream position."""

    def __init__(
        self,
        records: list[RootedRecord],
        media: MediaConfig,
        style: PromptStyle,
        processor: Any,
        cutoff_len: int,
        seed: int,
        cache: bool,
    ):
        self.records, self.media, self.style = records, media, style
        self.processor, self.cutoff_len, self.seed, self.cache = processor, cutoff_len, seed, cache
        self._cache: dict[int, dict[str, torch.Tensor] | None] = {}
        self._perms: dict[int, np.ndarray] = {}
        self.skipped = 0

    def __len__(self) -> int:
        return len(self.records)

    def index(self, k: int) -> int:
        epoch, i = divmod(k, len(self.records))
        if epoch not in self._perms:
            self._perms = {epoch: np.random.default_rng([self.seed, epoch]).permutation(len(self.records))}
        return int(self._perms[epoch][i])

    def encode(self, i: int) -> dict[str, torch.Tensor] | None:
        if i in self._cache:
            return self._cache[i]
        from onethinker.modeling.inputs import encode_chat

        item = self.records[i]
        ex = sft_example(item.record, item.root, self.media, self.style)  # type: ignore[arg-type]
        enc = encode_chat(self.processor, ex.messages, ex.images, ex.videos, return_assistant_mask=True)
        enc["slug"] = ex.slug  # type: ignore[assignment]
        if enc["input_ids"].shape[-1] > self.cutoff_len:
            self.skipped += 1
            enc = None
        if self.cache:
            self._cache[i] = enc
        return enc

    def micro_batch(self, position: int, batch_size: int, rank: int = 0, world: int = 1) -> list[dict]:
        start = (position * world + rank) * batch_size
        out = []
        for k in range(start, start + batch_size):
            enc = self.encode(self.index(k))
            if enc is not None:
                out.append(enc)
        return out


def per_sample_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Token cross-entropy summed per sample, and the number of label tokens per sample.

    logits (B, L, V), labels (B, L) with -100 on ignored positions -> (B,), (B,)
    """
    shift_logits = logits[:, :-1].float()  # (B, L-1, V)
    shift_labels = labels[:, 1:]  # (B, L-1)
    mask = shift_labels != -100  # (B, L-1)
    tok = torch.nn.functional.cross_entropy(
        shift_logits.reshape(-1, shift_logits.shape[-1]),
        shift_labels.clamp_min(0).reshape(-1),
        reduction="none",
    ).view_as(shift_labels)  # (B, L-1)
    return (tok * mask).sum(dim=1), mask.sum(dim=1)


def train_sft(
    cfg: SFTConfig,
    records: list[RootedRecord],
    media: MediaConfig,
    style: PromptStyle = "full",
    logger: Logger | None = None,
    stop_after_steps: int | None = None,
    progress: bool = True,
    on_start: Callable[[dict[str, Any] | None], dict[str, Any]] | None = None,
    on_checkpoint: Callable[[int, Path], None] | None = None,
) -> tuple[torch.nn.Module, Any, SFTResult]:
    """Train on the SFT ``records`` and return (model, processor, result). ``stop_after_steps`` simulates an
    interruption.

    ``on_start(state)`` is called once it is known whether training resumes: ``state`` is the resumed
    checkpoint's trainer state (None for a fresh start); what it returns is stored in every checkpoint
    written from then on (the stage keeps its MLflow run id there). ``on_checkpoint(step, path)`` is called
    after each intermediate checkpoint is written (rank 0; the last one is the exported model).
    """
    from onethinker.modeling import load_model, load_processor
    from onethinker.modeling.inputs import collate, model_inputs

    pin_cpu_threads(cfg.cpu_threads)
    seed_everything(cfg.seed)
    dev = device()
    bf16 = use_bf16(cfg.bf16)
    processor = load_processor(cfg.base_model_dir)
    model = load_model(cfg.base_model_dir, dtype=torch.bfloat16 if bf16 else torch.float32).to(dev)
    counts = freeze_vision(model, cfg.freeze_vision_tower, cfg.freeze_projector)
    if use_gradient_checkpointing(cfg.gradient_checkpointing):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    model.train()

    if not records:
        raise ValueError("no SFT records to train on (the manifest lists no sft file, or they are empty)")
    data = SFTData(records, media, style, processor, cfg.cutoff_len, cfg.seed, cfg.cache_encoded)
    pad_id = processor.tokenizer.pad_token_id
    world = int(torch.distributed.get_world_size()) if torch.distributed.is_initialized() else 1
    per_step = cfg.batch_size * cfg.grad_accum * world
    total = cfg.max_steps or max(1, math.ceil(cfg.epochs * len(records) / per_step))
    optim = OptimConfig(
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        warmup_ratio=cfg.warmup_ratio,
        total_steps=total,
        grad_accum=cfg.grad_accum,
        max_grad_norm=cfg.max_grad_norm,
        min_lr_ratio=cfg.min_lr_ratio,
    )
    engine = build_engine(model, optim, cfg.deepspeed, cfg.batch_size)
    world, rank = engine.world_size, engine.rank

    chash = ckpt.config_hash(
        {
            "cfg": cfg.__dict__,
            "n": len(records),
            "style": style,
            "world": world,
            "media": media.__dict__,
            "model": ckpt.model_fingerprint(cfg.base_model_dir),
            "code": ckpt.code_fingerprint(),
        }
    )
    start_step, position = 0, 0
    found = ckpt.latest_checkpoint(Path(cfg.checkpoint_dir), chash)
    if found is not None:
        path, state = found
        ckpt.restore(path, engine)
        start_step, position = int(state["step"]), int(state["position"])
    extra_state = on_start(found[1] if found is not None else None) if on_start is not None else {}

    from tqdm import tqdm

    bar = tqdm(total=total, initial=start_step, desc="sft", unit="step", disable=not progress or rank != 0)
    history: list[dict[str, float]] = []
    tokens_total, t_start = 0, time.perf_counter()
    window: dict[str, list[float]] = defaultdict(list)
    task_sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    t_window, tok_window = time.perf_counter(), 0
    last_loss = float("nan")
    step = start_step
    while step < total:
        for _ in range(cfg.grad_accum):
            batch_list = data.micro_batch(position, cfg.batch_size, rank, world)
            position += 1
            if not batch_list:
                # every sample over the cutoff: keep the accumulation count right with a zero loss
                engine.backward(sum(p.sum() * 0.0 for p in model.parameters() if p.requires_grad))
                continue
            slugs = [b["slug"] for b in batch_list]
            batch = collate([{k: v for k, v in b.items() if k != "slug"} for b in batch_list], pad_id)
            inputs = {k: v.to(dev) for k, v in model_inputs(batch).items()}
            labels = batch["labels"].to(dev)
            out = engine.module(**inputs)
            loss_sum, n_tok = per_sample_loss(out.logits, labels)  # (B,), (B,)
            loss = loss_sum.sum() / n_tok.sum().clamp_min(1)
            engine.backward(loss)
            ntok = int(batch["attention_mask"].sum())
            tokens_total += ntok
            tok_window += ntok
            window["loss"].append(float(loss.detach()))
            for slug, ls, nt in zip(slugs, loss_sum.detach().tolist(), n_tok.tolist(), strict=True):
                task_sums[slug][0] += ls
                task_sums[slug][1] += nt
        grad_norm = engine.step()
        step += 1
        bar.update(1)
        if grad_norm is not None:
            window["grad_norm"].append(grad_norm)
        if step % cfg.log_every == 0 or step == total:
            now = time.perf_counter()
            last_loss = float(np.mean(window["loss"])) if window["loss"] else float("nan")
            metrics = {
                "train/loss": last_loss,
                "train/lr": engine.lr,
                "perf/tokens_per_s": tok_window / max(1e-9, now - t_window),
            }
            if window["grad_norm"]:
                metrics["train/grad_norm"] = float(np.mean(window["grad_norm"]))
            for slug, (ls, nt) in task_sums.items():
                if nt > 0:
                    metrics[f"train/loss/{slug}"] = ls / nt
            history.append({"step": step, **metrics})
            bar.set_postfix(loss=f"{last_loss:.3f}")
            if logger is not None and rank == 0:
                logger(metrics, step)
            window.clear()
            task_sums.clear()
            t_window, tok_window = now, 0
        if step % cfg.save_every == 0 or step == total:
            saved = ckpt.save_checkpoint(
                Path(cfg.checkpoint_dir),
                step,
                engine,
                {"position": position, "config_hash": chash, **extra_state},
                keep=cfg.keep_checkpoints,
            )
            if on_checkpoint is not None and rank == 0 and step < total:
                on_checkpoint(step, saved)
        if stop_after_steps is not None and step >= stop_after_steps and step < total:
            break
    bar.close()
    seconds = time.perf_counter() - t_start
    trained = engine.unwrapped()
    trained.eval()
    trained.config.use_cache = True
    if use_gradient_checkpointing(cfg.gradient_checkpointing):
        trained.gradient_checkpointing_disable()
    result = SFTResult(
        steps=step,
        seconds=seconds,
        tokens=tokens_total,
        final_loss=last_loss,
        skipped_overlong=data.skipped,
        resumed_from=start_step,
        parameters=counts,
        history=history,
        export_state=engine.full_state_dict() if getattr(engine, "zero_stage", 0) == 3 else None,
    )
    return trained, processor, result


def export(model: torch.nn.Module, processor: Any, out_dir: str | Path, result: SFTResult) -> Path:
    """Save the trained model as a plain Hugging Face folder (safetensors), atomically."""
    return save_hf_folder(model, processor, out_dir, result.export_state)
