"""Real servers on 127.0.0.1 for the integration tests, and throw-away copies of the repository.

- ``stack`` (session): an MLflow tracking server (``mlflow/serve.sh`` over a SQLite store in a temporary
  folder) and a Prefect server (``PREFECT_HOME`` in a temporary folder, UI off), plus one process worker per
  pool (``cpu``, ``gpu``), all started by ``flows.serve.start_stack`` (what ``make serve`` runs) on free ports,
  and stopped by PID at the end (workers first), as ``make stop`` does.
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
from stack_helpers import BIN, REPO, SMOKE, Stack, git, merge_params

from repo_copy import copy_worktree

if str(REPO) not in sys.path:  # `flows` lives at the repository root, outside the installed package
    sys.path.insert(0, str(REPO))

from flows import servers  # noqa: E402
from flows.serve import start_stack, stop_stack  # noqa: E402

SERVER_ENV = {
    "PREFECT_UI_ENABLED": "false",
    # Background services the tests do not need, off: fewer writers on the server's SQLite database (the
    # scheduler alone inserts ~100 future runs per scheduled deployment right after `prefect deploy`).
    # Event persister and task-run recorder stay on: task runs and artifacts are recorded through them.
    "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_PAUSE_EXPIRATIONS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_CANCELLATION_CLEANUP_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED": "false",
}


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """MLflow + Prefect servers and cpu/gpu process workers on free loopback ports; stopped by PID."""
    base = tmp_path_factory.mktemp("stack")
    prefect_home = base / "prefect-home"
    state_dir = base / "serve"
    store = (f"sqlite:///{base / 'mlflow.db'}", base / "mlflow-artifacts")
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
        server_env=SERVER_ENV,
        worker_env=worker_env,
    )
    startup = {name: m.seconds_to_healthy or 0.0 for name, m in started.items()}
    startup["total"] = round(time.monotonic() - t0, 1)
    print(f"\nstack start-up (s): {startup}")
    stack = Stack(
        f"{started['prefect-server'].url}/api", started["mlflow"].url or "", prefect_home, state_dir, startup
    )
    try:
        yield stack
    finally:
        print("\n" + "\n".join(stop_stack(state_dir)))
        for m in started.values():
            if m.proc is not None:
                m.proc.wait(timeout=30)
            assert not servers.is_alive(m.pid, m.proc), f"{m.name} (pid {m.pid}) still running"


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
