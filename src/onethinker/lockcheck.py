"""Does a fresh clone compute the committed ``dvc.lock``? (``onethinker check-lock``, ``make check-lock``)

The commit's tree is cloned into a scratch folder (nothing of the workspace is used: no DVC cache, no data),
the named stages are run there with ``dvc repro``, and what DVC records for them is compared with the
committed ``dvc.lock``:

- the command, every dependency's and every cached output's hash, and the params, exactly;
- an uncached metrics file (git-tracked, e.g. ``metrics/prepare.json``) by its content against the
  committed file, without the keys that measure the run rather than its result (``VOLATILE_KEYS``: wall
  time, memory, throughput, MLflow ids), whose values differ on every run by nature.

Any difference is a line naming the stage, the path and both values; none means the commit reproduces.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

VOLATILE_KEYS = frozenset(
    {"seconds", "eval_seconds", "peak_rss_mb", "tokens_per_s", "mlflow_run_id", "mlflow_model_id"}
)
"""Keys of a metrics file that measure the run (time, memory, speed) or name its MLflow records."""

DEFAULT_STAGES = ("prepare", "validate", "annotate", "base_model")
"""What CI checks: the stages cheap enough to run on every commit (about 2 minutes on 2 cores)."""


def without_volatile(value: Any) -> Any:
    """``value`` with ``VOLATILE_KEYS`` removed from every mapping, at any depth."""
    if isinstance(value, Mapping):
        return {k: without_volatile(v) for k, v in value.items() if k not in VOLATILE_KEYS}
    if isinstance(value, list):
        return [without_volatile(v) for v in value]
    return value


def uncached_outs(dvc_yaml: Mapping[str, Any]) -> set[str]:
    """Outputs declared with ``cache: false`` (kept in git, not in DVC's cache), over all stages."""
    paths: set[str] = set()
    for stage in (dvc_yaml.get("stages") or {}).values():
        for section in ("outs", "metrics", "plots"):
            for item in stage.get(section) or []:
                if isinstance(item, Mapping):
                    for path, opts in item.items():
                        if isinstance(opts, Mapping) and opts.get("cache") is False:
                            paths.add(str(path))
    return paths


def _by_path(items: Iterable[Mapping[str, Any]] | None) -> dict[str, Mapping[str, Any]]:
    return {str(i["path"]): i for i in items or []}


def lock_differences(
    committed: Mapping[str, Any],
    computed: Mapping[str, Any],
    stages: Iterable[str],
    uncached: set[str],
    committed_files: Mapping[str, Any],
    computed_files: Mapping[str, Any],
) -> list[str]:
    """Differences between two ``dvc.lock`` documents for ``stages`` (see the module docstring).

    ``uncached``: outputs compared by content; ``committed_files`` / ``computed_files``: their parsed JSON
    (None when absent) at the commit and after the run.
    """
    out: list[str] = []
    want, got = committed.get("stages") or {}, computed.get("stages") or {}
    for stage in stages:
        a, b = want.get(stage), got.get(stage)
        if a is None or b is None:
            where = "the committed dvc.lock" if a is None else "the computed dvc.lock"
            out.append(f"{stage}: missing from {where}")
            continue
        if a.get("cmd") != b.get("cmd"):
            out.append(f"{stage}: cmd {a.get('cmd')!r} committed, {b.get('cmd')!r} computed")
        if a.get("params") != b.get("params"):
            out.append(f"{stage}: params {a.get('params')} committed, {b.get('params')} computed")
        for section in ("deps", "outs"):
            old, new = _by_path(a.get(section)), _by_path(b.get(section))
            for path in sorted(set(old) | set(new)):
                if path not in old or path not in new:
                    side = "committed" if path in old else "computed"
                    out.append(f"{stage}: {section[:-1]} {path} only in the {side} dvc.lock")
                elif section == "outs" and path in uncached:
                    x = without_volatile(committed_files.get(path))
                    y = without_volatile(computed_files.get(path))
                    if x != y:
                        out.append(f"{stage}: {path} differs from the committed file (volatile keys aside)")
                elif old[path].get("md5") != new[path].get("md5"):
                    out.append(
                        f"{stage}: {section[:-1]} {path} md5 {old[path].get('md5')} committed, "
                        f"{new[path].get('md5')} computed"
                    )
    return out


def _run(cmd: list[str], cwd: Path, env: Mapping[str, str] | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=dict(env) if env else None, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}"
        )
    return proc.stdout


def _json_or_none(text: str | None) -> Any:
    try:
        return json.loads(text) if text is not None else None
    except ValueError:
        return None


def _git_file(repo: Path, rev: str, path: str) -> str | None:
    proc = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=repo, capture_output=True, text=True)
    return proc.stdout if proc.returncode == 0 else None


def clone_env(state_dir: Path) -> dict[str, str]:
    """The environment for running the pipeline in a scratch clone: this interpreter's tools first on PATH,
    DVC's and HF datasets' state under ``state_dir``, MLflow in the clone's own store (no tracking URI, no
    parent run inherited), no telemetry, no hub access."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "ONETHINKER_PARENT_RUN_ID")
    }
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        DVC_SITE_CACHE_DIR=str(state_dir / "dvc-site"),
        DVC_NO_ANALYTICS="1",
        MLFLOW_DISABLE_TELEMETRY="true",
        HF_HUB_OFFLINE="1",
        HF_DATASETS_CACHE=str(state_dir / "hf-datasets"),
        PYTHONUNBUFFERED="1",
    )
    return env


def check_lock(
    repo: Path, stages: Iterable[str] = DEFAULT_STAGES, rev: str = "HEAD", workdir: Path | None = None
) -> list[str]:
    """Clone ``repo`` at ``rev`` into ``workdir`` (a temporary folder by default), ``dvc repro`` the
    ``stages`` there and return the differences from the committed ``dvc.lock`` (empty: reproduced)."""
    stages = list(stages)
    sha = _run(["git", "rev-parse", rev], repo).strip()
    with tempfile.TemporaryDirectory(prefix="onethinker-lockcheck-") as tmp:
        base = Path(workdir) if workdir is not None else Path(tmp)
        clone = base / "clone"
        _run(["git", "clone", "--quiet", "--no-checkout", str(repo), str(clone)], base)
        _run(["git", "-c", "advice.detachedHead=false", "checkout", "--quiet", sha], clone)
        committed = yaml.safe_load(_git_file(clone, sha, "dvc.lock") or "{}") or {}
        _run(["dvc", "repro", *stages], clone, clone_env(base))
        computed = yaml.safe_load((clone / "dvc.lock").read_text()) or {}
        uncached = uncached_outs(yaml.safe_load((clone / "dvc.yaml").read_text()) or {})
        wanted = {
            o["path"]
            for s in stages
            for o in ((committed.get("stages") or {}).get(s) or {}).get("outs") or []
        }
        paths = sorted(uncached & wanted)
        before = {p: _json_or_none(_git_file(clone, sha, p)) for p in paths}
        after = {p: _json_or_none((clone / p).read_text()) if (clone / p).is_file() else None for p in paths}
        return lock_differences(committed, computed, stages, uncached, before, after)
