"""Copying this repository's working tree for tests that run the real pipeline in a scratch folder.

Imported as ``repo_copy`` by ``tests/e2e`` and ``tests/integration`` (``tests/conftest.py`` puts this
folder on ``sys.path``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def copy_worktree(src: Path, dst: Path) -> None:
    """Tracked and untracked-but-not-ignored files of ``src`` (its git view of the working tree)."""
    files = (
        subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=src, check=True, capture_output=True
        )
        .stdout.decode()
        .split("\0")
    )
    for rel in filter(None, files):
        source = src / rel
        if source.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dst / rel)


def deep_merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def stage_env(root: Path) -> dict[str, str]:
    """The environment the pipeline's commands run in, inside the copy at ``root``: this interpreter's tools
    first, DVC's site cache and MLflow's store inside the copy, nothing fetched, no parent MLflow run."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(
        PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
        DVC_SITE_CACHE_DIR=str(root / ".site"),
        DVC_NO_ANALYTICS="1",
        MLFLOW_DISABLE_TELEMETRY="true",
        HF_HUB_OFFLINE="1",
        HF_DATASETS_CACHE=str(root / ".cache" / "hf"),
        PYTHONUNBUFFERED="1",
    )
    env.pop("ONETHINKER_PARENT_RUN_ID", None)
    return env
