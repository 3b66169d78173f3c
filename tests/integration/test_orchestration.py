"""Deployments and flow runs through real servers on 127.0.0.1 (the fast set: validate only).

The stack (MLflow + Prefect servers, cpu/gpu process workers) is started once per session by the
``stack`` fixture. Each test deploys ``prefect.yaml`` from its own smoke copy of the repository and
triggers runs through the Prefect REST API, as a user would from the UI.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from flows.deploy import compare, deployed, expected_deployments, read_env_file
from flows.servers import http_json
from stack_helpers import REPO, Stack, deploy_all, dvc_stage_names

DEPLOYMENTS = {
    "training-pipeline/weekly": ("cpu", "0 3 * * 1"),
    "evaluation-only/nightly": ("gpu", "0 2 * * *"),
    "dvc-stage/cpu": ("cpu", None),
    "dvc-stage/gpu": ("gpu", None),
}
FIXTURES = REPO / "tests" / "fixtures" / "onethinker_release"


def corrupted_release() -> tuple[dict, dict[str, str]]:
    """Params and files for a ``prepare.source: onethinker`` data set with two bad records: an answer that
    is not an option letter, and a video that does not exist."""
    records = json.loads((FIXTURES / "train" / "onethinker_rl_train.json").read_text())
    records[8]["answer"] = "<answer>Z</answer>"  # multiple choice (video)
    records[9]["videos"] = ["videos/missing.mp4"]
    fixtures = "tests/fixtures/onethinker_release"
    params = {
        "prepare": {
            "source": "onethinker",
            "onethinker": {
                "rl": "corrupt/rl.json",
                "sft": [f"{fixtures}/train/onethinker_sft_image.json"],
                "eval": [f"{fixtures}/eval/eval_mathvista.json"],
                "train_media_root": f"{fixtures}/train",
                "eval_media_root": f"{fixtures}/eval",
            },
        }
    }
    return params, {"corrupt/rl.json": json.dumps(records, indent=1)}


def test_deploy_creates_every_deployment_of_prefect_yaml_with_its_schedules(stack: Stack, make_repo) -> None:
    root = make_repo()
    proc = deploy_all(stack, root)  # `make deploy`: no prompt, stdin closed

    # every deployment of prefect.yaml is on the server, on its pool, with its cron schedules (active)
    expected = expected_deployments(root / "prefect.yaml")
    assert {e.name for e in expected} == {"weekly", "nightly", "cpu", "gpu"}
    found = deployed(stack.prefect_api)
    lines, problems = compare(expected, found)
    assert not problems and len(lines) == len(expected), problems
    assert "deployed 4 of 4 deployment(s)" in proc.stdout, proc.stdout
    deps = stack.deployments()
    assert set(DEPLOYMENTS) <= set(deps), sorted(deps)
    for name, (pool, cron) in DEPLOYMENTS.items():
        dep = deps[name]
        assert dep["work_pool_name"] == pool, name
        crons = [(s["schedule"].get("cron"), s["active"]) for s in dep.get("schedules") or []]
        assert crons == ([(cron, True)] if cron else []), (name, crons)
        assert f"{name:<28} pool {pool:<5}" in proc.stdout, proc.stdout
        steps = dep["pull_steps"] or []
        assert {"prefect.deployments.steps.set_working_directory": {"directory": str(root)}} in steps, steps
    weekly = deps["training-pipeline/weekly"]["parameters"]
    assert weekly["dispatch"] is True and weekly["stages"] == [
        "validate",
        "sft",
        "grpo",
        "evaluate",
        "register",
    ]
    pools = {p["name"]: p["type"] for p in stack.api("POST", "/work_pools/filter", {})}
    assert pools.get("cpu") == "process" and pools.get("gpu") == "process", pools


def test_server_ui_and_workers_agree_on_a_non_default_port(stack: Stack) -> None:
    base = stack.prefect_api.removesuffix("/api")
    port = int(base.rsplit(":", 1)[1])
    assert port != 4200, "the stack runs on a free port, not Prefect's default"

    # the UI in the browser asks /ui-settings where the API is: this server, not 127.0.0.1:4200
    assert http_json("GET", f"{base}/ui-settings")["api_url"] == stack.prefect_api
    req = urllib.request.Request(f"{base}/dashboard", headers={"Accept": "text/html"})
    with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - loopback only
        assert resp.status == 200 and "<html" in resp.read().decode(errors="replace").lower()

    # the workers talk to the same server (and print links to the same UI), and are online on their pools
    for pool in ("cpu", "gpu"):
        pid = int((stack.state_dir / f"worker-{pool}.pid").read_text())
        env = dict(
            item.split("=", 1)
            for item in Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")
            if "=" in item
        )
        assert env["PREFECT_API_URL"] == stack.prefect_api and env["PREFECT_UI_URL"] == base, pool
        workers = stack.api("POST", f"/work_pools/{pool}/workers/filter", {})
        assert [w["status"] for w in workers if w["name"] == f"{pool}-worker"] == ["ONLINE"], workers
    serve_env = read_env_file(stack.state_dir / "env")
    assert serve_env["PREFECT_API_URL"] == stack.prefect_api and serve_env["PREFECT_UI_URL"] == base


def test_validation_failure_fails_the_run_and_nothing_downstream_runs(stack: Stack, make_repo) -> None:
    params, files = corrupted_release()
    root = make_repo(params, files)
    deploy_all(stack, root)
    downstream = [s for s in ("sft", "grpo", "evaluate", "register") if s in dvc_stage_names(root)]
    run_id = stack.run_deployment(
        "training-pipeline/weekly",
        {"stages": ["validate", *downstream], "dispatch": True, "retries": 2, "retry_backoff_seconds": 1},
    )
    run = stack.wait_flow_run(run_id, timeout=240)

    # the coordinator failed with the report's location and counts in its state message
    message = run["state"]["message"] or ""
    assert run["state"]["type"] == "FAILED", run["state"]
    assert "validation FAILED: 2 failure(s)" in message and "reports/validation/index.html" in message, (
        message
    )
    assert "option_letter" in message and "media_exists" in message, message

    # exactly one stage ran (validate, on the cpu pool), it failed, and it was not retried
    children = stack.child_flow_runs(run_id)
    assert [c["parameters"]["stage"] for c in children] == ["validate"], children
    assert children[0]["state"]["type"] == "FAILED"
    stage_tasks = [t for t in stack.task_runs([children[0]["id"]]) if t["task_key"].startswith("stage_task")]
    assert [(t["name"], t["run_count"]) for t in stage_tasks] == [("validate", 1)], stage_tasks
    assert not (root / "models" / "sft").exists()

    # the report is a Prefect artifact; the MLflow parent run is marked failed
    arts = {a["key"]: a for a in stack.artifacts([run_id, children[0]["id"]])}
    assert "validation FAILED" in arts["validation-report"]["data"].replace(
        "Data validation FAILED", "validation FAILED"
    )
    assert "option_letter" in arts["validation-report"]["data"]
    assert "mlflow-run" in arts
    found = stack.mlflow(
        "POST",
        "/runs/search",
        {
            "experiment_ids": [
                e["experiment_id"]
                for e in stack.mlflow("POST", "/experiments/search", {"max_results": 100})["experiments"]
            ],
            "filter": f"tags.`prefect.flow_run_id` = '{run_id}'",
        },
    )
    assert [r["info"]["status"] for r in found.get("runs", [])] == ["FAILED"], found


def test_validate_only_run_completes_in_process_with_overrides(stack: Stack, make_repo) -> None:
    root = make_repo()
    deploy_all(stack, root)
    run_id = stack.run_deployment(
        "training-pipeline/weekly",
        {"stages": ["validate"], "dispatch": False, "overrides": {"prepare.eval_per_task": 1}, "retries": 0},
    )
    run = stack.wait_flow_run(run_id, timeout=240)
    assert run["state"]["type"] == "COMPLETED", run["state"]

    # the stage ran as a task of this flow run (no dispatch), through `dvc exp run -S`
    tasks = {t["name"]: t for t in stack.task_runs([run_id])}
    assert tasks["validate"]["state_type"] == "COMPLETED" and tasks["validate"]["tags"], tasks
    assert {"stage:validate", "pool:cpu"} <= set(tasks["validate"]["tags"])
    assert not stack.child_flow_runs(run_id)
    assert (root / "reports" / "validation" / "summary.json").exists()
    assert (root / "dvc.lock").exists()

    arts = {a["key"]: a for a in stack.artifacts([run_id])}
    assert "Data validation passed" in arts["validation-report"]["data"]
    link = arts["mlflow-run"]["data"]
    assert stack.mlflow_url in link, link
    runs = stack.mlflow(
        "POST",
        "/runs/search",
        {
            "experiment_ids": [
                e["experiment_id"]
                for e in stack.mlflow("POST", "/experiments/search", {"max_results": 100})["experiments"]
            ],
            "filter": f"tags.`prefect.flow_run_id` = '{run_id}'",
        },
    )["runs"]
    assert len(runs) == 1 and runs[0]["info"]["status"] == "FINISHED"
    assert runs[0]["info"]["run_id"] in link
    params = {p["key"]: p["value"] for p in runs[0]["data"]["params"]}
    assert json.loads(params["overrides"]) == {"prepare.eval_per_task": 1}
    tags = {t["key"]: t["value"] for t in runs[0]["data"]["tags"]}
    assert tags["onethinker.stage_outcome.validate"] == "ran"
    assert "| validate | ran |" in arts["pipeline-stages"]["data"]

    # the same run again: DVC skips the stage, and the run and its artifacts say so
    again = stack.run_deployment(
        "training-pipeline/weekly",
        {"stages": ["validate"], "dispatch": False, "overrides": {"prepare.eval_per_task": 1}, "retries": 0},
    )
    assert stack.wait_flow_run(again, timeout=240)["state"]["type"] == "COMPLETED"
    (second,) = stack.mlflow(
        "POST",
        "/runs/search",
        {
            "experiment_ids": [runs[0]["info"]["experiment_id"]],
            "filter": f"tags.`prefect.flow_run_id` = '{again}'",
        },
    )["runs"]
    tags = {t["key"]: t["value"] for t in second["data"]["tags"]}
    assert tags["onethinker.stage_outcome.validate"] == "up to date", tags
    stages = {a["key"]: a for a in stack.artifacts([again])}["pipeline-stages"]["data"]
    assert "| validate | did not run: up to date" in stages, stages


def test_repo_copy_leaves_workspace_alone(make_repo) -> None:
    root = make_repo()
    assert root != REPO and (root / ".git").is_dir() and (root / "prefect.yaml").exists()
    assert Path(root / "flows" / "pipeline.py").exists()
