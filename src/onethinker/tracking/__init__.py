"""MLflow runs for pipeline stages: one run per stage, nested under the pipeline's run when there is one.

- Tracking URI: ``MLFLOW_TRACKING_URI`` when set (a server, or any store), else the embedded SQLite store
  ``sqlite:///<repo>/mlflow/mlflow.db`` with artifacts in ``<repo>/mlflow/artifacts``. Paths are absolute,
  so ``dvc exp run --temp`` (which runs in a copy under ``.dvc/tmp/exps``) still logs to the workspace.
- A pipeline parent run is named by ``ONETHINKER_PARENT_RUN_ID`` (set by the Prefect flow); stage runs nest
  under it.
- Every stage run is tagged with the git commit (and whether the tree was dirty), the DVC stage name and
  the process that owns it; how runs end, are swept and resumed: ``tracking.lifecycle``. Datasets named by
  their DVC hash and logged models for checkpoints: ``tracking.lineage``.
- The experiment is tagged ``mlflow.experimentKind=custom_model_development`` (MLflow's model-training view).
- Metric names are sanitised for MLflow (``R@0.5`` -> ``R_at_0.5``, ``J&F`` -> ``J_and_F``).
- Inside a stage run, ``log_metrics``, ``set_tags``, ``log_table`` and ``log_artifact(s)`` go through a buffer
  sent in the background (:mod:`onethinker.tracking.buffer`): a tracking-server outage never stalls or crashes
  training; what could not be sent is spooled and sent when the server returns, and the run is ended then.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

EXPERIMENT = "onethinker"
PARENT_ENV = "ONETHINKER_PARENT_RUN_ID"
FLUSH_ENV = "ONETHINKER_TRACKING_FLUSH_S"
"""Seconds a stage waits at its end for buffered logs to reach the tracking server (default 60) before it
spools them and leaves them to the background replayer."""

_BUFFER: Any = None  # the active stage run's RunBuffer
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
"""MLflow's UI opens an experiment with this tag on model training (runs, metrics, models), not GenAI."""


def repo_root() -> Path:
    """The project root: the folder holding dvc.yaml, searched upwards from the working directory."""
    here = Path.cwd().resolve()
    for p in (here, *here.parents):
        if (p / "dvc.yaml").exists() or (p / ".git").exists():
            # inside `dvc exp run --temp`, log to the main workspace, not the temporary copy
            parts = p.parts
            if ".dvc" in parts:
                return Path(*parts[: parts.index(".dvc")])
            return p
    return here


def tracking_uri(root: Path | None = None) -> str:
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    root = root or repo_root()
    return f"sqlite:///{(root / 'mlflow' / 'mlflow.db').resolve()}"


def artifact_root(root: Path | None = None) -> str:
    root = root or repo_root()
    return (root / "mlflow" / "artifacts").resolve().as_uri()


def configure(root: Path | None = None) -> str:
    """Point MLflow at the tracking URI (creating the local store folder) and return the URI."""
    import mlflow

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    uri = tracking_uri(root)
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    return uri


def experiment_id(name: str = EXPERIMENT, root: Path | None = None) -> str:
    """Get or create the experiment; a local store gets an artifact location under mlflow/artifacts."""
    import mlflow

    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if EXPERIMENT_KIND_TAG not in (exp.tags or {}):  # made before the tag existed
            client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return exp.experiment_id
    # the embedded store keeps artifacts beside it (mlflow/artifacts); a server or user store uses its own
    default_store = f"sqlite:///{((root or repo_root()) / 'mlflow' / 'mlflow.db').resolve()}"
    location = f"{artifact_root(root)}/{name}" if mlflow.get_tracking_uri() == default_store else None
    try:
        return client.create_experiment(
            name, artifact_location=location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
        )
    except Exception:  # created concurrently by another process
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def git_commit(root: Path | None = None) -> tuple[str, bool]:
    """(commit sha, dirty) of the project's git checkout; ("unknown", False) outside git."""
    root = root or repo_root()
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=root,
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
        )
        return sha, dirty
    except (OSError, subprocess.SubprocessError):
        return "unknown", False


def dvc_out_hash(out_path: str, root: Path | None = None) -> str | None:
    """The md5 DVC recorded for an output path in dvc.lock (e.g. ``data``), or None when absent."""
    import yaml

    root = root or repo_root()
    lock = root / "dvc.lock"
    if not lock.exists():
        return None
    data = yaml.safe_load(lock.read_text()) or {}
    for stage in (data.get("stages") or {}).values():
        for out in stage.get("outs") or []:
            if out.get("path") == out_path:
                return out.get("md5")
    return None


def file_digest(*paths: Path) -> str:
    h = hashlib.md5()
    for p in paths:
        h.update(Path(p).read_bytes())
    return h.hexdigest()


_METRIC_OK = re.compile(r"[^A-Za-z0-9_\-./: ]")


def sanitize_metric_name(name: str) -> str:
    """MLflow accepts only letters, digits, ``_ - . : /`` and spaces in metric names."""
    return _METRIC_OK.sub("_", name.replace("@", "_at_").replace("&", "_and_"))


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, Mapping):
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out


def log_params(params: Mapping[str, Any]) -> None:
    import mlflow

    flat = {k: (json.dumps(v) if isinstance(v, list | tuple) else v) for k, v in flatten(params).items()}
    items = list(flat.items())
    for i in range(0, len(items), 90):  # MLflow caps a batch at 100 params
        mlflow.log_params({k: str(v)[:6000] for k, v in items[i : i + 90]})


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    import math
    import time

    clean = {
        sanitize_metric_name(k): float(v)
        for k, v in metrics.items()
        if isinstance(v, int | float) and math.isfinite(float(v))
    }
    if not clean:
        return
    if _BUFFER is not None:
        _BUFFER.add({"op": "metrics", "metrics": clean, "step": step or 0, "ts": int(time.time() * 1000)})
        return
    import mlflow

    mlflow.log_metrics(clean, step=step)


def set_tags(tags: Mapping[str, Any]) -> None:
    """Tags on the active run (buffered inside a stage run)."""
    if _BUFFER is not None:
        _BUFFER.add({"op": "tags", "tags": {k: str(v) for k, v in tags.items()}})
        return
    import mlflow

    mlflow.set_tags(dict(tags))


def log_artifact(path: str | Path, artifact_path: str | None = None) -> None:
    """A file as an artifact of the active run (buffered inside a stage run; the file must stay in place)."""
    if _BUFFER is not None:
        _BUFFER.add({"op": "artifact", "path": str(Path(path).resolve()), "artifact_path": artifact_path})
        return
    import mlflow

    mlflow.log_artifact(str(path), artifact_path=artifact_path)


def log_artifacts(path: str | Path, artifact_path: str | None = None) -> None:
    """A folder's files as artifacts of the active run (buffered inside a stage run)."""
    if _BUFFER is not None:
        _BUFFER.add({"op": "artifacts", "path": str(Path(path).resolve()), "artifact_path": artifact_path})
        return
    import mlflow

    mlflow.log_artifacts(str(path), artifact_path=artifact_path)


def log_table(data: Mapping[str, list[Any]], artifact_file: str) -> None:
    """A table (columns of JSON values) as an artifact of the active run (buffered inside a stage run)."""
    if _BUFFER is not None:
        _BUFFER.add(
            {
                "op": "table",
                "data": json.loads(json.dumps(dict(data), default=str)),
                "artifact_file": artifact_file,
            }
        )
        return
    import mlflow

    mlflow.log_table(data=dict(data), artifact_file=artifact_file)


def spool_dir(root: Path | None = None) -> Path:
    """Where logs that could not reach the tracking server wait (``<repo>/mlflow/spool``)."""
    return (root or repo_root()) / "mlflow" / "spool"


@contextlib.contextmanager
def stage_run(
    stage: str,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    *,
    resume_run_id: str | None = None,
    system_metrics: bool = False,
) -> Iterator[Any]:
    """An MLflow run for one stage; nested under ``$ONETHINKER_PARENT_RUN_ID`` when set.

    ``resume_run_id``: a run to continue (a training resumed from a checkpoint written by that run); a new
    run is started when it is not in this experiment. ``system_metrics``: log CPU, memory (and GPU) use.
    Before starting, ``RUNNING`` runs of the same stage whose process died are marked ``FAILED``; the run
    ends ``KILLED`` on SIGTERM/SIGINT and ``FAILED`` on an exception (see ``tracking.lifecycle``).

    Starting needs the tracking server (a clear error before any work when it is down); after that, logging
    through this module is buffered (see the module docstring), and the run's end status reaches the server
    as soon as the server can be told.
    """
    global _BUFFER
    import mlflow

    from onethinker.tracking import lifecycle
    from onethinker.tracking.buffer import RunBuffer, fail_fast, replay_all

    uri = configure()
    replay_all(spool_dir())  # logs an earlier stage could not send
    exp = experiment_id()
    client = mlflow.MlflowClient()
    resume = resume_run_id if lifecycle.resumable(client, resume_run_id, exp) else None
    lifecycle.mark_dead_runs(client, exp, stage, keep=resume)
    parent = os.environ.get(PARENT_ENV)
    sha, dirty = git_commit()
    all_tags = {
        "onethinker.stage": stage,
        "mlflow.source.git.commit": sha,
        "git_commit": sha,
        "git_dirty": str(dirty).lower(),
        **lifecycle.owner_tags(),
        **(tags or {}),
    }
    if parent:
        all_tags["mlflow.parentRunId"] = parent
    if resume:
        all_tags[lifecycle.TAG_RESUMED] = "true"
    run = mlflow.start_run(
        run_id=resume,
        experiment_id=None if resume else exp,
        run_name=None if resume else stage,
        tags=all_tags,
        log_system_metrics=True if system_metrics else None,  # None: MLflow's own setting decides
    )
    status = "FINISHED"
    try:
        with lifecycle.signals_end_run():
            if params and not resume:  # a resumed run has them (and MLflow params cannot change)
                log_params(params)
            _BUFFER = RunBuffer(run.info.run_id, uri, spool_dir())
            yield run
    except (KeyboardInterrupt, lifecycle.Terminated):
        status = "KILLED"
        raise
    except BaseException:
        status = "FAILED"
        raise
    finally:
        buffer, _BUFFER = _BUFFER, None
        if buffer is not None:
            buffer.close(status, float(os.environ.get(FLUSH_ENV, "60")))
        # forget the run in this process (mlflow.end_run pops it first, then tells the server: when the
        # server is away that call fails at once here, and the buffer's spool tells it later)
        with fail_fast(), contextlib.suppress(Exception):
            mlflow.end_run(status)
