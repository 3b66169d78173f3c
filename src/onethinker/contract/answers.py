"""The answer syntax: ``<think>…</think><answer>…</answer>``, and the one parser every stage uses.

The published OneThinker reward (``EasyR1/verl/reward_function/onethinker_reward.py``) defines it:

- a response is first *normalised*: the whitespace around every ``<``, ``>`` and ``/`` is deleted
  (``re.sub(r"\\s*(<|>|/)\\s*", r"\\1", response)``);
- it is *well formed* iff it is ``<think>…</think><answer>…</answer>`` up to outer whitespace
  (``\\A\\s*<think>.*?</think>\\s*<answer>.*?</answer>\\s*\\Z``);
- its *answer* is the stripped content of the first answer block,
  ``re.search(r"<answer>\\s*(.*?)\\s*</answer>", text, re.DOTALL).group(1).strip()``: the first ``<answer>``
  and the first ``</answer>`` after it (so ``x</answer><answer>y</answer>`` answers ``y``).

The regular expressions are kept (``*_reference``) and linear-time equivalents built on ``str.find`` are
what the stages run; property tests hold the two to the same results on arbitrary text.

On top of these, three rules that every consumer shares:

- :func:`graded_answer`: the text a response is graded on (the answer block of the normalised response, or
  the whole normalised response when it has none or an empty one), as the reward grades it;
- :func:`truth_answer`: the answer inside a ground truth (``<answer>…</answer>`` optional);
- :func:`split_response`: think, answer and the format verdict, for the served model.
"""

from __future__ import annotations

import re
from typing import NamedTuple

# ---------------------------------------------------------------------------------------------------
# The published reward's regular expressions (the definition)
# ---------------------------------------------------------------------------------------------------

THINK_ANSWER_RE = re.compile(r"\A\s*<think>.*?</think>\s*<answer>.*?</answer>\s*\Z", re.DOTALL)
ANSWER_RE = re.compile(r"<answer>\s*(.*?)\s*</answer>", re.DOTALL)
TAG_SPACE_RE = re.compile(r"\s*(<|>|/)\s*")


def normalize_reference(text: str) -> str:
    """Delete the whitespace around every ``<``, ``>`` and ``/`` (the published regex)."""
    return TAG_SPACE_RE.sub(r"\1", text)


def has_format_reference(normalized: str) -> bool:
    return THINK_ANSWER_RE.fullmatch(normalized) is not None


def extract_answer_reference(text: str) -> str | None:
    m = ANSWER_RE.search(text)
    return m.group(1).strip() if m else None


# ---------------------------------------------------------------------------------------------------
# Linear-time equivalents (what the stages run)
# ---------------------------------------------------------------------------------------------------

_SPECIAL_SPLIT = re.compile(r"([<>/])")
_CLOSE_THEN_OPEN = re.compile(r"</think>\s*<answer>")
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"


def normalize(text: str) -> str:
    """Same result as :func:`normalize_reference`, in linear time.

    Cut the text at every special character; each piece between two cuts loses its whitespace on
    the sides that touch one.
    """
    if "<" not in text and ">" not in text and "/" not in text:
        return text
    if "\0" in text:
        parts = _SPECIAL_SPLIT.split(text)  # text, special, text, ..., text
    else:  # the same split, by C-level replaces
        parts = text.replace("<", "\0<\0").replace(">", "\0>\0").replace("/", "\0/\0").split("\0")
    last = len(parts) - 1
    parts[0] = parts[0].rstrip()
    parts[last] = parts[last].lstrip()
    for i in range(2, last, 2):
        parts[i] = parts[i].strip()
    return "".join(parts)


def has_format(normalized: str) -> bool:
    """Same result as :func:`has_format_reference`: ws, <think>, *, </think>, ws, <answer>, *, </answer>, ws."""
    s = normalized.strip()
    if not (s.startswith(THINK_OPEN) and s.endswith(ANSWER_CLOSE)):
        return False
    # The first "</think> <answer>" after the opening tag; later ones end later, so only it can fit.
    m = _CLOSE_THEN_OPEN.search(s, len(THINK_OPEN))
    return m is not None and m.end() <= len(s) - len(ANSWER_CLOSE)


def _first_block(text: str, open_tag: str, close_tag: str) -> str | None:
    i = text.find(open_tag)
    if i < 0:
        return None
    j = text.find(close_tag, i + len(open_tag))
    if j < 0:
        return None
    return text[i + len(open_tag) : j].strip()


def extract_answer(text: str) -> str | None:
    """Same result as :func:`extract_answer_reference`: the stripped content of the first answer block
    (the first ``<answer>`` and the first ``</answer>`` after it), or None when there is none."""
    return _first_block(text, ANSWER_OPEN, ANSWER_CLOSE)


# ---------------------------------------------------------------------------------------------------
# The shared rules
# ---------------------------------------------------------------------------------------------------


def wrap_answer(answer: str) -> str:
    return f"{ANSWER_OPEN}{answer}{ANSWER_CLOSE}"


def format_response(think: str, answer: str) -> str:
    """The well-formed reply: ``<think>{think}</think><answer>{answer}</answer>``."""
    return f"{THINK_OPEN}{think}{THINK_CLOSE}{wrap_answer(answer)}"


def inner_answer(text: str) -> str:
    """The content of the first answer block, else the whole text, stripped (``eval_bench.py``'s
    ``extract_answer``): what validation checks a ground truth's shape on."""
    found = extract_answer(text)
    return found if found is not None else text.strip()


def truth_answer(ground_truth: str) -> str:
    """The answer inside a ground truth: its answer block's content, else the text itself (the reward's
    ``extract_answer(gt) or gt``; the wrapper is optional in the release's files)."""
    return extract_answer(ground_truth) or ground_truth


def graded_answer(response: str) -> str:
    """The text a response is graded on: the first answer block of the normalised response, or the whole
    normalised response (stripped) when it has no answer block or an empty one (the reward's rule)."""
    norm = normalize(response)
    return extract_answer(norm) or norm.strip()


class ResponseParts(NamedTuple):
    """A reply as the reward reads it (after normalisation)."""

    think: str  # the first think block ("" when missing)
    answer: str  # the first answer block ("" when missing)
    well_formed: bool  # <think>…</think><answer>…</answer> up to outer whitespace


def split_response(response: str) -> ResponseParts:
    norm = normalize(response)
    return ResponseParts(
        _first_block(norm, THINK_OPEN, THINK_CLOSE) or "",
        extract_answer(norm) or "",
        has_format(norm),
    )
