"""Lineage in MLflow: the data a run read (named by its DVC hash) and the checkpoints it wrote (logged models).

- ``dvc_md5``: the hash DVC records for an output (a file's md5, or a folder's ``<md5>.dir``: the md5 of
  the JSON list of its files' md5s and relative paths, as DVC 3 computes it), computed from the files on
  disk, so it is right even when ``dvc.lock`` is stale (a stage run by hand).
- ``log_dataset``: an MLflow dataset input whose digest is the DVC hash of the data folder, with one row per
  record read (problem id, task, modality, file), and the tag ``dvc.data_hash``. Two runs that read the same
  bytes show the same dataset.
- ``log_checkpoint``: an MLflow 3 logged model for a checkpoint, linked to the active run at its training
  step (``LoggedModelOutput``); the final model of a stage carries its files and its held-out metrics
  (``mlflow.log_metrics(..., model_id=...)``), an intermediate checkpoint is a record pointing at the
  resumable checkpoint folder on disk (its weights stay there: uploading every optimizer state would
  multiply the store's size).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

DATA_HASH_TAG = "dvc.data_hash"
MAX_FILES_MB = 200.0
"""A model folder larger than this is not copied into MLflow (the logged model then names its DVC hash)."""


def _file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def dvc_md5(path: str | Path) -> str:
    """DVC 3's md5 of a file, or of a folder (``<md5>.dir``); ``.dvcignore`` patterns are not applied."""
    path = Path(path)
    if path.is_file():
        return _file_md5(path)
    entries = []
    for folder, _dirs, files in os.walk(path):
        for name in files:
            f = Path(folder) / name
            entries.append({"md5": _file_md5(f), "relpath": f.relative_to(path).as_posix()})
    entries.sort(key=lambda e: e["relpath"])
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode()).hexdigest() + ".dir"


def folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 2**20


def _relative(path: str | Path) -> str:
    p = Path(path)
    if p.is_absolute():
        try:
            return p.relative_to(Path.cwd()).as_posix()
        except ValueError:
            return p.as_posix()
    return p.as_posix()


def record_rows(files: Iterable[str | Path]) -> list[dict[str, str]]:
    """One row per record of the OneThinker files: what a dataset input's table shows."""
    from onethinker.contract.io import read_records

    rows = []
    for f in files:
        for r in read_records(f):
            rows.append(
                {
                    "problem_id": str(r.get("problem_id", "")),
                    "problem_type": str(r.get("problem_type", "")),
                    "data_type": str(r.get("data_type", "")),
                    "file": Path(f).name,
                }
            )
    return rows


def log_dataset(
    data_root: str | Path,
    files: Iterable[str | Path],
    name: str,
    context: str,
    digest_of: Iterable[str | Path] | None = None,
) -> str:
    """Log the records of ``files`` as a dataset input of the active run, its digest the DVC hash of
    ``data_root``; tag the run ``dvc.data_hash``. Returns the hash.

    ``digest_of``: files outside the DVC-tracked data (e.g. released benchmarks named in params): the
    digest is then the md5 of their DVC md5s, and the tag is not set.
    """
    import mlflow
    import pandas as pd

    files = list(files)
    if digest_of is not None:
        digest = hashlib.md5("".join(dvc_md5(f) for f in digest_of).encode()).hexdigest()
    else:
        digest = dvc_md5(data_root)
    frame = pd.DataFrame(record_rows(files), columns=["problem_id", "problem_type", "data_type", "file"])
    with warnings.catch_warnings():  # MLflow registers two equivalent local sources and says so
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
        dataset = mlflow.data.from_pandas(frame, source=_relative(data_root), name=name, digest=digest)
    mlflow.log_input(dataset, context=context)
    if digest_of is None:
        mlflow.set_tag(DATA_HASH_TAG, digest)
    return digest


def log_checkpoint(
    name: str,
    step: int,
    path: str | Path,
    *,
    with_files: bool,
    tags: Mapping[str, str] | None = None,
    metrics: Mapping[str, float] | None = None,
) -> str:
    """A logged model for the checkpoint at ``path``, linked to the active run at ``step``; returns its id.

    ``with_files``: copy the folder into the model (skipped above ``MAX_FILES_MB``). ``metrics`` (e.g. the
    held-out scores) are logged on the run at ``step`` and attached to the model.
    """
    import mlflow
    from mlflow.entities import LoggedModelOutput

    from onethinker.tracking import sanitize_metric_name

    path = Path(path)
    size_mb = folder_mb(path) if path.exists() else 0.0
    copy = with_files and path.exists() and size_mb <= MAX_FILES_MB
    model_tags = {
        "onethinker.checkpoint.path": _relative(path),
        "onethinker.checkpoint.step": str(step),
        "onethinker.checkpoint.size_mb": f"{size_mb:.1f}",
        "onethinker.checkpoint.files": "logged" if copy else "on disk only",
        **dict(tags or {}),
    }
    model = mlflow.initialize_logged_model(name=name, tags=model_tags, model_type="hf-checkpoint")
    try:
        if copy:
            mlflow.MlflowClient().log_model_artifacts(model.model_id, str(path))
        mlflow.log_outputs([LoggedModelOutput(model.model_id, step)])
        clean = {
            sanitize_metric_name(k): float(v)
            for k, v in (metrics or {}).items()
            if isinstance(v, int | float) and math.isfinite(float(v))
        }
        if clean:
            mlflow.log_metrics(clean, step=step, model_id=model.model_id)
    except BaseException:
        mlflow.finalize_logged_model(model.model_id, "FAILED")
        raise
    mlflow.finalize_logged_model(model.model_id, "READY")
    return model.model_id


def resume_filter(run_id: str | None, resumed: bool) -> Any:
    """``keep(step)``: False for steps the run already logged before it was interrupted (resume only)."""
    if not resumed or not run_id:
        return lambda step: True
    import mlflow

    from onethinker.tracking.lifecycle import last_logged_step

    last = last_logged_step(mlflow.MlflowClient(), run_id)
    return lambda step: step > last
