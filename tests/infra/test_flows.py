"""The flows' pure parts: DVC commands, failure classes, artifact markdown, champion folders, process control.

Prefect and the servers are exercised for real in ``tests/integration``; these run in a second.
"""

from __future__ import annotations

import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from flows import commands, reports
from flows.champion import find_model_folder, workspace_folder
from flows.commands import CommandResult, ConfigurationFailed, StageFailed, ValidationFailed
from flows.pipeline import mlflow_ui_url, retry_on_transient, retry_unless_missing
from flows.serve import _stop_order, running
from flows.servers import is_alive, matches, stop

SUMMARY = {
    "ok": False,
    "num_files": 3,
    "num_records": 7,
    "num_failures": 2,
    "failures_per_rule": {"media_exists": 1, "option_letter": 1},
    "failures_per_file": {"data/train/rl.json": 2, "data/eval/refcoco.json": 0},
    "files": [
        {"failures": [{"text": "record 0: answer 'Z' is not an option"}, {"text": "record 1: missing.png"}]}
    ],
}


# --------------------------------------------------------------------------------------------------
# commands


def test_dvc_command_repro_or_exp_run(tmp_path: Path) -> None:
    assert commands.dvc_command("sft")[1:] == ["repro", "sft"]
    assert commands.dvc_command("sft", force=True)[1:] == ["repro", "sft", "--force"]
    params = {"sft": {"max_steps": None}}
    cmd = commands.dvc_command("sft", {"sft.max_steps": 2, "grpo.n": 4}, params)
    assert cmd[1:] == ["exp", "run", "sft", "-S", "sft.max_steps=2", "-S", "+grpo.n=4"]


def test_set_args_round_trip_through_dvc(tmp_path: Path) -> None:
    """What ``dvc exp run -S`` writes into params.yaml is exactly the override values."""
    from dvc.utils.hydra import apply_overrides

    params = {"a": {"b": 1, "s": "x", "l": [1, 2]}}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    overrides = {
        "a.b": 2,
        "a.s": "it's a: b/c",
        "a.l": ["x y", 3, None, True],
        "a.new": {"k": "/p:q", "n": 1.5e-5},
        "c.d": "e",
    }
    args = commands.set_args(overrides, params)
    apply_overrides(path, args[1::2])
    got = yaml.safe_load(path.read_text())
    assert got == {
        "a": {"b": 2, "s": "it's a: b/c", "l": ["x y", 3, None, True], "new": {"k": "/p:q", "n": 1.5e-5}},
        "c": {"d": "e"},
    }


def test_overrides_and_stages_are_checked() -> None:
    with pytest.raises(ConfigurationFailed, match="not a dotted identifier"):
        commands.check_overrides({"sft max": 1})
    with pytest.raises(ConfigurationFailed, match="grpo not in dvc.yaml"):
        commands.check_stages(["validate", "grpo"], ["prepare", "validate"])
    commands.check_stages(["validate"], ["prepare", "validate"])


def test_onethinker_command_passes_json_values() -> None:
    cmd = commands.onethinker_command(
        "evaluate", {"evaluate.models": ["champion"], "evaluate.model_dirs": {"champion": "/m/v 1"}}
    )
    assert cmd[1:4] == ["evaluate", "--params", "params.yaml"]
    sets = cmd[5::2]
    assert [yaml.safe_load(s.split("=", 1)[1]) for s in sets] == [["champion"], {"champion": "/m/v 1"}]


def test_get_param_with_overrides() -> None:
    params = {"validate": {"report_dir": "reports/validation"}}
    assert commands.get_param(params, "validate.report_dir") == "reports/validation"
    assert commands.get_param(params, "validate.report_dir", overrides={"validate.report_dir": "r"}) == "r"
    assert commands.get_param(params, "evaluate.metrics_file", "metrics/eval.json") == "metrics/eval.json"
    assert commands.has_param(params, "validate") and not commands.has_param(params, "validate.x")


def test_failures_are_classified(tmp_path: Path) -> None:
    ran = CommandResult(1, 1.0, "Running stage 'validate':\nERROR: failed to reproduce 'validate'", True)
    exc = commands.classify_failure("validate", ran, SUMMARY, tmp_path)
    assert isinstance(exc, ValidationFailed) and not commands.is_transient(exc)
    assert "2 failure(s) in 7 records of 3 files (media_exists: 1, option_letter: 1)" in str(exc)
    assert str(tmp_path / "index.html") in str(exc)

    crashed = CommandResult(255, 1.0, "Running stage 'sft':\nKilled", True)
    assert type(commands.classify_failure("sft", crashed, None, tmp_path)) is StageFailed
    assert commands.is_transient(commands.classify_failure("sft", crashed, None, tmp_path))
    bad_params = CommandResult(255, 1.0, "failed to run: onethinker sft, exited with 2", True)
    assert isinstance(commands.classify_failure("sft", bad_params, None, tmp_path), ConfigurationFailed)
    refused = CommandResult(255, 0.5, "ERROR: The output paths overlap", False)
    assert isinstance(commands.classify_failure("sft", refused, None, tmp_path), ConfigurationFailed)
    locked = CommandResult(255, 0.5, "ERROR: Unable to acquire lock", False)
    assert type(commands.classify_failure("sft", locked, None, tmp_path)) is StageFailed
    # a validate stage whose report passed (prepare crashed before it) is a plain, retried failure
    assert type(commands.classify_failure("validate", crashed, {"ok": True}, tmp_path)) is StageFailed


def test_failures_pickle_with_their_fields(tmp_path: Path) -> None:
    exc = ValidationFailed(1, "tail", tmp_path, SUMMARY)
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is ValidationFailed and str(back) == str(exc)
    assert back.summary == SUMMARY and back.report_dir == tmp_path and back.stage == "validate"


def test_retry_conditions() -> None:
    state = SimpleNamespace
    assert retry_on_transient(None, None, state(data=StageFailed("sft", 1, "")))
    assert not retry_on_transient(None, None, state(data=ValidationFailed(1, "", Path("r"), SUMMARY)))
    assert not retry_on_transient(None, None, state(data=ConfigurationFailed("sft", 2, "")))
    assert retry_unless_missing(None, None, state(data=ConnectionError()))
    assert not retry_unless_missing(None, None, state(data=LookupError()))


def test_run_command_streams_lines_and_keeps_the_tail(tmp_path: Path) -> None:
    seen: list[str] = []
    script = "import sys\nfor i in range(100): print(i)\nprint(\"Running stage 'x':\")\nsys.exit(3)"
    result = commands.run_command([sys.executable, "-c", script], tmp_path, {}, seen.append)
    assert result.returncode == 3 and result.ran_stage and len(seen) == 101
    assert result.tail.splitlines()[0] == "41" and result.tail.endswith("Running stage 'x':")


def test_stage_env_names_the_parent_run() -> None:
    env = commands.stage_env("abc", {"PATH": "/usr/bin"})
    assert env["ONETHINKER_PARENT_RUN_ID"] == "abc"
    assert env["PATH"].split(":")[0] == str(Path(sys.executable).parent)
    assert "ONETHINKER_PARENT_RUN_ID" not in commands.stage_env(None, {"PATH": "/usr/bin"})


def test_read_validation_summary_ignores_stale_reports(tmp_path: Path) -> None:
    (tmp_path / "summary.json").write_text('{"ok": false}')
    assert commands.read_validation_summary(tmp_path, time.time() - 5) == {"ok": False}
    assert commands.read_validation_summary(tmp_path, time.time() + 60) is None
    assert commands.read_validation_summary(tmp_path / "absent", 0) is None


# --------------------------------------------------------------------------------------------------
# reports


def test_eval_table_one_row_per_task_one_column_per_model() -> None:
    metrics = {
        "models": {
            "sft": {
                "mean_accuracy": 0.5,
                "format_rate": 1.0,
                "n": 4,
                "tasks": {"ocr": {"accuracy": 0.25}, "math": {"accuracy": 0.75}},
            },
            "grpo": {"mean_accuracy": 0.625, "format_rate": 0.9, "tasks": {"ocr": {"accuracy": 0.5}}},
        }
    }
    lines = reports.eval_table(metrics, "Eval").splitlines()
    assert lines[2] == "| task | sft | grpo |"
    assert lines[4] == "| math | 0.750 | – |"  # grpo was not scored on math
    assert lines[5] == "| ocr | 0.250 | 0.500 |"
    assert lines[6] == "| **mean accuracy** | 0.500 | 0.625 |"
    assert lines[7] == "| **format rate** | 1.000 | 0.900 |"
    assert lines[8] == "| samples | 4 | – |"
    assert reports.eval_summary_metrics(metrics) == {
        "eval.sft.mean_accuracy": 0.5,
        "eval.sft.format_rate": 1.0,
        "eval.sft.task.ocr": 0.25,
        "eval.sft.task.math": 0.75,
        "eval.grpo.mean_accuracy": 0.625,
        "eval.grpo.format_rate": 0.9,
        "eval.grpo.task.ocr": 0.5,
    }
    assert "No models" in reports.eval_table({}, "Eval")


def test_registry_markdown_with_and_without_a_decision() -> None:
    absent = reports.registry_markdown(None, "metrics/registry.json")
    assert "No registry decision" in absent and "metrics/registry.json" in absent
    registry = {
        "champion_version": 3,
        "latest": {
            "action": "register",
            "version": 3,
            "decision": "promoted",
            "reasons": ["aggregate 0.6 >= 0.5 + 0.01"],
        },
        "history": [],
    }
    text = reports.registry_markdown(registry)
    assert "Champion version after this run: **3**" in text
    assert "| decision | promoted |" in text and "- aggregate 0.6 >= 0.5 + 0.01" in text


def test_stage_outcomes_are_read_from_dvc_output(tmp_path: Path) -> None:
    """DVC's own lines (dvc/stage/run.py, dvc/stage/__init__.py, dvc/stage/cache.py) name what it did."""
    assert commands.stage_outcome("Running stage 'sft':") == ("sft", commands.RAN)
    assert commands.stage_outcome("Stage 'evaluate' didn't change, skipping") == (
        "evaluate",
        commands.UP_TO_DATE,
    )
    assert commands.stage_outcome("Stage 'grpo' is cached - skipping run, checking out outputs") == (
        "grpo",
        commands.RESTORED,
    )
    assert commands.stage_outcome("Updating lock file 'dvc.lock'") is None
    script = (
        "print(\"Stage 'prepare' didn't change, skipping\")\n"
        "print(\"Stage 'validate' didn't change, skipping\")\n"
        "print(\"Running stage 'sft':\")"
    )
    result = commands.run_command([sys.executable, "-c", script], tmp_path, {})
    assert result.outcomes == {"prepare": "up to date", "validate": "up to date", "sft": "ran"}


def test_artifacts_of_a_stage_that_did_not_run_name_the_earlier_run() -> None:
    eval_json = {
        "models": {"grpo": {"mean_accuracy": 0.3, "tasks": {}}},
        "mlflow_run_id": "r-eval",
        "sample": "s1",
    }
    note = reports.earlier_results_note("evaluate", commands.UP_TO_DATE, "metrics/eval.json", eval_json)
    assert "did not run in this pipeline run" in note and "DVC found it up to date" in note
    assert "`r-eval`" in note and "`s1`" in note
    table = reports.eval_table(eval_json, "Evaluation", note)
    assert table.splitlines()[0] == "# Evaluation" and "did not run" in table.splitlines()[2]
    assert "| task | grpo |" in table

    registry = {
        "champion_version": 2,
        "latest": {"action": "register", "version": 2, "decision": "promoted"},
        "history": [
            {"action": "register", "version": 2, "decision": "promoted", "time": "T", "run_id": "r-reg"}
        ],
    }
    note = reports.earlier_results_note("register", commands.RESTORED, "metrics/registry.json", registry)
    assert "run cache" in note and "version 2 (promoted) at T" in note and "`r-reg`" in note
    text = reports.registry_markdown(registry, "metrics/registry.json", note)
    assert text.index("did not run") < text.index("| decision | promoted |")

    stages = reports.stage_outcomes_markdown({"validate": "up to date", "sft": "ran"})
    assert "| validate | did not run: up to date (outputs from an earlier run) |" in stages
    assert "| sft | ran |" in stages


def test_validation_markdown(tmp_path: Path) -> None:
    text = reports.validation_markdown(SUMMARY, tmp_path)
    assert text.startswith("# Data validation FAILED")
    assert "| option_letter | 1 |" in text and "| data/train/rl.json | 2 |" in text
    assert "refcoco" not in text  # files without failures are left out
    assert "- record 1: missing.png" in text and str(tmp_path / "index.html") in text


def test_mlflow_ui_url() -> None:
    assert mlflow_ui_url("http://127.0.0.1:5001/", "1", "r") == "http://127.0.0.1:5001/#/experiments/1/runs/r"
    assert mlflow_ui_url("sqlite:////x/mlflow.db", "2", "r").endswith(":5000/#/experiments/2/runs/r")


# --------------------------------------------------------------------------------------------------
# champion


def test_champion_workspace_folder_only_when_it_still_holds_the_model(tmp_path: Path) -> None:
    (tmp_path / "models" / "grpo").mkdir(parents=True)
    (tmp_path / "models" / "grpo" / "config.json").write_text("{}")
    tags = {"model_dir": "models/grpo", "dvc.model_hash": "abc.dir"}
    assert workspace_folder(tags, tmp_path, "abc.dir") == tmp_path / "models" / "grpo"
    assert workspace_folder(tags, tmp_path, None) == tmp_path / "models" / "grpo"
    assert workspace_folder(tags, tmp_path, "retrained.dir") is None
    assert workspace_folder({"model_dir": "models/sft"}, tmp_path, None) is None
    assert workspace_folder({}, tmp_path, None) is None


def test_find_model_folder_prefers_the_shallowest(tmp_path: Path) -> None:
    deep = tmp_path / "artifacts" / "hf_model"
    (deep / "sub").mkdir(parents=True)
    (deep / "config.json").write_text("{}")
    (deep / "sub" / "config.json").write_text("{}")
    assert find_model_folder(tmp_path) == deep
    assert find_model_folder(tmp_path / "artifacts" / "hf_model" / "sub" / "none") is None


# --------------------------------------------------------------------------------------------------
# process control (make serve / make stop)


def test_stop_order_workers_then_prefect_then_mlflow_then_postgres() -> None:
    assert _stop_order(["postgres", "mlflow", "prefect-server", "worker-gpu", "worker-cpu"]) == [
        "worker-cpu",
        "worker-gpu",
        "prefect-server",
        "mlflow",
        "postgres",
    ]


def test_stop_signals_the_whole_process_group(tmp_path: Path) -> None:
    child_pid = tmp_path / "child.pid"
    script = (
        f"import subprocess, sys, time\np = subprocess.Popen([sys.executable, '-c', 'import time; "
        f"time.sleep(60)'])\nopen({str(child_pid)!r}, 'w').write(str(p.pid))\ntime.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    for _ in range(100):
        if child_pid.exists() and child_pid.read_text():
            break
        time.sleep(0.05)
    grandchild = int(child_pid.read_text())
    assert matches(proc.pid, ["time.sleep(60)"]) and not matches(proc.pid, ["prefect", "server"])
    assert stop(proc.pid, proc, timeout=5)
    assert proc.returncode == -signal.SIGTERM
    for _ in range(50):
        if not is_alive(grandchild):
            break
        time.sleep(0.1)
    assert not is_alive(grandchild)
    assert not stop(proc.pid, proc)  # already gone


def test_running_ignores_stale_and_reused_pids(tmp_path: Path) -> None:
    (tmp_path / "mlflow.pid").write_text("999999999\n")  # no such process
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True)
    try:
        (tmp_path / "prefect-server.pid").write_text(f"{proc.pid}\n")  # alive, but not a prefect server
        assert running(tmp_path) == {}
    finally:
        stop(proc.pid, proc, timeout=5)
