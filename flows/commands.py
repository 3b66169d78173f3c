"""DVC stage commands for the flows: build them, run them, classify their failures. No Prefect in here.

A stage runs as ``dvc repro <stage>`` (DVC decides what is up to date and runs the stage's dependencies
first), or as ``dvc exp run <stage> -S key=value ...`` when the flow was given parameter overrides (DVC
writes the overrides into ``params.yaml`` and records an experiment). Failures are classified so that the
flows retry only what may be transient:

- :class:`ValidationFailed`: the ``validate`` stage wrote a failing report. Never retried.
- :class:`ConfigurationFailed`: a stage command exited with 2 (``onethinker`` rejects its params with
  exit code 2), DVC failed before starting any stage command (a broken ``dvc.yaml``, a missing input; a
  held lock is the exception and is retried), or a requested stage is not in ``dvc.yaml``. Never retried.
- :class:`StageFailed`: anything else (a crash, an out-of-memory kill, a lost lock). Retried; training
  stages resume from their newest checkpoint.
"""

from __future__ import annotations

import collections
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PIPELINE_STAGES: tuple[str, ...] = ("validate", "sft", "grpo", "evaluate", "register")
"""The stages ``training_pipeline`` runs, in order (``prepare`` and ``base_model`` run as DVC dependencies)."""
GPU_STAGES: frozenset[str] = frozenset({"sft", "grpo", "evaluate"})
DEFAULT_POOLS: dict[str, str] = {s: ("gpu" if s in GPU_STAGES else "cpu") for s in PIPELINE_STAGES}
"""Work pool per stage: GPU stages on ``gpu``, the rest on ``cpu``."""

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_TAIL_LINES = 60


class StageFailed(RuntimeError):
    """A DVC stage command failed; ``output_tail`` holds its last lines. Retried by the flows."""

    def __init__(self, stage: str, returncode: int, output_tail: str, message: str | None = None) -> None:
        self.stage = stage
        self.returncode = returncode
        self.output_tail = output_tail
        super().__init__(message or f"stage {stage!r} failed (exit code {returncode}):\n{output_tail}")

    def __reduce__(self) -> tuple[Any, ...]:
        # picklable whatever the subclass's constructor takes (Prefect may serialise failed states)
        return (_rebuild, (type(self), str(self), dict(self.__dict__)))


def _rebuild(cls: type[StageFailed], message: str, state: dict[str, Any]) -> StageFailed:
    obj = cls.__new__(cls)
    RuntimeError.__init__(obj, message)
    obj.__dict__.update(state)
    return obj


class ConfigurationFailed(StageFailed):
    """Bad parameters or an unknown stage: retrying cannot help."""


class ValidationFailed(StageFailed):
    """The data failed validation; ``report_dir`` holds ``summary.json`` and ``index.html``."""

    def __init__(
        self, returncode: int, output_tail: str, report_dir: Path, summary: Mapping[str, Any]
    ) -> None:
        self.report_dir = report_dir
        self.summary = dict(summary)
        super().__init__("validate", returncode, output_tail, validation_message(report_dir, summary))


def validation_message(report_dir: Path, summary: Mapping[str, Any]) -> str:
    """One paragraph for the flow run's state message: counts per rule and the report's location."""
    rules = ", ".join(f"{rule}: {n}" for rule, n in (summary.get("failures_per_rule") or {}).items())
    return (
        f"validation FAILED: {summary.get('num_failures', '?')} failure(s) in "
        f"{summary.get('num_records', '?')} records of {summary.get('num_files', '?')} files "
        f"({rules or 'no rule counts'}); report: {report_dir / 'index.html'} "
        f"(summary: {report_dir / 'summary.json'})"
    )


# --------------------------------------------------------------------------------------------------
# Params and dvc.yaml


def read_params(root: Path, params_file: str = "params.yaml") -> dict[str, Any]:
    """The raw ``params.yaml`` of a workspace (empty when absent)."""
    path = root / params_file
    return (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}


def get_param(
    params: Mapping[str, Any], dotted: str, default: Any = None, overrides: Mapping[str, Any] | None = None
) -> Any:
    """``params[a][b]`` for ``"a.b"``; an override for that key wins; ``default`` when absent."""
    if overrides and dotted in overrides:
        return overrides[dotted]
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def has_param(params: Mapping[str, Any], dotted: str) -> bool:
    sentinel = object()
    return get_param(params, dotted, sentinel) is not sentinel


def dvc_stages(root: Path) -> list[str]:
    """Stage names declared in the workspace's ``dvc.yaml`` (empty when absent)."""
    path = root / "dvc.yaml"
    if not path.exists():
        return []
    return list(((yaml.safe_load(path.read_text()) or {}).get("stages") or {}).keys())


def check_stages(requested: Iterable[str], available: Iterable[str]) -> None:
    """Fail before anything runs when a requested stage is not in ``dvc.yaml``."""
    have = list(available)
    missing = [s for s in requested if s not in have]
    if missing:
        raise ConfigurationFailed(
            missing[0],
            2,
            "",
            f"stage(s) {', '.join(missing)} not in dvc.yaml (it declares: {', '.join(have) or 'nothing'})",
        )


def check_overrides(overrides: Mapping[str, Any]) -> None:
    """Override keys are dotted identifiers (``sft.max_steps``); values are YAML-like data."""
    for key in overrides:
        if not isinstance(key, str) or not _KEY.match(key):
            raise ConfigurationFailed("params", 2, "", f"override key {key!r} is not a dotted identifier")


# --------------------------------------------------------------------------------------------------
# Commands


def hydra_value(value: Any) -> str:
    """A value in the Hydra override grammar ``dvc exp run -S`` parses (strings always quoted)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, Mapping):
        for k in value:
            if not isinstance(k, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_\-]*$", k):
                raise ConfigurationFailed("params", 2, "", f"mapping key {k!r} cannot be passed to dvc -S")
        return "{" + ",".join(f"{k}:{hydra_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    raise ConfigurationFailed("params", 2, "", f"cannot pass {value!r} ({type(value).__name__}) to dvc -S")


def set_args(overrides: Mapping[str, Any], params: Mapping[str, Any]) -> list[str]:
    """``-S key=value`` pairs; a key absent from params.yaml is added with Hydra's ``+key=value``."""
    out: list[str] = []
    for key, value in overrides.items():
        prefix = "" if has_param(params, key) else "+"
        out += ["-S", f"{prefix}{key}={hydra_value(value)}"]
    return out


def tool(name: str) -> str:
    """A console script of this environment (next to the running interpreter), else from ``PATH``."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    return shutil.which(name) or name


def dvc_command(
    stage: str,
    overrides: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    force: bool = False,
) -> list[str]:
    """``dvc repro <stage>``, or ``dvc exp run <stage> -S ...`` when there are overrides."""
    dvc = tool("dvc")
    if overrides:
        check_overrides(overrides)
        cmd = [dvc, "exp", "run", stage, *set_args(overrides, params or {})]
    else:
        cmd = [dvc, "repro", stage]
    if force:
        cmd.append("--force")
    return cmd


def onethinker_command(command: str, sets: Mapping[str, Any], params_file: str = "params.yaml") -> list[str]:
    """``onethinker <command> --params params.yaml --set key=<JSON value> ...`` (JSON is valid YAML, which
    is how the CLI parses ``--set`` values, and quotes paths safely)."""
    check_overrides(sets)
    cmd = [tool("onethinker"), command, "--params", params_file]
    for key, value in sets.items():
        cmd += ["--set", f"{key}={json.dumps(value)}"]
    return cmd


def stage_env(parent_run_id: str | None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a stage command: this one, the venv's ``bin`` first on PATH, and the MLflow
    parent run (``ONETHINKER_PARENT_RUN_ID``) so that the stage's run nests under the pipeline's."""
    env = dict(os.environ if base is None else base)
    bindir = str(Path(sys.executable).parent)
    if bindir not in env.get("PATH", "").split(os.pathsep):
        env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env.setdefault("DVC_NO_ANALYTICS", "1")
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    if parent_run_id:
        env["ONETHINKER_PARENT_RUN_ID"] = parent_run_id
    return env


RAN = "ran"
UP_TO_DATE = "up to date"
RESTORED = "restored from DVC's run cache"
_OUTCOME_LINES = (
    (re.compile(r"^Running stage '([^']+)':"), RAN),
    (re.compile(r"^Stage '([^']+)' didn't change, skipping"), UP_TO_DATE),
    (re.compile(r"^Stage '([^']+)' is cached - skipping run, checking out outputs"), RESTORED),
)


def stage_outcome(line: str) -> tuple[str, str] | None:
    """(stage, outcome) when ``line`` is DVC saying it ran, skipped or restored a stage, else None.

    Outcomes: ``RAN`` (the command ran), ``UP_TO_DATE`` (nothing changed: the outputs are an earlier run's),
    ``RESTORED`` (the outputs of an earlier run with the same inputs were checked out from the run cache).
    """
    for pattern, outcome in _OUTCOME_LINES:
        m = pattern.match(line.strip())
        if m:
            return m.group(1), outcome
    return None


@dataclass
class CommandResult:
    returncode: int
    seconds: float
    tail: str
    ran_stage: bool = False
    """Whether DVC started a stage command (a ``Running stage '...'`` line was printed)."""
    outcomes: dict[str, str] = field(default_factory=dict)
    """What DVC did with each stage it considered (``stage_outcome``), in order."""


def run_command(
    cmd: list[str], cwd: Path, env: Mapping[str, str], on_line: Callable[[str], None] | None = None
) -> CommandResult:
    """Run ``cmd`` and stream its merged output line by line to ``on_line``; keep the last lines."""
    t0 = time.perf_counter()
    tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
    ran_stage = False
    outcomes: dict[str, str] = {}
    with subprocess.Popen(
        cmd,
        cwd=cwd,
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        bufsize=1,
    ) as proc:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip("\n")
            tail.append(line)
            ran_stage = ran_stage or line.startswith("Running stage")
            found = stage_outcome(line)
            if found is not None:
                outcomes[found[0]] = found[1]
            if on_line is not None:
                on_line(line)
        returncode = proc.wait()
    return CommandResult(returncode, time.perf_counter() - t0, "\n".join(tail), ran_stage, outcomes)


def read_validation_summary(report_dir: Path, not_before: float) -> dict[str, Any] | None:
    """``summary.json`` of a validation report written at or after ``not_before`` (epoch seconds)."""
    path = report_dir / "summary.json"
    try:
        if path.stat().st_mtime + 1.0 < not_before:
            return None
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def classify_failure(
    stage: str, result: CommandResult, validation_summary: Mapping[str, Any] | None, report_dir: Path
) -> StageFailed:
    """The exception for a failed stage command (see the module docstring for the classes)."""
    if stage == "validate" and validation_summary is not None and not validation_summary.get("ok", True):
        return ValidationFailed(result.returncode, result.tail, report_dir, validation_summary)
    if re.search(r"exited with 2\b", result.tail):
        return ConfigurationFailed(stage, result.returncode, result.tail)
    if not result.ran_stage and "lock" not in result.tail.lower():
        return ConfigurationFailed(
            stage,
            result.returncode,
            result.tail,
            f"DVC refused to run stage {stage!r} before starting any stage command (a pipeline definition, "
            f"params or missing-input problem; not retried):\n{result.tail}",
        )
    return StageFailed(stage, result.returncode, result.tail)


def is_transient(exc: BaseException | None) -> bool:
    """Whether a retry may help: not for validation or configuration failures."""
    return exc is not None and not isinstance(exc, ValidationFailed | ConfigurationFailed)


def run_dvc_stage(
    stage: str,
    root: Path,
    overrides: Mapping[str, Any] | None = None,
    parent_run_id: str | None = None,
    force: bool = False,
    on_line: Callable[[str], None] | None = None,
) -> CommandResult:
    """Run one stage through DVC in ``root``; raise the classified failure when it fails."""
    params = read_params(root)
    cmd = dvc_command(stage, overrides, params, force)
    if on_line is not None:
        on_line("$ " + " ".join(cmd))
    started = time.time()
    result = run_command(cmd, root, stage_env(parent_run_id), on_line)
    if result.returncode != 0:
        report_dir = root / str(
            get_param(read_params(root), "validate.report_dir", "reports/validation", overrides)
        )
        summary = read_validation_summary(report_dir, started) if stage == "validate" else None
        raise classify_failure(stage, result, summary, report_dir)
    return result
