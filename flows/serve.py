"""``make serve`` / ``make stop``: the local stack on 127.0.0.1, one PID file per process under ``.serve/``.

``start`` launches the MLflow tracking server (``mlflow/serve.sh``: the repository's SQLite store and
artifact folder) and the Prefect server (database under ``PREFECT_HOME``) side by side, waits until both
answer, then one Prefect process worker per pool (``cpu``, ``gpu``; each creates its pool when missing),
and waits for their heartbeats. It writes ``.serve/<name>.pid``, ``.serve/<name>.log``, ``.serve/stack.json``
and ``.serve/env`` (``source .serve/env`` points a shell's ``prefect`` / ``mlflow`` commands at the stack),
then prints the addresses. ``stop`` stops exactly the processes named by the PID files, workers first,
then the Prefect server, then MLflow, then PostgreSQL.

``--store postgres`` (``make serve STORE=postgres``) is the production layout of ``infra/compose.yaml``
without containers: first a PostgreSQL cluster of our own (:mod:`flows.postgres`; kept in
``.serve/postgres/``, on ``--pg-port``, default a free port) with the ``mlflow`` and ``prefect`` databases;
MLflow then serves on it with proxied artifacts in ``.serve/mlflow-artifacts/``, Prefect on
``postgresql+asyncpg://``. The cluster's data stays between ``stop`` and ``start``.

    python -m flows.serve start [--mlflow-port 5000] [--prefect-port 4200] [--pools cpu gpu]
                                [--store sqlite|postgres] [--pg-port PORT]
    python -m flows.serve stop
    python -m flows.serve status
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

from flows import postgres as pg
from flows import servers

MARKERS: dict[str, tuple[str, ...]] = {
    "mlflow": ("mlflow", "server"),
    "prefect-server": ("prefect", "server"),
    "postgres": ("postgres", "-D"),
}
"""What a PID's command line must contain before it is signalled (workers: ``worker`` and the pool)."""


def _markers(name: str) -> tuple[str, ...]:
    if name.startswith("worker-"):
        return ("worker", name.removeprefix("worker-"))
    return MARKERS.get(name, (name,))


def _stop_order(names: list[str]) -> list[str]:
    """Workers first, then the Prefect server, then MLflow, then anything else, then PostgreSQL."""
    rank = {"prefect-server": 1, "mlflow": 2, "postgres": 4}
    return sorted(names, key=lambda n: (0 if n.startswith("worker-") else rank.get(n, 3), n))


def running(state_dir: Path) -> dict[str, int]:
    """Processes from PID files that still run what was started there."""
    out: dict[str, int] = {}
    for pidfile in sorted(state_dir.glob("*.pid")):
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            continue
        if servers.is_alive(pid) and servers.matches(pid, _markers(pidfile.stem)):
            out[pidfile.stem] = pid
    return out


def stop_stack(state_dir: Path) -> list[str]:
    """Stop what the PID files name (workers, Prefect server, MLflow); remove the PID files."""
    lines = []
    names = [p.stem for p in state_dir.glob("*.pid")]
    for name in _stop_order(names):
        pidfile = state_dir / f"{name}.pid"
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            pidfile.unlink(missing_ok=True)
            continue
        if servers.is_alive(pid) and servers.matches(pid, _markers(name)):
            t0 = time.monotonic()
            (pg.stop if name == "postgres" else servers.stop)(pid)
            lines.append(f"stopped {name} (pid {pid}) in {time.monotonic() - t0:.1f}s")
        else:
            lines.append(f"{name} (pid {pid}) was not running")
        pidfile.unlink(missing_ok=True)
    (state_dir / "env").unlink(missing_ok=True)
    return lines


def start_stack(
    root: Path,
    state_dir: Path,
    mlflow_port: int,
    prefect_port: int,
    pools: list[str],
    timeout: float = 180.0,
    prefect_home: Path | None = None,
    mlflow_store: tuple[str | None, Path | None] | None = None,
    server_env: dict[str, str] | None = None,
    worker_env: dict[str, str] | None = None,
    postgres: pg.PostgresCluster | None = None,
) -> dict[str, servers.Managed]:
    """Start MLflow and Prefect servers, then a process worker per pool; returns the started processes.

    ``prefect_home`` defaults to ``$PREFECT_HOME`` or ``<root>/.prefect``; ``mlflow_store`` (backend URI,
    artifact folder) to the repository's SQLite store; ``server_env`` / ``worker_env`` add variables.
    With ``postgres``, that cluster is started first (``postgres`` in the result) and both servers use it:
    MLflow its ``mlflow`` database (``mlflow_store``'s folder, default ``<state_dir>/mlflow-artifacts``,
    holds the proxied artifacts), Prefect its ``prefect`` database.
    """
    if running(state_dir):
        raise servers.ServerError(f"already running: {running(state_dir)}; run `make stop` first")
    for port in (mlflow_port, prefect_port):
        if servers.port_in_use(port):
            raise servers.ServerError(
                f"port {port} on {servers.LOOPBACK} is in use: choose another "
                "(MLFLOW_PORT=... / PREFECT_PORT=... make serve)"
            )
    state_dir.mkdir(parents=True, exist_ok=True)
    prefect_home = prefect_home or Path(os.environ.get("PREFECT_HOME") or root / ".prefect")
    mlflow_url = f"http://{servers.LOOPBACK}:{mlflow_port}"
    api_url, ui_url = servers.prefect_urls(prefect_port)
    started: dict[str, servers.Managed] = {}

    def launch(name: str, argv: list[str], env: dict[str, str], url: str | None = None) -> servers.Managed:
        managed = servers.spawn(name, argv, env, root, state_dir / f"{name}.log", url)
        (state_dir / f"{name}.pid").write_text(f"{managed.pid}\n")
        started[name] = managed
        return managed

    try:
        t0 = time.monotonic()
        backend, artifacts = mlflow_store or (None, None)
        server_env = dict(server_env or {})
        if postgres is not None:
            backend = postgres.url("mlflow")
            artifacts = artifacts or state_dir / "mlflow-artifacts"
            managed = pg.start(postgres, "postgres", root, timeout=timeout, log=state_dir / "postgres.log")
            (state_dir / "postgres.pid").write_text(f"{managed.pid}\n")
            started["postgres"] = managed
            server_env.update(postgres.client_env())
        ml_env = {**servers.mlflow_env(mlflow_port, backend, artifacts), **server_env}
        ml = launch("mlflow", servers.mlflow_command(root), ml_env, mlflow_url)
        # server, UI and workers agree on the port (the UI's API address too)
        pf_env = {**servers.prefect_server_env(prefect_home, prefect_port), **server_env}
        if postgres is not None:
            pf_env["PREFECT_API_DATABASE_CONNECTION_URL"] = postgres.url("prefect", "postgresql+asyncpg")
        pf = launch("prefect-server", servers.prefect_server_command(prefect_port), pf_env, ui_url)
        servers.wait_until(servers.prefect_ready(api_url), pf, timeout, t0)
        servers.wait_until(servers.mlflow_ready(mlflow_url), ml, timeout, t0)
        w_env = {
            **servers.prefect_env(
                prefect_home, api_url, MLFLOW_TRACKING_URI=mlflow_url, MLFLOW_PORT=str(mlflow_port)
            ),
            **(worker_env or {}),
        }
        t1 = time.monotonic()
        for pool in pools:
            launch(f"worker-{pool}", servers.worker_command(pool), w_env)
        for pool in pools:
            servers.wait_until(
                servers.worker_ready(api_url, pool, f"{pool}-worker"), started[f"worker-{pool}"], timeout, t1
            )
    except BaseException:
        stop_stack(state_dir)
        raise
    env_lines = {
        "PREFECT_API_URL": api_url,
        "PREFECT_UI_URL": ui_url,
        "PREFECT_HOME": str(prefect_home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "MLFLOW_TRACKING_URI": mlflow_url,
        "MLFLOW_PORT": str(mlflow_port),
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    text = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env_lines.items())
    (state_dir / "env").write_text(text + f'export PATH="{root / ".venv" / "bin"}:$PATH"\n')
    (state_dir / "stack.json").write_text(json.dumps({n: m.to_json() for n, m in started.items()}, indent=2))
    return started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--state-dir", type=Path, default=Path(".serve"))
    parser.add_argument("--mlflow-port", type=int, default=int(os.environ.get("MLFLOW_PORT", "5000")))
    parser.add_argument("--prefect-port", type=int, default=int(os.environ.get("PREFECT_PORT", "4200")))
    parser.add_argument("--pools", nargs="+", default=["cpu", "gpu"])
    parser.add_argument("--timeout", type=float, default=180.0)
    parser.add_argument(
        "--store",
        choices=["sqlite", "postgres"],
        default=os.environ.get("STORE") or "sqlite",
        help="sqlite: the repository's MLflow store, Prefect's SQLite; postgres: a PostgreSQL cluster of "
        "our own in <state-dir>/postgres for both (the layout of infra/compose.yaml)",
    )
    parser.add_argument(
        "--pg-port",
        type=int,
        default=int(os.environ.get("PG_PORT") or 0),
        help="PostgreSQL's port with --store postgres (default: a free one)",
    )
    args = parser.parse_args(argv)
    root = Path.cwd().resolve()
    state_dir = args.state_dir if args.state_dir.is_absolute() else root / args.state_dir

    if args.action == "stop":
        lines = stop_stack(state_dir)
        print("\n".join(lines) if lines else f"nothing to stop (no PID files in {state_dir})")
        return 0
    if args.action == "status":
        live = running(state_dir)
        print("\n".join(f"{n}: pid {p}" for n, p in live.items()) if live else "not running")
        return 0
    cluster = None
    if args.store == "postgres":
        cluster = pg.PostgresCluster(state_dir / "postgres", args.pg_port or servers.free_port())
    try:
        started = start_stack(
            root, state_dir, args.mlflow_port, args.prefect_port, args.pools, args.timeout, postgres=cluster
        )
    except (servers.ServerError, pg.PostgresError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for name, m in started.items():
        print(f"{name:<15} pid {m.pid:<8} ready in {m.seconds_to_healthy:>5.1f}s  log {m.log}")
    print(f"\nMLflow UI:   {started['mlflow'].url}")
    print(f"Prefect UI:  {started['prefect-server'].url}")
    if cluster is not None:
        print(f"PostgreSQL:  {cluster.url('mlflow')} and .../prefect (password in {cluster.password_file})")
    print("\nmake deploy              # every deployment of prefect.yaml with its schedules, no prompt")
    print(f"source {state_dir}/env   # points this shell's prefect / mlflow commands at the stack")
    print("make stop                # stops exactly these processes")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
