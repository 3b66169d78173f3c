"""A stage run's life: who owns it, how it ends, how a resumed training continues it.

- Every stage run records the process that owns it (tags ``onethinker.host``, ``onethinker.pid`` and the
  process's start time ``onethinker.pid_started``).
- SIGTERM and SIGINT end the run as ``KILLED`` (then the process exits: 143 for SIGTERM, KeyboardInterrupt
  for SIGINT); any other exception ends it ``FAILED``.
- ``kill -9`` (or a power cut) cannot be caught: the run stays ``RUNNING``. The next start of the same
  stage sweeps such runs (``mark_dead_runs``): a ``RUNNING`` run of that stage whose owner process on this
  host no longer exists is marked ``FAILED`` with the reason in the tag ``onethinker.end_reason``. Runs owned
  by another host are left alone (their process cannot be checked from here).
- A training stage that resumes from a checkpoint continues the MLflow run recorded in that checkpoint
  (``mlflow.start_run(run_id=...)``), so one training is one run with one curve. ``last_logged_step`` tells
  the stage which steps the interrupted process already logged: they are not logged again.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
from collections.abc import Iterator
from typing import Any

TAG_HOST = "onethinker.host"
TAG_PID = "onethinker.pid"
TAG_PID_STARTED = "onethinker.pid_started"
TAG_END_REASON = "onethinker.end_reason"
TAG_RESUMED = "onethinker.resumed"


class Terminated(SystemExit):
    """Raised in the main thread on SIGTERM: exits with 128 + 15 like an uncaught SIGTERM would."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum


def _process_started(pid: int) -> str | None:
    """The process's start time (seconds since the epoch, 2 decimals), None when unknown or gone."""
    try:
        import psutil

        return f"{psutil.Process(pid).create_time():.2f}"
    except Exception:  # psutil missing, or no such process
        return None


def owner_tags() -> dict[str, str]:
    """Tags naming this process as the run's owner."""
    tags = {TAG_HOST: socket.gethostname(), TAG_PID: str(os.getpid())}
    started = _process_started(os.getpid())
    if started is not None:
        tags[TAG_PID_STARTED] = started
    return tags


def owner_alive(tags: dict[str, str], host: str | None = None) -> bool | None:
    """Whether the process named by a run's owner tags still runs: None when it cannot be told (another
    host, or no owner recorded). A live process with another start time is a reused PID: dead."""
    if tags.get(TAG_HOST) != (host or socket.gethostname()) or not tags.get(TAG_PID, "").isdigit():
        return None
    pid = int(tags[TAG_PID])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    recorded, now = tags.get(TAG_PID_STARTED), _process_started(pid)
    return not (recorded and now and recorded != now)


def mark_dead_runs(client: Any, experiment_id: str, stage: str, keep: str | None = None) -> list[str]:
    """Mark ``RUNNING`` runs of ``stage`` whose owner process died ``FAILED``; returns their ids.

    ``keep``: a run about to be resumed (it is continued, not failed).
    """
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`onethinker.stage` = '{stage}' and attributes.status = 'RUNNING'",
        max_results=200,
    )
    marked = []
    for run in runs:
        if run.info.run_id == keep or owner_alive(run.data.tags) is not False:
            continue
        reason = (
            f"process {run.data.tags.get(TAG_PID)} on {run.data.tags.get(TAG_HOST)} died without ending "
            f"the run (found by the next '{stage}' start, pid {os.getpid()})"
        )
        client.set_tag(run.info.run_id, TAG_END_REASON, reason)
        client.set_terminated(run.info.run_id, "FAILED")
        marked.append(run.info.run_id)
    return marked


def resumable(client: Any, run_id: str | None, experiment_id: str) -> bool:
    """Whether ``run_id`` names a live (not deleted) run of this experiment in this store."""
    if not run_id:
        return False
    try:
        run = client.get_run(run_id)
    except Exception:  # another store, or deleted for good
        return False
    return run.info.experiment_id == experiment_id and run.info.lifecycle_stage == "active"


def last_logged_step(client: Any, run_id: str, prefix: str = "train/") -> int:
    """The highest step at which the run logged a metric whose name starts with ``prefix`` (-1: none)."""
    last = -1
    for key in client.get_run(run_id).data.metrics:
        if key.startswith(prefix):
            last = max([last, *(m.step for m in client.get_metric_history(run_id, key))])
    return last


@contextlib.contextmanager
def signals_end_run() -> Iterator[None]:
    """While inside, SIGTERM raises ``Terminated`` and SIGINT ``KeyboardInterrupt`` in the main thread
    (so the run is ended ``KILLED`` on the way out); the previous handlers come back afterwards. Outside the
    main thread nothing is installed (Python allows handlers only there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum: int, frame: Any) -> None:
        raise Terminated(signum)

    previous = {
        signal.SIGTERM: signal.signal(signal.SIGTERM, on_term),
        signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler),
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
