"""Helpers of the integration tests: REST clients for the stack, smoke copies of the repository, deploying.

Imported by ``conftest.py`` and the tests (pytest puts this folder on ``sys.path``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from repo_copy import deep_merge

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # `flows` lives at the repository root, outside the installed package
    sys.path.insert(0, str(REPO))

from flows import postgres as pg  # noqa: E402
from flows import servers  # noqa: E402
from flows.servers import http_json  # noqa: E402

SMOKE = Path(__file__).with_name("params.smoke.yaml")
FINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
BIN = Path(sys.executable).parent


FIGURES: list[str] = []
"""Lines the tests measured, printed in pytest's terminal summary (``conftest.pytest_terminal_summary``)."""


@dataclass
class Stack:
    prefect_api: str
    mlflow_url: str
    prefect_home: Path
    state_dir: Path
    startup_s: dict[str, float]
    managed: dict[str, servers.Managed] = field(default_factory=dict)
    """What ``start_stack`` started, by name (``restart`` replaces an entry)."""
    artifact_store: Path | None = None
    """The MLflow server's ``--artifacts-destination``."""
    postgres: pg.PostgresCluster | None = None

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for a ``prefect`` command against this stack."""
        env = dict(os.environ)
        env.update(
            {
                "PREFECT_API_URL": self.prefect_api,
                "PREFECT_HOME": str(self.prefect_home),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "MLFLOW_TRACKING_URI": self.mlflow_url,
                "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            }
        )
        env.update(extra)
        return env

    def restart(self, name: str, down_s: float = 0.0, timeout: float = 240.0) -> dict[str, float]:
        """Stop ``name`` (``mlflow`` or ``postgres``) by PID, keep it down ``down_s`` more seconds, start it
        again as it was started, wait until it answers. Returns the seconds it took to stop and the whole
        outage (stop to ready)."""
        old = self.managed[name]
        t0 = time.monotonic()
        (pg.stop if name == "postgres" else servers.stop)(old.pid, old.proc)
        stopped = time.monotonic()
        time.sleep(down_s)
        new = servers.respawn(old)
        (self.state_dir / f"{name}.pid").write_text(f"{new.pid}\n")
        self.managed[name] = new
        if name == "postgres":
            assert self.postgres is not None
            ready = self.postgres.ready
        else:
            ready = servers.mlflow_ready(self.mlflow_url)
        servers.wait_until(ready, new, timeout)
        return {"stop_s": round(stopped - t0, 1), "outage_s": round(time.monotonic() - t0, 1)}

    # -- Prefect REST API -------------------------------------------------------------------------

    def api(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        return http_json(method, f"{self.prefect_api}{path}", body)

    def deployments(self) -> dict[str, dict[str, Any]]:
        """``flow-name/deployment-name`` -> deployment."""
        flows = {f["id"]: f["name"] for f in self.api("POST", "/flows/filter", {})}
        return {f"{flows[d['flow_id']]}/{d['name']}": d for d in self.api("POST", "/deployments/filter", {})}

    def run_deployment(self, name: str, parameters: Mapping[str, Any]) -> str:
        """Create a flow run of ``name`` through the API (a worker picks it up); returns its id."""
        dep = self.deployments()[name]
        run = self.api("POST", f"/deployments/{dep['id']}/create_flow_run", {"parameters": dict(parameters)})
        return str(run["id"])

    def wait_flow_run(self, run_id: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            run = self.api("GET", f"/flow_runs/{run_id}")
            if run["state"]["type"] in FINAL_STATES:
                return run
            if time.monotonic() > deadline:
                raise AssertionError(f"flow run {run_id} still {run['state']['type']} after {timeout:.0f}s")
            time.sleep(2)

    def child_flow_runs(self, parent_id: str) -> list[dict[str, Any]]:
        """Flow runs started by ``parent_id`` (``run_deployment`` links them through a parent task run)."""
        task_runs = self.api("POST", "/task_runs/filter", {"flow_runs": {"id": {"any_": [parent_id]}}})
        ids = [t["id"] for t in task_runs]
        if not ids:
            return []
        return self.api("POST", "/flow_runs/filter", {"flow_runs": {"parent_task_run_id": {"any_": ids}}})

    def task_runs(self, flow_run_ids: list[str]) -> list[dict[str, Any]]:
        return self.api("POST", "/task_runs/filter", {"flow_runs": {"id": {"any_": flow_run_ids}}})

    def artifacts(self, flow_run_ids: list[str]) -> list[dict[str, Any]]:
        return self.api("POST", "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": flow_run_ids}}})

    # -- MLflow REST API --------------------------------------------------------------------------

    def mlflow(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        return http_json(method, f"{self.mlflow_url}/api/2.0/mlflow{path}", body)


def throwaway_cluster() -> pg.PostgresCluster:
    """A cluster (not started) in a new folder under the system's temporary folder, on a free port; skips
    the test where PostgreSQL cannot run, or fails it when ``ONETHINKER_REQUIRE_POSTGRES=1`` (``.ci/run``).

    Not under pytest's temporary folder: that is private to root (0700), and the server runs as another user.
    """
    reason = pg.available()
    if reason:
        if os.environ.get("ONETHINKER_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return pg.PostgresCluster(Path(tempfile.mkdtemp(prefix="onethinker-pg-")), servers.free_port())


def merge_params(params: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``{section: {...}}`` into params; sections params.yaml does not have are skipped (their
    stage has not landed yet, and the config loader rejects unknown sections)."""
    out = dict(params)
    for section, values in overrides.items():
        if isinstance(out.get(section), Mapping) and isinstance(values, Mapping):
            out[section] = deep_merge(out[section], values)
    return out


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def deploy_all(stack: Stack, root: Path) -> subprocess.CompletedProcess[str]:
    """``make deploy`` in ``root``: ``python -m flows.deploy`` (``prefect --no-prompt deploy --all`` with stdin
    closed, then every deployment of ``root``'s prefect.yaml checked on the server); the pull step records
    ``root``."""
    proc = subprocess.run(
        [sys.executable, "-m", "flows.deploy"],
        cwd=root,
        env=stack.env(PWD=str(root)),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def dvc_stage_names(root: Path) -> list[str]:
    return list((yaml.safe_load((root / "dvc.yaml").read_text()).get("stages") or {}).keys())
