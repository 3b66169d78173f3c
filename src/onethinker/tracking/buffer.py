"""Tracking that survives a tracking-server outage: what a stage logs is buffered and sent in the background.

Inside a stage run, metrics, tags, tables and artifacts go to a :class:`RunBuffer` instead of straight to
MLflow: the training loop only appends to a queue and never waits for the server. A background thread sends
the queue in order (metrics in batches of up to 1,000). When the server does not answer (a probe of its
``/health`` with a 2 s timeout, for an ``http(s)`` tracking URI), nothing is dropped: a warning says how much is
waiting, the thread retries with backoff, and a second message says when the server is back and the backlog
was sent. The thread's own calls skip MLflow's HTTP retries (which back off for minutes and would hide an
outage that starts between the probe and the call); other threads keep MLflow's settings.

At the end of the stage the buffer gets ``flush_timeout_s`` to drain. If the server is still away, the rest
(and the run's final status) is written to a spool file under ``<repo>/mlflow/spool/`` and a detached
replayer (``python -m onethinker.tracking.buffer FILE``) keeps trying for up to a day, then sends it all and
marks the run ``FINISHED`` (or ``FAILED``) when the server returns; the next stage run replays any spool left
over too. So a long outage neither crashes the stage nor leaves its run ``RUNNING`` once the server is back.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any

log = logging.getLogger("onethinker.tracking")

BATCH = 1000  # MLflow's limit on metrics per log_batch call
PROBE_TIMEOUT_S = 2.0
REPLAY_ENV = "ONETHINKER_TRACKING_REPLAY_S"
"""How long the detached replayer keeps trying (seconds; default a day)."""


def server_up(uri: str) -> bool:
    """Whether the tracking store answers; a local store (SQLite, files) always does."""
    if not uri.startswith(("http://", "https://")):
        return True
    import requests

    try:
        return requests.get(uri.rstrip("/") + "/health", timeout=PROBE_TIMEOUT_S).ok
    except requests.RequestException:
        return False


_LOCAL = threading.local()


class _PerThread:
    """One of MLflow's HTTP settings (an environment-variable object) with a per-thread override: MLflow reads
    them at each request, so the override applies to this thread's calls only, not to the training loop's or
    MLflow's own system-metrics thread."""

    def __init__(self, base: Any, attr: str) -> None:
        self._base, self._attr = base, attr

    def get(self) -> Any:
        value = getattr(_LOCAL, self._attr, None)
        return self._base.get() if value is None else value

    def __getattr__(self, name: str) -> Any:
        return getattr(self._base, name)

    def __str__(self) -> str:
        return str(self._base)


_SETTINGS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "max_retries", "MLFLOW_HTTP_REQUEST_TIMEOUT": "timeout"}
_install_lock = threading.Lock()


def _install_per_thread_settings() -> None:
    """Make MLflow's REST client read its retry count and timeout through :class:`_PerThread` (once)."""
    import mlflow.store.artifact.http_artifact_repo as artifact_repo
    import mlflow.utils.rest_utils as rest_utils

    with _install_lock:
        for module in (rest_utils, artifact_repo):
            for name, attr in _SETTINGS.items():
                setting = getattr(module, name, None)
                if setting is not None and not isinstance(setting, _PerThread):
                    setattr(module, name, _PerThread(setting, attr))


@contextlib.contextmanager
def fail_fast(timeout_s: float | None = 5.0) -> Any:
    """MLflow REST calls made by *this thread* inside the block are not retried (the buffer retries, and says
    so) and time out after ``timeout_s`` (None: MLflow's setting). Other threads keep MLflow's settings."""
    _install_per_thread_settings()
    saved = (getattr(_LOCAL, "max_retries", None), getattr(_LOCAL, "timeout", None))
    _LOCAL.max_retries = 0
    _LOCAL.timeout = None if timeout_s is None else int(timeout_s)
    try:
        yield
    finally:
        _LOCAL.max_retries, _LOCAL.timeout = saved


def send(client: Any, run_id: str, op: dict[str, Any]) -> None:
    """Perform one buffered operation against the store."""
    from mlflow.entities import Metric, RunTag

    kind = op["op"]
    if kind == "metrics":
        metrics = [
            Metric(k, float(v), int(op["ts"]), int(op.get("step") or 0)) for k, v in op["metrics"].items()
        ]
        for i in range(0, len(metrics), BATCH):
            client.log_batch(run_id, metrics=metrics[i : i + BATCH], synchronous=True)
    elif kind == "tags":
        client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in op["tags"].items()], synchronous=True)
    elif kind == "artifact":
        client.log_artifact(run_id, op["path"], op.get("artifact_path"))
    elif kind == "artifacts":
        client.log_artifacts(run_id, op["path"], op.get("artifact_path"))
    elif kind == "table":
        client.log_table(run_id, data=op["data"], artifact_file=op["artifact_file"])
    elif kind == "end":
        client.set_terminated(run_id, op["status"])
    else:  # pragma: no cover - a newer spool format
        raise ValueError(f"unknown tracking operation {kind!r}")


_CLIENT_ERRORS = frozenset(
    {
        "INVALID_PARAMETER_VALUE",
        "RESOURCE_DOES_NOT_EXIST",
        "RESOURCE_ALREADY_EXISTS",
        "BAD_REQUEST",
        "INVALID_STATE",
    }
)


def _refused(exc: BaseException) -> bool:
    """The store answered and rejected the operation itself (not an outage)."""
    return getattr(exc, "error_code", None) in _CLIENT_ERRORS


class RunBuffer:
    """The ordered queue of one run's logging operations and the thread that sends them."""

    def __init__(self, run_id: str, uri: str, spool_dir: Path, retry_s: float = 5.0) -> None:
        from mlflow import MlflowClient

        self.run_id, self.uri, self.spool_dir, self.retry_s = run_id, uri, Path(spool_dir), retry_s
        self.client = MlflowClient(tracking_uri=uri)
        self._queue: deque[dict[str, Any]] = deque()
        self._cond = threading.Condition()
        self._stop = False
        self.outage_since: float | None = None
        self.sent = 0
        self._thread = threading.Thread(target=self._run, name=f"mlflow-buffer-{run_id[:8]}", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ producer side (training loop)
    def add(self, op: dict[str, Any]) -> None:
        with self._cond:
            self._queue.append(op)
            self._cond.notify()

    def pending(self) -> int:
        """Operations not sent yet (the one being sent included: it leaves the queue once sent)."""
        with self._cond:
            return len(self._queue)

    # ------------------------------------------------------------------ the sender
    def _run(self) -> None:
        delay = self.retry_s
        while True:
            with self._cond:
                while not self._queue and not self._stop:
                    self._cond.wait()
                if not self._queue and self._stop:
                    return
                op = self._queue[0]
            ok = server_up(self.uri)
            if ok:
                try:
                    # no hidden retries: a server gone between the probe and the call is an outage here
                    with fail_fast(timeout_s=None):
                        send(self.client, self.run_id, op)
                except Exception as exc:  # noqa: BLE001 - the server went away mid-call, or refused it
                    ok = _refused(exc) and server_up(self.uri)
                    if ok:  # the server is there and rejects this operation: retrying cannot help
                        log.warning(
                            "MLflow refused a %s for run %s (%s); dropped", op["op"], self.run_id, exc
                        )
            with self._cond:
                if ok and self._queue and self._queue[0] is op:  # close() may have spooled it meanwhile
                    self._queue.popleft()
                    self.sent += 1
            if ok:
                if self.outage_since is not None:
                    log.warning(
                        "MLflow tracking server %s is back after %.0f s; sending the buffered logs of run %s",
                        self.uri,
                        time.monotonic() - self.outage_since,
                        self.run_id,
                    )
                    self.outage_since = None
                delay = self.retry_s
                continue
            if self.outage_since is None:
                self.outage_since = time.monotonic()
                log.warning(
                    "MLflow tracking server %s is unreachable: training goes on, %d logging operation(s) of run %s "
                    "are buffered and will be sent when it returns",
                    self.uri,
                    self.pending(),
                    self.run_id,
                )
            with self._cond:
                if self._stop:
                    return  # close() spools what is left
                self._cond.wait(timeout=delay)
            delay = min(60.0, delay * 2)

    def flush(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the queue to drain; True when everything was sent."""
        deadline = time.monotonic() + timeout_s
        while self.pending() and time.monotonic() < deadline:
            with self._cond:
                self._cond.notify()
            time.sleep(0.05)
        return self.pending() == 0

    def close(self, status: str, flush_timeout_s: float) -> Path | None:
        """Drain (at most ``flush_timeout_s``), then end the run with ``status``. If the server is still away,
        spool what is left plus the end of the run and start a detached replayer; returns the spool file."""
        drained = self.flush(flush_timeout_s)
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=PROBE_TIMEOUT_S + 10)
        end = {"op": "end", "status": status}
        if drained and server_up(self.uri):
            try:
                with fail_fast():
                    send(self.client, self.run_id, end)
                return None
            except Exception:  # noqa: BLE001 - gone again: spool the end
                pass
        with self._cond:
            rest = list(self._queue) + [end]
            self._queue.clear()
        return spool(self.spool_dir, self.run_id, self.uri, rest)


def spool(spool_dir: Path, run_id: str, uri: str, ops: list[dict[str, Any]]) -> Path:
    """Write ``ops`` to a spool file and start a detached replayer for it."""
    spool_dir.mkdir(parents=True, exist_ok=True)
    path = spool_dir / f"{run_id}-{uuid.uuid4().hex[:8]}.jsonl"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(
        json.dumps({"run_id": run_id, "uri": uri}) + "\n" + "".join(json.dumps(o) + "\n" for o in ops)
    )
    os.replace(tmp, path)
    log.warning(
        "MLflow tracking server %s is still unreachable: %d operation(s) of run %s (its final status included) "
        "saved to %s; they are sent as soon as the server returns (a background replayer is trying now)",
        uri,
        len(ops),
        run_id,
        path,
    )
    start_replayer(path)
    return path


def start_replayer(path: Path) -> None:
    from onethinker import child_command

    argv, env = child_command("onethinker.tracking.buffer", str(path))
    subprocess.Popen(  # noqa: S603 - our own module, detached so it outlives the stage
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
        close_fds=True,
    )


def replay(path: Path) -> bool:
    """Send one spool file if the server is up (claiming it first, so two replayers never send it twice).
    True when the file was sent (or is gone)."""
    claimed = path.with_name(f"{path.name}.replaying-{os.getpid()}")
    try:
        os.replace(path, claimed)
    except FileNotFoundError:
        return True  # another replayer has it
    header, *lines = claimed.read_text().splitlines()
    meta = json.loads(header)
    if not server_up(meta["uri"]):
        os.replace(claimed, path)
        return False
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=meta["uri"])
    ops = [json.loads(line) for line in lines if line.strip()]
    for k, op in enumerate(ops):
        try:
            send(client, meta["run_id"], op)
        except Exception:  # noqa: BLE001 - gone again: keep the rest for later
            rest = claimed.with_suffix(".rest")
            rest.write_text(header + "\n" + "".join(json.dumps(o) + "\n" for o in ops[k:]))
            os.replace(rest, path)
            claimed.unlink(missing_ok=True)
            return False
    claimed.unlink(missing_ok=True)
    log.warning("sent the spooled logs of run %s (%d operations) from %s", meta["run_id"], len(ops), path)
    return True


def replay_all(spool_dir: Path) -> None:
    """Replay every spool file under ``spool_dir`` whose server answers (at the start of a stage run)."""
    if not spool_dir.is_dir():
        return
    for path in sorted(spool_dir.glob("*.jsonl")):
        try:
            replay(path)
        except Exception as exc:  # noqa: BLE001 - never let old logs break a new stage
            log.warning("could not replay %s: %s", path, exc)


def _main(path: str) -> None:  # pragma: no cover - the detached replayer (exercised by the outage test)
    deadline = time.monotonic() + float(os.environ.get(REPLAY_ENV, 24 * 3600))
    delay = 2.0
    while time.monotonic() < deadline:
        if not Path(path).exists() or replay(Path(path)):
            return
        time.sleep(delay)
        delay = min(30.0, delay * 1.5)


if __name__ == "__main__":  # pragma: no cover
    _main(sys.argv[1])
