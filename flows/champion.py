"""The current champion of the MLflow model registry and a local folder holding its Hugging Face model.

The register stage puts the alias ``champion`` on the version in service and tags every version with
``model_dir`` (the workspace folder it was logged from, relative to the repository) and ``dvc.model_hash``
(that folder's hash in ``dvc.lock`` at registration). :func:`resolve_champion` uses the workspace folder
when it still holds that model (the tag's folder exists and, when both hashes are known, ``dvc.lock`` still
records the same hash); otherwise it downloads the version's artifacts once into
``checkpoints/champion/<name>-v<version>/`` and returns the folder with ``config.json`` inside them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHAMPION_ALIAS = "champion"


class ChampionNotFound(LookupError):
    """The registered model has no version with the alias."""


@dataclass(frozen=True)
class Champion:
    name: str
    version: str
    model_dir: Path
    """A local folder with the saved Hugging Face model (``config.json`` inside)."""
    source: str
    """``workspace`` (the version's ``model_dir`` tag) or ``download`` (the version's artifacts)."""
    run_id: str | None = None


def find_model_folder(root: Path) -> Path | None:
    """The shallowest folder under ``root`` holding a ``config.json`` (the pyfunc's ``hf_model`` artifact)."""
    candidates = sorted(root.rglob("config.json"), key=lambda p: (len(p.parts), str(p)))
    return candidates[0].parent if candidates else None


def workspace_folder(tags: dict[str, str], root: Path, lock_hash: str | None) -> Path | None:
    """The version's ``model_dir`` in the workspace if it still holds the registered model, else None."""
    rel = tags.get("model_dir")
    if not rel:
        return None
    folder = Path(rel) if Path(rel).is_absolute() else root / rel
    if not (folder / "config.json").exists():
        return None
    registered = tags.get("dvc.model_hash")
    if registered and lock_hash and registered != lock_hash:
        return None  # the workspace folder has been retrained since this version was registered
    return folder


def resolve_champion(name: str, root: Path, alias: str = CHAMPION_ALIAS, client: Any = None) -> Champion:
    """The version behind ``name@alias`` and a local folder with its model (see the module docstring)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from onethinker.tracking import configure, dvc_out_hash

    if client is None:
        configure(root)
        client = mlflow.MlflowClient()
    try:
        mv = client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        raise ChampionNotFound(
            f"no version of registered model {name!r} carries the alias {alias!r} "
            f"(run the training pipeline's register stage first): {exc}"
        ) from exc
    tags = dict(mv.tags or {})
    rel = tags.get("model_dir")
    lock_hash = dvc_out_hash(rel, root) if rel and not Path(rel).is_absolute() else None
    folder = workspace_folder(tags, root, lock_hash)
    if folder is not None:
        return Champion(name, str(mv.version), folder.resolve(), "workspace", mv.run_id)

    dest = root / "checkpoints" / "champion" / f"{name}-v{mv.version}"
    found = find_model_folder(dest) if dest.exists() else None
    if found is None:
        dest.mkdir(parents=True, exist_ok=True)
        mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{mv.version}", dst_path=str(dest))
        found = find_model_folder(dest)
    if found is None:
        raise ChampionNotFound(
            f"{name} v{mv.version}: no Hugging Face folder (config.json) in its artifacts "
            f"downloaded to {dest}"
        )
    return Champion(name, str(mv.version), found.resolve(), "download", mv.run_id)
