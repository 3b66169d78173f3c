"""Reward reasons, and the parsing the rewards share, from the data contract.

The text steps (tag normalisation, the format check, answer extraction: the published regular expressions
as ``*_reference`` and their linear-time equivalents) live in :mod:`onethinker.contract.answers`; numbers,
JSON and the per-task field readers in :mod:`onethinker.contract.schema`. They are re-exported here, so the
rewards and their tests read them under one name. What stays here is reward-only: the reasons a score lost
points, and :func:`object_reason`.

"Is a number" means Python's ``float()`` accepts the value, so numeric strings, booleans, "nan" and
"inf" count, as in the published reward. Ground-truth numbers must in addition be finite.
"""

from __future__ import annotations

from onethinker.contract.answers import (  # noqa: F401 - re-exported
    ANSWER_RE,
    TAG_SPACE_RE,
    THINK_ANSWER_RE,
    extract_answer,
    extract_answer_reference,
    has_format,
    has_format_reference,
    normalize,
    normalize_reference,
)
from onethinker.contract.schema import (  # noqa: F401 - re-exported
    UNPARSEABLE,
    finite_numbers,
    finite_real,
    is_real,
    numbers,
    parse_json,
    points3,
    to_number,
)

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
TIMEOUT = "timeout"  # the symbolic comparison was over its time or size budget: accuracy 0

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


def object_reason(obj: object) -> str | None:
    """Why ``obj`` is not a JSON object, or None if it is one."""
    if obj is UNPARSEABLE:
        return JSON_UNPARSEABLE
    if not isinstance(obj, dict):
        return NOT_AN_OBJECT
    return None
