"""Reward options: the ``reward`` section of params.yaml, and the options in force for one scoring call.

``compute_score(items, options=...)`` (and the per-item reference) score under one ``RewardOptions``; the
graders read them through :func:`current`, so the per-task functions keep their published signature
``(answer, ground_truth, data_type)``. ``PARITY`` is the published reward's behaviour (no strict math check);
the time and size budget holds in every mode (the published reward would stall on some answers).
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator
from dataclasses import dataclass, replace

from onethinker.config import require


@dataclass(frozen=True)
class RewardOptions:
    """How answers are graded (read by sft's and grpo's held-out checks, grpo's rewards and evaluate)."""

    math_strict: bool = True
    """Math answers must be the final expression and nothing more: ``\\frac{1}{2}+1``, ``2*\\frac{1}{2}`` or
    ``not \\frac{1}{2}`` do not equal ``\\frac{1}{2}`` (the published reward, math-verify, accepts them).
    ``false`` restores the published behaviour (parity mode)."""
    timeout_s: float = 10.0
    """Budget per symbolic comparison (multiple choice through mathruler/sympy, math through math-verify), in
    seconds of wall time. It runs in a worker process that is killed at the deadline, so the budget holds in
    any thread or process; an answer over it scores 0 and is counted as ``timeout``. The default leaves room
    for math-verify's own limits (5 s to parse, 5 s to verify), so a comparison the published reward finishes
    is not cut short; the answers that would stall it are turned away by the pre-screen in microseconds."""
    max_answer_chars: int = 2000
    """Longer answers (and ones whose symbolic evaluation is known to explode: power towers, huge exponents,
    deep nesting) are not compared symbolically: accuracy 0, counted as ``timeout``."""

    max_text_chars: int = 20000
    """OCR and open-ended answers longer than this are not compared (edit distance and ROUGE grow with the
    answer's length: a 1e6-character answer takes tens of seconds): accuracy 0, counted as ``timeout``."""

    def validate(self, key: str) -> None:
        require(
            math.isfinite(self.timeout_s) and 0 < self.timeout_s <= 600,
            f"{key}.timeout_s",
            "must be in (0, 600]",
        )
        require(self.max_answer_chars >= 1, f"{key}.max_answer_chars", "must be >= 1")
        require(self.max_text_chars >= 1, f"{key}.max_text_chars", "must be >= 1")

    def parity(self) -> RewardOptions:
        """These options with the published reward's grading (``math_strict`` off)."""
        return replace(self, math_strict=False)


DEFAULT = RewardOptions()
PARITY = RewardOptions(math_strict=False)
"""The published OneThinker reward's numbers on every answer it scores within the budget."""

_CURRENT: contextvars.ContextVar[RewardOptions] = contextvars.ContextVar("onethinker_reward_options")


def current() -> RewardOptions:
    """The options of the scoring call in progress (``DEFAULT`` outside one)."""
    return _CURRENT.get(DEFAULT)


@contextlib.contextmanager
def using(options: RewardOptions | None) -> Iterator[RewardOptions]:
    """Score under ``options`` (None: the defaults) for the duration of the block (per thread/context)."""
    opts = options if options is not None else DEFAULT
    token = _CURRENT.set(opts)
    try:
        yield opts
    finally:
        _CURRENT.reset(token)
