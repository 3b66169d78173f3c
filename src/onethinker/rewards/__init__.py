"""Rewards for every OneThinker task, compatible with the published OneThinker reward.

``compute_score(items, format_weight=0.1)`` scores a batch (batched, fast);
``onethinker.rewards.reference.compute_score`` is the per-item reference of the same definition;
``summarize(items, scores)`` gives per-task counters; ``register_task`` adds a task by name.
``compute_score(items, options=PARITY)`` gives the published reward's numbers (strict math off); every
symbolic comparison runs under a time and size budget (:mod:`onethinker.rewards.sandbox`).
See :mod:`onethinker.rewards.scoring` for the definition, :mod:`onethinker.rewards.definitions` for
each task's reward, :mod:`onethinker.rewards.batched` for how the batched path is made fast.

Benchmark (batched vs reference on a mixed batch of 10,000 responses)::

    python tests/benchmarks/bench_rewards.py [--warm]
"""

from onethinker.rewards.judge import HttpJudge, JudgeError
from onethinker.rewards.options import PARITY, RewardConfig
from onethinker.rewards.parsing import MALFORMED_REASONS
from onethinker.rewards.registry import (
    REGISTRY,
    BatchScores,
    FastPathError,
    Task,
    TaskBatch,
    fallbacks,
    get_task,
    register_task,
    unregister_task,
)
from onethinker.rewards.scoring import compute_score, item_slug, summarize


def clear_caches() -> None:
    """Forget memoised grades and stems, and math-verify's and sympy's caches, here and in the grading worker
    (for cold-start timings)."""
    from onethinker.rewards.batched import clear_caches as clear_batched
    from onethinker.rewards.sandbox import sandbox

    clear_batched()
    if sandbox().running():
        sandbox().call("clear", [], 60.0)
    try:
        from math_verify.parser import parse_expr_cached, parse_latex_cached

        parse_expr_cached.cache_clear()
        parse_latex_cached.cache_clear()
    except Exception:  # noqa: BLE001 - optional internals
        pass
    try:
        from sympy.core.cache import clear_cache

        clear_cache()
    except Exception:  # noqa: BLE001
        pass


__all__ = [
    "MALFORMED_REASONS",
    "PARITY",
    "REGISTRY",
    "BatchScores",
    "FastPathError",
    "RewardConfig",
    "HttpJudge",
    "JudgeError",
    "Task",
    "TaskBatch",
    "clear_caches",
    "compute_score",
    "fallbacks",
    "get_task",
    "item_slug",
    "register_task",
    "summarize",
    "unregister_task",
]
