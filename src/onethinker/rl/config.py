"""The ``grpo`` section of params.yaml: multi-task RL with EMA-GRPO from the SFT checkpoint."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from onethinker.config import Switch, require
from onethinker.generation.config import VLLMConfig
from onethinker.rl.advantages import AdvantageConfig


@dataclass(frozen=True)
class GRPOConfig:
    """EMA-GRPO (or GRPO / Dr.GRPO) on the RL training file, rewards from ``onethinker.rewards``."""

    sft_model_dir: str = "models/sft"
    output_dir: str = "models/grpo"
    checkpoint_dir: str = "checkpoints/grpo"
    metrics_file: str = "metrics/grpo.json"
    plots_dir: str = "reports/grpo"
    """Per-task reward curves: ``reward_curves.csv`` (a DVC plot) and PNGs rendered offline."""
    seed: int = 0
    cpu_threads: int | None = None
    """torch's intra-op CPU threads (``torch.set_num_threads``). CPU float reductions are split by thread
    count, so bit-identical results need the same count on every machine; None keeps torch's default (the
    machine's physical cores)."""
    steps: int = 20
    """RL steps (each: one rollout batch, then ``ppo_epochs`` passes of optimizer updates)."""
    rollout_batch_size: int = 128
    """Prompts sampled per step (per process)."""
    n: int = 8
    """Completions per prompt (the group)."""
    temperature: float = 1.0
    top_p: float = 1.0
    max_response_length: int = 4096
    """Tokens generated per completion at most (the rollout engine stops there)."""
    max_prompt_length: int = 4096
    """Prompts (question, options and media tokens) longer than this many tokens are skipped, counted
    (``train/skipped_overlong_prompts``) and named in a warning; another prompt is drawn in their place.
    Skipped, not truncated: a cut prompt loses its question or breaks the media placeholders."""
    global_batch_size: int = 32
    """Prompts per optimizer update (their n completions each); rollout_batch_size / global_batch_size updates."""
    micro_batch_size: int = 8
    """Sequences per forward/backward pass."""
    ppo_epochs: int = 1
    lr: float = 2e-6
    weight_decay: float = 0.01
    warmup_ratio: float = 0.0
    max_grad_norm: float = 1.0
    clip_low: float = 0.2
    clip_high: float = 0.3
    loss_agg: Literal["token-mean", "seq-mean-token-sum-norm", "seq-mean-token-mean"] = "token-mean"
    kl_coef: float = 0.0
    """KL loss to the frozen SFT model (k3 estimator); 0 = off, as in the released recipe."""
    entropy_coef: float = 0.0
    online_filter: bool = True
    filter_low: float = 0.01
    filter_high: float = 0.99
    """Groups whose mean accuracy lies outside [filter_low, filter_high] are dropped."""
    max_filter_retries: int = 2
    """Extra sampling rounds per step to refill a batch thinned by the filter."""
    advantage: AdvantageConfig = field(default_factory=AdvantageConfig)
    engine: Literal["hf", "vllm"] = "hf"
    """Rollout engine: ``hf`` (``generate`` on the policy) or ``vllm`` (colocated; the stage checks it is installed)."""
    vllm: VLLMConfig = field(default_factory=VLLMConfig)
    """vLLM settings, read when ``engine: vllm``."""
    generation_batch_size: int = 64
    freeze_vision_tower: bool = True
    freeze_projector: bool = True
    gradient_checkpointing: Switch = "auto"
    bf16: Switch = "auto"
    deepspeed: str | None = None
    log_every: int = 1
    save_every: int = 10
    keep_checkpoints: int = 2
    rollout_table_every: int = 10
    """Every K steps, log a sample of rollouts per task as an MLflow table."""
    rollout_table_per_task: int = 2
    heldout_per_task: int = 10
    heldout_max_new_tokens: int = 160
    log_mlflow: bool = True

    def validate(self, key: str) -> None:
        require(self.steps >= 1, f"{key}.steps", "must be >= 1")
        require(
            self.cpu_threads is None or self.cpu_threads >= 1, f"{key}.cpu_threads", "must be >= 1 or null"
        )
        require(self.n >= 2, f"{key}.n", "a group needs at least 2 completions")
        require(self.rollout_batch_size >= 1, f"{key}.rollout_batch_size", "must be >= 1")
        require(
            1 <= self.global_batch_size <= self.rollout_batch_size,
            f"{key}.global_batch_size",
            "must be in 1..rollout_batch_size",
        )
        require(self.micro_batch_size >= 1, f"{key}.micro_batch_size", "must be >= 1")
        per_update = self.global_batch_size * self.n
        require(
            per_update % self.micro_batch_size == 0,
            f"{key}.micro_batch_size",
            f"must divide global_batch_size * n = {per_update} (an update's sequences split into whole "
            f"micro-batches), got {self.micro_batch_size}",
        )
        require(self.generation_batch_size >= 1, f"{key}.generation_batch_size", "must be >= 1")
        require(self.ppo_epochs >= 1, f"{key}.ppo_epochs", "must be >= 1")
        require(self.temperature > 0, f"{key}.temperature", "must be positive")
        require(0 < self.top_p <= 1, f"{key}.top_p", "must be in (0, 1]")
        require(self.max_response_length >= 1, f"{key}.max_response_length", "must be >= 1")
        require(self.max_prompt_length >= 1, f"{key}.max_prompt_length", "must be >= 1")
        require(0 < self.lr < 1, f"{key}.lr", "must be in (0, 1)")
        require(self.weight_decay >= 0, f"{key}.weight_decay", "must be >= 0")
        require(0 <= self.warmup_ratio < 1, f"{key}.warmup_ratio", "must be in [0, 1)")
        require(
            math.isfinite(self.max_grad_norm) and self.max_grad_norm > 0,
            f"{key}.max_grad_norm",
            "must be positive (a negative norm would flip the gradient's sign)",
        )
        require(0 <= self.clip_low < 1, f"{key}.clip_low", "must be in [0, 1)")
        require(self.clip_high >= 0, f"{key}.clip_high", "must be >= 0")
        require(self.kl_coef >= 0, f"{key}.kl_coef", "must be >= 0")
        require(self.entropy_coef >= 0, f"{key}.entropy_coef", "must be >= 0")
        require(
            0 <= self.filter_low < self.filter_high <= 1,
            f"{key}.filter_low",
            "need 0 <= filter_low < filter_high <= 1",
        )
        require(self.max_filter_retries >= 0, f"{key}.max_filter_retries", "must be >= 0")
        require(self.log_every >= 1, f"{key}.log_every", "must be >= 1")
        require(self.save_every >= 1, f"{key}.save_every", "must be >= 1")
        require(
            self.keep_checkpoints >= 1,
            f"{key}.keep_checkpoints",
            "must be >= 1 (the checkpoint `latest` points to is always kept)",
        )
        require(self.rollout_table_every >= 1, f"{key}.rollout_table_every", "must be >= 1")
        require(self.rollout_table_per_task >= 0, f"{key}.rollout_table_per_task", "must be >= 0")
        require(self.heldout_per_task >= 0, f"{key}.heldout_per_task", "must be >= 0")
        require(self.heldout_max_new_tokens >= 1, f"{key}.heldout_max_new_tokens", "must be >= 1")
