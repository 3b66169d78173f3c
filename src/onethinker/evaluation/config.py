"""The ``evaluate`` section of params.yaml."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from onethinker.config import ConfigError
from onethinker.generation.config import VLLMConfig


@dataclass(frozen=True)
class EvaluateConfig:
    """Benchmark evaluation of several checkpoints with the field's official metrics."""

    models: list[str] = field(default_factory=lambda: ["base", "sft", "grpo"])
    """Models to evaluate, by name; each is the folder ``models/<name>`` unless ``model_dirs`` says otherwise."""
    model_dirs: dict[str, str] = field(default_factory=dict)
    benchmarks: list[str] = field(default_factory=list)
    """Evaluation JSON files (OneThinker format); empty = every file the prepare stage wrote."""
    media_root: str | None = None
    """Media root for ``benchmarks`` given here (default: the prepared data's media root)."""
    max_per_benchmark: int | None = None
    """Evaluate at most this many records per benchmark (None = all)."""
    max_new_tokens: int = 160
    """Tokens generated per answer at most."""
    max_prompt_length: int = 4096
    """Prompts (question, options and media tokens) longer than this many tokens are not generated: the
    sample scores 0, a warning names it and ``skipped_overlong_prompts`` counts it (skipped rather than
    truncated: a cut prompt loses its question or breaks the media placeholders)."""
    batch_size: int = 32
    engine: Literal["hf", "vllm"] = "hf"
    """``hf``: Hugging Face ``generate``; ``vllm``: vLLM's offline engine (GPU workers; checked at load)."""
    vllm: VLLMConfig = field(default_factory=VLLMConfig)
    """vLLM settings, read when ``engine: vllm``."""
    mask_decoder: Literal["grabcut", "sam2"] = "grabcut"
    sam2_config: str | None = None
    sam2_checkpoint: str | None = None
    metrics_file: str = "metrics/eval.json"
    reports_dir: str = "reports/eval"
    """Per-sample predictions (JSONL) and PNG plots."""
    cache_dir: str = "checkpoints/eval"
    """Already-scored samples per model fingerprint: a re-run only generates what is missing."""
    cpu_threads: int | None = None
    """torch's intra-op CPU threads (``torch.set_num_threads``). CPU float reductions are split by thread
    count, so bit-identical results need the same count on every machine; None keeps torch's default (the
    machine's physical cores)."""
    log_mlflow: bool = True

    def validate(self, key: str) -> None:
        if not self.models:
            raise ConfigError(f"{key}.models: list at least one model")
        if self.max_per_benchmark is not None and self.max_per_benchmark < 1:
            raise ConfigError(f"{key}.max_per_benchmark: must be >= 1 or null")
        if self.cpu_threads is not None and self.cpu_threads < 1:
            raise ConfigError(f"{key}.cpu_threads: must be >= 1 or null")
        if self.batch_size < 1:
            raise ConfigError(f"{key}.batch_size: must be >= 1")
        if self.max_new_tokens < 1:
            raise ConfigError(f"{key}.max_new_tokens: must be >= 1")
        if self.max_prompt_length < 1:
            raise ConfigError(f"{key}.max_prompt_length: must be >= 1")
        if self.mask_decoder == "sam2" and not (self.sam2_config and self.sam2_checkpoint):
            raise ConfigError(f"{key}.mask_decoder: sam2 needs {key}.sam2_config and {key}.sam2_checkpoint")

    def model_dir(self, name: str) -> str:
        return self.model_dirs.get(name, f"models/{name}")
