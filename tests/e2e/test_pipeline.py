"""End to end: real `dvc repro` of the whole pipeline on a smoke-sized profile, in a copy of the repo.

Checks that every stage runs to completion, writes its metrics, registers a champion that loads and
answers, and that a second `dvc repro` skips every stage. A corrupted record makes `onethinker validate`
exit non-zero and name it.

Reproducible and traceable: the pipeline up to ``grpo`` in a second folder writes the same data bytes and
DVC computes the same hashes for every model; from the registry's ``champion`` alias, MLflow's API alone leads
to the SFT and GRPO runs, their logged models, the dataset digest (DVC's hash of ``data``) and the git commit;
``dvc push`` to the default remote (a folder next to the checkout), ``git clone``, ``dvc pull`` and
``dvc repro`` in the clone skip every stage.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from repo_copy import copy_worktree, deep_merge, stage_env

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "tests" / "integration" / "params.smoke.yaml"
STAGES = ("prepare", "validate", "base_model", "sft", "grpo", "evaluate", "register")


def _copy_repo(dest: Path) -> Path:
    copy_worktree(REPO, dest)
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    subprocess.run(["git", "add", "-A"], cwd=dest, check=True)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"], cwd=dest, check=True
    )
    return dest


def _env(root: Path) -> dict[str, str]:
    env = stage_env(root)
    # short stages still log system metrics
    env.update(MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL="1", MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING="1")
    return env


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> dict:
    root = _copy_repo(tmp_path_factory.mktemp("repo"))
    params = deep_merge(yaml.safe_load((root / "params.yaml").read_text()), yaml.safe_load(SMOKE.read_text()))
    params = deep_merge(
        params, {"register": {"gate": {"floors": {"mean_accuracy": 0.0, "format_rate": 0.0}}}}
    )
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = _env(root)
    sha = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True
    ).stdout.strip()
    first = subprocess.run(["dvc", "repro"], cwd=root, env=env, capture_output=True, text=True, timeout=1500)
    t0 = time.perf_counter()
    second = subprocess.run(["dvc", "repro"], cwd=root, env=env, capture_output=True, text=True, timeout=300)
    noop_s = time.perf_counter() - t0
    print(f"\nno-op dvc repro: {noop_s:.2f}s")
    return {"root": root, "env": env, "first": first, "second": second, "noop_s": noop_s, "sha": sha}


def test_every_stage_runs(pipeline) -> None:
    first, root = pipeline["first"], pipeline["root"]
    assert first.returncode == 0, (first.stdout[-4000:], first.stderr[-4000:])
    for stage in STAGES:
        assert f"Running stage '{stage}'" in first.stdout, stage
    for name in ("prepare", "sft", "grpo", "eval", "registry"):
        assert (root / "metrics" / f"{name}.json").is_file(), name
    ev = json.loads((root / "metrics" / "eval.json").read_text())
    assert set(ev["models"]) == {"base", "sft", "grpo"}
    assert len(ev["models"]["grpo"]["tasks"]) == 12
    sft = json.loads((root / "metrics" / "sft.json").read_text())
    assert set(sft["heldout"]) >= {"format_rate", "mean_accuracy", "tasks"}
    assert (root / "reports" / "grpo" / "reward_overall.png").stat().st_size > 1000
    assert (root / "reports" / "eval" / "accuracy_by_task.png").stat().st_size > 1000
    assert (root / "reports" / "validation" / "index.html").is_file()


def test_second_repro_skips_every_stage(pipeline) -> None:
    second = pipeline["second"]
    assert second.returncode == 0, second.stderr[-3000:]
    assert "Running stage" not in second.stdout
    status = subprocess.run(
        ["dvc", "status"],
        cwd=pipeline["root"],
        env=pipeline["env"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "up to date" in status.stdout, status.stdout


def test_champion_loads_and_answers(pipeline) -> None:
    root = pipeline["root"]
    registry = json.loads((root / "metrics" / "registry.json").read_text())
    assert registry["champion_version"] is not None
    script = (
        "import mlflow, json; from onethinker import tracking; tracking.configure();"
        "m = mlflow.pyfunc.load_model('models:/onethinker@champion');"
        "img = [str(p) for p in __import__('pathlib').Path('data/media/images/eval').glob('*.png')][0];"
        "out = m.predict([{'question': 'What colour is the circle?', 'image': img,"
        " 'problem_type': 'multiple choice'}]);"
        "print(json.dumps(out.to_dict(orient='records')))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=root,
        env=pipeline["env"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = json.loads(proc.stdout.strip().splitlines()[-1])[0]
    assert row["formatted"].startswith("<think>") and "</think><answer>" in row["formatted"]
    assert row["formatted"].endswith("</answer>")


def test_validate_rejects_an_injected_bad_record(pipeline) -> None:
    root = pipeline["root"]
    rl = json.loads((root / "data" / "train" / "rl.json").read_text())
    bad = next(r for r in rl if r["problem_type"] == "spatial grounding")
    bad["answer"] = '<answer>{"boxes": [700, 10, 300, 40]}</answer>'
    (root / "bad.json").write_text(json.dumps(rl))
    proc = subprocess.run(
        [
            "onethinker",
            "validate",
            "bad.json",
            "--media-root",
            "data/media",
            "--set",
            "validate.report_dir=reports/bad",
        ],
        cwd=root,
        env=pipeline["env"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1
    assert bad["problem_id"] in proc.stderr and "box_order" in proc.stderr


def test_register_rescores_a_champion_scored_on_another_sample(pipeline) -> None:
    """A new evaluation sample (generation budget 12 tokens instead of 16; the smoke data has one question per
    benchmark): the champion's stored scores no longer compare, so `onethinker register` evaluates the
    champion again, for real, on the new sample."""
    root, env = pipeline["root"], pipeline["env"]
    small = {
        "evaluate.max_new_tokens": "12",
        "evaluate.models": "[grpo]",
        "evaluate.metrics_file": "metrics/eval_small.json",
        "evaluate.reports_dir": "reports/eval_small",
        "register.eval_metrics": "metrics/eval_small.json",
        "register.registry_file": "metrics/registry_small.json",
    }
    sets = [arg for k, v in small.items() for arg in ("--set", f"{k}={v}")]
    for cmd in ("evaluate", "register"):
        proc = subprocess.run(
            ["onethinker", cmd, *sets], cwd=root, env=env, capture_output=True, text=True, timeout=600
        )
        assert proc.returncode == 0, (cmd, proc.stdout[-3000:], proc.stderr[-3000:])
    assert "re-scoring models:/onethinker/" in proc.stdout
    full = json.loads((root / "metrics" / "eval.json").read_text())
    part = json.loads((root / "metrics" / "eval_small.json").read_text())
    assert full["sample"] != part["sample"]
    latest = json.loads((root / "metrics" / "registry_small.json").read_text())["history"][-1]
    rescored = latest["champion_rescored"]
    assert (rescored["from_sample"], rescored["to_sample"]) == (full["sample"], part["sample"])
    # the champion is the same grpo model: on the same sample, greedy, it scores exactly what the candidate does
    assert rescored["mean_accuracy_after"] == part["models"]["grpo"]["mean_accuracy"]
    assert not any("another evaluation sample" in r for r in latest["reasons"]), latest["reasons"]


def _run(cmd: list[str], cwd: Path, timeout: int = 1500) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, env=_env(cwd), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (cmd, proc.stdout[-3000:], proc.stderr[-3000:])
    return proc


def _lock_hashes(root: Path) -> dict[str, str]:
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    return {o["path"]: o["md5"] for s in lock["stages"].values() for o in s.get("outs") or []}


def _tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_another_folder_writes_the_same_data_and_models(pipeline, tmp_path: Path) -> None:
    """Same params, same bytes: ``prepare`` writes identical trees (videos included) and SFT and GRPO
    identical models (CPU, fixed thread count) in a second folder."""
    root = pipeline["root"]
    other = _copy_repo(tmp_path / "other")
    (other / "params.yaml").write_text((root / "params.yaml").read_text())
    _run(["dvc", "repro", "grpo"], other)
    data = _tree(root / "data")
    assert data == _tree(other / "data")
    assert any(p.endswith(".mp4") for p in data) and any(p.endswith(".png") for p in data)
    first, second = _lock_hashes(root), _lock_hashes(other)
    for out in ("data", "reports/validation", "models/base", "models/sft", "models/grpo"):
        assert first[out] == second[out], out


def test_the_champion_leads_to_its_runs_models_data_and_commit(pipeline) -> None:
    """Through MLflow's API alone (a real SQLite store): version -> runs -> logged models, dataset, commit."""
    import mlflow
    from mlflow.entities import LoggedModelStatus

    root = pipeline["root"]
    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow' / 'mlflow.db'}")
    data_hash = _lock_hashes(root)["data"]
    version = client.get_model_version_by_alias("onethinker", "champion")
    tags = version.tags
    assert tags["git_commit"] == pipeline["sha"] and tags["dvc.data_hash"] == data_hash
    assert version.run_id == tags["register_run_id"]
    assert (
        client.get_experiment_by_name("onethinker").tags["mlflow.experimentKind"]
        == "custom_model_development"
    )

    for stage in ("sft", "grpo"):
        run = client.get_run(tags[f"{stage}_run_id"])
        assert run.info.status == "FINISHED" and run.data.tags["onethinker.stage"] == stage
        assert run.data.tags["mlflow.source.git.commit"] == pipeline["sha"]
        assert data_hash in {d.dataset.digest for d in run.inputs.dataset_inputs}
        assert any(k.startswith("system/") for k in run.data.metrics), sorted(run.data.metrics)[:10]
        summary = json.loads((root / "metrics" / f"{stage}.json").read_text())
        model_id = tags[f"{stage}_model_id"]
        assert summary["mlflow_run_id"] == run.info.run_id and summary["mlflow_model_id"] == model_id
        assert {o.model_id: o.step for o in run.outputs.model_outputs}[model_id] == summary["steps"]
        model = client.get_logged_model(model_id)
        assert model.source_run_id == run.info.run_id and model.status == LoggedModelStatus.READY
        assert {m.key for m in model.metrics} >= {"heldout/mean_accuracy", "heldout/format_rate"}
        files = {f.path for f in client.list_logged_model_artifacts(model_id)}
        assert {"config.json", "model.safetensors"} <= files, files

    register = client.get_run(version.run_id)
    assert data_hash in {d.dataset.digest for d in register.inputs.dataset_inputs}
    assert {tags["sft_model_id"], tags["grpo_model_id"]} <= {m.model_id for m in register.inputs.model_inputs}
    assert data_hash in {d.dataset.digest for d in client.get_run(tags["eval_run_id"]).inputs.dataset_inputs}


def test_a_resumed_grpo_continues_its_mlflow_run(pipeline) -> None:
    """GRPO interrupted after its first checkpoint, then re-run: one MLflow run holds steps 1..3 once each."""
    root = pipeline["root"]
    sets = {
        "grpo.steps": 3,
        "grpo.save_every": 1,
        "grpo.heldout_per_task": 0,
        "grpo.output_dir": "models/grpo_resume",
        "grpo.checkpoint_dir": "checkpoints/grpo_resume",
        "grpo.metrics_file": "metrics/grpo_resume.json",
        "grpo.plots_dir": "reports/grpo_resume",
    }
    cut = (
        "from pathlib import Path; from onethinker.config import load_params;"
        "from onethinker.rl.stage import run_grpo_stage;"
        f"run_grpo_stage(load_params(Path('params.yaml'), {sets!r}), stop_after_steps=1, progress=False)"
    )
    _run([sys.executable, "-c", cut], root, timeout=600)
    _run(
        ["onethinker", "grpo", *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")]],
        root,
        timeout=600,
    )
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow' / 'mlflow.db'}")
    run_id = json.loads((root / "metrics" / "grpo_resume.json").read_text())["mlflow_run_id"]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["onethinker.resumed"] == "true"
    assert sorted(m.step for m in client.get_metric_history(run_id, "train/reward/overall")) == [1, 2, 3]


def test_a_fresh_clone_pulls_and_skips_every_stage(pipeline) -> None:
    """Commit the results, ``dvc push`` to the default remote, clone next to it, ``dvc pull``, ``dvc repro``."""
    root = pipeline["root"]
    subprocess.run(["git", "add", "-u"], cwd=root, check=True)  # dvc.lock and the metrics files
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "results"], cwd=root, check=True
    )
    _run(["dvc", "push"], root)
    assert any((root.parent / "onethinker-dvc-remote").rglob("*")), (
        "the default remote is ../onethinker-dvc-remote"
    )
    clone = root.parent / f"{root.name}-clone"
    subprocess.run(["git", "clone", "-q", str(root), str(clone)], check=True)
    _run(["dvc", "pull"], clone, timeout=600)
    repro = _run(["dvc", "repro"], clone, timeout=600)
    assert "Running stage" not in repro.stdout, repro.stdout
    assert "up to date" in _run(["dvc", "status"], clone, timeout=300).stdout
    for model in ("base", "sft", "grpo"):  # the DVC outputs (models/grpo_resume is another test's)
        assert _tree(clone / "models" / model) == _tree(root / "models" / model), model
