"""A real MLflow store (SQLite + file artifacts under a temporary folder) and one logged tiny model.

- ``mlflow_store``: one SQLite store per test module (creating the schema takes seconds);
  ``MLFLOW_TRACKING_URI`` points at it, the ``onethinker`` experiment's artifacts go under the same temporary
  folder, and the working directory is moved there while the module runs (restored afterwards), so nothing
  lands in the repository or the home folder.
- ``logged``: the tiny model, built once and logged once through ``register_model`` (registered model
  ``logged``); its ``model_uri`` is reused by the other tests to register extra versions cheaply.
- ``make_cfg``: a ``RegistryConfig`` with a fresh registered model name and registry file per test.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from onethinker.registry.config import FloorsConfig, GateConfig, RegistryConfig

GATE = GateConfig(margin=0.02, task_tolerance=0.05, floors=FloorsConfig(mean_accuracy=0.3, format_rate=0.5))


def make_eval_doc(
    mean_accuracy: float,
    tasks: dict[str, float],
    format_rate: float = 0.9,
    model: str = "grpo",
    run_id: str | None = None,
    model_dir: Path | None = None,
) -> dict[str, Any]:
    """A metrics/eval.json document with one model entry (``model_dir``: the folder it scored, whose
    fingerprint the entry records, as the evaluate stage writes it)."""
    doc: dict[str, Any] = {
        "models": {
            model: {
                "mean_accuracy": mean_accuracy,
                "format_rate": format_rate,
                "tasks": {slug: {"accuracy": acc, "format_rate": format_rate} for slug, acc in tasks.items()},
                "benchmarks": {},
            }
        }
    }
    if run_id:
        doc["mlflow_run_id"] = run_id
    if model_dir is not None:
        from onethinker.training.checkpoint import model_fingerprint

        doc["models"][model]["model_fingerprint"] = model_fingerprint(model_dir)
    return doc


@pytest.fixture(scope="session")
def eval_doc() -> Callable[..., dict[str, Any]]:
    """``eval_doc(mean_accuracy, {slug: accuracy}, format_rate=0.9, model="grpo", run_id=None, model_dir=None)``."""
    return make_eval_doc


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory) -> Iterator[Path]:
    import mlflow

    home = tmp_path_factory.mktemp("mlflow_store")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
        mp.delenv("ONETHINKER_PARENT_RUN_ID", raising=False)
        mp.chdir(home)
        mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
        mlflow.MlflowClient().create_experiment("onethinker", artifact_location=(home / "artifacts").as_uri())
        yield home
        mlflow.set_tracking_uri(None)  # back to "unset" (MonkeyPatch then restores the environment)


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> Path:
    from onethinker.modeling import BaseModelConfig, build_base_model

    corpus = [f"What colour is square {i}? <think>It is red.</think><answer>red</answer>" for i in range(30)]
    return build_base_model(
        BaseModelConfig(vocab_size=512), corpus, tmp_path_factory.mktemp("tiny") / "model"
    )


@pytest.fixture(scope="module")
def logged_root(tmp_path_factory) -> Path:
    """A repository-like folder: params.yaml, dvc.lock with a data hash, the training metrics' run id."""
    root = tmp_path_factory.mktemp("repo")
    (root / "params.yaml").write_text("register:\n  name: logged\n")
    (root / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  prepare:\n    cmd: onethinker prepare\n    outs:\n"
        "    - path: data\n      md5: 0123456789abcdef0123456789abcdef.dir\n"
    )
    (root / "metrics").mkdir()
    (root / "metrics" / "grpo.json").write_text(json.dumps({"mlflow_run_id": "train-run-123"}))
    return root


@pytest.fixture(scope="module")
def logged(mlflow_store, tiny_model_dir, logged_root) -> Any:
    """The tiny model logged and registered once (first version of ``logged``: passes the floors)."""
    from onethinker.registry import register_model

    cfg = RegistryConfig(name="logged", gate=GATE, max_new_tokens=16)
    doc = make_eval_doc(0.5, {"ocr": 0.5, "math": 0.5}, run_id="eval-run-456", model_dir=tiny_model_dir)
    return register_model(cfg, tiny_model_dir, doc, root=logged_root)


@pytest.fixture
def make_cfg(mlflow_store, tmp_path, request) -> Callable[..., RegistryConfig]:
    """``make_cfg(**gate_overrides)``: a config whose registered model name is unique to the test."""
    name = "t-" + request.node.name.replace("[", "-").replace("]", "").replace("_", "-")[:60]

    def make(**kwargs: Any) -> RegistryConfig:
        return RegistryConfig(
            name=name,
            registry_file=str(tmp_path / "registry.json"),
            gate=GateConfig(
                **{
                    "margin": GATE.margin,
                    "task_tolerance": GATE.task_tolerance,
                    "floors": GATE.floors,
                    **kwargs,
                }
            ),
        )

    return make
