"""The whole pipeline on the smoke profile through the deployed flows (``slow``: several minutes on 2 cores).

``training-pipeline/weekly`` is triggered through the Prefect API with the deployment's own parameters
(every stage, dispatched to ``dvc-stage/cpu`` and ``dvc-stage/gpu``); the cpu and gpu process workers run
it. Then ``evaluation-only/nightly`` re-evaluates the champion the run registered. Checked: the flow runs
completed, each stage ran on its pool, the MLflow server holds the stage runs nested under the pipeline's
run with per-task metrics, the registry holds a version with an alias, and the Prefect artifacts exist.
Skipped, with the reason, while ``dvc.yaml`` lacks one of the stages.
"""

from __future__ import annotations

import json
import urllib.parse

import pytest
from stack_helpers import REPO, Stack, deploy_all, dvc_stage_names

pytestmark = pytest.mark.slow

STAGES = ("validate", "sft", "grpo", "evaluate", "register")
GPU = {"sft", "grpo", "evaluate"}


@pytest.fixture(autouse=True)
def _full_pipeline_present() -> None:
    missing = [s for s in STAGES if s not in dvc_stage_names(REPO)]
    if missing:
        pytest.skip(f"dvc.yaml lacks stage(s) {', '.join(missing)}: the full pipeline has not landed yet")


def _runs(stack: Stack, filter_string: str) -> list[dict]:
    exps = stack.mlflow("POST", "/experiments/search", {"max_results": 100})["experiments"]
    body = {"experiment_ids": [e["experiment_id"] for e in exps], "filter": filter_string, "max_results": 100}
    return stack.mlflow("POST", "/runs/search", body).get("runs", [])


def test_training_pipeline_then_nightly_evaluation(stack: Stack, make_repo) -> None:
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
