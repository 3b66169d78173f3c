"""The annotate stage's output as the ``sft`` stage reads it: the SFT files its manifest lists, as rooted
records. Kept apart from the stage so ``sft`` does not depend on the HTTP client (``dvc.yaml``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from onethinker.contract import parse_records, read_records
from onethinker.contract.manifest import RootedRecord

MANIFEST = "manifest.json"
OUT_FILES = {"image": "sft_annotated_image.json", "video": "sft_annotated_video.json"}


def annotated_train_files(out_dir: str | Path = "annotated") -> list[dict[str, str]]:
    """The SFT files the last ``annotate`` run added (``path`` and the ``media_root`` name their media paths are
    relative to); [] when none or disabled."""
    path = Path(out_dir) / MANIFEST
    if not path.exists():
        return []
    return list(json.loads(path.read_text()).get("files", []))


def annotated_records(data: Any, out_dir: str | Path = "annotated") -> list[RootedRecord]:
    """The annotated SFT records of a :class:`~onethinker.contract.PreparedData`, typed and rooted like the
    prepared ones, and checked by the same record check (``data.check``) when it has one."""
    index = data.task_index()
    out = []
    for f in annotated_train_files(out_dir):
        root = data.roots[f["media_root"]]
        records = parse_records(read_records(f["path"]), f["path"], "sft", index)
        if data.check is not None:
            data.check(str(f["path"]), records, root, index)
        out.extend(RootedRecord(r, root) for r in records)
    return out
