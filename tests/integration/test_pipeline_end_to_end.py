"""The whole pipeline on the smoke profile through the deployed flows (``slow``: several minutes on 2 cores),
on the SQLite stack (``stack``, what ``make serve`` runs) and on the production layout (``pg_stack``: MLflow
and Prefect on PostgreSQL, artifacts proxied by the MLflow server; ``make serve STORE=postgres``).

``training-pipeline/weekly`` is triggered through the Prefect API with the deployment's own parameters
(every stage, dispatched to ``dvc-stage/cpu`` and ``dvc-stage/gpu``); the cpu and gpu process workers run
it. Then ``evaluation-only/nightly`` re-evaluates the champion the run registered. Checked: the flow runs
completed, each stage ran on its pool, the MLflow server holds the stage runs nested under the pipeline's
run with per-task metrics, the registry holds a version with an alias, and the Prefect artifacts exist.
A second weekly run finds every stage up to date: its artifacts say so and name the earlier runs, and its
parent run gets no evaluation metrics.
On PostgreSQL also: the same runs, metrics, logged models, versions and aliases counted in the ``mlflow``
database and the flow runs in the ``prefect`` one, the model files in the server's artifact folder and
downloaded through its proxy, and the champion loaded by alias through the server in a fresh process.
Skipped, with the reason, while ``dvc.yaml`` lacks one of the stages.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest
from stack_helpers import FIGURES, REPO, Stack, deploy_all, dvc_stage_names

pytestmark = pytest.mark.slow

STAGES = ("validate", "sft", "grpo", "evaluate", "register")
GPU = {"sft", "grpo", "evaluate"}


@pytest.fixture(autouse=True)
def _full_pipeline_present() -> None:
    missing = [s for s in STAGES if s not in dvc_stage_names(REPO)]
    if missing:
        pytest.skip(f"dvc.yaml lacks stage(s) {', '.join(missing)}: the full pipeline has not landed yet")


@pytest.fixture(params=["sqlite", "postgres"])
def any_stack(request: pytest.FixtureRequest) -> Stack:
    return request.getfixturevalue("stack" if request.param == "sqlite" else "pg_stack")


def _runs(stack: Stack, filter_string: str) -> list[dict]:
    exps = stack.mlflow("POST", "/experiments/search", {"max_results": 100})["experiments"]
    body = {"experiment_ids": [e["experiment_id"] for e in exps], "filter": filter_string, "max_results": 100}
    return stack.mlflow("POST", "/runs/search", body).get("runs", [])


def test_training_pipeline_then_nightly_evaluation(any_stack: Stack, make_repo) -> None:
    stack = any_stack
    root = make_repo()
    deploy_all(stack, root)
    run_id = stack.run_deployment("training-pipeline/weekly", {"retries": 0})
    run = stack.wait_flow_run(run_id, timeout=1800)
    assert run["state"]["type"] == "COMPLETED", run["state"]

    # every stage ran once, in order, on its pool
    children = sorted(stack.child_flow_runs(run_id), key=lambda r: r["start_time"] or "")
    assert [c["parameters"]["stage"] for c in children] == list(STAGES)
    for child in children:
        assert child["state"]["type"] == "COMPLETED", child["state"]
        expected = "gpu" if child["parameters"]["stage"] in GPU else "cpu"
        assert child["work_pool_name"] == expected, (child["parameters"]["stage"], child["work_pool_name"])

    # MLflow: the pipeline's run and the stage runs nested under it, with per-task evaluation metrics
    (parent,) = _runs(stack, f"tags.`prefect.flow_run_id` = '{run_id}'")
    assert parent["info"]["status"] == "FINISHED"
    parent_id = parent["info"]["run_id"]
    nested = {r["info"]["run_name"]: r for r in _runs(stack, f"tags.`mlflow.parentRunId` = '{parent_id}'")}
    assert {"sft", "grpo", "evaluate", "register"} <= set(nested), sorted(nested)
    eval_json = json.loads((root / "metrics" / "eval.json").read_text())
    slugs = {t for m in eval_json["models"].values() for t in m.get("tasks") or {}}
    metric_keys = {m["key"] for m in nested["evaluate"]["data"].get("metrics", [])}
    assert slugs and any(slug in key for slug in slugs for key in metric_keys), sorted(metric_keys)[:20]
    parent_metrics = {m["key"] for m in parent["data"].get("metrics", [])}
    assert any(k.startswith("eval.grpo.task.") for k in parent_metrics), sorted(parent_metrics)

    # the registry: a version with an alias, as metrics/registry.json says
    name = "onethinker"
    model = stack.mlflow("GET", f"/registered-models/get?name={urllib.parse.quote(name)}")["registered_model"]
    aliases = {a["alias"]: a["version"] for a in model.get("aliases", [])}
    assert aliases, model
    registry = json.loads((root / "metrics" / "registry.json").read_text())
    assert str(registry["latest"]["version"]) in aliases.values()

    # Prefect artifacts, on the pipeline run and on the stage runs it dispatched
    arts = {a["key"]: a for a in stack.artifacts([run_id, *[c["id"] for c in children]])}
    assert {"mlflow-run", "validation-report", "evaluation-results", "registry-decision"} <= set(arts)
    assert "| task |" in arts["evaluation-results"]["data"] and "grpo" in arts["evaluation-results"]["data"]
    assert "No registry decision" not in arts["registry-decision"]["data"]
    assert parent_id in arts["mlflow-run"]["data"]

    # nightly: re-evaluate the champion (the smoke gate lets the first version in)
    assert "champion" in aliases, aliases
    nightly = stack.run_deployment(
        "evaluation-only/nightly",
        {"retries": 0, "overrides": {"evaluate.max_per_benchmark": 1, "evaluate.max_new_tokens": 16}},
    )
    done = stack.wait_flow_run(nightly, timeout=900)
    assert done["state"]["type"] == "COMPLETED", done["state"]
    table = {a["key"]: a for a in stack.artifacts([nightly])}["evaluation-results"]["data"]
    assert f"v{aliases['champion']}" in table and table.splitlines()[2] == "| task | champion |"
    assert "champion" in json.loads((root / "reports" / "nightly" / "eval.json").read_text())["models"]

    # the weekly run again: DVC skips every stage; nothing is republished as new
    again = stack.run_deployment("training-pipeline/weekly", {"retries": 0})
    assert stack.wait_flow_run(again, timeout=900)["state"]["type"] == "COMPLETED"
    (second,) = _runs(stack, f"tags.`prefect.flow_run_id` = '{again}'")
    tags = {t["key"]: t["value"] for t in second["data"]["tags"]}
    assert {tags[f"onethinker.stage_outcome.{s}"] for s in STAGES} == {"up to date"}, tags
    assert not [m["key"] for m in second["data"].get("metrics", []) if m["key"].startswith("eval.")]
    later = [again, *[c["id"] for c in stack.child_flow_runs(again)]]
    arts = {a["key"]: a for a in stack.artifacts(later)}
    assert "did not run in this pipeline run" in arts["evaluation-results"]["data"]
    assert eval_json["mlflow_run_id"] in arts["evaluation-results"]["data"]
    assert "did not run in this pipeline run" in arts["registry-decision"]["data"]
    assert "| register | did not run: up to date" in arts["pipeline-stages"]["data"]

    if stack.postgres is not None:
        check_production_store(stack, root, run_id, [c["id"] for c in children], aliases)


def check_production_store(
    stack: Stack, root: Path, run_id: str, child_ids: list[str], aliases: dict[str, str]
) -> None:
    """What the pipeline left in PostgreSQL and the artifact store agrees with the servers' APIs, and the
    champion loads back through the server."""
    from mlflow import MlflowClient

    pg = stack.postgres
    assert pg is not None and stack.artifact_store is not None
    client = MlflowClient(tracking_uri=stack.mlflow_url)
    exp = client.get_experiment_by_name("onethinker")
    # proxied artifacts: the server hands out mlflow-artifacts:/ URIs and stores under its destination
    assert exp.artifact_location.startswith("mlflow-artifacts:/"), exp.artifact_location

    # runs, metrics, registry: the API's view equals the rows in the mlflow database
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    sql_runs = pg.count(f"SELECT count(*) FROM runs WHERE experiment_id = {exp.experiment_id}")
    assert sql_runs == len(runs) >= 5, (sql_runs, len(runs))
    evaluate = next(r for r in runs if r.info.run_name == "evaluate")
    sql_keys = pg.count(f"SELECT count(*) FROM latest_metrics WHERE run_uuid = '{evaluate.info.run_id}'")
    assert sql_keys == len(evaluate.data.metrics) > 0
    sql_points = pg.count(
        f"SELECT count(*) FROM metrics m JOIN runs r ON m.run_uuid = r.run_uuid "
        f"WHERE r.experiment_id = {exp.experiment_id}"
    )
    versions = client.search_model_versions("name = 'onethinker'")
    assert pg.count("SELECT count(*) FROM model_versions WHERE name = 'onethinker'") == len(versions) >= 1
    sql_aliases = dict(
        line.split("|")
        for line in pg.psql(
            "SELECT alias, version FROM registered_model_aliases WHERE name = 'onethinker'"
        ).split()
    )
    assert sql_aliases == aliases, (sql_aliases, aliases)

    # logged models (MLflow 3): the registered pyfunc is one; training checkpoints are more where logged
    logged = client.search_logged_models(experiment_ids=[exp.experiment_id])
    assert pg.count(f"SELECT count(*) FROM logged_models WHERE experiment_id = {exp.experiment_id}") == len(
        logged
    )
    champion = client.get_model_version_by_alias("onethinker", "champion")
    # a version read through the REST API carries no model_id (MLflow 3.17): its source names the model
    model_id = champion.model_id or next((m.model_id for m in logged if m.model_id in champion.source), None)
    assert model_id in {m.model_id for m in logged}, (champion.source, [m.model_id for m in logged])
    by_source = {m.source_run_id: m for m in logged}
    stage_models = sorted(
        r.info.run_name for r in runs if r.info.run_id in by_source and r.info.run_name in ("sft", "grpo")
    )

    # the model's files are in the server's artifact folder, and come back through the proxy
    mlmodels = list(stack.artifact_store.rglob("MLmodel"))
    assert any(model_id in str(p) for p in mlmodels), mlmodels
    register_run = next(r for r in runs if r.info.run_name == "register")
    import mlflow

    mlflow.set_tracking_uri(stack.mlflow_url)
    local = mlflow.artifacts.download_artifacts(
        run_id=register_run.info.run_id, artifact_path="params.yaml", dst_path=str(root / "downloaded")
    )
    assert Path(local).read_bytes() == (root / "params.yaml").read_bytes()

    # Prefect's rows: the pipeline run, its stage runs and artifacts, in the prefect database
    ids = ",".join(f"'{i}'" for i in [run_id, *child_ids])
    assert pg.count(f"SELECT count(*) FROM flow_run WHERE id IN ({ids})", "prefect") == 1 + len(child_ids)
    assert pg.count(
        f"SELECT count(*) FROM flow_run WHERE id IN ({ids}) AND state_type = 'COMPLETED'", "prefect"
    ) == 1 + len(child_ids)
    sql_artifacts = pg.count(f"SELECT count(*) FROM artifact WHERE flow_run_id IN ({ids})", "prefect")
    assert sql_artifacts == len(stack.artifacts([run_id, *child_ids])) >= 4

    # the champion loads by alias through the server, in a fresh process that has only the tracking URI
    script = (
        "import json, mlflow\n"
        "from onethinker.registry.pyfunc import input_example\n"
        "m = mlflow.pyfunc.load_model('models:/onethinker@champion')\n"
        "out = m.predict(input_example())\n"
        "print(json.dumps({'model_id': m.model_id, 'rows': len(out)}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=root.parent,
        env=stack.env(MLFLOW_TRACKING_URI=stack.mlflow_url),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert loaded == {"model_id": model_id, "rows": 1}, loaded
    FIGURES.append(
        f"pipeline on PostgreSQL: {sql_runs} runs, {sql_points} metric points, {len(versions)} version(s), "
        f"aliases {sql_aliases}, {len(logged)} logged model(s) (sft/grpo checkpoints among them: "
        f"{stage_models or 'none yet'}), {len(mlmodels)} MLmodel file(s) in the artifact store, "
        f"{1 + len(child_ids)} flow runs and {sql_artifacts} Prefect artifacts in the prefect database; "
        f"champion v{champion.version} loaded by alias in a fresh process"
    )
