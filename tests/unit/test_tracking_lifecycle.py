"""Stage runs on a real MLflow store (SQLite in a temporary folder): owner, end states, sweep, resume.

Killing a real training process is in ``tests/e2e/test_run_lifecycle.py``; these check the parts in-process.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from onethinker import tracking
from onethinker.tracking import lifecycle, lineage


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("lifecycle_store")
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", tracking.PARENT_ENV)}
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{home / 'mlflow.db'}"
    os.environ.pop(tracking.PARENT_ENV, None)
    cwd = Path.cwd()
    os.chdir(home)  # artifacts of the default experiment land here, not in the repository
    try:
        yield home
    finally:
        os.chdir(cwd)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _client():
    import mlflow

    return mlflow.MlflowClient()


def test_a_stage_run_names_its_owner_and_the_experiment_opens_on_training(store: Path) -> None:
    with tracking.stage_run("unit-owner", {"a": 1}) as run:
        run_id = run.info.run_id
    got = _client().get_run(run_id)
    assert got.info.status == "FINISHED"
    assert got.data.tags[lifecycle.TAG_PID] == str(os.getpid())
    assert got.data.tags[lifecycle.TAG_HOST] == socket.gethostname()
    exp = _client().get_experiment(got.info.experiment_id)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"


def test_exceptions_end_failed_and_interrupts_end_killed(store: Path) -> None:
    ids = {}
    cases = (
        ("failed", RuntimeError("boom")),
        ("killed", KeyboardInterrupt()),
        ("term", lifecycle.Terminated(15)),
    )
    for name, exc in cases:
        with pytest.raises(type(exc)), tracking.stage_run(f"unit-{name}") as run:
            ids[name] = run.info.run_id
            raise exc
    status = {k: _client().get_run(v).info.status for k, v in ids.items()}
    assert status == {"failed": "FAILED", "killed": "KILLED", "term": "KILLED"}
    assert lifecycle.Terminated(15).code == 143


def test_the_next_start_fails_runs_whose_process_died(store: Path) -> None:
    client = _client()
    exp = tracking.experiment_id()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    host = socket.gethostname()
    dead = client.create_run(
        exp, tags={"onethinker.stage": "unit-sweep", "onethinker.host": host, "onethinker.pid": str(gone.pid)}
    ).info.run_id
    alive = client.create_run(
        exp,
        tags={"onethinker.stage": "unit-sweep", "onethinker.host": host, "onethinker.pid": str(os.getpid())},
    ).info.run_id
    elsewhere = client.create_run(
        exp,
        tags={
            "onethinker.stage": "unit-sweep",
            "onethinker.host": "other-host",
            "onethinker.pid": str(gone.pid),
        },
    ).info.run_id
    with tracking.stage_run("unit-sweep"):
        pass
    assert client.get_run(dead).info.status == "FAILED"
    assert f"process {gone.pid} on {host} died" in client.get_run(dead).data.tags[lifecycle.TAG_END_REASON]
    assert client.get_run(alive).info.status == "RUNNING"  # its process (this one) lives
    assert client.get_run(elsewhere).info.status == "RUNNING"  # cannot be checked from here
    for run_id in (alive, elsewhere):
        client.set_terminated(run_id, "FINISHED")


def test_a_resumed_stage_continues_its_run_and_skips_logged_steps(store: Path) -> None:
    with tracking.stage_run("unit-resume", {"lr": 0.1}) as run:
        first = run.info.run_id
        for step in (1, 2, 3):
            tracking.log_metrics({"train/loss": 1.0 / step}, step=step)
    with tracking.stage_run("unit-resume", {"lr": 0.1}, resume_run_id=first) as run:
        assert run.info.run_id == first
        keep = lineage.resume_filter(first, resumed=True)
        for step in (2, 3, 4, 5):  # resumed from a checkpoint at step 1: 2 and 3 were logged already
            if keep(step):
                tracking.log_metrics({"train/loss": 1.0 / step}, step=step)
    steps = [m.step for m in _client().get_metric_history(first, "train/loss")]
    assert sorted(steps) == [1, 2, 3, 4, 5]
    run = _client().get_run(first)
    assert run.info.status == "FINISHED" and run.data.tags[lifecycle.TAG_RESUMED] == "true"
    # a run id from elsewhere (another store, deleted) starts a new run
    with tracking.stage_run("unit-resume", resume_run_id="0123456789abcdef0123456789abcdef") as run:
        assert run.info.run_id != first


def test_dataset_digest_is_the_dvc_hash_and_checkpoints_are_logged_models(
    store: Path, tmp_path: Path
) -> None:
    import json

    data = tmp_path / "data"
    (data / "train").mkdir(parents=True)
    records = [
        {"problem_id": "p1", "problem_type": "OCR", "data_type": "image", "problem": "q", "answer": "a"}
    ]
    (data / "train" / "rl.json").write_text(json.dumps(records))
    (data / "manifest.json").write_text("{}")
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    with tracking.stage_run("unit-lineage") as run:
        digest = lineage.log_dataset(data, [data / "train" / "rl.json"], "unit-rl", "training")
        model_id = lineage.log_checkpoint("unit", 7, model_dir, with_files=True, metrics={"heldout/acc": 0.5})
        record_id = lineage.log_checkpoint("unit-ckpt", 3, model_dir, with_files=False)
    assert digest == lineage.dvc_md5(data) and digest.endswith(".dir") and len(digest) == 36
    got = _client().get_run(run.info.run_id)
    assert [d.dataset.digest for d in got.inputs.dataset_inputs] == [digest]
    assert got.data.tags["dvc.data_hash"] == digest
    assert {(o.model_id, o.step) for o in got.outputs.model_outputs} == {(model_id, 7), (record_id, 3)}
    model = _client().get_logged_model(model_id)
    assert {m.key: m.value for m in model.metrics} == {"heldout/acc": 0.5}
    assert {f.path for f in _client().list_logged_model_artifacts(model_id)} == {"config.json"}
    assert _client().list_logged_model_artifacts(record_id) == []
    assert _client().get_logged_model(record_id).tags["onethinker.checkpoint.files"] == "on disk only"
    # the held-out metric is logged once on the run, attached to the model
    assert len(_client().get_metric_history(run.info.run_id, "heldout/acc")) == 1
