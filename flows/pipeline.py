"""Prefect flows over the DVC pipeline: ``training_pipeline``, ``evaluation_only`` and ``dvc_stage``.

``training_pipeline`` runs the stages validate -> sft -> grpo -> evaluate -> register, each as
``dvc repro <stage>`` (``dvc exp run <stage> -S key=value ...`` when ``overrides`` are given), so DVC decides
what is up to date and runs ``prepare`` / ``base_model`` as dependencies. Around the stages it

- opens an MLflow parent run and hands its id to every stage through ``ONETHINKER_PARENT_RUN_ID`` (the
  stages' own runs nest under it), logs the id, and publishes a link artifact to it (``mlflow-run``);
- retries a failed stage with exponential backoff, except a validation failure (the flow fails at once
  with the report's path and counts in its message and in the ``validation-report`` artifact; nothing
  downstream runs) and a configuration error (exit code 2);
- publishes the evaluation table (``evaluation-results``) and the registry decision (``registry-decision``);
- says what DVC did with each stage (ran, up to date, restored from the run cache): a tag per stage on the
  parent run (``onethinker.stage_outcome.<stage>``) and a ``pipeline-stages`` artifact. When ``evaluate`` or
  ``register`` did not run, their artifacts say so and name the earlier run whose results they show, and the
  parent run gets no evaluation metrics (it logs only an evaluation that ran under it).

Placement (``pools``, ``dispatch``): by default every stage runs in this flow run's own process, so the
deployment's work pool decides where everything runs. With ``dispatch=True`` each stage becomes a run of
the ``dvc-stage/<pool>`` deployment for its pool (GPU stages on ``gpu``, the rest on ``cpu``), started with
``run_deployment`` and awaited; workers must then share the workspace (one machine, or a shared volume).
See ``flows/README.md``.

``evaluation_only`` re-evaluates the registry's ``champion`` (``register.name`` in params.yaml) with
``onethinker evaluate`` into ``reports/nightly/`` and publishes the same table.

Run locally without a server: ``python -m flows.pipeline training --stages validate`` (Prefect starts an
ephemeral API), or deploy with ``make deploy`` (``prefect --no-prompt deploy --all``; ``prefect.yaml`` at the repository root).
"""

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.tasks import exponential_backoff

from flows import commands, reports
from flows.commands import (
    DEFAULT_POOLS,
    PIPELINE_STAGES,
    ConfigurationFailed,
    StageFailed,
    ValidationFailed,
)


def _workspace() -> Path:
    """The DVC workspace: the working directory (a deployment's pull step sets it to the repository)."""
    return Path.cwd().resolve()


def retry_on_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry unless the failure is a validation or configuration error."""
    exc = getattr(state, "data", None)
    return commands.is_transient(exc if isinstance(exc, BaseException) else None)


# --------------------------------------------------------------------------------------------------
# MLflow parent run


def mlflow_ui_url(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """The run's page: on the tracking server, or where ``make serve`` serves a local store."""
    if tracking_uri.startswith(("http://", "https://")):
        base = tracking_uri.rstrip("/")
    else:
        base = f"http://127.0.0.1:{os.environ.get('MLFLOW_PORT', '5000')}"
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}"


@task(name="open-mlflow-run", retries=3, retry_delay_seconds=[5, 15, 45], persist_result=False)
def open_parent_run(
    root: Path, name: str, params: Mapping[str, Any], tags: Mapping[str, str]
) -> dict[str, str]:
    """Create the pipeline's MLflow run (not made active: stages attach to it by id); publish its link."""
    import mlflow
    from prefect.runtime import flow_run

    from onethinker import tracking

    uri = tracking.configure(root)
    exp_id = tracking.experiment_id(tracking.EXPERIMENT, root)
    sha, dirty = tracking.git_commit(root)
    all_tags = {
        "onethinker.stage": "pipeline",
        "git_commit": sha,
        "git_dirty": str(dirty).lower(),
        "prefect.flow_run_id": str(flow_run.get_id() or ""),
        "prefect.flow_run_name": str(flow_run.get_name() or ""),
        **tags,
    }
    client = mlflow.MlflowClient(uri)
    run = client.create_run(exp_id, run_name=name, tags=all_tags)
    run_id = run.info.run_id
    for key, value in params.items():
        client.log_param(run_id, key, json.dumps(value) if not isinstance(value, str) else value)
    url = mlflow_ui_url(uri, exp_id, run_id)
    get_run_logger().info("MLflow parent run %s (experiment %s) at %s: %s", run_id, exp_id, uri, url)
    create_link_artifact(
        key="mlflow-run",
        link=url,
        link_text=f"MLflow run {run_id}",
        description=f"Tracking URI: `{uri}`  \nExperiment: `{exp_id}`  \nParent run id: "
        f"`{run_id}` (the stage runs are nested under it).",
    )
    return {"tracking_uri": uri, "experiment_id": exp_id, "run_id": run_id, "url": url}


def close_parent_run(
    parent: Mapping[str, str], status: str, metrics: Mapping[str, float] | None = None
) -> None:
    """Log final metrics (best effort) and terminate the parent run with ``FINISHED`` or ``FAILED``."""
    import mlflow

    from onethinker.tracking import sanitize_metric_name

    client = mlflow.MlflowClient(parent["tracking_uri"])
    try:
        for key, value in (metrics or {}).items():
            client.log_metric(parent["run_id"], sanitize_metric_name(key), value)
    finally:
        client.set_terminated(parent["run_id"], status)


@contextlib.contextmanager
def parent_run(
    root: Path, name: str, params: Mapping[str, Any], tags: Mapping[str, str] | None = None
) -> Iterator[dict[str, Any]]:
    """Open the parent run; close it FINISHED, or FAILED when the body raises. Yields the run's info plus a
    ``metrics`` dict the body fills with what should be logged on the parent at the end."""
    parent: dict[str, Any] = dict(open_parent_run(root, name, params, tags or {}))
    parent["metrics"] = {}
    try:
        yield parent
    except BaseException:
        close_parent_run(parent, "FAILED", parent["metrics"])
        raise
    close_parent_run(parent, "FINISHED", parent["metrics"])


# --------------------------------------------------------------------------------------------------
# One stage


def publish_eval_table(
    path: Path, title: str, key: str = "evaluation-results", note: str | None = None
) -> dict[str, float]:
    """Markdown artifact from an ``eval.json``; returns flat summary metrics for the parent run.

    ``note`` (the evaluation did not run in this pipeline run): shown under the title, and no metrics are
    returned, so the parent run never records an evaluation that did not run under it."""
    data = reports.read_json(path)
    if data is None:
        create_markdown_artifact(
            key=key, markdown=f"# {title}\n\nNo evaluation metrics at `{path}`.\n", description=title
        )
        return {}
    description = f"{title} (earlier results: the stage did not run)" if note else title
    create_markdown_artifact(key=key, markdown=reports.eval_table(data, title, note), description=description)
    return {} if note else reports.eval_summary_metrics(data)


STAGE_TAG = "onethinker.stage_outcome."
"""Parent-run tag per stage: what DVC did with it in this pipeline run (``commands.RAN`` ...)."""


def record_outcome(parent_run_id: str | None, stage: str, outcome: str) -> None:
    """Tag the pipeline's MLflow run with what DVC did with ``stage`` (best effort: tracking may be down)."""
    if not parent_run_id:
        return
    import mlflow

    from onethinker import tracking

    try:
        tracking.configure(_workspace())
        mlflow.MlflowClient().set_tag(parent_run_id, STAGE_TAG + stage, outcome)
    except Exception as exc:  # the stage's own result stands; the tag is a courtesy
        get_run_logger().warning("could not tag the parent run with %s=%s: %s", stage, outcome, exc)


def recorded_outcomes(parent: Mapping[str, Any], results: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Stage outcomes: those the stages returned here, completed by the tags on the parent run (which is
    how dispatched stage runs report theirs)."""
    import mlflow

    out = {stage: str(r["outcome"]) for stage, r in results.items() if r.get("outcome")}
    try:
        run = mlflow.MlflowClient(parent["tracking_uri"]).get_run(parent["run_id"])
    except Exception as exc:  # tracking down: what this process saw is all there is
        get_run_logger().warning("could not read the stage outcomes from the parent run: %s", exc)
        return out
    tags = {k[len(STAGE_TAG) :]: v for k, v in run.data.tags.items() if k.startswith(STAGE_TAG)}
    return {**tags, **out}


def run_stage(
    stage: str, overrides: Mapping[str, Any] | None, parent_run_id: str | None, force: bool = False
) -> dict[str, Any]:
    """Run one DVC stage in the workspace and publish its artifacts (validation, evaluation, registry)."""
    logger = get_run_logger()
    root = _workspace()
    params = commands.read_params(root)
    report_dir = root / str(
        commands.get_param(params, "validate.report_dir", "reports/validation", overrides)
    )
    try:
        result = commands.run_dvc_stage(stage, root, overrides, parent_run_id, force, on_line=logger.info)
    except ValidationFailed as exc:
        create_markdown_artifact(
            key="validation-report",
            description=str(exc),
            markdown=reports.validation_markdown(exc.summary, exc.report_dir),
        )
        logger.error("%s", exc)
        raise
    # what DVC did with this stage (its upstream stages may have run in the same command)
    outcome = result.outcomes.get(stage, commands.RAN if result.ran_stage else commands.UP_TO_DATE)
    record_outcome(parent_run_id, stage, outcome)
    out: dict[str, Any] = {"stage": stage, "seconds": round(result.seconds, 1), "outcome": outcome}
    ran = outcome == commands.RAN
    params = commands.read_params(root)  # dvc exp run may have written the overrides into it
    if stage == "validate":
        summary = reports.read_json(report_dir / "summary.json")
        if summary is not None:
            create_markdown_artifact(
                key="validation-report",
                description="data validation passed",
                markdown=reports.validation_markdown(summary, report_dir),
            )
    elif stage == "evaluate":
        rel = str(commands.get_param(params, "evaluate.metrics_file", "metrics/eval.json", overrides))
        note = (
            None if ran else reports.earlier_results_note(stage, outcome, rel, reports.read_json(root / rel))
        )
        out["metrics"] = publish_eval_table(root / rel, "Evaluation: accuracy per task and model", note=note)
    elif stage == "register":
        rel = str(commands.get_param(params, "register.registry_file", "metrics/registry.json", overrides))
        registry = reports.read_json(root / rel)
        note = None if ran else reports.earlier_results_note(stage, outcome, rel, registry)
        create_markdown_artifact(
            key="registry-decision",
            markdown=reports.registry_markdown(registry, rel, note),
            description="the register stage's gate decision"
            + ("" if ran else " (an earlier decision: the stage did not run)"),
        )
        if registry is not None and ran:
            out["registry"] = registry.get("latest", registry)
    logger.info("stage %s: %s (%.1fs)", stage, outcome, result.seconds)
    return out


@task(name="dvc-stage", task_run_name="{stage}", retry_condition_fn=retry_on_transient, persist_result=False)
def stage_task(
    stage: str, overrides: dict[str, Any] | None, parent_run_id: str | None, force: bool = False
) -> dict[str, Any]:
    """A DVC stage as a Prefect task (retried on transient failures, see ``retry_on_transient``)."""
    return run_stage(stage, overrides, parent_run_id, force)


def configured_stage_task(stage: str, pool: str, retries: int, backoff_seconds: float) -> Any:
    """``stage_task`` with this run's retry policy and tags naming the stage and its pool."""
    return stage_task.with_options(
        retries=retries,
        retry_delay_seconds=exponential_backoff(backoff_factor=backoff_seconds),
        retry_jitter_factor=0.2,
        tags={f"stage:{stage}", f"pool:{pool}"},
    )


def dispatch_stage(stage: str, pool: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """Run a stage as a ``dvc-stage/<pool>`` deployment run and wait for it; raise when it did not complete."""
    from prefect.deployments import run_deployment

    name = f"dvc-stage/{pool}"
    get_run_logger().info("dispatching stage %s to %s", stage, name)
    child = run_deployment(
        name, parameters=parameters, timeout=None, poll_interval=3, tags=[f"stage:{stage}", f"pool:{pool}"]
    )
    state = child.state
    if state is None or not state.is_completed():
        message = state.message if state is not None else "no state"
        ended = state.type.value if state is not None else "without a state"
        raise StageFailed(
            stage, 1, "", f"stage {stage!r} on pool {pool!r} ended {ended} (flow run {child.id}): {message}"
        )
    return {"stage": stage, "flow_run_id": str(child.id), "pool": pool}


# --------------------------------------------------------------------------------------------------
# Flows


@flow(name="dvc-stage", flow_run_name="{stage}", log_prints=True)
def dvc_stage(
    stage: str,
    overrides: dict[str, Any] | None = None,
    parent_run_id: str | None = None,
    force: bool = False,
    retries: int = 2,
    retry_backoff_seconds: float = 30.0,
    pool: str = "local",
) -> dict[str, Any]:
    """One DVC stage as its own flow run: the sub-deployment ``training_pipeline`` dispatches to."""
    commands.check_stages([stage], commands.dvc_stages(_workspace()))
    return configured_stage_task(stage, pool, retries, retry_backoff_seconds)(
        stage, overrides, parent_run_id, force
    )


@flow(name="training-pipeline", log_prints=True)
def training_pipeline(
    stages: list[str] | None = None,
    overrides: dict[str, Any] | None = None,
    pools: dict[str, str] | None = None,
    dispatch: bool = False,
    retries: int = 2,
    retry_backoff_seconds: float = 30.0,
    force: bool = False,
) -> dict[str, Any]:
    """Run the DVC stages in order under one MLflow parent run and publish the results as artifacts.

    Args:
        stages: DVC stages to run, in order (default: validate, sft, grpo, evaluate, register).
        overrides: params.yaml overrides (``{"sft.max_steps": 2}``): stages then run as
            ``dvc exp run <stage> -S key=value`` and DVC records an experiment.
        pools: work pool per stage (default: sft, grpo, evaluate on ``gpu``; validate, register on ``cpu``).
        dispatch: run each stage as a ``dvc-stage/<pool>`` deployment run instead of in this process.
        retries: retries of a failed stage (not for validation or configuration failures).
        retry_backoff_seconds: first retry delay; doubled at each further retry (with 20% jitter).
        force: ``--force`` DVC to rerun the stages even when up to date.
    """
    logger = get_run_logger()
    root = _workspace()
    stages = list(stages or PIPELINE_STAGES)
    overrides = dict(overrides or {})
    placement = {**DEFAULT_POOLS, **(pools or {})}
    commands.check_stages(stages, commands.dvc_stages(root))
    commands.check_overrides(overrides)
    logger.info(
        "stages %s in %s; placement %s; dispatch=%s",
        stages,
        root,
        {s: placement.get(s, "cpu") for s in stages},
        dispatch,
    )
    summary: dict[str, Any] = {"stages": {}}
    run_params = {
        "stages": stages,
        "overrides": overrides,
        "dispatch": dispatch,
        "placement": {s: placement.get(s, "cpu") for s in stages},
    }
    with parent_run(root, "training_pipeline", run_params) as parent:
        summary["mlflow"] = {k: parent[k] for k in ("tracking_uri", "experiment_id", "run_id", "url")}
        for stage in stages:
            pool = placement.get(stage, "cpu")
            if dispatch:
                result = dispatch_stage(
                    stage,
                    pool,
                    {
                        "stage": stage,
                        "overrides": overrides or None,
                        "parent_run_id": parent["run_id"],
                        "force": force,
                        "retries": retries,
                        "retry_backoff_seconds": retry_backoff_seconds,
                        "pool": pool,
                    },
                )
            else:
                result = configured_stage_task(stage, pool, retries, retry_backoff_seconds)(
                    stage, overrides or None, parent["run_id"], force
                )
            summary["stages"][stage] = result
            parent["metrics"].update(result.get("metrics") or {})
        outcomes = recorded_outcomes(parent, summary["stages"])
        summary["outcomes"] = {s: outcomes.get(s, "unknown") for s in stages}
        # the table was published by the child run; log its numbers only if it evaluated in this run
        if dispatch and outcomes.get("evaluate") == commands.RAN:
            params = commands.read_params(root)
            path = root / str(commands.get_param(params, "evaluate.metrics_file", "metrics/eval.json"))
            parent["metrics"].update(reports.eval_summary_metrics(reports.read_json(path) or {}))
        create_markdown_artifact(
            key="pipeline-stages",
            markdown=reports.stage_outcomes_markdown(summary["outcomes"]),
            description="which stages ran in this pipeline run and which were up to date",
        )
    logger.info("pipeline done; MLflow parent run %s", summary["mlflow"]["run_id"])
    return summary


def retry_unless_missing(task: Any, task_run: Any, state: Any) -> bool:
    """Retry registry look-ups on server errors, not when the alias or model does not exist."""
    return not isinstance(getattr(state, "data", None), LookupError)


@task(
    name="resolve-champion",
    retries=2,
    retry_delay_seconds=[10, 30],
    persist_result=False,
    retry_condition_fn=retry_unless_missing,
)
def champion_task(name: str, alias: str) -> dict[str, str]:
    """The champion's version and local model folder (see ``flows.champion``)."""
    from flows.champion import resolve_champion

    champ = resolve_champion(name, _workspace(), alias)
    get_run_logger().info(
        "%s@%s is v%s, model folder %s (%s)", name, alias, champ.version, champ.model_dir, champ.source
    )
    return {
        "name": champ.name,
        "version": champ.version,
        "model_dir": str(champ.model_dir),
        "source": champ.source,
        "run_id": champ.run_id or "",
    }


@task(name="evaluate-champion", retry_condition_fn=retry_on_transient, persist_result=False)
def evaluate_task(
    model_dir: str, output_dir: str, overrides: dict[str, Any] | None, parent_run_id: str
) -> dict[str, Any]:
    """``onethinker evaluate`` of one model named ``champion``, writing under ``output_dir``."""
    logger = get_run_logger()
    root = _workspace()
    sets = {
        "evaluate.models": ["champion"],
        "evaluate.model_dirs": {"champion": model_dir},
        "evaluate.metrics_file": f"{output_dir}/eval.json",
        "evaluate.reports_dir": output_dir,
        **(overrides or {}),
    }
    cmd = commands.onethinker_command("evaluate", sets)
    logger.info("$ %s", " ".join(cmd))
    result = commands.run_command(cmd, root, commands.stage_env(parent_run_id), logger.info)
    if result.returncode != 0:
        cls = ConfigurationFailed if result.returncode == 2 else StageFailed
        raise cls("evaluate", result.returncode, result.tail)
    return {"seconds": round(result.seconds, 1), "metrics_file": str(root / output_dir / "eval.json")}


@flow(name="evaluation-only", log_prints=True)
def evaluation_only(
    model_name: str | None = None,
    alias: str = "champion",
    output_dir: str = "reports/nightly",
    overrides: dict[str, Any] | None = None,
    prepare_data: bool = True,
    retries: int = 1,
    retry_backoff_seconds: float = 30.0,
) -> dict[str, Any]:
    """Re-evaluate the registry's champion on the benchmarks (a nightly check that nothing drifted).

    Args:
        model_name: registered model (default: ``register.name`` in params.yaml, else ``onethinker``).
        alias: the alias to evaluate.
        output_dir: where ``eval.json``, predictions and plots go (not the pipeline's ``metrics/eval.json``).
        overrides: extra ``onethinker evaluate --set`` values (``{"evaluate.max_per_benchmark": 10}``).
        prepare_data: first ``dvc repro prepare`` so the benchmark files exist (a no-op when up to date).
        retries, retry_backoff_seconds: as in ``training_pipeline``.
    """
    root = _workspace()
    params = commands.read_params(root)
    name = model_name or str(commands.get_param(params, "register.name", "onethinker"))
    champ = champion_task(name, alias)
    run_params = {
        "model": name,
        "alias": alias,
        "version": champ["version"],
        "model_dir": champ["model_dir"],
        "output_dir": output_dir,
        "overrides": overrides or {},
    }
    with parent_run(
        root, "evaluation_only", run_params, {"registry.version": f"{name}/{champ['version']}"}
    ) as parent:
        if prepare_data:
            configured_stage_task("prepare", "cpu", retries, retry_backoff_seconds)("prepare", None, None)
        result = evaluate_task.with_options(
            retries=retries, retry_delay_seconds=exponential_backoff(backoff_factor=retry_backoff_seconds)
        )(champ["model_dir"], output_dir, overrides, parent["run_id"])
        metrics = publish_eval_table(
            Path(result["metrics_file"]), f"Nightly evaluation of {name} v{champ['version']} (@{alias})"
        )
        parent["metrics"].update(metrics)
    return {
        "champion": champ,
        "metrics": metrics,
        "mlflow": {k: parent[k] for k in ("tracking_uri", "run_id")},
    }


# --------------------------------------------------------------------------------------------------
# Local entry point (no deployment): python -m flows.pipeline training|evaluation [...]


def main(argv: list[str] | None = None) -> int:
    """Run a flow once in this process (Prefect's ephemeral API when ``PREFECT_API_URL`` is unset)."""
    parser = argparse.ArgumentParser(prog="python -m flows.pipeline", description=main.__doc__)
    sub = parser.add_subparsers(dest="flow", required=True)
    train = sub.add_parser("training", help="training_pipeline")
    train.add_argument("--stages", nargs="+", default=None)
    train.add_argument("-S", "--set", dest="sets", action="append", default=[], help="key=value (YAML value)")
    train.add_argument("--dispatch", action="store_true")
    train.add_argument("--retries", type=int, default=2)
    ev = sub.add_parser("evaluation", help="evaluation_only")
    ev.add_argument("--model-name", default=None)
    ev.add_argument("--alias", default="champion")
    args = parser.parse_args(argv)
    if args.flow == "training":
        import yaml

        overrides = {k: yaml.safe_load(v) for k, _, v in (s.partition("=") for s in args.sets)}
        state = training_pipeline(
            stages=args.stages,
            overrides=overrides or None,
            dispatch=args.dispatch,
            retries=args.retries,
            return_state=True,
        )
    else:
        state = evaluation_only(model_name=args.model_name, alias=args.alias, return_state=True)
    print(f"{state.type.value}: {state.message or ''}")
    return 0 if state.is_completed() else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
