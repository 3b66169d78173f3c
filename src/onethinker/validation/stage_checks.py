"""Validation's record rules, applied by the stages to the records they read (``validate`` run or not).

``sft``, ``grpo`` and ``evaluate`` read records through ``stage_data(p)`` (a ``PreparedData`` whose every file
passes ``RecordChecks`` as it is read) or call ``RecordChecks`` on the files they are given, so a record that
validation refuses (a NaN or malformed answer, a box with x1 > x2, a duplicate id, a prompt over
``validate.max_prompt_chars``, an SFT target over ``validate.max_response_chars``, a media path outside its root, a
missing media file) stops the stage with one line naming the file, the record, the field and the rule
(``RecordError``), as a structurally broken record already does. Nothing is trained on or scored first.

The checks are the validation rules that need no decoding: each record's table row (``table.build_row``,
without probing media) goes through the same row checks as the Great Expectations suites, plus the
uniqueness of ``problem_id`` within the file, the SFT ``<think>``/``<answer>`` tags, and the existence of
every media file (a stat). Media that exist but do not decode are left to ``validate`` and to the stage's
own media loading, which names the record too.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from onethinker.contract.checks import LengthLimits
from onethinker.contract.manifest import PreparedData
from onethinker.contract.media import MediaRoot
from onethinker.contract.records import Problem, Record, RecordError, TaskIndex, Where

from .rules import ANSWER_RULES, SFT_ANSWER_TAG, SFT_THINK_TAG, run_check, short
from .table import Context, build_row

if TYPE_CHECKING:
    from onethinker.config import Params

ROW_RULES: tuple[str, ...] = (
    "prompt_length",
    "response_length",
    "media_in_root",
    "media_exists",
    "options_format",
    "segmentation_truth",
    *ANSWER_RULES,
    "sft_answer_matches",
)
"""Row checks a stage applies, in this order (the first broken one is reported)."""
MEDIA_RULES = frozenset({"media_in_root", "media_exists"})
ANSWER_LIKE = frozenset({*ANSWER_RULES, "sft_answer_matches", "response_length"})


def _field(rule: str, row: dict[str, Any]) -> str:
    """The record field a rule's failure names (as validation's report names it)."""
    if rule in MEDIA_RULES:
        return str(row["media_key"])
    if rule in ANSWER_LIKE:
        return str(row["answer_field"])
    if rule == "prompt_length":
        return str(row["prompt_field"])
    return {"options_format": "options", "segmentation_truth": "segmentation_output"}.get(rule, rule)


def _sft_tag_problem(row: dict[str, Any]) -> Problem | None:
    assistant = row.get("assistant")
    if not isinstance(assistant, str):
        return None
    field = str(row["answer_field"])
    if not re.search(SFT_THINK_TAG, assistant):
        return Problem(
            field,
            "sft_think_tag",
            f"the assistant turn does not start with <think>...</think>: {short(assistant, 60)}",
        )
    if not re.search(SFT_ANSWER_TAG, assistant):
        return Problem(
            field,
            "sft_answer_tag",
            f"the assistant turn does not end with <answer>...</answer>: {short(assistant, 60)}",
        )
    return None


def record_problem(row: dict[str, Any]) -> Problem | None:
    """The first rule (``ROW_RULES``, then the SFT tags) a record's table row breaks, or None."""
    for rule in ROW_RULES:
        why = run_check(rule, row)
        if why:
            return Problem(_field(rule, row), rule, why)
    return _sft_tag_problem(row) if row["kind"] == "sft" else None


@dataclass(frozen=True)
class RecordChecks:
    """A ``PreparedData`` record check: validation's rules on one file's typed records; raises ``RecordError``
    on the first record that breaks one."""

    limits: LengthLimits

    def __call__(
        self, file: str, records: Sequence[Record], root: MediaRoot, index: TaskIndex | None = None
    ) -> None:
        ctx = Context(root=root, probe=None, index=index, display=file, limits=self.limits)
        seen: dict[str, int] = {}
        for i, record in enumerate(records):
            where = record.where if record.where.file == file else Where(file, i, record.problem_id)
            if record.problem_id is not None:
                if record.problem_id in seen:
                    why = f"problem_id {record.problem_id!r} is also used by record {seen[record.problem_id]}"
                    raise RecordError(where, Problem("problem_id", "unique_problem_id", why))
                seen[record.problem_id] = i
            problem = record_problem(build_row(where.index, dict(record.raw), record.kind, ctx))
            if problem is not None:
                raise RecordError(where, problem)


def record_checks(p: Params) -> RecordChecks:
    """The checks with the limits of ``params`` (the keys read one by one: ``dvc.yaml`` lists just these)."""
    return RecordChecks(LengthLimits(p.validate.max_prompt_chars, p.validate.max_response_chars))


def stage_data(p: Params) -> PreparedData:
    """The prepared data under ``data.root``, every file's records checked as they are read."""
    return PreparedData.load(p.data.root, p, record_checks(p))
