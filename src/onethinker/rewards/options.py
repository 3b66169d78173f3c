"""Reward options: the ``reward`` section of params.yaml (``onethinker.config.RewardConfig``, kept there so
loading params stays light), and the options in force for one scoring call.

``compute_score(items, options=...)`` (and the per-item reference) score under one ``RewardConfig``; the
graders read them through :func:`current`, so the per-task functions keep their published signature
``(answer, ground_truth, data_type)``. ``PARITY`` is the published reward's behaviour (no strict math check);
the time and size budget holds in every mode (the published reward would stall on some answers).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

from onethinker.config import RewardConfig

__all__ = ["DEFAULT", "PARITY", "RewardConfig", "current", "using"]


DEFAULT = RewardConfig()
PARITY = RewardConfig(math_strict=False)
"""The published OneThinker reward's numbers on every answer it scores within the budget."""

_CURRENT: contextvars.ContextVar[RewardConfig] = contextvars.ContextVar("onethinker_reward_options")


def current() -> RewardConfig:
    """The options of the scoring call in progress (``DEFAULT`` outside one)."""
    return _CURRENT.get(DEFAULT)


@contextlib.contextmanager
def using(options: RewardConfig | None) -> Iterator[RewardConfig]:
    """Score under ``options`` (None: the defaults) for the duration of the block (per thread/context)."""
    opts = options if options is not None else DEFAULT
    token = _CURRENT.set(opts)
    try:
        yield opts
    finally:
        _CURRENT.reset(token)
