"""Reading and writing OneThinker record files: a JSON array (or JSON Lines) of objects.

``read_records`` is the one reader: every stage, validation and ``prepare`` read files through it, so a
malformed file fails the same way everywhere, with a ``RecordFileError`` naming the file, the rule
(``file_readable`` or ``file_json``) and the position. ``write_records`` writes atomically.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any


class RecordFileError(ValueError):
    """A file cannot be read as records. ``rule`` is ``file_readable`` or ``file_json``; the message names
    the file and the position."""

    def __init__(self, path: str | Path, rule: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path, self.rule, self.reason = str(path), rule, message


def _type_name(value: Any) -> str:
    return (
        "object" if isinstance(value, dict) else "array" if isinstance(value, list) else type(value).__name__
    )


def parse_records(text: str, path: str | Path = "<text>") -> list[Any]:
    """Parse a JSON array, or JSON Lines, into a list (elements are not checked to be objects here)."""
    stripped = text.lstrip()
    if not stripped:
        return []
    if stripped.startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RecordFileError(
                path, "file_json", f"not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
            ) from None
        if not isinstance(data, list):  # pragma: no cover - a '[' document is a list
            raise RecordFileError(
                path, "file_json", f"expected a JSON array of records, got {_type_name(data)}"
            )
        return data
    if stripped.startswith("{") and len([ln for ln in text.splitlines() if ln.strip()]) > 1:
        try:  # a pretty-printed single object is not a records file (JSON Lines hold one per line)
            data = json.loads(text)
        except json.JSONDecodeError:
            data = None
        if isinstance(data, dict):
            raise RecordFileError(path, "file_json", "expected a JSON array of records, got a single object")
    records = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise RecordFileError(
                path, "file_json", f"not valid JSON at line {lineno} column {exc.colno}: {exc.msg}"
            ) from None
    return records


def read_raw(path: str | Path) -> list[Any]:
    """The elements of a records file, as they are (validation reports elements that are not objects)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecordFileError(path, "file_readable", "file not found") from None
    except UnicodeDecodeError as exc:
        raise RecordFileError(path, "file_readable", f"not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise RecordFileError(path, "file_readable", f"cannot read: {exc.strerror or exc}") from None
    return parse_records(text, path)


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """The records of a file; an element that is not a JSON object is a ``file_json`` error naming it."""
    records = read_raw(path)
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise RecordFileError(path, "file_json", f"record {i} is not a JSON object")
    return records


def write_records(path: str | Path, records: Iterable[dict[str, Any]]) -> None:
    """Write records as a JSON array, one per line, atomically (a crash never leaves a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("[\n")
        for i, rec in enumerate(records):
            if i:
                f.write(",\n")
            f.write(json.dumps(rec, ensure_ascii=False))
        f.write("\n]\n")
    os.replace(tmp, path)
