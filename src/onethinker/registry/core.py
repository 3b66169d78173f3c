"""Registry I/O: log the checkpoint as a pyfunc model, register a version, gate it, move the aliases.

Aliases on the registered model (``register.name``):

- ``challenger``: the latest registered version (whatever the gate said);
- ``champion``: the version in service; moved only by the gate (``register_model``), by ``promote`` (gate
  again, or ``force=True``, recorded) and by ``rollback``;
- ``previous_champion``: the champion before the current one (what ``rollback`` restores), absent when there
  is none.

The champion trail lives in the registered model's tag ``champion_history`` (comma-separated versions, oldest
first, current champion last), so repeated rollbacks walk further back and a re-promoted version is pushed
again. Each version carries its lineage (``git_commit``, ``dvc.data_hash``, ``params_hash``,
``sft_run_id``, ``sft_model_id``, ``grpo_run_id`` (= ``training_run_id``), ``grpo_model_id``, ``eval_run_id``,
``register_run_id``, ...), its scores (``eval.mean_accuracy``, ``eval.task.<slug>``) and the
last gate decision (``gate.decision``, ``gate.reasons``, ``gate.forced``). Every change of champion, and every
registration, is also an entry of ``metrics/registry.json``:
``{"registered_model", "champion_version", "champion_mean_accuracy", "latest": {...}, "history": [...]}``.

Functions here configure MLflow through ``onethinker.tracking`` (``MLFLOW_TRACKING_URI`` or the repository's
SQLite store) and print nothing; ``format_result`` renders a result for the CLI.

Run: ``onethinker register`` (the DVC stage ``register``), ``onethinker promote VERSION [--force]``,
``onethinker rollback``; load the model in service with ``mlflow.pyfunc.load_model("models:/<name>@champion")``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import random
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onethinker.metrics_files import headline_path, registry_headline, write_json
from onethinker.registry.config import RegistryConfig
from onethinker.registry.gate import (
    TAG_TASK_PREFIX,
    GateDecision,
    Scores,
    comparable,
    decide,
    scores_from_eval,
    scores_from_tags,
    scores_to_tags,
)

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS = "previous_champion"
HISTORY_TAG = "champion_history"
MAX_TAG = 5000  # MLflow's limit on a model version tag value
LATEST_KEYS = (
    "action",
    "version",
    "decision",
    "forced",
    "mean_accuracy",
    "champion_before",
    "champion_after",
    "reasons",
)
"""The latest entry's headline (``dvc metrics show`` lists its scalars; full entries are in ``history``)."""


class RegistryError(RuntimeError):
    """A registry operation cannot proceed (no champion to roll back from, unknown version, ...)."""


@dataclass(frozen=True)
class RegistrationResult:
    """What ``register_model`` / ``register_version`` did."""

    name: str
    version: str
    model_uri: str
    """The logged model's URI (``models:/m-...``), reusable to register more versions of the same files."""
    decision: GateDecision
    champion_before: str | None
    champion_after: str | None
    run_id: str | None = None
    """The ``register`` run that logged the model (None when an existing model URI was registered)."""
    entry: dict[str, Any] = field(default_factory=dict)
    """The entry appended to the registry file."""

    @property
    def promoted(self) -> bool:
        return self.decision.passed


@dataclass(frozen=True)
class PromotionResult:
    """What ``promote`` / ``rollback`` did. ``decision``: promoted | forced | refused | unchanged | rolled_back."""

    name: str
    version: str
    decision: str
    reasons: tuple[str, ...]
    champion_before: str | None
    champion_after: str | None
    changed: bool
    entry: dict[str, Any] | None = None
    """The entry appended to the registry file (None when nothing changed)."""

    @property
    def forced(self) -> bool:
        return self.decision == "forced"


# --------------------------------------------------------------------------------------------------
# Small pure helpers


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def params_hash(path: Path) -> str | None:
    """md5 of the params file's content as canonical JSON (comments and key order do not count)."""
    import yaml

    if not path.exists():
        return None
    data = yaml.safe_load(path.read_text()) or {}
    return hashlib.md5(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def read_json(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    return data if isinstance(data, dict) else {}


def parse_history(value: str | None) -> list[str]:
    return [v for v in (value or "").split(",") if v.strip()]


def reconcile_history(history: list[str], champion: str | None) -> list[str]:
    """The champion trail, with a champion alias moved by other means pushed on top."""
    if champion is not None and (not history or history[-1] != champion):
        return [*history, champion]
    return list(history)


def _as_int(version: str | None) -> int | None:
    return int(version) if version is not None else None


def _tag_text(items: tuple[str, ...] | list[str]) -> str:
    text = "; ".join(items)
    return text if len(text) <= MAX_TAG else text[: MAX_TAG - 3] + "..."


def append_entry(
    path: Path,
    entry: Mapping[str, Any],
    name: str,
    champion_version: str | None,
    champion_scores: Scores | None,
) -> dict[str, Any]:
    """Append ``entry`` to the registry file's history; refresh the headline. Written atomically.

    The headline (champion version and score, the latest entry's key fields) is what ``dvc metrics show``
    prints; lists (``history``, ``reasons``) are ignored by DVC but kept for the record.
    """
    doc = read_json(path)
    history = list(doc.get("history") or []) + [dict(entry)]
    new = {
        "registered_model": name,
        "champion_version": _as_int(champion_version),
        "champion_mean_accuracy": champion_scores.mean_accuracy if champion_scores else None,
        "latest": {k: entry.get(k) for k in LATEST_KEYS},
        "history": history,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(new, indent=2) + "\n")
    tmp.replace(path)
    write_json(headline_path(path), registry_headline(new), sort_keys=False)
    return new


# --------------------------------------------------------------------------------------------------
# MLflow access


def _client() -> Any:
    import mlflow

    return mlflow.MlflowClient()


def _ensure_registered_model(client: Any, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        try:
            client.create_registered_model(
                name,
                description="OneThinker multimodal reasoning model (pyfunc over a Hugging Face folder). "
                "Aliases: champion (in service), challenger (latest), previous_champion (rollback target).",
            )
        except MlflowException:  # created concurrently
            client.get_registered_model(name)


def _state(client: Any, name: str) -> tuple[dict[str, str], list[str]]:
    """(aliases -> version, champion trail) of the registered model."""
    from mlflow.exceptions import MlflowException

    try:
        rm = client.get_registered_model(name)
    except MlflowException as exc:
        raise RegistryError(f"registered model {name!r} does not exist") from exc
    alias_map = {alias: str(version) for alias, version in (rm.aliases or {}).items()}
    history = reconcile_history(parse_history((rm.tags or {}).get(HISTORY_TAG)), alias_map.get(CHAMPION))
    return alias_map, history


def _version(client: Any, name: str, version: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version(name, str(version))
    except MlflowException as exc:
        raise RegistryError(f"{name} has no version {version}") from exc


def _scores_of(client: Any, name: str, version: str | None) -> Scores | None:
    if version is None:
        return None
    return scores_from_tags(_version(client, name, version).tags or {})


def _set_champion(client: Any, name: str, history: list[str]) -> None:
    """Point ``champion`` at ``history[-1]`` and ``previous_champion`` at ``history[-2]`` (or drop it)."""
    client.set_registered_model_tag(name, HISTORY_TAG, ",".join(history))
    client.set_registered_model_alias(name, CHAMPION, history[-1])
    if len(history) >= 2:
        client.set_registered_model_alias(name, PREVIOUS, history[-2])
    else:
        _drop_alias(client, name, PREVIOUS)


def _drop_alias(client: Any, name: str, alias: str) -> None:
    from mlflow.exceptions import MlflowException

    with contextlib.suppress(MlflowException):  # not set
        client.delete_registered_model_alias(name, alias)


LOCK_SUFFIX = ".lock"
LOCK_HOLDER_TAG = "lock.holder"
LOCK_EXPIRES_TAG = "lock.expires"


@contextlib.contextmanager
def registry_lock(
    client: Any, name: str, wait_s: float = 600.0, lease_s: float = 120.0, poll_s: float = 0.2
) -> Iterator[str]:
    """Exclusive access to ``name``'s champion (aliases, champion history, registry file) across processes.

    The lock is a registered model named ``<name>.lock``, created while held and deleted on release: its
    creation is atomic in every MLflow store (the name is the table's primary key in SQLite and Postgres, and
    a server answers ``RESOURCE_ALREADY_EXISTS`` to the second creator), so it works on a local store and
    through a tracking server alike, and needs no shared file system. A lock whose holder died is taken over
    after its lease (``lock.expires`` tag) has passed; the critical sections it guards take seconds (a
    champion's re-scoring runs outside it). Yields the holder token.
    """
    from mlflow.exceptions import MlflowException

    lock_name = f"{name}{LOCK_SUFFIX}"
    token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
    deadline = time.monotonic() + wait_s
    rng = random.Random(token)
    while True:
        try:
            client.create_registered_model(
                lock_name,
                tags={LOCK_HOLDER_TAG: token, LOCK_EXPIRES_TAG: repr(time.time() + lease_s)},
                description=f"Lock held while the champion of {name!r} is being decided (deleted on release).",
            )
            break
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        holder = _break_stale_lock(client, lock_name)
        if time.monotonic() > deadline:
            raise RegistryError(
                f"registered model {name!r} is locked by {holder or 'another process'} (lock {lock_name!r}); "
                f"gave up after {wait_s:.0f}s"
            )
        time.sleep(poll_s * (0.5 + rng.random()))
    try:
        yield token
    finally:
        with contextlib.suppress(MlflowException):
            tags = client.get_registered_model(lock_name).tags or {}
            if tags.get(LOCK_HOLDER_TAG) == token:
                client.delete_registered_model(lock_name)


def _break_stale_lock(client: Any, lock_name: str) -> str | None:
    """Delete the lock if its lease has expired; return its holder (None when it is gone)."""
    from mlflow.exceptions import MlflowException

    try:
        tags = client.get_registered_model(lock_name).tags or {}
    except MlflowException:
        return None  # released meanwhile
    holder = tags.get(LOCK_HOLDER_TAG)
    try:
        expires = float(tags.get(LOCK_EXPIRES_TAG, "inf"))
    except ValueError:
        expires = 0.0
    if time.time() > expires:
        with contextlib.suppress(MlflowException):
            if (client.get_registered_model(lock_name).tags or {}).get(LOCK_HOLDER_TAG) == holder:
                client.delete_registered_model(lock_name)
    return holder


def _verify_champion(client: Any, name: str, history: list[str]) -> None:
    """Re-read the champion after writing it: under the lock nobody else may have moved it."""
    alias_map, found = _state(client, name)
    if alias_map.get(CHAMPION) != history[-1] or found != history:
        raise RegistryError(
            f"{name}: the champion changed while it was being written (expected v{history[-1]} with history "
            f"{','.join(history)}, found v{alias_map.get(CHAMPION)} with {','.join(found)}); "
            f"is another process writing without the lock?"
        )


def _gate_tags(decision: GateDecision, label: str | None = None) -> dict[str, str]:
    return {
        "gate.decision": label or decision.decision,
        "gate.reasons": _tag_text(decision.reasons),
        "gate.failed": ",".join(decision.failed),
        "gate.compared_to": decision.champion_version or "none",
        "gate.time": now(),
    }


# --------------------------------------------------------------------------------------------------
# Lineage


def lineage_tags(
    cfg: RegistryConfig, root: Path, eval_metrics: Mapping[str, Any], model_dir: str | None = None
) -> dict[str, str]:
    """Tags tying a version to its code, data, params and runs (absent values are left out).

    ``model_dir`` (relative to ``root``) defaults to ``cfg.model_dir``; its DVC hash is ``dvc.model_hash``.
    """
    model_dir = model_dir or cfg.model_dir
    from onethinker.tracking import dvc_out_hash, git_commit
    from onethinker.tracking.lineage import dvc_md5

    sha, dirty = git_commit(root)
    train = read_json(root / cfg.train_metrics) if cfg.train_metrics else {}
    sft = read_json(root / cfg.sft_metrics) if cfg.sft_metrics else {}
    data = root / cfg.data_out
    values = {
        "git_commit": sha,
        "git_dirty": str(dirty).lower(),
        "dvc.data_hash": dvc_md5(data) if data.exists() else dvc_out_hash(cfg.data_out, root),
        "dvc.model_hash": dvc_out_hash(model_dir, root),
        "params_hash": params_hash(root / cfg.params_file),
        "eval_run_id": eval_metrics.get("mlflow_run_id"),
        "training_run_id": train.get("mlflow_run_id"),
        "grpo_run_id": train.get("mlflow_run_id"),
        "grpo_model_id": train.get("mlflow_model_id"),
        "sft_run_id": sft.get("mlflow_run_id"),
        "sft_model_id": sft.get("mlflow_model_id"),
        "model_key": cfg.model,
        "model_dir": model_dir,
    }
    return {k: str(v) for k, v in values.items() if v is not None}


def link_inputs(root: Path, cfg: RegistryConfig, lineage: Mapping[str, str]) -> None:
    """Inputs of the active (register) run: the data (a dataset whose digest is its DVC hash) and the
    trained models it registers (``LoggedModelInput``; best effort: they may live in another store)."""
    import mlflow
    from mlflow.entities import LoggedModelInput
    from mlflow.exceptions import MlflowException

    from onethinker.tracking.lineage import log_dataset

    data = root / cfg.data_out
    if data.exists():
        files = sorted((data / "eval").glob("*.json")) if (data / "eval").is_dir() else []
        log_dataset(data, files, "onethinker-eval", "evaluation")
    for key in ("sft_model_id", "grpo_model_id"):
        if key in lineage:
            with contextlib.suppress(MlflowException):
                mlflow.log_input(model=LoggedModelInput(lineage[key]))


def _link_back(client: Any, run_ids: list[str], name: str, version: str) -> None:
    """Tag the training and evaluation runs with the version they became (best effort)."""
    from mlflow.exceptions import MlflowException

    for run_id in run_ids:
        with contextlib.suppress(MlflowException):  # the run lives in another store, or was deleted
            client.set_tag(run_id, "registry.version", f"{name}/{version}")


# --------------------------------------------------------------------------------------------------
# Registration


def register_version(
    cfg: RegistryConfig,
    model_uri: str,
    scores: Scores,
    tags: Mapping[str, str] | None = None,
    *,
    root: Path | None = None,
    run_id: str | None = None,
    rescore: Callable[[str], Scores] | None = None,
) -> RegistrationResult:
    """Register ``model_uri`` as a new version, alias it ``challenger``, gate it against ``champion``.

    ``tags`` (lineage) and the scores become version tags; the gate's decision and reasons too. The version
    becomes ``champion`` when the gate passes. One entry is appended to ``cfg.registry_file``.

    When the champion was scored on another evaluation sample than ``scores`` (see ``gate.comparable``) and
    ``rescore`` is given, ``rescore("models:/<name>/<champion>")`` scores it again on this sample first; its
    version tags are updated (``eval.rescored_from`` keeps the old sample) and the entry says so.
    """
    import mlflow

    from onethinker.tracking import configure, repo_root

    root = Path(root) if root is not None else repo_root()
    configure(root)
    client = _client()
    name = cfg.name
    _ensure_registered_model(client, name)

    version_tags = {**dict(tags or {}), **scores_to_tags(scores)}
    if run_id:
        version_tags["register_run_id"] = run_id
    mv = mlflow.register_model(model_uri, name, tags=version_tags)
    version = str(mv.version)
    client.set_registered_model_alias(name, CHALLENGER, version)

    rescored: dict[str, Any] | None = None
    for _attempt in range(5):
        # a champion scored on another sample is re-scored first, outside the lock (it takes minutes)
        champion = _state(client, name)[0].get(CHAMPION)
        champion_scores = _scores_of(client, name, champion)
        if champion and champion_scores and rescore is not None and not comparable(scores, champion_scores):
            rescored = _rescore_champion(client, name, champion, champion_scores, rescore)
        with registry_lock(client, name):
            alias_map, history = _state(client, name)
            if alias_map.get(CHAMPION) != champion:
                continue  # another process moved the champion meanwhile: gate against the new one
            champion_scores = _scores_of(client, name, champion)
            if (
                champion
                and champion_scores
                and rescore is not None
                and not comparable(scores, champion_scores)
            ):
                continue
            decision = decide(scores, champion_scores, cfg.gate, champion)
            for key, value in _gate_tags(decision).items():
                client.set_model_version_tag(name, version, key, value)
            champion_after = champion
            if decision.passed:
                history = [*history, version]
                _set_champion(client, name, history)
                _verify_champion(client, name, history)
                champion_after = version
            entry = {
                "time": now(),
                "action": "register",
                "version": int(version),
                "decision": decision.decision,
                "forced": False,
                "reasons": list(decision.reasons),
                "mean_accuracy": scores.mean_accuracy,
                "format_rate": scores.format_rate,
                "champion_before": _as_int(champion),
                "champion_after": _as_int(champion_after),
                "champion_mean_accuracy_before": champion_scores.mean_accuracy if champion_scores else None,
                "model_key": version_tags.get("model_key"),
                "run_id": run_id,
            }
            if rescored is not None and rescored["version"] == _as_int(champion):
                entry["champion_rescored"] = rescored
            append_entry(
                root / cfg.registry_file,
                entry,
                name,
                champion_after,
                scores if decision.passed else champion_scores,
            )
            break
    else:
        raise RegistryError(
            f"{name}: the champion kept changing while v{version} was being gated; run it again"
        )
    _link_back(
        client,
        sorted(
            {version_tags[k] for k in ("eval_run_id", "training_run_id", "sft_run_id") if k in version_tags}
        ),
        name,
        version,
    )
    return RegistrationResult(name, version, model_uri, decision, champion, champion_after, run_id, entry)


def _rescore_champion(
    client: Any, name: str, champion: str, before: Scores, rescore: Callable[[str], Scores]
) -> dict[str, Any]:
    """Score the champion again on the current sample and update its version tags; what changed."""
    after = rescore(f"models:/{name}/{champion}")
    champion_tags = {**scores_to_tags(after), "eval.rescored_from": before.sample or "unknown"}
    for key, value in champion_tags.items():
        client.set_model_version_tag(name, champion, key, value)
    for key in _version(client, name, champion).tags or {}:  # tasks the new sample no longer has
        if key.startswith(TAG_TASK_PREFIX) and key not in champion_tags:
            client.delete_model_version_tag(name, champion, key)
    return {
        "version": int(champion),
        "from_sample": before.sample,
        "to_sample": after.sample,
        "mean_accuracy_before": before.mean_accuracy,
        "mean_accuracy_after": after.mean_accuracy,
    }


def check_evaluated_model(eval_metrics: Mapping[str, Any], model_key: str, model_dir: Path) -> str:
    """The evaluation must have scored this very folder: ``models.<key>.model_fingerprint`` in the evaluation
    metrics (written by ``evaluate``: a hash of the folder's file contents) must equal the folder's own.
    Returns the fingerprint; raises RegistryError otherwise (nothing is logged)."""
    from onethinker.training.checkpoint import model_fingerprint

    entry = (eval_metrics.get("models") or {}).get(model_key) or {}
    scored = entry.get("model_fingerprint") if isinstance(entry, Mapping) else None
    actual = model_fingerprint(model_dir)
    if not scored:
        raise RegistryError(
            f"the evaluation metrics do not record which model folder models.{model_key} scored "
            f"(no model_fingerprint): re-run the evaluate stage before registering {model_dir}"
        )
    if scored != actual:
        raise RegistryError(
            f"the evaluation scored another model than {model_dir}: models.{model_key}.model_fingerprint is "
            f"{scored}, the folder's is {actual}; re-run the evaluate stage on this folder"
        )
    return actual


def _code_copy(dest: Path) -> Path:
    """A clean copy of the ``onethinker`` package (no caches) to ship as the model's ``code_paths``."""
    import onethinker

    src = Path(onethinker.__file__).resolve().parent
    out = dest / "onethinker"
    shutil.copytree(src, out, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return out


def log_pyfunc_model(
    cfg: RegistryConfig,
    model_dir: Path,
    *,
    media: Any = None,
    prompt_style: str = "compact",
    tags: Mapping[str, str] | None = None,
) -> Any:
    """Log ``model_dir`` as a pyfunc model in the active run; returns MLflow's ``ModelInfo``.

    ``media`` (a ``MediaConfig``) and ``prompt_style`` are frozen into the model's ``model_config`` so the
    served model decodes media and words prompts as evaluation did. Logging runs the input example once
    through the loaded model (MLflow validates it).
    """
    import mlflow

    from onethinker.config import MediaConfig
    from onethinker.registry import pyfunc

    media = media or MediaConfig()
    model_config = {
        "prompt_style": prompt_style,
        "max_new_tokens": cfg.max_new_tokens,
        "batch_size": 8,
        "image_min_pixels": media.image_min_pixels,
        "image_max_pixels": media.image_max_pixels,
        "video_min_pixels": media.video_min_pixels,
        "video_max_pixels": media.video_max_pixels,
        "video_fps": media.video_fps,
        "video_max_frames": media.video_max_frames,
        "media_root": "",  # served media are confined here; "" = the working directory at load time
    }
    with tempfile.TemporaryDirectory(prefix="onethinker-code-") as tmp:
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=str(Path(pyfunc.__file__).with_name("model_code.py")),  # models from code
            artifacts={pyfunc.MODEL_ARTIFACT: str(model_dir)},
            code_paths=[str(_code_copy(Path(tmp)))],
            pip_requirements=pyfunc.pip_requirements(),
            signature=pyfunc.model_signature(cfg.max_new_tokens),
            input_example=pyfunc.input_example(),
            model_config=model_config,
            tags=dict(tags or {}),
        )


def register_model(
    cfg: RegistryConfig,
    model_dir: str | Path | None = None,
    eval_metrics: Mapping[str, Any] | str | Path | None = None,
    model_key: str | None = None,
    tags: Mapping[str, str] | None = None,
    *,
    root: Path | None = None,
    media: Any = None,
    prompt_style: str = "compact",
    rescore: Callable[[str], Scores] | None = None,
) -> RegistrationResult:
    """The ``register`` stage: log the checkpoint, register a version, gate it (see the module docstring).

    ``model_dir`` / ``eval_metrics`` (a dict or a path) / ``model_key`` default to ``cfg.model_dir`` /
    ``cfg.eval_metrics`` / ``cfg.model``; relative paths (and params.yaml, dvc.lock, the registry file) are
    taken from ``root``, the repository (default: found from the working directory). ``tags`` are added to
    the lineage tags. Runs inside a ``register`` MLflow stage run (``onethinker.tracking.stage_run``: the
    store is ``MLFLOW_TRACKING_URI`` or the repository's SQLite store), whose id is in the result.
    ``rescore`` re-scores a champion evaluated on another sample (see ``register_version``).
    Raises ``ScoresError`` / ``RegistryError`` before logging anything when inputs are missing.
    """
    import mlflow

    from onethinker.config import to_dict
    from onethinker.tracking import repo_root, sanitize_metric_name, stage_run

    root = Path(root) if root is not None else repo_root()
    model_key = model_key or cfg.model
    model_dir = Path(model_dir) if model_dir is not None else Path(cfg.model_dir)
    model_dir = model_dir if model_dir.is_absolute() else root / model_dir
    if not (model_dir / "config.json").exists():
        raise RegistryError(f"{model_dir} is not a saved Hugging Face model folder (no config.json)")
    if eval_metrics is None or isinstance(eval_metrics, str | Path):
        path = Path(eval_metrics or cfg.eval_metrics)
        path = path if path.is_absolute() else root / path
        if not path.exists():
            raise RegistryError(f"{path} not found: run the evaluate stage first")
        eval_metrics = json.loads(path.read_text())
    scores = scores_from_eval(eval_metrics, model_key)  # fail before logging anything
    check_evaluated_model(eval_metrics, model_key, model_dir)
    rel = model_dir.relative_to(root).as_posix() if model_dir.is_relative_to(root) else str(model_dir)
    lineage = {**lineage_tags(cfg, root, eval_metrics, rel), "model_key": model_key, **dict(tags or {})}

    with stage_run("register", params={"register": to_dict(cfg)}, tags=lineage) as run:
        link_inputs(root, cfg, lineage)
        info = log_pyfunc_model(cfg, model_dir, media=media, prompt_style=prompt_style, tags=lineage)
        metrics = {
            "eval.mean_accuracy": scores.mean_accuracy,
            **{f"eval.task.{k}": v for k, v in scores.tasks.items()},
        }
        if scores.format_rate is not None:
            metrics["eval.format_rate"] = scores.format_rate
        # logged on the run and linked to the logged model (MLflow 3 model metrics)
        mlflow.log_metrics({sanitize_metric_name(k): v for k, v in metrics.items()}, model_id=info.model_id)
        if (root / cfg.params_file).exists():
            mlflow.log_artifact(str(root / cfg.params_file))
        result = register_version(
            cfg, info.model_uri, scores, lineage, root=root, run_id=run.info.run_id, rescore=rescore
        )
        mlflow.set_tags(
            {"registry.version": f"{cfg.name}/{result.version}", "gate.decision": result.decision.decision}
        )
    return result


# --------------------------------------------------------------------------------------------------
# By hand: promote, rollback


def promote(
    cfg: RegistryConfig, version: str | int, force: bool = False, *, root: Path | None = None
) -> PromotionResult:
    """Make ``version`` the champion if it passes the gate against the current champion (or ``force``).

    Already champion: nothing changes (``decision="unchanged"``, no history entry). Gate failed without
    ``force``: nothing changes (``decision="refused"``, reasons given). Gate failed with ``force``:
    promoted, tagged ``gate.forced=true`` and recorded with ``"forced": true``. A version without eval scores
    fails the gate.
    """
    from onethinker.tracking import configure, repo_root

    root = Path(root) if root is not None else repo_root()
    configure(root)
    client = _client()
    name, version = cfg.name, str(version)
    _state(client, name)  # RegistryError for an unknown model, before taking the lock
    with registry_lock(client, name):
        return _promote_locked(cfg, client, name, version, force, root)


def _promote_locked(
    cfg: RegistryConfig, client: Any, name: str, version: str, force: bool, root: Path
) -> PromotionResult:
    alias_map, history = _state(client, name)
    mv = _version(client, name, version)
    champion = alias_map.get(CHAMPION)
    if champion == version:
        return PromotionResult(
            name,
            version,
            "unchanged",
            (f"v{version} is already {CHAMPION}",),
            champion,
            champion,
            changed=False,
        )
    candidate = scores_from_tags(mv.tags or {})
    champion_scores = _scores_of(client, name, champion)
    if candidate is None:
        from onethinker.registry.gate import Check

        gate = GateDecision(False, (Check("scores", False, f"v{version} carries no eval scores"),), champion)
    else:
        gate = decide(candidate, champion_scores, cfg.gate, champion)
    if not gate.passed and not force:
        return PromotionResult(name, version, "refused", gate.reasons, champion, champion, changed=False)

    label = "promoted" if gate.passed else "forced"
    tags = {**_gate_tags(gate, label), "gate.manual": "true"}
    if label == "forced":
        tags["gate.forced"] = "true"
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    _set_champion(client, name, [*history, version])
    _verify_champion(client, name, [*history, version])
    entry = {
        "time": now(),
        "action": "promote",
        "version": int(version),
        "decision": label,
        "forced": label == "forced",
        "reasons": list(gate.reasons),
        "mean_accuracy": candidate.mean_accuracy if candidate else None,
        "format_rate": candidate.format_rate if candidate else None,
        "champion_before": _as_int(champion),
        "champion_after": int(version),
        "champion_mean_accuracy_before": champion_scores.mean_accuracy if champion_scores else None,
        "model_key": (mv.tags or {}).get("model_key"),
        "run_id": mv.run_id,
    }
    append_entry(root / cfg.registry_file, entry, name, version, candidate)
    return PromotionResult(name, version, label, gate.reasons, champion, version, changed=True, entry=entry)


def rollback(cfg: RegistryConfig, *, root: Path | None = None) -> PromotionResult:
    """Restore the previous champion (``previous_champion``); repeated calls walk further back.

    Raises ``RegistryError`` when there is no champion or no earlier one. Versions deleted from the registry
    are skipped. The demoted version is tagged ``rollback.demoted=<time>``.
    """
    from onethinker.tracking import configure, repo_root

    root = Path(root) if root is not None else repo_root()
    configure(root)
    client = _client()
    name = cfg.name
    _state(client, name)  # RegistryError for an unknown model, before taking the lock
    with registry_lock(client, name):
        return _rollback_locked(cfg, client, name, root)


def _rollback_locked(cfg: RegistryConfig, client: Any, name: str, root: Path) -> PromotionResult:
    alias_map, history = _state(client, name)
    current = alias_map.get(CHAMPION)
    if current is None:
        raise RegistryError(f"{name} has no {CHAMPION} to roll back")
    trail = history[:-1]
    while trail and not _exists(client, name, trail[-1]):
        trail.pop()
    if not trail:
        raise RegistryError(f"{name}: v{current} is the first {CHAMPION}; there is nothing to roll back to")
    restored = trail[-1]
    _set_champion(client, name, trail)
    _verify_champion(client, name, trail)
    stamp = now()
    client.set_model_version_tag(name, current, "rollback.demoted", stamp)
    client.set_model_version_tag(name, restored, "rollback.restored", stamp)
    restored_scores = _scores_of(client, name, restored)
    reason = f"rolled back from v{current} to v{restored}"
    entry = {
        "time": stamp,
        "action": "rollback",
        "version": int(restored),
        "decision": "rolled_back",
        "forced": False,
        "reasons": [reason],
        "mean_accuracy": restored_scores.mean_accuracy if restored_scores else None,
        "format_rate": restored_scores.format_rate if restored_scores else None,
        "champion_before": int(current),
        "champion_after": int(restored),
        "champion_mean_accuracy_before": None,
        "model_key": None,
        "run_id": None,
    }
    append_entry(root / cfg.registry_file, entry, name, restored, restored_scores)
    return PromotionResult(
        name, restored, "rolled_back", (reason,), current, restored, changed=True, entry=entry
    )


def _exists(client: Any, name: str, version: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client.get_model_version(name, version)
        return True
    except MlflowException:
        return False


def aliases(cfg: RegistryConfig, *, root: Path | None = None) -> dict[str, str]:
    """The registered model's aliases (alias -> version); empty when the model is not registered yet."""
    from onethinker.tracking import configure, repo_root

    configure(Path(root) if root is not None else repo_root())
    try:
        return _state(_client(), cfg.name)[0]
    except RegistryError:
        return {}


# --------------------------------------------------------------------------------------------------
# Rendering for the CLI


def format_result(result: RegistrationResult | PromotionResult) -> str:
    """A few lines for the terminal: what happened, why, and where the aliases point now."""
    if isinstance(result, RegistrationResult):
        head = (
            f"registered {result.name} v{result.version} ({result.model_uri}); alias {CHALLENGER}; "
            f"gate: {result.decision.decision}"
        )
        reasons = result.decision.reasons
        rescored = result.entry.get("champion_rescored")
        if rescored:
            before, after = rescored["mean_accuracy_before"], rescored["mean_accuracy_after"]
            reasons = (
                f"champion v{rescored['version']} re-scored on this evaluation sample first: "
                f"mean_accuracy {before:.4f} (sample {rescored['from_sample'] or 'unknown'}) -> {after:.4f}",
                *reasons,
            )
    else:
        head = f"{result.name} v{result.version}: {result.decision}"
        reasons = result.reasons
    lines = [head, *(f"  - {r}" for r in reasons)]
    lines.append(f"  {CHAMPION}: v{result.champion_before or '-'} -> v{result.champion_after or '-'}")
    return "\n".join(lines)
