"""OneThinker record formats, readers and writers.

Three layouts, as in the released OneThinker data:

- RL training (``data/train/rl.json``): ``problem``, ``answer`` (``<answer>…</answer>``), ``problem_type``,
  ``data_type``, ``images`` or ``videos`` (paths relative to the media root), ``options`` (multiple
  choice), ``problem_id``.
- SFT (``data/train/sft_image.json``, ``sft_video.json``): sharegpt ``messages`` (user turn with a
  ``<image>``/``<video>`` placeholder and the prompt, assistant turn ``<think>…</think><answer>…</answer>``)
  plus ``images``/``videos``. Ours also carry ``problem_id``, ``problem_type``, ``data_type`` and the ground
  truth ``answer`` so validation can check the assistant's answer without a join.
- Evaluation (``data/eval/<benchmark>.json``): ``problem``, ``solution``, ``problem_type``, ``data_type``,
  ``path``, ``options``, ``problem_id``.

Segmentation records also carry ``masks`` (COCO RLE; one for an image, one per native frame for a video,
with ``mask_fps``). Released files are read through Hugging Face ``datasets`` (``load_release``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


class FormatError(ValueError):
    """A data file cannot be read as OneThinker records."""


def wrap_answer(answer: str) -> str:
    return f"<answer>{answer}</answer>"


def unwrap_answer(text: str) -> str:
    """The content of ``<answer>…</answer>`` if present, else the stripped text."""
    m = _ANSWER_RE.search(text or "")
    return (m.group(1) if m else (text or "")).strip()


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Read a JSON array (or JSON Lines) file of records. Raises FormatError naming file and position."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FormatError(f"{path}: cannot read: {exc}") from exc
    stripped = text.lstrip()
    if not stripped:
        return []
    try:
        if stripped.startswith("["):
            data = json.loads(text)
        else:
            data = [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise FormatError(
            f"{path}: not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from exc
    if not isinstance(data, list):
        raise FormatError(f"{path}: expected a JSON array of records, got {type(data).__name__}")
    for i, rec in enumerate(data):
        if not isinstance(rec, dict):
            raise FormatError(f"{path}: record {i} is not a JSON object")
    return data


def write_records(path: str | Path, records: Iterable[dict[str, Any]]) -> None:
    """Write records as a JSON array, atomically (a crash never leaves a half-written file)."""
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


def media_paths(record: dict[str, Any]) -> list[str]:
    """The media paths a record refers to (``images``, ``videos`` or ``path``)."""
    for key in ("images", "videos"):
        value = record.get(key)
        if isinstance(value, list) and value:
            return [str(v) for v in value]
        if isinstance(value, str) and value:
            return [value]
    value = record.get("path")
    return [str(value)] if isinstance(value, str) and value else []


def resolve_media(media_root: str | Path, rel: str) -> Path:
    """A media path under the media root (absolute paths are kept)."""
    return Path(media_root) / rel


def ground_truth(record: dict[str, Any]) -> str:
    """The wrapped ground truth of an RL (``answer``) or evaluation (``solution``) record."""
    value = record.get("answer", record.get("solution"))
    return "" if value is None else str(value)


def record_kind(record: dict[str, Any]) -> str:
    """``sft``, ``eval`` or ``rl`` from the fields present."""
    if "messages" in record or "conversations" in record:
        return "sft"
    if "solution" in record or "path" in record:
        return "eval"
    return "rl"


# --------------------------------------------------------------------------------------------------
# Released files through Hugging Face datasets


def load_release(path: str | Path, cache_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """Load a released OneThinker JSON file through ``datasets`` and return plain records.

    ``datasets`` infers one Arrow schema for the file and fills absent fields with None; those Nones are
    dropped again so a record looks as it does in the file.
    """
    import datasets

    path = Path(path)
    if not path.is_file():
        raise FormatError(f"{path}: file not found")
    cache_dir = cache_dir or os.environ.get("HF_DATASETS_CACHE")
    try:
        ds = datasets.load_dataset("json", data_files=str(path), split="train", cache_dir=cache_dir)
    except Exception as exc:  # datasets raises many types for malformed JSON
        raise FormatError(f"{path}: cannot be loaded with datasets: {exc}") from exc
    return [{k: v for k, v in rec.items() if v is not None} for rec in ds]


def strip_placeholders(text: str) -> str:
    return text.replace("<image>", "").replace("<video>", "").strip()


def absolutise_media(record: dict[str, Any], media_root: str | Path) -> dict[str, Any]:
    """A copy of the record whose media paths are absolute under ``media_root``."""
    root = Path(media_root).resolve()
    out = dict(record)
    for key in ("images", "videos"):
        value = out.get(key)
        if isinstance(value, list):
            out[key] = [str(root / v) for v in value]
        elif isinstance(value, str):
            out[key] = [str(root / value)]
    if isinstance(out.get("path"), str):
        out["path"] = str(root / out["path"])
    return out
