"""Reproducible and traceable, for real: two folders, a DVC remote, a fresh clone and the MLflow API.

One smoke pipeline (``dvc repro`` of every stage, tiny params) runs in folder ``a`` and its results are
committed; then

- ``prepare`` in two more folders writes byte-identical trees;
- folder ``b`` runs the pipeline up to ``grpo``: DVC computes the same hashes for data and every model
  (SFT and GRPO are bit-for-bit repeatable on CPU at a fixed thread count);
- ``dvc push`` to the default remote (a folder next to the checkout), ``git clone`` into the same parent
  folder, ``dvc pull``, ``dvc repro``: every stage is skipped;
- from the registry's ``champion`` alias, MLflow's API alone leads to the SFT and GRPO runs, their logged
  models (with held-out metrics and files), the dataset digest (DVC's hash of ``data``) and the git commit;
- ``onethinker check-lock`` in a fresh clone of ``a`` reproduces the committed ``dvc.lock``.

Several minutes on 2 cores (marked ``slow``; ``make test-slow`` runs it).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from repo_copy import copy_worktree, deep_merge

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "tests" / "integration" / "params.smoke.yaml"
FLOORS = {"register": {"gate": {"floors": {"mean_accuracy": 0.0, "format_rate": 0.0}}}}


def _env(root: Path) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "ONETHINKER_PARENT_RUN_ID")
    }
    env.update(
        PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
        DVC_SITE_CACHE_DIR=str(root.parent / f".site-{root.name}"),
        DVC_NO_ANALYTICS="1",
        MLFLOW_DISABLE_TELEMETRY="true",
        MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL="1",
        MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING="1",
        HF_HUB_OFFLINE="1",
        HF_DATASETS_CACHE=str(root.parent / ".hf"),
        PYTHONUNBUFFERED="1",
    )
    return env


def _run(cmd: list[str], cwd: Path, timeout: int = 1500) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, env=_env(cwd), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (cmd, proc.stdout[-3000:], proc.stderr[-3000:])
    return proc


def _smoke_copy(dest: Path) -> Path:
    dest.mkdir(parents=True)
    copy_worktree(REPO, dest)
    params = deep_merge(yaml.safe_load((dest / "params.yaml").read_text()), yaml.safe_load(SMOKE.read_text()))
    (dest / "params.yaml").write_text(yaml.safe_dump(deep_merge(params, FLOORS), sort_keys=False))
    for args in (
        ["init", "-q"],
        ["add", "-A"],
        ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"],
    ):
        subprocess.run(["git", *args], cwd=dest, check=True)
    return dest


def _lock_hashes(root: Path) -> dict[str, str]:
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    return {o["path"]: o["md5"] for s in lock["stages"].values() for o in s.get("outs") or []}


def _tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def a(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("repro")
    root = _smoke_copy(base / "a")
    sha = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True
    ).stdout.strip()
    _run(["dvc", "repro"], root)
    subprocess.run(["git", "add", "-u"], cwd=root, check=True)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "results"], cwd=root, check=True
    )
    return {"base": base, "root": root, "sha": sha}


def test_prepare_writes_the_same_bytes_in_two_folders(tmp_path: Path) -> None:
    trees = []
    for name in ("one", "two"):
        root = _smoke_copy(tmp_path / name)
        _run(["onethinker", "prepare"], root, timeout=600)
        trees.append(_tree(root / "data"))
    assert trees[0] == trees[1]
    assert any(p.endswith(".mp4") for p in trees[0]) and any(p.endswith(".png") for p in trees[0])


def test_the_pipeline_gives_the_same_models_in_another_folder(a: dict) -> None:
    b = _smoke_copy(a["base"] / "b")
    _run(["dvc", "repro", "grpo"], b)
    first, second = _lock_hashes(a["root"]), _lock_hashes(b)
    for out in ("data", "reports/validation", "models/base", "models/sft", "models/grpo"):
        assert first[out] == second[out], out


def test_a_fresh_clone_pulls_and_skips_every_stage(a: dict) -> None:
    root, base = a["root"], a["base"]
    push = _run(["dvc", "push"], root)  # the default remote: ../onethinker-dvc-remote, next to the checkout
    assert (base / "onethinker-dvc-remote").is_dir(), push.stdout
    clone = base / "clone"
    subprocess.run(["git", "clone", "-q", str(root), str(clone)], check=True)
    _run(["dvc", "pull"], clone, timeout=600)
    repro = _run(["dvc", "repro"], clone, timeout=600)
    assert "Running stage" not in repro.stdout, repro.stdout
    status = _run(["dvc", "status"], clone, timeout=300)
    assert "up to date" in status.stdout, status.stdout
    assert _tree(clone / "models") == _tree(root / "models")


def test_the_champion_leads_to_its_runs_models_data_and_commit(a: dict) -> None:
    import mlflow
    from mlflow.entities import LoggedModelStatus

    root = a["root"]
    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow' / 'mlflow.db'}")
    data_hash = _lock_hashes(root)["data"]
    version = client.get_model_version_by_alias("onethinker", "champion")
    tags = version.tags
    assert tags["git_commit"] == a["sha"] and tags["dvc.data_hash"] == data_hash
    assert version.run_id == tags["register_run_id"]

    exp = client.get_experiment_by_name("onethinker")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"

    for stage in ("sft", "grpo"):
        run = client.get_run(tags[f"{stage}_run_id"])
        assert run.info.status == "FINISHED" and run.data.tags["onethinker.stage"] == stage
        assert run.data.tags["mlflow.source.git.commit"] == a["sha"]
        assert data_hash in {d.dataset.digest for d in run.inputs.dataset_inputs}
        assert any(k.startswith("system/") for k in run.data.metrics), sorted(run.data.metrics)[:10]
        metrics_file = json.loads((root / "metrics" / f"{stage}.json").read_text())
        assert metrics_file["mlflow_run_id"] == run.info.run_id
        model_id = tags[f"{stage}_model_id"]
        assert metrics_file["mlflow_model_id"] == model_id
        steps = {o.model_id: o.step for o in run.outputs.model_outputs}
        assert steps[model_id] == metrics_file["steps"]
        model = client.get_logged_model(model_id)
        assert model.source_run_id == run.info.run_id and model.status == LoggedModelStatus.READY
        assert {m.key for m in model.metrics} >= {"heldout/mean_accuracy", "heldout/format_rate"}
        files = {f.path for f in client.list_logged_model_artifacts(model_id)}
        assert {"config.json", "model.safetensors"} <= files, files

    register = client.get_run(version.run_id)
    assert data_hash in {d.dataset.digest for d in register.inputs.dataset_inputs}
    assert {tags["sft_model_id"], tags["grpo_model_id"]} <= {m.model_id for m in register.inputs.model_inputs}
    evaluate = client.get_run(tags["eval_run_id"])
    assert data_hash in {d.dataset.digest for d in evaluate.inputs.dataset_inputs}


def test_check_lock_reproduces_the_committed_lock(a: dict) -> None:
    proc = _run(["onethinker", "check-lock"], a["root"], timeout=1200)
    assert "reproduced by a fresh clone for prepare, validate, base_model" in proc.stdout, proc.stdout
