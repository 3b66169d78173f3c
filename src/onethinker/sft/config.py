"""The ``sft`` section of params.yaml: the supervised chain-of-thought cold start."""

from __future__ import annotations

from dataclasses import dataclass

from onethinker.config import Switch, require


@dataclass(frozen=True)
class SFTConfig:
    """Full fine-tune of the language model on the sharegpt CoT files, vision tower and projector frozen."""

    base_model_dir: str = "models/base"
    """The ``base_model`` stage's output (a Hugging Face folder)."""
    output_dir: str = "models/sft"
    """Final model (a plain Hugging Face folder)."""
    checkpoint_dir: str = "checkpoints/sft"
    """Resumable checkpoints (kept outside the DVC output, so an interrupted stage resumes)."""
    metrics_file: str = "metrics/sft.json"
    seed: int = 0
    cpu_threads: int | None = None
    """torch's intra-op CPU threads (``torch.set_num_threads``). CPU float reductions are split by thread
    count, so bit-identical results need the same count on every machine; None keeps torch's default (the
    machine's physical cores)."""
    epochs: float = 1.0
    """Passes over the SFT data (fractions allowed); ignored when ``max_steps`` is set."""
    max_steps: int | None = None
    """Optimizer steps; overrides ``epochs``."""
    batch_size: int = 8
    """Micro-batch per process."""
    grad_accum: int = 1
    """Micro-batches per optimizer step."""
    lr: float = 1e-5
    weight_decay: float = 0.0
    warmup_ratio: float = 0.02
    min_lr_ratio: float = 0.0
    """Cosine decays to ``lr * min_lr_ratio``."""
    max_grad_norm: float = 1.0
    cutoff_len: int = 16384
    """Longer samples (prompt + media tokens + answer) are skipped and counted."""
    freeze_vision_tower: bool = True
    freeze_projector: bool = True
    """The vision-language merger (and Qwen3-VL's deepstack mergers)."""
    gradient_checkpointing: Switch = "auto"
    """auto: on when a GPU is present."""
    bf16: Switch = "auto"
    """auto: bf16 weights and compute when the GPU supports it; fp32 on CPU."""
    deepspeed: str | None = None
    """A DeepSpeed JSON config (infra/deepspeed/zero3.json ...); None trains with plain PyTorch."""
    cache_encoded: bool = True
    """Keep encoded samples in memory after the first epoch (small data sets only)."""
    log_every: int = 10
    save_every: int = 100
    keep_checkpoints: int = 2
    heldout_per_task: int = 10
    """Held-out check: records per evaluation benchmark (the same sample as the GRPO stage's)."""
    heldout_max_new_tokens: int = 160
    generation_batch_size: int = 32
    log_mlflow: bool = True

    def validate(self, key: str) -> None:
        require(self.epochs > 0, f"{key}.epochs", "must be positive")
        require(
            self.cpu_threads is None or self.cpu_threads >= 1, f"{key}.cpu_threads", "must be >= 1 or null"
        )
        require(self.max_steps is None or self.max_steps >= 1, f"{key}.max_steps", "must be >= 1 or null")
        require(self.batch_size >= 1, f"{key}.batch_size", "must be >= 1")
        require(self.grad_accum >= 1, f"{key}.grad_accum", "must be >= 1")
        require(0 < self.lr < 1, f"{key}.lr", "must be in (0, 1)")
        require(0 <= self.warmup_ratio < 1, f"{key}.warmup_ratio", "must be in [0, 1)")
        require(0 <= self.min_lr_ratio <= 1, f"{key}.min_lr_ratio", "must be in [0, 1]")
        require(self.max_grad_norm > 0, f"{key}.max_grad_norm", "must be positive")
        require(self.cutoff_len >= 16, f"{key}.cutoff_len", "must be >= 16")
        require(self.log_every >= 1, f"{key}.log_every", "must be >= 1")
        require(self.save_every >= 1, f"{key}.save_every", "must be >= 1")
        require(self.keep_checkpoints >= 1, f"{key}.keep_checkpoints", "must be >= 1")
        require(self.heldout_per_task >= 0, f"{key}.heldout_per_task", "must be >= 0")
