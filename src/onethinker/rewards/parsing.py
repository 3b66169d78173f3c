"""Response parsing shared by the rewards: tag normalisation, the format check, answer extraction,
numbers and JSON shapes.

Two versions of the text steps live here: the published reward's regular expressions
(``*_reference``, used by the per-item reference) and linear-time equivalents built on ``str.find``
(used by the batched scorer). Property tests check that both agree on arbitrary text.

"Is a number" means Python's ``float()`` accepts the value, so numeric strings, booleans, "nan" and
"inf" count, as in the published reward. Ground-truth numbers must in addition be finite.
"""

from __future__ import annotations

import json
import math
import re

# ---------------------------------------------------------------------------------------------------
# Reasons (short machine-readable strings explaining lost points)
# ---------------------------------------------------------------------------------------------------

BAD_ITEM = "bad_item"  # the item is not a mapping, or response / problem_type / data_type has a wrong type
NO_THINK_ANSWER = "no_think_answer"  # format 0: not <think>...</think><answer>...</answer>
NO_ANSWER = "no_answer"  # no <answer>...</answer> block: the whole response stood as the answer
EMPTY_ANSWER = "empty_answer"  # an empty <answer></answer> block
UNKNOWN_PROBLEM_TYPE = "unknown_problem_type"
UNKNOWN_DATA_TYPE = "unknown_data_type"  # segmentation on a data_type other than image / video
BAD_GROUND_TRUTH = "bad_ground_truth"  # the ground truth is not a string, or lacks what the task needs
JSON_UNPARSEABLE = "json_unparseable"
NOT_AN_OBJECT = "not_an_object"  # valid JSON, but not an object
WRONG_SHAPE = "wrong_shape"  # a field is missing or has the wrong length / type
MISSING_FRAMES = "missing_frames"  # predicted boxes lack some ground-truth frames
NOT_A_NUMBER = "not_a_number"
NUMERIC_OVERFLOW = "numeric_overflow"  # a value too large to score (the published reward scores 0)
INCORRECT = "incorrect"  # well-formed but accuracy 0
ERROR = "error"  # a user-registered task function raised
JUDGE_FALLBACK = "judge_fallback"  # the HTTP judge failed for this item's batch; ROUGE was used

#: Reasons that mean the output (or the item) was malformed, for ``malformed_rate``.
MALFORMED_REASONS = frozenset(
    {
        BAD_ITEM,
        NO_THINK_ANSWER,
        NO_ANSWER,
        EMPTY_ANSWER,
        UNKNOWN_PROBLEM_TYPE,
        UNKNOWN_DATA_TYPE,
        JSON_UNPARSEABLE,
        NOT_AN_OBJECT,
        WRONG_SHAPE,
        NOT_A_NUMBER,
    }
)

# ---------------------------------------------------------------------------------------------------
# The published reward's regular expressions (reference path)
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
# Linear-time equivalents (batched path)
# ---------------------------------------------------------------------------------------------------

_SPECIAL_SPLIT = re.compile(r"([<>/])")
_CLOSE_THEN_OPEN = re.compile(r"</think>\s*<answer>")
_THINK_OPEN, _ANSWER_CLOSE = "<think>", "</answer>"
_ANSWER_OPEN = "<answer>"


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
    if not (s.startswith(_THINK_OPEN) and s.endswith(_ANSWER_CLOSE)):
        return False
    # The first "</think> <answer>" after the opening tag; later ones end later, so only it can fit.
    m = _CLOSE_THEN_OPEN.search(s, len(_THINK_OPEN))
    return m is not None and m.end() <= len(s) - len(_ANSWER_CLOSE)


def extract_answer(text: str) -> str | None:
    """Same result as :func:`extract_answer_reference`: the stripped content of the first answer block."""
    i = text.find(_ANSWER_OPEN)
    if i < 0:
        return None
    j = text.find(_ANSWER_CLOSE, i + len(_ANSWER_OPEN))
    if j < 0:
        return None
    return text[i + len(_ANSWER_OPEN) : j].strip()


# ---------------------------------------------------------------------------------------------------
# Numbers and JSON shapes (shared by both paths)
# ---------------------------------------------------------------------------------------------------


class _Unparseable:
    __slots__ = ()

    def __repr__(self) -> str:
        return "UNPARSEABLE"


#: What :func:`parse_json` returns for text that is not JSON (``None`` is the JSON value ``null``).
UNPARSEABLE = _Unparseable()


def parse_json(text: str) -> object:
    try:
        return json.loads(text)
    except Exception:  # noqa: BLE001 - any failure (ValueError, RecursionError, ...) means "not JSON"
        return UNPARSEABLE


def object_reason(obj: object) -> str | None:
    """Why ``obj`` is not a JSON object, or None if it is one."""
    if obj is UNPARSEABLE:
        return JSON_UNPARSEABLE
    if not isinstance(obj, dict):
        return NOT_AN_OBJECT
    return None


def to_number(text: str) -> float | None:
    """float() of the text with commas removed (numerical / regression answers), or None."""
    try:
        return float(text.replace(",", ""))
    except Exception:  # noqa: BLE001
        return None


def numbers(x: object, n: int) -> tuple[float, ...] | None:
    """The values of ``x`` as floats if it is a list of exactly ``n`` numbers, else None."""
    if not isinstance(x, list) or len(x) != n:
        return None
    try:
        return tuple(map(float, x))
    except Exception:  # noqa: BLE001
        return None


def finite_numbers(x: object, n: int) -> tuple[float, ...] | None:
    """Like :func:`numbers`, and every value finite (ground truth)."""
    vals = numbers(x, n)
    if vals is None or not all(map(math.isfinite, vals)):
        return None
    return vals


def points3(x: object, finite: bool = False) -> tuple[tuple[float, ...], ...] | None:
    """Exactly three [x, y] number pairs, or None."""
    if not isinstance(x, list) or len(x) != 3:
        return None
    out = []
    for p in x:
        vals = finite_numbers(p, 2) if finite else numbers(p, 2)
        if vals is None:
            return None
        out.append(vals)
    return tuple(out)


def is_real(x: object) -> bool:
    """``isinstance(x, (int, float))`` (so booleans count), as the published reward checks ``time``."""
    return isinstance(x, (int, float))


def finite_real(x: object) -> bool:
    """:func:`is_real` and finite (ground-truth ``time``)."""
    if not isinstance(x, (int, float)):
        return False
    try:
        return math.isfinite(float(x))
    except OverflowError:
        return False
