"""The annotate stage's only calls into the rest of the project: the prompt rule and the reward.

Kept in one small module so they are easy to re-point (a new prompt contract, a reward run in a worker).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from onethinker.contract import Record
from onethinker.contract.prompts import PromptStyle

if TYPE_CHECKING:
    from onethinker.rewards.options import RewardConfig


def prompt_text(record: Record, style: PromptStyle) -> str:
    """The user text the model is trained and evaluated with for ``record`` (the contract's prompt rule)."""
    return record.prompt(style)


def slug_of(record: Record) -> str:
    """The task slug used in metrics (``multiple_choice`` ...)."""
    return record.slug


def score(record: Record, responses: Sequence[str], options: RewardConfig | None = None) -> list[dict]:
    """The project's reward for each response to ``record`` (``overall``, ``accuracy``, ``format`` ...), under
    the ``reward`` params' time and size budget, as ``sft`` and ``evaluate`` score."""
    from onethinker.rewards import compute_score

    return compute_score([record.reward_item(text) for text in responses], options=options)
