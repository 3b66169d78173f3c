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
        "annotate",
        "base-model",
        "sft",
        "grpo",
        "evaluate",
        "register",
        "promote",
        "rollback",
        "report",
        "serve",
    ):
        assert cmd in out


def test_bad_param_exits_2_naming_the_key_and_its_source(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("prepare:\n  seed: 3\n")
    result = runner.invoke(app, ["prepare", "--params", str(params), "-S", "prepare.seed=x"])
    assert result.exit_code == 2 and "prepare.seed" in result.output
    assert "--set prepare.seed='x'" in result.output and str(params) not in result.output
    params.write_text("prepare:\n  seed: x\n")
    result = runner.invoke(app, ["prepare", "--params", str(params)])
    assert result.exit_code == 2 and f"{params}: prepare.seed" in result.output


def test_a_missing_params_file_fails(tmp_path: Path) -> None:
    result = runner.invoke(app, ["grpo", "--params", str(tmp_path / "none.yaml")])
    assert result.exit_code == 2 and "params file not found" in result.output


def _one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and result.output.rstrip().endswith(errors[0]), (
        result.output
    )  # MLflow may log first
    return errors[0]


def test_unknown_versions_models_and_files_are_one_line_errors(tmp_path: Path, monkeypatch) -> None:
    """No traceback for a user's mistake in any command: an unknown registry version or model, a missing
    model folder, data that was never prepared, a file that does not exist."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    (tmp_path / "params.yaml").write_text("register:\n  name: nothing-here\n")
    assert "does not exist" in _one_line_error(runner.invoke(app, ["promote", "99"]))
    assert "does not exist" in _one_line_error(runner.invoke(app, ["rollback"]))
    assert "not a saved Hugging Face model folder" in _one_line_error(runner.invoke(app, ["register"]))
    assert "manifest" in _one_line_error(runner.invoke(app, ["evaluate"])).lower()
    assert "manifest" in _one_line_error(runner.invoke(app, ["sft"])).lower()
    assert "manifest" in _one_line_error(runner.invoke(app, ["base-model"])).lower()
    missing = runner.invoke(app, ["validate", str(tmp_path / "nope.json")])  # a validation failure, named
    assert missing.exit_code == 1 and "Traceback" not in missing.output and "nope.json" in missing.output


def test_user_errors_name_real_classes() -> None:
    """The CLI tells user errors apart by class name (no import): each name must be a real class."""
    import importlib

    from onethinker.cli import USER_ERRORS, is_user_error
    from onethinker.config import ConfigError

    for name in USER_ERRORS:
        module, _, cls = name.rpartition(".")
        assert isinstance(getattr(importlib.import_module(module), cls), type), name
    assert is_user_error(ConfigError("x")) and is_user_error(FileNotFoundError("x"))
    assert not is_user_error(ValueError("x")) and not is_user_error(KeyError("x"))


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


def _expand(text: str) -> str:
    """``a/{b,c}.json`` -> ``a/b.json a/c.json`` (the help writes groups of files that way)."""
    import re

    def one(m: re.Match[str]) -> str:
        return " ".join(f"{m.group(1)}{part}{m.group(3)}" for part in m.group(2).split(","))

    return re.sub(r"(\S*)\{([^}]*)\}(\S*)", one, text)


def test_each_stage_help_names_its_params_inputs_outputs_and_an_example() -> None:
    import re
    import shlex

    import yaml

    from onethinker.cli import STAGE_DOCS
    from onethinker.config import load_params

    repo = Path(__file__).resolve().parents[2]
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    for cmd, doc in STAGE_DOCS.items():
        out = runner.invoke(app, [cmd, "--help"], env={"COLUMNS": "250"}).output
        assert f"params:  {doc.params}" in out and "reads:" in out and "writes:" in out, cmd
        assert f"example: {doc.example}" in out, (cmd, out)  # brackets survive rich markup
        for odd in ("<list[str]>", "<bool>", "<path>", "<str>"):
            assert odd not in out, (cmd, odd)

        # what dvc.yaml says the stage reads and writes is in its help
        stage = stages.get(cmd.replace("-", "_"))
        if stage is not None:
            named = set(re.findall(r"[a-z_]+(?:\.[a-z_]+)*", doc.params))
            for key in (p for p in stage.get("params", []) if isinstance(p, str)):
                assert key in named or key.split(".")[0] in named, (cmd, key, doc.params)
            writes = _expand(doc.writes)
            for entry in stage.get("outs", []) + stage.get("metrics", []) + stage.get("plots", []):
                path = next(iter(entry)) if isinstance(entry, dict) else entry
                assert path in writes, (cmd, path, writes)

        # the example is this command's, and its -S overrides load (keys of the sections it reads)
        tokens = shlex.split(doc.example)
        assert tokens[:2] == ["onethinker", cmd], doc.example
        sets = dict(tokens[i + 1].split("=", 1) for i, t in enumerate(tokens) if t == "-S")
        load_params(repo / "params.yaml", {k: yaml.safe_load(v) for k, v in sets.items()})
        for key in sets:
            assert key.split(".")[0] in doc.params, (cmd, key)


def test_a_bad_param_fails_before_any_heavy_import() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from onethinker.cli import app\n"
        "r = CliRunner().invoke(app, ['sft', '-S', 'sft.lr=x'])\n"
        "assert r.exit_code == 2 and 'sft.lr' in r.output, r.output\n"
        "print(sorted(m for m in ('torch', 'transformers', 'mlflow', 'matplotlib') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", proc.stdout
