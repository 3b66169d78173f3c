"""The production stack under load and faults (``slow``; ``make test-ci``): the ``pg_stack`` fixture's
PostgreSQL cluster with MLflow (proxied artifacts, one worker) and Prefect on it, all on 127.0.0.1.

- Many writers: 4 processes log through the project's tracking helpers to the same server at once (10
  metrics x 100 steps each, one request per step, a 240 s deadline); every point is read back through
  MLflow's API and counted in PostgreSQL: nothing lost, nothing duplicated. The figures (points written and
  read back per writer, requests/s the stack held) are printed in pytest's summary.
- Registry race: two ``register_version`` calls (what ``onethinker register`` does after logging the
  model) start at the same instant through the server, three rounds; the outcome must be one a serial
  order gives (champion, trail, registry file). Expected to fail until promotion is atomic.
- Restarts: ``onethinker sft`` runs on the smoke data and logs every step while the MLflow server, then the
  PostgreSQL cluster, are restarted under it; the stage completes and every step's metrics are there once.

The smoke pipeline through a Prefect deployment on this stack is in ``test_pipeline_end_to_end.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from stack_clients import metric_key, metric_value
from stack_helpers import BIN, FIGURES, Stack

pytestmark = pytest.mark.slow

CLIENTS = Path(__file__).with_name("stack_clients.py")
WRITERS, KEYS, STEPS, DEADLINE_S = 4, 10, 100, 240.0


def _client_env(stack: Stack) -> dict[str, str]:
    return stack.env(MLFLOW_HTTP_REQUEST_TIMEOUT="60")


def _start_clients(stack: Stack, cwd: Path, argvs: list[list[str]]) -> list[subprocess.Popen[str]]:
    return [
        subprocess.Popen(
            [sys.executable, str(CLIENTS), *argv],
            cwd=cwd,
            env=_client_env(stack),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for argv in argvs
    ]


def _results(procs: list[subprocess.Popen[str]], timeout: float) -> list[dict]:
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=timeout)
        assert p.returncode == 0, stderr[-3000:]
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def _start_at(seconds: float) -> str:
    """A wall-clock instant ``seconds`` from now: every client waits for it (imports done, all together)."""
    return str(time.time() + seconds)


# --------------------------------------------------------------------------------------------------
# Many writers


def test_many_writers_lose_and_duplicate_nothing(pg_stack: Stack, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    assert pg_stack.postgres is not None
    start_at = _start_at(20.0)
    procs = _start_clients(
        pg_stack,
        tmp_path,
        [
            ["write", "--index", str(i), "--keys", str(KEYS), "--steps", str(STEPS)]
            + ["--deadline", str(DEADLINE_S), "--start-at", start_at]
            for i in range(WRITERS)
        ],
    )
    writers = sorted(_results(procs, timeout=DEADLINE_S + 180), key=lambda w: w["index"])
    assert all(w["steps"] == STEPS for w in writers), [(w["index"], w["steps"]) for w in writers]

    # read every point back through the server's API
    client = MlflowClient(tracking_uri=pg_stack.mlflow_url)
    read_api: dict[str, int] = {}
    for w in writers:
        n = 0
        for k in range(KEYS):
            history = client.get_metric_history(w["run_id"], metric_key(k))
            got = sorted((m.step, m.value) for m in history)
            assert got == [(s, metric_value(w["index"], k, s)) for s in range(STEPS)], (w["index"], k)
            n += len(history)
        read_api[w["run_id"]] = n
        assert client.get_run(w["run_id"]).info.status == "FINISHED"

    # and count the rows in PostgreSQL: one per (run, key, step), nothing else
    ids = ",".join(f"'{w['run_id']}'" for w in writers)
    rows = pg_stack.postgres.psql(
        "SELECT run_uuid, key, count(*), count(DISTINCT step), min(step), max(step) FROM metrics "
        f"WHERE run_uuid IN ({ids}) GROUP BY run_uuid, key ORDER BY run_uuid, key"
    ).split()
    per_run: dict[str, int] = {}
    for row in rows:
        run_uuid, key, count, distinct, lo, hi = row.split("|")
        assert (int(count), int(distinct), int(lo), int(hi)) == (STEPS, STEPS, 0, STEPS - 1), row
        per_run[run_uuid] = per_run.get(run_uuid, 0) + int(count)
    assert len(rows) == WRITERS * KEYS, rows

    t0 = min(w["start"] for w in writers)
    t1 = max(w["start"] + w["seconds"] for w in writers)
    requests = sum(w["requests"] for w in writers)
    FIGURES.append(
        f"many writers ({WRITERS} processes x {KEYS} metrics x {STEPS} steps, one log-batch request per step, "
        f"one MLflow worker on PostgreSQL): {requests} requests in {t1 - t0:.1f}s = "
        f"{requests / (t1 - t0):.1f} requests/s, {requests * KEYS / (t1 - t0):.0f} points/s"
    )
    for w in writers:
        FIGURES.append(
            f"  writer {w['index']}: wrote {w['points']} points in {w['seconds']:.1f}s "
            f"({w['requests'] / w['seconds']:.1f} req/s, p50 {w['p50_ms']} ms, p95 {w['p95_ms']} ms); "
            f"read back {read_api[w['run_id']]} via the API, {per_run[w['run_id']]} rows in PostgreSQL"
        )


# --------------------------------------------------------------------------------------------------
# Registry race

ECHO_MODEL = """
import mlflow


class Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input


mlflow.models.set_model(Echo())
"""


def _log_echo_model(stack: Stack, tmp_path: Path) -> str:
    """A small real pyfunc model (models from code) logged through the server; its ``models:/m-...`` URI."""
    code = tmp_path / "echo_model.py"
    code.write_text(textwrap.dedent(ECHO_MODEL))
    script = (
        "import mlflow, sys\n"
        "mlflow.set_experiment('registry-race')\n"
        "with mlflow.start_run():\n"
        "    info = mlflow.pyfunc.log_model(name='model', python_model=sys.argv[1], pip_requirements=[])\n"
        "print(info.model_uri)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(code)],
        cwd=tmp_path,
        env=_client_env(stack),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


def _register(stack: Stack, root: Path, name: str, uri: str, scores: list[float]) -> list[dict]:
    """``register_version`` of ``uri`` once per score, all starting at the same instant."""
    start_at = _start_at(8.0)
    argv = ["register", "--name", name, "--model-uri", uri, "--root", str(root), "--start-at", start_at]
    procs = _start_clients(stack, root, [[*argv, "--score", str(s)] for s in scores])
    return _results(procs, timeout=300)


def test_racing_registers_promote_as_some_serial_order_would(pg_stack: Stack, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    name = "onethinker-race"
    root = tmp_path / "workspace"  # the workspace both registers share (compose mounts one checkout)
    root.mkdir()
    uri = _log_echo_model(pg_stack, tmp_path)
    (first,) = _register(pg_stack, root, name, uri, [0.30])
    assert first["decision"] == "promoted" and first["champion_after"] == first["version"]
    client = MlflowClient(tracking_uri=pg_stack.mlflow_url)
    registry_file = root / "metrics" / "registry.json"
    champion, champion_score = first["version"], 0.30
    for rnd in range(3):
        trail_before = client.get_registered_model(name).tags["champion_history"].split(",")
        entries_before = len(json.loads(registry_file.read_text())["history"])
        worse, better = round(champion_score + 0.05, 4), round(champion_score + 0.10, 4)
        results = {r["score"]: r for r in _register(pg_stack, root, name, uri, [worse, better])}
        a, b = results[worse], results[better]

        model = client.get_registered_model(name)
        trail = model.tags["champion_history"].split(",")
        # whichever ran first, the better one ends as champion
        assert model.aliases["champion"] == b["version"], (rnd, results, model.aliases)
        # the trail grew by exactly the promotions of one serial order: [worse, better] or [better]
        added = trail[len(trail_before) :]
        assert trail[: len(trail_before)] == trail_before, (rnd, trail_before, trail)
        assert added in ([a["version"], b["version"]], [b["version"]]), (rnd, added, results)
        assert model.aliases["previous_champion"] == trail[-2], (rnd, model.aliases, trail)
        # the registry file holds both registrations, chained: each gated against the champion before it
        entries = json.loads(registry_file.read_text())["history"][entries_before:]
        assert len(entries) == 2, (rnd, entries)
        assert entries[0]["champion_before"] == int(champion), (rnd, entries)
        assert entries[1]["champion_before"] == entries[0]["champion_after"], (rnd, entries)
        assert entries[1]["champion_after"] == int(b["version"]), (rnd, entries)
        champion, champion_score = b["version"], better
    FIGURES.append(f"registry race: 3 rounds of two concurrent registers, champion v{champion} as serial")


# --------------------------------------------------------------------------------------------------
# Restarts under a running stage

SFT_STEPS = 24


def _history_steps(client, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def _wait_steps(client, run_id: str, key: str, at_least: int, proc: subprocess.Popen, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        steps = _history_steps(client, run_id, key)
        if len(steps) >= at_least:
            return len(steps)
        assert proc.poll() is None, f"the stage ended (rc {proc.returncode}) before step {at_least}"
        time.sleep(0.3)
    raise AssertionError(f"no {at_least} logged steps after {timeout:.0f}s")


def test_stage_survives_mlflow_and_postgres_restarts(pg_stack: Stack, make_repo) -> None:
    from mlflow import MlflowClient

    assert pg_stack.postgres is not None
    root = make_repo({"sft": {"max_steps": SFT_STEPS, "log_every": 1, "batch_size": 4}})
    env = pg_stack.env()
    for cmd in (["prepare"], ["base-model"]):
        proc = subprocess.run(
            [str(BIN / "onethinker"), *cmd], cwd=root, env=env, capture_output=True, text=True, timeout=600
        )
        assert proc.returncode == 0, proc.stderr[-3000:]

    client = MlflowClient(tracking_uri=pg_stack.mlflow_url)
    exp = client.get_experiment_by_name("onethinker")
    runs_before = {r.info.run_id for r in client.search_runs([exp.experiment_id])} if exp else set()
    log = (root / "sft.log").open("w")
    t0 = time.monotonic()
    stage = subprocess.Popen(
        [str(BIN / "onethinker"), "sft"], cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 300
        run_id = None
        while run_id is None and time.monotonic() < deadline:
            exp = client.get_experiment_by_name("onethinker")
            new = [
                r
                for r in (client.search_runs([exp.experiment_id]) if exp else [])
                if r.info.run_id not in runs_before and r.info.run_name == "sft"
            ]
            run_id = new[0].info.run_id if new else None
            assert stage.poll() is None or run_id, (root / "sft.log").read_text()[-3000:]
            time.sleep(0.3)
        assert run_id, "the sft stage opened no MLflow run"

        before_ml = _wait_steps(client, run_id, "train/loss", 3, stage, 600)
        mlflow_restart = pg_stack.restart("mlflow", down_s=2.0)
        before_pg = _wait_steps(client, run_id, "train/loss", before_ml + 3, stage, 600)
        pg_restart = pg_stack.restart("postgres", down_s=2.0)
        rc = stage.wait(timeout=1200)
    finally:
        if stage.poll() is None:
            stage.kill()
        log.close()
    seconds = time.monotonic() - t0
    assert rc == 0, (root / "sft.log").read_text()[-4000:]

    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    summary = json.loads((root / "metrics" / "sft.json").read_text())
    assert summary["steps"] == SFT_STEPS
    keys = ["train/loss", "train/lr", "perf/tokens_per_s"]
    for key in keys:
        assert _history_steps(client, run_id, key) == list(range(1, SFT_STEPS + 1)), key
    rows = pg_stack.postgres.psql(
        "SELECT key, count(*), count(DISTINCT step) FROM metrics "
        f"WHERE run_uuid = '{run_id}' AND key IN ({','.join(repr(k) for k in keys)}) GROUP BY key"
    ).split()
    assert sorted(rows) == sorted(f"{k}|{SFT_STEPS}|{SFT_STEPS}" for k in keys), rows
    heldout = [k for k in run.data.metrics if k.startswith("heldout")]
    assert heldout, sorted(run.data.metrics)[:20]
    # the Prefect server on the same cluster came back too
    assert pg_stack.api("POST", "/work_pools/filter", {})
    FIGURES.append(
        f"restarts during `onethinker sft` ({SFT_STEPS} steps, a log request per step, {seconds:.0f}s): "
        f"MLflow server restarted after step {before_ml} (down {mlflow_restart['outage_s']}s), PostgreSQL "
        f"after step {before_pg} (down {pg_restart['outage_s']}s); stage exit 0, run FINISHED, "
        f"{len(keys)} x {SFT_STEPS}/{SFT_STEPS} step metrics once each (API and SQL), "
        f"{len(heldout)} held-out metrics"
    )
