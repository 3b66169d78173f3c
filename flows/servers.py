"""Local servers on 127.0.0.1, started and stopped by PID: the MLflow tracking server, the Prefect server and
Prefect process workers. Used by ``make serve`` / ``make stop`` (:mod:`flows.serve`) and by the integration
tests.

Every process is started in its own session (its PID is its process group id), so stopping it signals the
whole group: the MLflow server's gunicorn/uvicorn workers, or the flow runs a Prefect worker started.
A PID is signalled only while its command line still names what was started there (a stale PID file whose
PID was reused by another program is left alone). Stop workers before the Prefect server: a worker whose
server is gone can hang on SIGTERM.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flows.commands import tool

LOOPBACK = "127.0.0.1"


class ServerError(RuntimeError):
    """A server did not come up (its log's tail is in the message)."""


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_in_use(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


# --------------------------------------------------------------------------------------------------
# Commands


def mlflow_command(root: Path) -> list[str]:
    """``mlflow/serve.sh`` (host, port, stores from ``MLFLOW_*`` variables; see mlflow/README.md)."""
    return ["bash", str(root / "mlflow" / "serve.sh")]


def mlflow_env(
    port: int,
    backend_store_uri: str | None = None,
    artifacts: Path | None = None,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Environment for ``mlflow/serve.sh``: loopback, ``port``, and the stores (default: the repository's)."""
    env = dict(os.environ if base is None else base)
    env.update({"MLFLOW_HOST": LOOPBACK, "MLFLOW_PORT": str(port), "MLFLOW_DISABLE_TELEMETRY": "true"})
    if backend_store_uri:
        env["MLFLOW_BACKEND_STORE_URI"] = backend_store_uri
    if artifacts is not None:
        env["MLFLOW_ARTIFACTS_DESTINATION"] = str(artifacts)
    return env


def prefect_server_command(port: int) -> list[str]:
    return [tool("prefect"), "server", "start", "--host", LOOPBACK, "--port", str(port)]


def prefect_urls(port: int) -> tuple[str, str]:
    """``(api_url, ui_url)`` of a Prefect server on ``port`` of the loopback interface."""
    ui_url = f"http://{LOOPBACK}:{port}"
    return f"{ui_url}/api", ui_url


def prefect_env(
    prefect_home: Path, api_url: str | None = None, base: Mapping[str, str] | None = None, **extra: str
) -> dict[str, str]:
    """Prefect settings kept inside the project: ``PREFECT_HOME``, no analytics, the API URL when given
    (with the UI address derived from it, so links printed by clients point at the same server)."""
    env = dict(os.environ if base is None else base)
    env.update({"PREFECT_HOME": str(prefect_home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
    if api_url:
        env["PREFECT_API_URL"] = api_url
        env["PREFECT_UI_URL"] = api_url.removesuffix("/api")
    env.update(extra)
    return env


def prefect_server_env(
    prefect_home: Path, port: int, base: Mapping[str, str] | None = None, **extra: str
) -> dict[str, str]:
    """The Prefect server's settings, all on ``port``: its own host and port settings, the API URL the UI in
    the browser calls (``PREFECT_UI_API_URL``; by default it is built from ``PREFECT_SERVER_API_PORT``, 4200,
    whatever ``--port`` says) and the UI's address. An inherited ``PREFECT_API_URL`` of another stack is
    replaced."""
    api_url, ui_url = prefect_urls(port)
    return prefect_env(
        prefect_home,
        api_url,
        base,
        PREFECT_SERVER_API_HOST=LOOPBACK,
        PREFECT_SERVER_API_PORT=str(port),
        PREFECT_UI_API_URL=api_url,
        PREFECT_UI_URL=ui_url,
        **extra,
    )


def worker_command(pool: str, name: str | None = None) -> list[str]:
    """A process worker for ``pool`` (it creates the pool, type ``process``, when it does not exist)."""
    return [
        tool("prefect"),
        "worker",
        "start",
        "--pool",
        pool,
        "--type",
        "process",
        "--name",
        name or f"{pool}-worker",
    ]


# --------------------------------------------------------------------------------------------------
# Processes


@dataclass
class Managed:
    """A started process: its name, PID, command line, log file and (for servers) its address."""

    name: str
    pid: int
    argv: list[str]
    log: Path
    url: str | None = None
    seconds_to_healthy: float | None = None
    proc: subprocess.Popen[bytes] | None = None
    env: dict[str, str] | None = None
    """What it was started with (not written to ``stack.json``: it may hold a password), for ``respawn``."""
    cwd: Path | None = None
    user: tuple[int, int] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pid": self.pid,
            "argv": self.argv,
            "log": str(self.log),
            "url": self.url,
            "seconds_to_healthy": self.seconds_to_healthy,
        }


def spawn(
    name: str,
    argv: Sequence[str],
    env: Mapping[str, str],
    cwd: Path,
    log: Path,
    url: str | None = None,
    user: tuple[int, int] | None = None,
) -> Managed:
    """Start ``argv`` in a new session with output to ``log`` (as ``user`` = (uid, gid) when given)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    as_user = {"user": user[0], "group": user[1], "extra_groups": []} if user else {}
    with log.open("ab") as out:
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            **as_user,
        )
    return Managed(name, proc.pid, list(argv), log, url, None, proc, dict(env), cwd, user)


def respawn(managed: Managed) -> Managed:
    """Start what ``managed`` ran again (same command, environment, folder, log and user), e.g. after
    stopping it to restart a server; the caller waits for it to be ready."""
    if managed.env is None or managed.cwd is None:
        raise ServerError(f"{managed.name}: not started by spawn(), cannot be started again")
    return spawn(managed.name, managed.argv, managed.env, managed.cwd, managed.log, managed.url, managed.user)


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def http_json(method: str, url: str, body: Mapping[str, Any] | None = None, timeout: float = 60.0) -> Any:
    """A JSON request; 503/429 (a busy SQLite-backed server) are retried for up to ~2 minutes, as Prefect's
    own client does."""
    data = json.dumps(body).encode() if body is not None else None
    for attempt in range(8):
        req = urllib.request.Request(
            url, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - loopback only
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            if exc.code not in (429, 503) or attempt == 7:
                raise
            time.sleep(min(2**attempt, 30))
    raise AssertionError("unreachable")


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback only
            return 200 <= resp.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def wait_until(
    check: Callable[[], bool],
    managed: Managed,
    timeout: float,
    started: float | None = None,
    interval: float = 0.5,
) -> float:
    """Poll ``check`` until true; returns the seconds since ``started``. Raise if the process died first."""
    t0 = started if started is not None else time.monotonic()
    while True:
        if check():
            managed.seconds_to_healthy = round(time.monotonic() - t0, 1)
            return managed.seconds_to_healthy
        if not is_alive(managed.pid, managed.proc):
            raise ServerError(
                f"{managed.name} exited before it was ready; log {managed.log}:\n{log_tail(managed.log)}"
            )
        if time.monotonic() - t0 > timeout:
            raise ServerError(
                f"{managed.name} not ready after {timeout:.0f}s; log {managed.log}:\n{log_tail(managed.log)}"
            )
        time.sleep(interval)


def is_alive(pid: int, proc: subprocess.Popen[bytes] | None = None) -> bool:
    """Whether ``pid`` runs (a zombie counts as gone)."""
    if proc is not None:
        return proc.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return True


def cmdline(pid: int) -> list[str]:
    try:
        return [
            p for p in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0") if p
        ]
    except OSError:
        return []


def matches(pid: int, markers: Sequence[str]) -> bool:
    """Whether ``pid``'s command line contains every marker (guards against reused PIDs)."""
    line = " ".join(cmdline(pid))
    return bool(line) and all(m in line for m in markers)


def stop(pid: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 20.0) -> bool:
    """SIGTERM the process group of ``pid`` (its own session), SIGKILL after ``timeout``; True if it was
    running."""
    if not is_alive(pid, proc):
        if proc is not None:
            proc.wait()
        return False
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc is not None:
                try:
                    proc.wait(timeout=0.2)
                    break
                except subprocess.TimeoutExpired:
                    continue
            if not is_alive(pid):
                break
            time.sleep(0.2)
        if not is_alive(pid, proc):
            break
    # the group's other members (a worker's flow run, gunicorn workers) get the same signals
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    return True


# --------------------------------------------------------------------------------------------------
# Readiness checks


def mlflow_ready(url: str) -> Callable[[], bool]:
    return lambda: http_ok(f"{url}/health")


def prefect_ready(api_url: str) -> Callable[[], bool]:
    return lambda: http_ok(f"{api_url}/health")


def worker_ready(api_url: str, pool: str, worker_name: str) -> Callable[[], bool]:
    """The worker has sent a heartbeat to its pool."""

    def check() -> bool:
        try:
            workers = http_json("POST", f"{api_url}/work_pools/{pool}/workers/filter", {}, timeout=2.0)
        except (urllib.error.URLError, OSError, ValueError):
            return False
        return any(w.get("name") == worker_name for w in workers)

    return check
