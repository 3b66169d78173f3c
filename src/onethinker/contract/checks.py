"""Record rules beyond structure: length limits, media confined to their root.

Both validation (``onethinker.validation``) and every stage that reads records apply them, so a record that
validation refuses never trains silently when ``validate`` was skipped:

- **length** (``prompt_length``, ``response_length``): the text a record puts in the prompt (RL/evaluation:
  ``problem`` plus its ``options``; SFT: the user turns) holds at most ``validate.max_prompt_chars`` characters,
  and an SFT record's assistant turn (the training target) at most ``validate.max_response_chars``. Characters,
  not tokens, so the rule needs no tokenizer and reads the same in validation and in every stage; the token
  budgets (``grpo.max_prompt_length``, ``evaluate.max_prompt_length``, ``sft.cutoff_len``) still apply to
  the whole rendered prompt with its media tokens;
- **media inside the root** (``media_in_root``): every media path, resolved by the release's rule
  (``MediaRoot.resolve``), stays inside its named root once ``..`` and symbolic links are resolved: no
  ``../../x.png``, no absolute path elsewhere, no link pointing out.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from onethinker.contract.media import MediaRoot
from onethinker.contract.records import Problem, sft_turns


@dataclass(frozen=True)
class LengthLimits:
    """Character limits on a record's prompt text and on an SFT record's response (``data.*`` params)."""

    max_prompt_chars: int
    max_response_chars: int


def prompt_chars(record: Mapping[str, Any], kind: str) -> int:
    """Characters of prompt text a record carries: ``problem`` plus its options (RL, evaluation), the user
    turns (SFT). Fields of the wrong type count 0 (other rules report them)."""
    if kind == "sft":
        user, _ = sft_turns(record.get("messages"))
        return len(user or "")
    problem = record.get("problem")
    options = record.get("options")
    n = len(problem) if isinstance(problem, str) else 0
    if isinstance(options, list):
        n += sum(len(o) for o in options if isinstance(o, str))
    return n


def response_chars(record: Mapping[str, Any], kind: str) -> int | None:
    """Characters of an SFT record's assistant turn (None for RL and evaluation records: their responses
    are generated, bounded by ``max_response_length`` / ``max_new_tokens``)."""
    if kind != "sft":
        return None
    _, assistant = sft_turns(record.get("messages"))
    return len(assistant or "")


def length_problems(record: Mapping[str, Any], kind: str, limits: LengthLimits) -> list[Problem]:
    """The length rules a raw record breaks (``prompt_length``, ``response_length``)."""
    out = []
    n = prompt_chars(record, kind)
    if n > limits.max_prompt_chars:
        out.append(
            Problem(
                "messages" if kind == "sft" else "problem",
                "prompt_length",
                f"the prompt text holds {n} characters, over validate.max_prompt_chars={limits.max_prompt_chars}",
            )
        )
    r = response_chars(record, kind)
    if r is not None and r > limits.max_response_chars:
        out.append(
            Problem(
                "messages",
                "response_length",
                f"the assistant turn holds {r} characters, over validate.max_response_chars="
                f"{limits.max_response_chars}",
            )
        )
    return out


def escaping_media(paths: list[str], root: MediaRoot, kind: str) -> Iterator[str]:
    """The paths that resolve outside ``root`` (after ``..`` and symbolic links)."""
    for path in paths:
        if not root.contains(root.resolve(path, kind)):
            yield path


def media_root_message(path: str, root: MediaRoot) -> str:
    """The ``media_in_root`` message: the same words whether or not the file exists."""
    return f"media {path!r} resolves outside the media root {root.name!r}"
