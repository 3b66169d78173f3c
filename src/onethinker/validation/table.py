"""The tabular view of a OneThinker file that the expectation suites run over.

One row per record, every cell a scalar (strings, floats, None), so that Great Expectations' pandas
engine can run built-in and custom map expectations over it. Everything a row says about a record comes
from the data contract (``onethinker.contract``): field types, the SFT task rule, the answer parser, media
paths resolved under the record's named root, the question, the structural checks.

- ``record_index``: the record's position in the file (also the DataFrame index, so GE's unexpected indices
  are record indices); ``kind``: ``rl``, ``sft`` or ``eval``; ``problem_id`` as a string;
- ``<field>__type``: the JSON type of each known field (None when the field is missing or null), for
  the ``required_field`` / ``field_type`` rules;
- ``problem_type_canon`` / ``problem_type_norm`` / ``data_type_norm`` / ``task_pair``: normalised task
  columns (an SFT record's are derived, ``task_source`` says how); ``answer`` (the text inside ``<answer>``),
  ``options``, ``assistant``, ``ground_truth``;
- ``record_problems``: the contract's verdicts on structure, lengths and media confinement (JSON
  ``{rule: message}``; ``contract.checks``); ``prompt_field``: the field holding the prompt text;
- media: ``media`` (paths as compared within a root), ``media_files`` (resolved paths), ``media_sha256``
  (JSON lists), and ``duration``, ``fps``, ``num_frames``, ``width``, ``height`` of the first media file;
  ``content_key``: the media (content hash, else resolved path) plus the folded question, for the
  train/eval disjointness rule;
- ``extra_fields``: the fields of the record the pipeline does not read (JSON list).

Probing media is the only I/O here; ``build_rows`` is pure given the probes.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onethinker.contract import answers as A
from onethinker.contract import records as R
from onethinker.contract.checks import LengthLimits, escaping_media, length_problems, media_root_message
from onethinker.contract.media import MediaRoot, media_key
from onethinker.contract.prompts import question_text
from onethinker.contract.tasks import canonical_problem_type, is_allowed, is_known_problem_type, modality

from .media_probe import MediaProbe

NUMERIC_COLUMNS: tuple[str, ...] = ("duration", "fps", "num_frames", "width", "height")
ROW_PROBLEM_RULES: tuple[str, ...] = ("media_field", "sft_messages", "media_tokens")
"""Structural rules whose verdict the contract gives per record (``record_problems``, with the length and
``media_in_root`` verdicts of ``contract.checks``)."""


def _json_cell(value: Any) -> str | None:
    if value is None:
        return None
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError):
        return json.dumps(repr(value))


def _lower(value: Any) -> str | None:
    return value.strip().lower() if isinstance(value, str) else None


@dataclass
class Context:
    """What a file's rows need beyond its own records."""

    root: MediaRoot
    probe: Callable[[Path], MediaProbe] | None = None  # None: media are not looked at
    index: R.TaskIndex | None = None  # the RL records, for the SFT task rule
    display: str = ""
    limits: LengthLimits | None = None  # None: the length rules are not checked


def _media_paths(record: dict[str, Any], kind: str) -> tuple[str | None, list[str]]:
    """(field name, paths) of the media a record names; paths that are not strings are dropped."""
    if kind == "eval":
        paths = [p for p in (record.get("path"), record.get("additional_path")) if isinstance(p, str) and p]
        return "path", paths
    for key in ("images", "videos"):
        value = record.get(key)
        if isinstance(value, list) and value:
            return key, [v for v in value if isinstance(v, str) and v]
    return None, []


def _sft_columns(record: dict[str, Any], row: dict[str, Any], ctx: Context) -> tuple[Any, Any]:
    """Fill the SFT-only columns; returns the derived (problem_type, data_type)."""
    messages = record.get("messages")
    _, assistant = R.sft_turns(messages)
    row["assistant"] = assistant
    turn = None
    if isinstance(messages, list):
        turn = next(
            (
                i
                for i in range(len(messages) - 1, -1, -1)
                if isinstance(messages[i], dict) and messages[i].get("role") == "assistant"
            ),
            None,
        )
    if turn is not None:
        row["answer_field"] = f"messages[{turn}].content"
    row["answer"] = A.extract_answer(assistant) if assistant is not None else None
    try:
        task = R.derive_sft_task(record, ctx.index)
    except Exception:  # noqa: BLE001 - a malformed record: other rules say why
        return record.get("problem_type"), record.get("data_type")
    row["task_source"] = task.source
    if task.ground_truth is not None:
        row["ground_truth"] = A.inner_answer(task.ground_truth)
        row["ground_truth_source"] = (
            "record's 'answer'" if isinstance(record.get("answer"), str) else f"answer of {task.joined}"
        )
    row["question_key"] = R.fold_question(task.question)
    return task.problem_type, task.data_type


def build_row(index: int, record: dict[str, Any], kind: str, ctx: Context) -> dict[str, Any]:
    """The table row of one record (pure, given ``ctx.probe``)."""
    row: dict[str, Any] = {"record_index": index, "kind": kind}
    for name in R.FIELD_TYPES[kind]:
        row[f"{name}__type"] = R.json_type(record.get(name))
    pid = record.get("problem_id")
    row["problem_id"] = str(pid) if R.json_type(pid) in ("string", "integer") else None
    row["ground_truth"] = row["ground_truth_source"] = row["assistant"] = row["task_source"] = None
    row["answer_field"] = R.ANSWER_FIELD[kind]
    row["question_key"] = None
    problem_type, data_type = record.get("problem_type"), record.get("data_type")
    if kind == "sft":
        problem_type, data_type = _sft_columns(record, row, ctx)
    else:
        value = record.get(R.ANSWER_FIELD[kind])
        row["answer"] = A.inner_answer(value) if isinstance(value, str) else None
        problem = record.get("problem")
        if isinstance(problem, str) and isinstance(problem_type, str) and is_known_problem_type(problem_type):
            options = record.get("options") if isinstance(record.get("options"), list) else None
            row["question_key"] = R.fold_question(question_text(problem, problem_type, options))

    row["problem_type_norm"] = _lower(problem_type)
    row["problem_type_canon"] = (
        canonical_problem_type(problem_type) if is_known_problem_type(problem_type) else None
    )
    row["data_type_norm"] = _lower(data_type)
    pt, dt = row["problem_type_canon"], row["data_type_norm"]
    row["task_pair"] = None
    if (
        pt and dt in R.RELEASE_DATA_TYPES
    ):  # an undefined pair keeps its data type: the task_pair rule names it
        row["task_pair"] = f"{pt}/{modality(dt)}" if is_allowed(pt, dt) else f"{pt}/{dt}"

    options = record.get("options")
    row["options"] = _json_cell(options) if isinstance(options, list) else None
    problems = {p.rule: p.message for p in R.check_fields(record, kind) if p.rule in ROW_PROBLEM_RULES}
    if ctx.limits is not None:
        problems.update((p.rule, p.message) for p in length_problems(record, kind, ctx.limits))
    row["prompt_field"] = "messages" if kind == "sft" else "problem"
    row["segmentation_problem"] = None
    if kind == "eval" and pt == "segmentation" and dt in ("image", "video"):
        row["segmentation_problem"] = R.segmentation_truth_problem(record, dt)
    seg = R.segmentation_truth(record, dt) if kind == "eval" and pt == "segmentation" and dt else None
    row["segmentation_frames"] = (
        float(len(seg.frames)) if seg is not None and seg.data_type == "video" else math.nan
    )
    row["segmentation_fps"] = float(seg.fps) if seg is not None and seg.fps else math.nan
    row["extra_fields"] = json.dumps(R.extra_fields(record, kind))

    key, paths = _media_paths(record, kind)
    files = [str(ctx.root.resolve(p, kind)) for p in paths]
    escaping = next(escaping_media(paths, ctx.root, kind), None)
    if escaping is not None:
        problems["media_in_root"] = media_root_message(escaping, ctx.root)
    row["record_problems"] = json.dumps(problems, sort_keys=True) if problems else None
    row["media_key"] = key or (
        "path" if kind == "eval" else "images" if row["data_type_norm"] == "image" else "videos"
    )
    row["media"] = json.dumps([media_key(p, kind) for p in paths]) if paths else None
    row["media_files"] = json.dumps(files) if files else None
    row["media_sha256"] = None
    for col in NUMERIC_COLUMNS:
        row[col] = math.nan
    identities = [os.path.realpath(f) for f in files]
    if ctx.probe is not None and files and escaping is None:  # a file outside the root is never opened
        probes = [ctx.probe(Path(f)) for f in files]
        hashes = [p.sha256 for p in probes if p.sha256]
        row["media_sha256"] = json.dumps(hashes) if hashes else None
        if len(hashes) == len(files):
            identities = hashes
        first = probes[0]
        for col in NUMERIC_COLUMNS:
            value = getattr(first, col)
            row[col] = float(value) if value is not None else math.nan
    row["content_key"] = (
        json.dumps([identities, row["question_key"]]) if files and row["question_key"] is not None else None
    )
    return row


def build_rows(records: Sequence[Any], kind: str, ctx: Context) -> tuple[list[dict[str, Any]], list[int]]:
    """Rows for the object records, and the indices of records that are not JSON objects."""
    rows, not_objects = [], []
    for i, rec in enumerate(records):
        if isinstance(rec, dict):
            rows.append(build_row(i, rec, kind, ctx))
        else:
            not_objects.append(i)
    return rows, not_objects
