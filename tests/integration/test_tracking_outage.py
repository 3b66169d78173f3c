"""A tracking-server outage during training: a real ``mlflow server`` on 127.0.0.1, stopped and restarted while
a tiny SFT run logs every step.

- short outage: the server goes away at step 3 and comes back at step 7. No step waits for it; the metrics
  of steps 3-6 are buffered and arrive when it is back; the run ends FINISHED with every step's loss.
- long outage: the server goes away at step 3 and stays away past the end of the stage. The stage still
  ends (after ``ONETHINKER_TRACKING_FLUSH_S``), with its logs and its final status spooled; once the server
  is back, the detached replayer sends them, and the run is FINISHED with every step's loss.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import mlflow
import pytest
from flows import servers

from onethinker import tracking
from onethinker.config import MediaConfig
from onethinker.sft.config import SFTConfig
from onethinker.sft.trainer import train_sft

REPO = Path(__file__).resolve().parents[2]
STEPS = 10


class Server:
    """``mlflow/serve.sh`` on a free loopback port over a SQLite store; stop() and start() again."""

    def __init__(self, base: Path) -> None:
        self.port = servers.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.store, self.artifacts, self.base = f"sqlite:///{base / 'mlflow.db'}", base / "artifacts", base
        self.managed: servers.Managed | None = None

    def start(self) -> None:
        env = servers.mlflow_env(self.port, self.store, self.artifacts)
        self.managed = servers.spawn(
            "mlflow", servers.mlflow_command(REPO), env, self.base, self.base / "mlflow.log", self.url
        )
        servers.wait_until(servers.mlflow_ready(self.url), self.managed, timeout=240)

    def stop(self) -> None:
        if self.managed is not None:
            servers.stop(self.managed.pid, self.managed.proc)
            self.managed = None


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    srv = Server(tmp_path)
    srv.start()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", srv.url)
    monkeypatch.setenv("ONETHINKER_TRACKING_REPLAY_S", "600")  # the detached replayer gives up after this
    monkeypatch.delenv("ONETHINKER_PARENT_RUN_ID", raising=False)
    monkeypatch.chdir(tmp_path)  # spool under tmp_path/mlflow/spool
    try:
        yield srv
    finally:
        srv.stop()
        mlflow.set_tracking_uri(None)


def _train(tiny_base: Path, tiny_data: dict, tmp_path: Path, on_step) -> tuple[str, list[float]]:
    """A short SFT run inside a stage run, logging every step; ``on_step(step)`` runs after each log call.
    Returns the run id and how long each log call took."""
    cfg = SFTConfig(
        base_model_dir=str(tiny_base),
        output_dir=str(tmp_path / "sft"),
        checkpoint_dir=str(tmp_path / "ckpt"),
        max_steps=STEPS,
        batch_size=2,
        log_every=1,
        save_every=1000,
        heldout_per_task=0,
        log_mlflow=False,
    )
    waits: list[float] = []

    def logger(metrics: dict[str, float], step: int) -> None:
        t0 = time.monotonic()
        tracking.log_metrics(metrics, step=step)
        waits.append(time.monotonic() - t0)
        on_step(step)

    with tracking.stage_run("sft") as run:
        train_sft(cfg, tiny_data["sft"], MediaConfig(), "compact", logger=logger, progress=False)
    return run.info.run_id, waits


def _wait_for(run_id: str, timeout: float) -> tuple[str, list[int]]:
    """(status, steps with a train/loss) once the run is no longer RUNNING, or at the timeout."""
    client = mlflow.MlflowClient()
    deadline = time.monotonic() + timeout
    while True:
        try:
            status = client.get_run(run_id).info.status
            steps = sorted(m.step for m in client.get_metric_history(run_id, "train/loss"))
            if status != "RUNNING" and len(steps) == STEPS or time.monotonic() > deadline:
                return status, steps
        except Exception:  # noqa: BLE001 - the server is still starting
            if time.monotonic() > deadline:
                raise
        time.sleep(1)


def test_short_outage_buffers_and_flushes(server, tiny_base, tiny_data, tmp_path, caplog) -> None:
    def on_step(step: int) -> None:
        if step == 3:
            server.stop()
        elif step == 7:
            server.start()

    with caplog.at_level(logging.WARNING, logger="onethinker.tracking"):
        run_id, waits = _train(tiny_base, tiny_data, tmp_path, on_step)
    assert max(waits) < 1.0, waits  # no step waited for the server
    assert "unreachable" in caplog.text and "is back" in caplog.text
    status, steps = _wait_for(run_id, timeout=60)
    assert status == "FINISHED" and steps == list(range(1, STEPS + 1))
    assert not list((tmp_path / "mlflow" / "spool").glob("*.jsonl"))


@pytest.mark.slow  # three server starts and a wait for the detached replayer: `make test-slow`
def test_long_outage_ends_the_stage_and_the_run_when_the_server_returns(
    server, tiny_base, tiny_data, tmp_path, monkeypatch, caplog
) -> None:
    monkeypatch.setenv("ONETHINKER_TRACKING_FLUSH_S", "3")

    def on_step(step: int) -> None:
        if step == 3:
            server.stop()

    t0 = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="onethinker.tracking"):
        run_id, waits = _train(tiny_base, tiny_data, tmp_path, on_step)  # no exception: the stage ends
    assert max(waits) < 1.0, waits
    assert "saved to" in caplog.text
    spooled = list((tmp_path / "mlflow" / "spool").glob("*.jsonl"))
    assert spooled, "the unsent logs and the run's end are spooled"
    assert time.monotonic() - t0 < 600
    server.start()  # the detached replayer sends the spool and ends the run
    status, steps = _wait_for(run_id, timeout=180)
    assert status == "FINISHED" and steps == list(range(1, STEPS + 1))
    deadline = time.monotonic() + 30
    while list((tmp_path / "mlflow" / "spool").glob("*.jsonl*")) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not list((tmp_path / "mlflow" / "spool").glob("*.jsonl*"))
