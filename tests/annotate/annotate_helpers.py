"""Shared by the annotate tests: a working folder with a copy of the prepared data and a params.yaml."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml


def workdir(data: Path, tmp: Path, annotate: dict, **sections) -> Path:
    """A working folder with a copy of ``data`` (manifest re-pointed) and a params.yaml."""
    shutil.copytree(data, tmp / "data")
    params = {
        "data": {"root": "data"},
        "prompt": {"style": "compact"},
        "annotate": {"enabled": True, "log_mlflow": False, "cache_dir": "cache/annotate", **annotate},
        **sections,
    }
    (tmp / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp
