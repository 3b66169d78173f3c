"""The tabular view of a OneThinker file that the expectation suites run over.

One row per record, every cell a scalar (strings, floats, None), so that Great Expectations' pandas
engine can run built-in and custom map expectations over it:

- ``record_index``: the record's position in the file (also the DataFrame index, so GE's unexpected indices
  are record indices); ``kind``: ``rl``, ``sft`` or ``eval``; ``problem_id`` as a string;
- ``<field>__type``: the JSON type of each known field (None when the field is missing or null), for
  the ``required_field`` / ``field_type`` rules;
- ``problem_type_canon`` / ``problem_type_norm`` / ``data_type_norm`` / ``task_pair``: normalised task
  columns; ``answer`` (the text inside ``<answer>``), ``options``, ``images_raw``, ``videos_raw``,
  ``masks``, ``messages_raw`` (JSON-encoded), ``assistant``, ``user_text``, ``ground_truth``;
- media: ``media`` (relative paths), ``media_files`` (resolved paths), ``media_sha256`` (JSON lists),
  and ``duration``, ``fps``, ``num_frames``, ``width``, ``height`` of the first media file (NaN unknown).

Reading a file (``load_records``) and probing media are the only I/O here; ``build_rows`` is pure given
the probes.
"""

from __future__ import annotations

import json
import math
import posixpath
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onethinker.tasks import canonical_problem_type, is_known_problem_type

from .media_probe import MediaProbe

Kind = str  # "rl" | "sft" | "eval"
KINDS: tuple[str, ...] = ("rl", "sft", "eval")

# field -> allowed JSON types, and the required fields, per kind
FIELD_TYPES: dict[str, dict[str, tuple[str, ...]]] = {
    "rl": {
        "problem_id": ("string", "integer"),
        "problem": ("string",),
        "answer": ("string",),
        "problem_type": ("string",),
        "data_type": ("string",),
        "options": ("array",),
        "images": ("array",),
        "videos": ("array",),
        "masks": ("array",),
        "mask_fps": ("integer", "number"),
    },
    "eval": {
        "problem_id": ("string", "integer"),
        "problem": ("string",),
        "solution": ("string",),
        "problem_type": ("string",),
        "data_type": ("string",),
        "path": ("string",),
        "options": ("array",),
        "masks": ("array",),
        "mask_fps": ("integer", "number"),
    },
    "sft": {
        "messages": ("array",),
        "images": ("array",),
        "videos": ("array",),
        "problem_id": ("string", "integer"),
        "problem_type": ("string",),
        "data_type": ("string",),
        "answer": ("string",),
    },
}
REQUIRED: dict[str, tuple[str, ...]] = {
    "rl": ("problem_id", "problem", "answer", "problem_type", "data_type"),
    "eval": ("problem_id", "problem", "solution", "problem_type", "data_type", "path"),
    "sft": ("messages",),
}
ANSWER_FIELD: dict[str, str] = {"rl": "answer", "eval": "solution", "sft": "messages"}
NUMERIC_COLUMNS: tuple[str, ...] = ("duration", "fps", "num_frames", "width", "height", "mask_fps")


class LoadError(ValueError):
    """A file cannot be read as records: ``rule`` is ``file_readable`` or ``file_json``."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule


def json_type(value: Any) -> str | None:
    """The JSON type name of a value (None for null)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def parse_records(text: str) -> list[Any]:
    """Parse a JSON array, or JSON Lines, into a list. Raises LoadError('file_json') naming the position."""
    stripped = text.lstrip()
    if not stripped:
        return []
    if stripped.startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise LoadError(
                "file_json",
                f"not valid JSON at line {exc.lineno} column {exc.colno} (char {exc.pos}): {exc.msg}",
            ) from None
        if not isinstance(data, list):  # pragma: no cover - a '[' document is a list
            raise LoadError("file_json", f"expected a JSON array of records, got {json_type(data)}")
        return data
    if stripped.startswith("{") and len([ln for ln in text.splitlines() if ln.strip()]) > 1:
        try:  # a pretty-printed single object is not a records file (JSON Lines hold one per line)
            data = json.loads(text)
        except json.JSONDecodeError:
            data = None
        if isinstance(data, dict):
            raise LoadError("file_json", "expected a JSON array of records, got a single object")
    records = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise LoadError(
                "file_json", f"not valid JSON at line {lineno} column {exc.colno}: {exc.msg}"
            ) from None
    return records


def load_records(path: Path) -> list[Any]:
    """Read a records file. Raises LoadError naming the problem (missing file, bad UTF-8, bad JSON)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LoadError("file_readable", "file not found") from None
    except UnicodeDecodeError as exc:
        raise LoadError("file_readable", f"not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise LoadError("file_readable", f"cannot read: {exc.strerror or exc}") from None
    return parse_records(text)


def record_kind(record: Mapping[str, Any]) -> Kind:
    """``sft``, ``eval`` or ``rl`` from the fields a record carries."""
    if "messages" in record or "conversations" in record:
        return "sft"
    if "solution" in record or "path" in record:
        return "eval"
    return "rl"


def infer_kind(records: Sequence[Any]) -> Kind:
    """The most common record kind of a file (``rl`` for a file with no object records)."""
    votes = Counter(record_kind(r) for r in records if isinstance(r, dict))
    return votes.most_common(1)[0][0] if votes else "rl"


def unwrap(text: str) -> str:
    """The content of ``<answer>...</answer>`` if present, else the text (the wrapper is optional)."""
    start, end = text.find("<answer>"), text.find("</answer>")
    if start != -1 and end > start:
        return text[start + len("<answer>") : end].strip()
    return text.strip()


def has_answer_tag(text: str) -> bool:
    start = text.find("<answer>")
    return start != -1 and text.find("</answer>", start) != -1


def media_of(record: Mapping[str, Any], kind: Kind) -> tuple[str | None, list[str]]:
    """(field name, relative paths) of the media a record names; paths that are not strings are dropped."""
    keys = ("path",) if kind == "eval" else ("images", "videos")
    for key in keys:
        value = record.get(key)
        if isinstance(value, str) and value:
            return key, [value]
        if isinstance(value, list) and value:
            return key, [v for v in value if isinstance(v, str) and v]
    return None, []


def norm_media_path(rel: str) -> str:
    """A media path as compared across files (posix, normalised, no leading './')."""
    return posixpath.normpath(rel.replace("\\", "/"))


def _json_cell(value: Any) -> str | None:
    if value is None:
        return None
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError):
        return json.dumps(repr(value))


def _lower(value: Any) -> str | None:
    return value.strip().lower() if isinstance(value, str) else None


@dataclass(frozen=True)
class GroundTruth:
    """An RL record's answer, for checking SFT records that lack the ground-truth extras."""

    answer: str
    problem_type: str | None
    data_type: str | None
    where: str  # "data/train/rl.json record 12"


@dataclass
class Context:
    """What a file's rows need beyond its own records."""

    media_root: Path
    probe: Callable[[Path], MediaProbe] | None = None  # None: media are not looked at
    ground_truth: Mapping[str, GroundTruth] = field(default_factory=dict)


def _sft_turns(messages: Any) -> tuple[str | None, int | None, str | None]:
    """(assistant content, its turn index, concatenated user contents) of a sharegpt conversation."""
    if not isinstance(messages, list):
        return None, None, None
    turns = [m for m in messages if isinstance(m, dict)]
    users = [m.get("content") for m in turns if m.get("role") == "user" and isinstance(m.get("content"), str)]
    for i in range(len(messages) - 1, -1, -1):
        m = messages[i]
        if isinstance(m, dict) and m.get("role") == "assistant" and isinstance(m.get("content"), str):
            return m["content"], i, "\n".join(users) if users else None
    return None, None, "\n".join(users) if users else None


def build_row(index: int, record: Mapping[str, Any], kind: Kind, ctx: Context) -> dict[str, Any]:
    """The table row of one record (pure, given ``ctx.probe``)."""
    row: dict[str, Any] = {"record_index": index, "kind": kind}
    for name in FIELD_TYPES[kind]:
        row[f"{name}__type"] = json_type(record.get(name))
    pid = record.get("problem_id")
    row["problem_id"] = str(pid) if json_type(pid) in ("string", "integer") else None

    problem_type, data_type = record.get("problem_type"), record.get("data_type")
    row["ground_truth"] = row["ground_truth_source"] = None
    row["assistant"] = row["user_text"] = row["messages_raw"] = None
    answer_field = ANSWER_FIELD[kind]
    if kind == "sft":
        messages = record.get("messages")
        row["messages_raw"] = _json_cell(messages)
        assistant, turn, user_text = _sft_turns(messages)
        row["assistant"], row["user_text"] = assistant, user_text
        if turn is not None:
            answer_field = f"messages[{turn}].content"
        row["answer"] = unwrap(assistant) if assistant is not None and has_answer_tag(assistant) else None
        truth = record.get("answer")
        joined = ctx.ground_truth.get(row["problem_id"]) if row["problem_id"] is not None else None
        if isinstance(truth, str):
            row["ground_truth"], row["ground_truth_source"] = unwrap(truth), "record's 'answer'"
        elif joined is not None:
            row["ground_truth"], row["ground_truth_source"] = joined.answer, f"answer of {joined.where}"
        if joined is not None:
            problem_type = problem_type if isinstance(problem_type, str) else joined.problem_type
            data_type = data_type if isinstance(data_type, str) else joined.data_type
        if not isinstance(data_type, str):  # release SFT records: the media key says it
            has_i, has_v = bool(record.get("images")), bool(record.get("videos"))
            data_type = "image" if has_i and not has_v else "video" if has_v and not has_i else None
    else:
        value = record.get(answer_field)
        row["answer"] = unwrap(value) if isinstance(value, str) else None
    row["answer_field"] = answer_field

    row["problem_type_norm"] = _lower(problem_type)
    row["problem_type_canon"] = (
        canonical_problem_type(problem_type) if is_known_problem_type(problem_type) else None
    )
    row["data_type_norm"] = _lower(data_type)
    known_dt = row["data_type_norm"] in ("image", "video")
    row["task_pair"] = (
        f"{row['problem_type_canon']}/{row['data_type_norm']}"
        if (row["problem_type_canon"] and known_dt)
        else None
    )

    options = record.get("options")
    row["options"] = _json_cell(options) if isinstance(options, list) else None
    row["images_raw"] = _json_cell(record.get("images")) if kind != "eval" else None
    row["videos_raw"] = _json_cell(record.get("videos")) if kind != "eval" else None
    masks = record.get("masks")
    row["masks"] = _json_cell(masks)
    mask_fps = record.get("mask_fps")
    row["mask_fps"] = float(mask_fps) if json_type(mask_fps) in ("integer", "number") else math.nan

    key, rel = media_of(record, kind)
    files = [str(ctx.media_root / p) for p in rel]
    row["media_key"] = key or (
        "path" if kind == "eval" else "images" if row["data_type_norm"] == "image" else "videos"
    )
    row["media"] = json.dumps([norm_media_path(p) for p in rel]) if rel else None
    row["media_files"] = json.dumps(files) if files else None
    row["media_sha256"] = None
    for col in ("duration", "fps", "num_frames", "width", "height"):
        row[col] = math.nan
    if ctx.probe is not None and files:
        probes = [ctx.probe(Path(f)) for f in files]
        hashes = [p.sha256 for p in probes if p.sha256]
        row["media_sha256"] = json.dumps(hashes) if hashes else None
        first = probes[0]
        for col in ("duration", "fps", "num_frames", "width", "height"):
            value = getattr(first, col)
            row[col] = float(value) if value is not None else math.nan
    return row


def build_rows(records: Sequence[Any], kind: Kind, ctx: Context) -> tuple[list[dict[str, Any]], list[int]]:
    """Rows for the object records, and the indices of records that are not JSON objects."""
    rows, not_objects = [], []
    for i, rec in enumerate(records):
        if isinstance(rec, dict):
            rows.append(build_row(i, rec, kind, ctx))
        else:
            not_objects.append(i)
    return rows, not_objects
