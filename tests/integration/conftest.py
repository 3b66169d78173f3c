"""Real servers on 127.0.0.1 for the integration tests, and throw-away copies of the repository.

- ``stack`` (session): an MLflow tracking server (``mlflow/serve.sh`` over a SQLite store in a temporary
  folder) and a Prefect server (``PREFECT_HOME`` in a temporary folder, UI on), plus one process worker per
  pool (``cpu``, ``gpu``), all started by ``flows.serve.start_stack`` (what ``make serve`` runs) on free ports,
  and stopped by PID at the end (workers first), as ``make stop`` does.
- ``pg_stack`` (session): the same on PostgreSQL (``make serve STORE=postgres``): a throwaway cluster, MLflow
  with proxied artifacts and Prefect on it (see the fixture).
- ``make_repo``: a copy of the working tree (``git ls-files -co --exclude-standard``) in a temporary folder
  with the smoke profile (``params.smoke.yaml``) merged into its params.yaml, committed to a fresh git
  repository (``dvc exp run`` needs a commit). The developer's workspace is never touched.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from stack_helpers import BIN, FIGURES, REPO, SMOKE, Stack, git, merge_params, throwaway_cluster

from repo_copy import copy_worktree

if str(REPO) not in sys.path:  # `flows` lives at the repository root, outside the installed package
    sys.path.insert(0, str(REPO))

from flows import postgres as pg  # noqa: E402
from flows import servers  # noqa: E402
from flows.serve import start_stack, stop_stack  # noqa: E402

SERVER_ENV = {
    # The UI stays on (a test checks that it calls the API on the stack's port, not 4200).
    # Background services the tests do not need, off: fewer writers on the server's SQLite database (the
    # scheduler alone inserts ~100 future runs per scheduled deployment right after `prefect deploy`).
    # Event persister and task-run recorder stay on: task runs and artifacts are recorded through them.
    "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_PAUSE_EXPIRATIONS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_CANCELLATION_CLEANUP_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED": "false",
}


def _serve(base: Path, postgres: pg.PostgresCluster | None = None) -> Iterator[Stack]:
    """Start the stack under ``base`` (on ``postgres`` when given), yield it, stop exactly what started."""
    prefect_home = base / "prefect-home"
    state_dir = base / "serve"
    artifacts = base / "mlflow-artifacts"
    store = (None, artifacts) if postgres else (f"sqlite:///{base / 'mlflow.db'}", artifacts)
    # One MLflow worker (mlflow/serve.sh's default), not compose's 2: on a busy 2-core machine uvicorn's
    # supervisor kills workers whose start-up outlasts its health check, over and over.
    server_env = dict(SERVER_ENV)
    worker_env = {
        "PREFECT_WORKER_QUERY_SECONDS": "3",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PREFECT_LOGGING_LEVEL": "INFO",
    }
    t0 = time.monotonic()
    started = start_stack(
        REPO,
        state_dir,
        servers.free_port(),
        servers.free_port(),
        ["cpu", "gpu"],
        timeout=240.0,
        prefect_home=prefect_home,
        mlflow_store=store,
        server_env=server_env,
        worker_env=worker_env,
        postgres=postgres,
    )
    startup = {name: m.seconds_to_healthy or 0.0 for name, m in started.items()}
    startup["total"] = round(time.monotonic() - t0, 1)
    print(f"\nstack start-up (s): {startup}")
    stack = Stack(
        f"{started['prefect-server'].url}/api",
        started["mlflow"].url or "",
        prefect_home,
        state_dir,
        startup,
        managed=started,
        artifact_store=artifacts,
        postgres=postgres,
    )
    try:
        yield stack
    finally:
        print("\n" + "\n".join(stop_stack(state_dir)))
        for m in stack.managed.values():
            if m.proc is not None:
                m.proc.wait(timeout=30)
            assert not servers.is_alive(m.pid, m.proc), f"{m.name} (pid {m.pid}) still running"


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """MLflow + Prefect servers and cpu/gpu process workers on free loopback ports; stopped by PID."""
    yield from _serve(tmp_path_factory.mktemp("stack"))


@pytest.fixture(scope="session")
def pg_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The production layout (``infra/compose.yaml``) without containers: a throwaway PostgreSQL cluster on
    a free loopback port with the ``mlflow`` and ``prefect`` databases, MLflow on it with proxied artifacts
    (one worker), Prefect on it, cpu/gpu process workers. Stopped by PID (PostgreSQL last), then removed.

    Skipped where PostgreSQL cannot run (no binaries, or root without an unprivileged user), unless
    ``ONETHINKER_REQUIRE_POSTGRES=1`` (``.ci/run`` sets it): then that is a failure.
    """
    cluster = throwaway_cluster()
    try:
        yield from _serve(tmp_path_factory.mktemp("pg-stack"), cluster)
    finally:
        pg.remove(cluster)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The figures the production-stack tests measured (writers, requests/s, restarts), after every run."""
    if FIGURES:
        terminalreporter.section("production stack figures")
        for line in FIGURES:
            terminalreporter.write_line(line)


@pytest.fixture
def make_repo(tmp_path: Path) -> Callable[..., Path]:
    """``make_repo(params=None, files=None)``: a committed smoke copy of the repository (see the module)."""

    def make(params: Mapping[str, Any] | None = None, files: Mapping[str, bytes | str] | None = None) -> Path:
        root = tmp_path / "repo"
        root.mkdir()
        copy_worktree(REPO, root)
        p = merge_params(
            yaml.safe_load((root / "params.yaml").read_text()), yaml.safe_load(SMOKE.read_text())
        )
        p = merge_params(p, params or {})
        (root / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
        for rel, content in (files or {}).items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(content.encode() if isinstance(content, str) else content)
        git(root, "init", "-q")
        git(root, "config", "user.email", "integration@tests.local")
        git(root, "config", "user.name", "integration tests")
        git(root, "add", "-A")
        git(root, "commit", "-q", "-m", "smoke copy")
        return root

    return make
