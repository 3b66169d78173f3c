"""The CLI: one command per stage in --help, bad params exit 2 naming the key, report prints tables."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from onethinker.cli import app

runner = CliRunner()


def test_help_lists_every_stage() -> None:
    out = runner.invoke(app, ["--help"]).output
    for cmd in (
        "prepare",
        "validate",
        "base-model",
        "sft",
        "grpo",
        "evaluate",
        "register",
        "promote",
        "rollback",
        "report",
    ):
        assert cmd in out


def test_bad_param_exits_2_naming_the_key(tmp_path: Path) -> None:
    result = runner.invoke(app, ["prepare", "--params", str(tmp_path / "none.yaml"), "-S", "prepare.seed=x"])
    assert result.exit_code == 2 and "prepare.seed" in result.output


def test_report_prints_per_task_tables(tmp_path: Path) -> None:
    task = {"accuracy": 0.5, "format_rate": 1.0, "n": 2, "mIoU": 0.25}
    (tmp_path / "sft.json").write_text(
        json.dumps(
            {
                "steps": 3,
                "seconds": 1.0,
                "tokens_per_s": 10.0,
                "heldout": {
                    "format_rate": 1.0,
                    "mean_accuracy": 0.5,
                    "tasks": {"ocr": {"accuracy": 0.25, "n": 8, "distinct_answers": 3}},
                },
            }
        )
    )
    models = {
        m: {"mean_accuracy": 0.5, "format_rate": 1.0, "tasks": {"temporal_grounding": task}}
        for m in ("grpo", "base", "sft")
    }
    (tmp_path / "eval.json").write_text(json.dumps({"models": models}))
    result = runner.invoke(app, ["report", "--metrics-dir", str(tmp_path)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "temporal_grounding" in result.output and "mIoU 0.250" in result.output
    header = next(line for line in result.output.splitlines() if "base" in line and "grpo" in line)
    assert header.index("base") < header.index("sft") < header.index("grpo")
    assert "0.250 (3/8)" in result.output  # held-out accuracy with distinct answers of n
