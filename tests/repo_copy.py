"""Copying this repository's working tree for tests that run the real pipeline in a scratch folder.

Imported as ``repo_copy`` by ``tests/e2e`` and ``tests/integration`` (``tests/conftest.py`` puts this
folder on ``sys.path``).
"""

from __future__ import annotations

import shutil
import subprocess
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
    """The environment the pipeline's commands run in, inside the copy at ``root``: ``lockcheck.clone_env``
    (this interpreter's tools first, nothing fetched, no tracking URI or parent MLflow run), with DVC's site
    cache and HF datasets' cache inside the copy."""
    from onethinker.lockcheck import clone_env

    env = clone_env(root)
    env.update(DVC_SITE_CACHE_DIR=str(root / ".site"), HF_DATASETS_CACHE=str(root / ".cache" / "hf"))
    return env
