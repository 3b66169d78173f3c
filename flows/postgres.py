"""A PostgreSQL cluster of our own on 127.0.0.1 for the MLflow and Prefect servers (``make serve
STORE=postgres`` and the production-stack tests): what ``infra/compose.yaml``'s ``postgres`` service does,
without a container.

- ``init``: ``initdb`` a data folder with the superuser ``onethinker`` (compose's ``POSTGRES_USER``) and a
  random password kept in ``<root>/password`` (mode 0600), ``scram-sha-256`` for every connection; ``start``
  then creates the
  databases as the postgres image does on an empty volume: ``mlflow`` (compose's ``POSTGRES_DB``), then
  ``infra/postgres/init-databases.sql`` (``prefect``).
- ``command``: ``postgres`` listening on 127.0.0.1 only, its unix socket inside the cluster folder, started
  in its own session (:func:`flows.servers.spawn`). :func:`stop` stops it by PID: SIGINT to the postmaster
  (fast shutdown: open sessions are ended, then a clean checkpoint; SIGTERM would wait for the MLflow and
  Prefect servers' pooled sessions), then what :func:`flows.servers.stop` does if it is still up.
- Clients get no password on a command line: :meth:`PostgresCluster.url` carries user, host, port and
  database; the password travels in ``PGPASSWORD`` (:meth:`PostgresCluster.client_env`), which libpq (so
  psycopg2, MLflow's driver) and asyncpg (Prefect's) both read.

PostgreSQL refuses to run as root. Run as root, every server command runs as an unprivileged user:
``postgres`` (the Debian package's) unless ``ONETHINKER_PG_USER`` names another; the cluster folder is
handed to that user, so it must be reachable by it (a folder under /tmp is). The binaries are found in
``$PG_BIN``, ``pg_config --bindir`` or ``/usr/lib/postgresql/<newest>/bin``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from flows import servers

SUPERUSER = "onethinker"
FIRST_DB = "mlflow"
INIT_SQL = Path(__file__).resolve().parents[1] / "infra" / "postgres" / "init-databases.sql"
USER_ENV = "ONETHINKER_PG_USER"


class PostgresError(RuntimeError):
    """PostgreSQL is missing, cannot run here, or a command failed (with what to do about it)."""


def bindir() -> Path:
    """The folder holding ``initdb``, ``postgres``, ``pg_isready`` and ``psql``."""
    candidates = []
    if os.environ.get("PG_BIN"):
        candidates.append(Path(os.environ["PG_BIN"]))
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=False)
        candidates.append(Path(out.stdout.strip()))

    def version(p: Path) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", p.parent.name)) or (0,)

    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    for c in candidates:
        if (c / "initdb").is_file() and (c / "postgres").is_file():
            return c
    raise PostgresError(
        "PostgreSQL server binaries (initdb, postgres) not found: install postgresql (e.g. "
        "`apt-get install postgresql-15`) or set PG_BIN to the folder that holds them"
    )


def available() -> str | None:
    """None when a cluster can be started here, else why not (for a test's skip reason)."""
    try:
        bindir()
        service_user()
    except PostgresError as exc:
        return str(exc)
    return None


def service_user() -> tuple[int, int] | None:
    """(uid, gid) to run the server as when running as root (PostgreSQL refuses root); None otherwise."""
    if os.geteuid() != 0:
        return None
    name = os.environ.get(USER_ENV) or "postgres"
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise PostgresError(
            f"running as root, and PostgreSQL refuses to: there is no user {name!r} to run it as; create one "
            f"(`useradd --system --no-create-home {name}`) or set {USER_ENV} to an unprivileged user"
        ) from None
    if entry.pw_uid == 0:
        raise PostgresError(f"{USER_ENV}={name} is root; PostgreSQL needs an unprivileged user")
    return entry.pw_uid, entry.pw_gid


@dataclass
class PostgresCluster:
    """A cluster in ``root`` (``data/``, ``run/`` for the socket, ``password``) served on ``port``."""

    root: Path
    port: int
    host: str = servers.LOOPBACK

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "run"

    @property
    def password_file(self) -> Path:
        return self.root / "password"

    @property
    def log(self) -> Path:
        return self.root / "postgres.log"

    @property
    def password(self) -> str:
        return self.password_file.read_text().strip()

    def initialized(self) -> bool:
        return (self.data / "PG_VERSION").is_file()

    # -- addresses ----------------------------------------------------------------------------------

    def url(self, database: str, driver: str = "postgresql") -> str:
        """``postgresql://onethinker@127.0.0.1:<port>/<database>`` (no password: see ``client_env``)."""
        return f"{driver}://{SUPERUSER}@{self.host}:{self.port}/{database}"

    def client_env(self) -> dict[str, str]:
        """What a client (a server using the cluster, ``psql``) needs besides the URL."""
        return {"PGPASSWORD": self.password}

    # -- commands -----------------------------------------------------------------------------------

    def _run_as_owner(self, argv: list[str], timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        user = service_user()
        proc = subprocess.run(
            argv,
            cwd=self.root,
            env={**os.environ, "LC_ALL": "C.UTF-8"},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **({"user": user[0], "group": user[1], "extra_groups": []} if user else {}),
        )
        if proc.returncode != 0:
            raise PostgresError(
                f"{' '.join(argv[:2])} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}"
            )
        return proc

    def init(self) -> bool:
        """Create the cluster folder and ``initdb`` it; False when it already holds a cluster."""
        if self.initialized():
            return False
        user = service_user()
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        self.password_file.write_text(secrets.token_urlsafe(24) + "\n")
        self.password_file.chmod(0o600)
        for p in (self.root, self.socket_dir, self.password_file):
            if user:
                os.chown(p, *user)
        self.root.chmod(0o700)
        self._run_as_owner(
            [
                str(bindir() / "initdb"),
                "--pgdata",
                str(self.data),
                "--username",
                SUPERUSER,
                "--pwfile",
                str(self.password_file),
                "--auth-host",
                "scram-sha-256",
                "--auth-local",
                "scram-sha-256",
                "--encoding",
                "UTF8",
                "--locale",
                "C.UTF-8",
                "--no-sync",
            ]
        )
        return True

    def command(self) -> list[str]:
        """The server in the foreground (its PID is the postmaster's), TCP on ``host`` only."""
        return [
            str(bindir() / "postgres"),
            "-D",
            str(self.data),
            "-p",
            str(self.port),
            "-h",
            self.host,
            "-k",
            str(self.socket_dir),
            "-c",
            "unix_socket_permissions=0700",
        ]

    def spawn(self, name: str, cwd: Path, log: Path | None = None) -> servers.Managed:
        """Start the server in its own session (as the service user when root); wait with :meth:`ready`."""
        user = service_user()
        return servers.spawn(
            name,
            self.command(),
            {**os.environ, "LC_ALL": "C.UTF-8"},
            cwd,
            log or self.log,
            url=self.url(FIRST_DB),
            user=user,
        )

    def ready(self) -> bool:
        proc = subprocess.run(
            [str(bindir() / "pg_isready"), "-q", "-h", self.host, "-p", str(self.port), "-d", "postgres"],
            capture_output=True,
            check=False,
            timeout=10,
        )
        return proc.returncode == 0

    def psql(self, sql: str, database: str = FIRST_DB, *files: Path) -> str:
        """Run SQL through ``psql`` over TCP as the superuser (``-At``: bare rows, ``|`` between columns)."""
        argv = [
            str(bindir() / "psql"),
            "-X",
            "-q",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            self.host,
            "-p",
            str(self.port),
            "-U",
            SUPERUSER,
            "-d",
            database,
        ]
        argv += ["-c", sql] if sql else []
        for f in files:
            argv += ["-f", str(f)]
        proc = subprocess.run(
            argv, env={**os.environ, **self.client_env()}, capture_output=True, text=True, timeout=120
        )
        if proc.returncode != 0:
            raise PostgresError(f"psql on {database}: {proc.stderr.strip()[-2000:]}")
        return proc.stdout

    def create_databases(self, init_sql: Path = INIT_SQL) -> list[str]:
        """``mlflow``, then ``init_sql`` (the postgres image's first start); returns the created names."""
        have = set(self.psql("SELECT datname FROM pg_database", "postgres").split())
        if FIRST_DB in have:
            return []
        self.psql(f"CREATE DATABASE {FIRST_DB}", "postgres")
        self.psql("", FIRST_DB, init_sql)
        after = set(self.psql("SELECT datname FROM pg_database", "postgres").split())
        return sorted(after - have)

    def count(self, sql: str, database: str = FIRST_DB) -> int:
        """One integer from a ``SELECT count(*) ...``."""
        return int(self.psql(sql, database).strip() or 0)


def wait_ready(cluster: PostgresCluster, managed: servers.Managed, timeout: float, started: float) -> float:
    """Until the server accepts connections; the seconds since ``started``."""
    return servers.wait_until(cluster.ready, managed, timeout, started)


def start(
    cluster: PostgresCluster, name: str, cwd: Path, timeout: float = 60.0, log: Path | None = None
) -> servers.Managed:
    """``init`` (once), start (output to ``log``, default ``<root>/postgres.log``), wait, create the
    databases (once): a ready cluster, started by us."""
    if servers.port_in_use(cluster.port):
        raise PostgresError(f"port {cluster.port} on {cluster.host} is in use: choose another (PG_PORT=...)")
    fresh = cluster.init()
    t0 = time.monotonic()
    managed = cluster.spawn(name, cwd, log)
    try:
        wait_ready(cluster, managed, timeout, t0)
        if fresh or not cluster.psql(f"SELECT 1 FROM pg_database WHERE datname = '{FIRST_DB}'", "postgres"):
            cluster.create_databases()
    except BaseException:
        stop(managed.pid, managed.proc)
        raise
    return managed


def stop(pid: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 60.0) -> bool:
    """Fast shutdown of the postmaster ``pid``; the process group is killed if it is not down after
    ``timeout``. True if it was running."""
    if not servers.is_alive(pid, proc):
        return servers.stop(pid, proc)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + timeout
    while servers.is_alive(pid, proc) and time.monotonic() < deadline:
        time.sleep(0.1)
    servers.stop(pid, proc)  # reaps it; SIGTERM, then SIGKILL to the group, only if it is still up
    return True


def remove(cluster: PostgresCluster) -> None:
    """Delete the cluster folder (call after stopping it)."""
    shutil.rmtree(cluster.root, ignore_errors=True)
