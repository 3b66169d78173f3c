"""The MLflow model registry stage: log the final checkpoint as a pyfunc model, register it, gate promotion.

- ``config``: ``RegistryConfig`` (the ``register`` section of params.yaml; light, no mlflow import).
- ``gate``: the promotion gate as pure functions (``decide``, ``scores_from_eval``).
- ``pyfunc``: ``OneThinkerPyfunc``, the served model (question + image/video path -> think and answer).
- ``core``: ``register_model`` (the ``register`` stage), ``promote``, ``rollback`` (by hand).

Names are imported lazily, so loading params does not import mlflow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from onethinker.registry.config import FloorsConfig, GateConfig, RegistryConfig

if TYPE_CHECKING:
    from onethinker.registry.core import (
        PromotionResult,
        RegistrationResult,
        RegistryError,
        aliases,
        format_result,
        promote,
        register_model,
        register_version,
        rollback,
    )
    from onethinker.registry.gate import GateDecision, Scores, decide, scores_from_eval
    from onethinker.registry.pyfunc import OneThinkerPyfunc, parse_response

_LAZY = {
    "PromotionResult": "core",
    "RegistrationResult": "core",
    "RegistryError": "core",
    "aliases": "core",
    "format_result": "core",
    "promote": "core",
    "register_model": "core",
    "register_version": "core",
    "rollback": "core",
    "GateDecision": "gate",
    "Scores": "gate",
    "decide": "gate",
    "scores_from_eval": "gate",
    "OneThinkerPyfunc": "pyfunc",
    "parse_response": "pyfunc",
}

__all__ = [
    "FloorsConfig",
    "GateConfig",
    "GateDecision",
    "OneThinkerPyfunc",
    "PromotionResult",
    "RegistrationResult",
    "RegistryConfig",
    "RegistryError",
    "Scores",
    "aliases",
    "decide",
    "format_result",
    "parse_response",
    "promote",
    "register_model",
    "register_version",
    "rollback",
    "scores_from_eval",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
