"""The PostgreSQL cluster behind ``make serve STORE=postgres`` and ``pg_stack`` (``flows/postgres.py``), for
real and on its own (about 10 s): init, the databases infra/postgres creates, loopback only, password
authentication, fast shutdown by PID, and a restart that keeps the data.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from flows import postgres as pg
from flows import servers
from stack_helpers import REPO, throwaway_cluster


@pytest.fixture
def cluster() -> Iterator[pg.PostgresCluster]:
    c = throwaway_cluster()
    try:
        yield c
    finally:
        pg.remove(c)


def test_cluster_starts_with_the_compose_databases_and_restarts_with_its_data(
    cluster: pg.PostgresCluster,
) -> None:
    m = pg.start(cluster, "postgres", REPO)
    try:
        dbs = set(cluster.psql("SELECT datname FROM pg_database").split())
        assert {"mlflow", "prefect"} <= dbs  # POSTGRES_DB, then infra/postgres/init-databases.sql
        assert cluster.psql("SHOW listen_addresses").strip() == "127.0.0.1"
        assert cluster.psql("SELECT current_user").strip() == pg.SUPERUSER
        assert cluster.url("prefect", "postgresql+asyncpg") == (
            f"postgresql+asyncpg://onethinker@127.0.0.1:{cluster.port}/prefect"
        )
        assert oct(cluster.password_file.stat().st_mode & 0o777) == "0o600"
        assert cluster.psql("SHOW password_encryption").strip() == "scram-sha-256"
        cluster.psql("CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)")
        # a wrong password is refused: the server does not trust loopback connections
        with pytest.raises(pg.PostgresError, match="password authentication failed"):
            _WrongPassword(cluster.root, cluster.port).psql("SELECT 1")
    finally:
        assert pg.stop(m.pid, m.proc)
    assert not servers.is_alive(m.pid, m.proc) and not cluster.ready()

    again = pg.start(cluster, "postgres", REPO)  # same folder: no initdb, no new databases, data kept
    try:
        assert cluster.psql("SELECT x FROM kept").strip() == "42"
    finally:
        pg.stop(again.pid, again.proc)


class _WrongPassword(pg.PostgresCluster):
    def client_env(self) -> dict[str, str]:
        return {"PGPASSWORD": "not-the-password"}


def test_root_without_an_unprivileged_user_gets_a_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(pg.USER_ENV, "no-such-user-onethinker")
    if os.geteuid() != 0:
        assert pg.service_user() is None  # not root: the server runs as we do
        return
    with pytest.raises(pg.PostgresError, match="useradd --system --no-create-home no-such-user-onethinker"):
        pg.service_user()
