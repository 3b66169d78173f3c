"""The ``register`` section of params.yaml: which checkpoint goes to the MLflow model registry, and the gate.

Light on purpose (no mlflow or torch import), so ``onethinker.config.load_params`` can register it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from onethinker.config import require

_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


@dataclass(frozen=True)
class FloorsConfig:
    """Absolute floors a candidate must reach to become the *first* champion (no champion to beat yet)."""

    mean_accuracy: float = 0.0
    """Minimum ``mean_accuracy`` of the model's entry in ``metrics/eval.json``."""
    format_rate: float = 0.0
    """Minimum ``format_rate`` (share of well-formed ``<think>…</think><answer>…</answer>`` replies)."""

    def validate(self, key: str) -> None:
        require(0.0 <= self.mean_accuracy <= 1.0, f"{key}.mean_accuracy", "must be in [0, 1]")
        require(0.0 <= self.format_rate <= 1.0, f"{key}.format_rate", "must be in [0, 1]")


@dataclass(frozen=True)
class GateConfig:
    """Promotion gate: when does a candidate replace the current ``champion``."""

    margin: float = 0.01
    """The candidate's aggregate (``mean_accuracy``) must be at least the champion's plus this.
    0 lets a tie through."""
    task_tolerance: float = 0.05
    """No task's accuracy may drop below the champion's by more than this (absolute)."""
    floors: FloorsConfig = field(default_factory=FloorsConfig)
    """Used instead of the comparison when there is no champion (or the champion carries no scores)."""

    def validate(self, key: str) -> None:
        require(0.0 <= self.margin < 1.0, f"{key}.margin", "must be in [0, 1)")
        require(0.0 <= self.task_tolerance <= 1.0, f"{key}.task_tolerance", "must be in [0, 1]")


@dataclass(frozen=True)
class RegistryConfig:
    """The ``register`` stage and the ``promote`` / ``rollback`` commands."""

    name: str = "onethinker"
    """Registered model name in the MLflow model registry."""
    model: str = "grpo"
    """Which model to register: its key in ``metrics/eval.json``'s ``models``."""
    model_dir: str = "models/grpo"
    """The saved Hugging Face folder of that model (becomes the pyfunc model's artifact)."""
    eval_metrics: str = "metrics/eval.json"
    """The ``evaluate`` stage's metrics; the gate reads ``models.<model>``; ``mlflow_run_id`` links the run."""
    train_metrics: str | None = "metrics/grpo.json"
    """The training stage's metrics file; its ``mlflow_run_id`` / ``mlflow_model_id`` (when present) link the
    training run and its logged model (tags ``training_run_id``, ``grpo_run_id``, ``grpo_model_id``)."""
    sft_metrics: str | None = "metrics/sft.json"
    """The SFT stage's metrics file: links the SFT run and its logged model (``sft_run_id``, ``sft_model_id``)."""
    registry_file: str = "metrics/registry.json"
    """Decisions: ``{"champion_version", ..., "latest": {...}, "history": [...]}`` (a DVC metrics file)."""
    params_file: str = "params.yaml"
    """Hashed into the ``params_hash`` tag of each version."""
    data_out: str = "data"
    """DVC output whose hash (computed from the files as DVC does; dvc.lock's when absent) becomes the
    ``dvc.data_hash`` tag."""
    max_new_tokens: int = 256
    """Default generation budget of the logged model's ``predict`` (a per-call ``params`` override exists)."""
    gate: GateConfig = field(default_factory=GateConfig)

    def validate(self, key: str) -> None:
        require(
            bool(_NAME_OK.match(self.name)),
            f"{key}.name",
            f"{self.name!r} is not a valid registered model name (letters, digits, _ . -)",
        )
        require(bool(self.model.strip()), f"{key}.model", "must not be empty")
        require(bool(self.model_dir.strip()), f"{key}.model_dir", "must not be empty")
        require(bool(self.eval_metrics.strip()), f"{key}.eval_metrics", "must not be empty")
        require(bool(self.registry_file.strip()), f"{key}.registry_file", "must not be empty")
        require(self.max_new_tokens >= 1, f"{key}.max_new_tokens", "must be >= 1")
