"""A training stage killed for real (``kill -9``, SIGTERM) and resumed: what MLflow shows afterwards.

In a smoke copy of the repository (data and base model prepared once), ``onethinker sft`` runs as a
subprocess and is killed mid-run:

- ``kill -9`` after a checkpoint, then the same command again: the training resumes from the checkpoint and
  continues the same MLflow run, which ends FINISHED holding the whole curve (``train/loss`` at every step
  1..N exactly once, although the killed process had logged steps past its last checkpoint);
- SIGTERM: the run ends KILLED at once and the process exits 143;
- ``kill -9`` of a training that is never resumed (the next start uses other settings): that next start
  marks the dead run FAILED and says why.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from onethinker.lockcheck import clone_env
from repo_copy import copy_worktree, deep_merge

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "tests" / "integration" / "params.smoke.yaml"
STEPS = 30
SFT = ["-S", f"sft.max_steps={STEPS}", "-S", "sft.log_every=1", "-S", "sft.save_every=5"]
SFT += ["-S", "sft.batch_size=4", "-S", "sft.heldout_per_task=0"]


def _env(root: Path) -> dict[str, str]:
    return clone_env(root / ".state")  # this venv's tools; MLflow in the copy's own store


# a real pipeline clone with three training runs killed and resumed: minutes on 2 cores (`make test-slow`)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lifecycle")
    copy_worktree(REPO, root)
    params = deep_merge(yaml.safe_load((root / "params.yaml").read_text()), yaml.safe_load(SMOKE.read_text()))
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for cmd in (["onethinker", "prepare"], ["onethinker", "base-model"]):
        proc = subprocess.run(cmd, cwd=root, env=_env(root), capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
    # create the MLflow store now: the tests poll it while sft runs, and two processes creating the same
    # SQLite schema at once collide (alembic's "_alembic_tmp_... already exists")
    _client(root).search_experiments()
    return root


def _client(root: Path):
    import mlflow

    return mlflow.MlflowClient(f"sqlite:///{root / 'mlflow' / 'mlflow.db'}")


def _sft_runs(root: Path, extra: str = "") -> list:
    if not (root / "mlflow" / "mlflow.db").exists():
        return []
    client = _client(root)
    exp = client.get_experiment_by_name("onethinker")
    if exp is None:
        return []
    return client.search_runs([exp.experiment_id], f"tags.`onethinker.stage` = 'sft'{extra}")


def _checkpoint_step(root: Path) -> int:
    state = root / "checkpoints" / "sft"
    try:
        name = (state / "latest").read_text().strip()
        return int(json.loads((state / name / "trainer_state.json").read_text())["step"])
    except (OSError, ValueError, KeyError):
        return 0


def _logged_steps(root: Path, run_id: str) -> list[int]:
    return sorted(m.step for m in _client(root).get_metric_history(run_id, "train/loss"))


def _start(root: Path, *sets: str) -> subprocess.Popen:
    return subprocess.Popen(
        ["onethinker", "sft", *SFT, *sets],
        cwd=root,
        env=_env(root),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"sft ended before it could be killed: {proc.stderr.read()[-3000:]}"
        try:
            if ready():
                return
        except Exception:  # the store is being written: ask again
            pass
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("sft did not get far enough in time")


def _running_run(root: Path) -> str | None:
    runs = _sft_runs(root, " and attributes.status = 'RUNNING'")
    return runs[0].info.run_id if runs else None


def test_killed_training_resumes_into_the_same_run(repo: Path) -> None:
    proc = _start(repo)

    def past_a_checkpoint() -> bool:
        run_id, step = _running_run(repo), _checkpoint_step(repo)
        return run_id is not None and step >= 10 and max(_logged_steps(repo, run_id)) > step

    _wait_for(proc, past_a_checkpoint)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    (killed,) = _sft_runs(repo)
    assert killed.info.status == "RUNNING"  # kill -9 cannot be caught
    logged_before = max(_logged_steps(repo, killed.info.run_id))
    assert logged_before > _checkpoint_step(repo)  # steps the resumed process computes again

    done = subprocess.run(
        ["onethinker", "sft", *SFT], cwd=repo, env=_env(repo), capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = _sft_runs(repo)
    assert run.info.run_id == killed.info.run_id and run.info.status == "FINISHED"
    assert run.data.tags["onethinker.resumed"] == "true"
    assert _logged_steps(repo, run.info.run_id) == list(range(1, STEPS + 1))  # one curve, no duplicates
    summary = json.loads((repo / "metrics" / "sft.json").read_text())
    assert summary["mlflow_run_id"] == run.info.run_id and 10 <= summary["resumed_from_step"] < logged_before


def _start_logging(repo: Path, seed: int) -> tuple[subprocess.Popen, str]:
    """A fresh training (another seed: not resumable) that has logged a couple of steps; its run id."""
    proc = _start(repo, "-S", f"sft.seed={seed}")

    def logging() -> bool:
        run_id = _running_run(repo)
        return run_id is not None and len(_logged_steps(repo, run_id)) >= 2

    _wait_for(proc, logging)
    run_id = _running_run(repo)
    assert run_id is not None
    return proc, run_id


def test_sigterm_ends_the_run_killed(repo: Path) -> None:
    proc, run_id = _start_logging(repo, seed=1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 143
    assert _client(repo).get_run(run_id).info.status == "KILLED"


def test_a_dead_run_that_is_not_resumed_ends_failed(repo: Path) -> None:
    proc, dead = _start_logging(repo, seed=2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    # the next start trains under other settings: it does not resume the dead run, it fails it
    done = subprocess.run(
        ["onethinker", "sft", *SFT, "-S", "sft.seed=3", "-S", "sft.max_steps=1"],
        cwd=repo,
        env=_env(repo),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run = _client(repo).get_run(dead)
    assert run.info.status == "FAILED"
    assert f"process {run.data.tags['onethinker.pid']}" in run.data.tags["onethinker.end_reason"]
    assert not _sft_runs(repo, " and attributes.status = 'RUNNING'")
