"""Markdown for the Prefect artifacts, as pure functions of the pipeline's JSON files.

- :func:`eval_table`: ``metrics/eval.json`` (``{"models": {m: {"mean_accuracy", "format_rate",
  "tasks": {slug: {"accuracy", ...}}}}}``) -> one row per task, one column per model.
- :func:`registry_markdown`: ``metrics/registry.json`` (the register stage's decisions) -> the latest decision.
- :func:`validation_markdown`: ``reports/validation/summary.json`` -> counts per rule and file, first failures.
- :func:`earlier_results_note`, :func:`stage_outcomes_markdown`: when DVC skipped a stage, say so and name
  the earlier run whose results an artifact shows (a skipped stage's table is never presented as new).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object at ``path``, or None when it is absent or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _fmt(x: Any, digits: int = 3) -> str:
    if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(float(x)):
        return "–"
    return f"{float(x):.{digits}f}"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def earlier_results_note(stage: str, outcome: str, path: str, data: Mapping[str, Any] | None) -> str:
    """Says that ``stage`` did not run in this pipeline run and which earlier results the artifact shows.

    ``data``: the stage's JSON file (``metrics/eval.json`` or ``metrics/registry.json``), whose MLflow run id
    (and, for the registry, the latest decision's time and version) identify the run that produced it.
    """
    why = "DVC restored its outputs from the run cache" if "cache" in outcome else "DVC found it up to date"
    lines = [f"> **Stage `{stage}` did not run in this pipeline run** ({why}). Nothing below is new:"]
    data = data or {}
    latest = data.get("latest") if isinstance(data.get("latest"), Mapping) else None
    history = data.get("history") if isinstance(data.get("history"), list) else []
    if latest is not None:
        entry = history[-1] if history and isinstance(history[-1], Mapping) else latest
        lines.append(
            f"> it is the latest earlier decision in `{path}`: {entry.get('action', 'register')} of version "
            f"{entry.get('version', '?')} ({entry.get('decision', '?')}) at {entry.get('time', 'an unknown time')}"
            f", register run `{entry.get('run_id') or 'unknown'}`."
        )
    else:
        lines.append(
            f"> it is the earlier result in `{path}`, logged by MLflow run `{data.get('mlflow_run_id') or 'unknown'}`"
            + (f" (evaluation sample `{data['sample']}`)." if data.get("sample") else ".")
        )
    return "\n".join(lines) + "\n"


def stage_outcomes_markdown(outcomes: Mapping[str, str]) -> str:
    """One row per stage of a pipeline run: whether DVC ran it or its outputs are an earlier run's."""
    lines = ["# Pipeline stages", "", "| stage | in this run |", "|---|---|"]
    for stage, outcome in outcomes.items():
        text = "ran" if outcome == "ran" else f"did not run: {outcome} (outputs from an earlier run)"
        lines.append(f"| {_cell(stage)} | {_cell(text)} |")
    if not outcomes:
        lines.append("| – | no stage reported |")
    return "\n".join(lines) + "\n"


def eval_table(eval_metrics: Mapping[str, Any], title: str = "Evaluation", note: str | None = None) -> str:
    """A markdown table of accuracy per task (rows) and model (columns), then mean accuracy and format rate.

    ``note``: printed under the title (e.g. ``earlier_results_note`` when the evaluation did not run)."""
    models: Mapping[str, Any] = eval_metrics.get("models") or {}
    head = f"# {title}\n\n" + (f"{note}\n" if note else "")
    if not models:
        return f"{head}No models in the evaluation metrics.\n"
    names = list(models)
    tasks = sorted({t for m in models.values() for t in ((m or {}).get("tasks") or {})})
    lines = [
        head.rstrip("\n"),
        "",
        "| task | " + " | ".join(_cell(n) for n in names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for task in tasks:
        row = [_fmt(((models[n] or {}).get("tasks") or {}).get(task, {}).get("accuracy")) for n in names]
        lines.append(f"| {_cell(task)} | " + " | ".join(row) + " |")
    for key, label in (("mean_accuracy", "**mean accuracy**"), ("format_rate", "**format rate**")):
        lines.append(f"| {label} | " + " | ".join(_fmt((models[n] or {}).get(key)) for n in names) + " |")
    if any("n" in (models[n] or {}) for n in names):
        lines.append("| samples | " + " | ".join(str((models[n] or {}).get("n", "–")) for n in names) + " |")
    return "\n".join(lines) + "\n"


def eval_summary_metrics(eval_metrics: Mapping[str, Any]) -> dict[str, float]:
    """Flat metrics for the pipeline's parent run: ``eval.<model>.mean_accuracy`` and per-task accuracy."""
    out: dict[str, float] = {}
    for name, m in (eval_metrics.get("models") or {}).items():
        m = m or {}
        for key in ("mean_accuracy", "format_rate"):
            if _fmt(m.get(key)) != "–":
                out[f"eval.{name}.{key}"] = float(m[key])
        for task, tm in (m.get("tasks") or {}).items():
            acc = (tm or {}).get("accuracy")
            if _fmt(acc) != "–":
                out[f"eval.{name}.task.{task}"] = float(acc)
    return out


def registry_markdown(
    registry: Mapping[str, Any] | None, path: str = "metrics/registry.json", note: str | None = None
) -> str:
    """The latest registry decision (promoted or refused, version, reasons); a note when there is none.

    ``note``: printed under the title (``earlier_results_note`` when the register stage did not run)."""
    if registry is None:
        return (
            f"# Registry decision\n\nNo registry decision: `{path}` was not found (the register stage "
            "did not run, or wrote nothing). The current champion is unchanged.\n"
        )
    latest = registry.get("latest") if isinstance(registry.get("latest"), Mapping) else None
    lines = ["# Registry decision", ""]
    if note:
        lines += [note.rstrip("\n"), ""]
    bare = len(lines)
    if "champion_version" in registry:
        lines.append(f"Champion version after this run: **{registry.get('champion_version')}**")
        lines.append("")
    entry: Mapping[str, Any] = (
        latest
        if latest is not None
        else {k: v for k, v in registry.items() if k not in ("history", "champion_version")}
    )
    scalars = {k: v for k, v in entry.items() if not isinstance(v, Mapping | list | tuple)}
    if scalars:
        lines += ["| field | value |", "|---|---|"]
        lines += [f"| {_cell(k)} | {_cell(v)} |" for k, v in scalars.items()]
        lines.append("")
    for key, value in entry.items():
        if isinstance(value, list | tuple) and value:
            lines.append(f"**{key}**")
            lines += [f"- {_cell(v if not isinstance(v, Mapping) else json.dumps(v))}" for v in value]
            lines.append("")
        elif isinstance(value, Mapping) and value:
            lines.append(f"**{key}**: `{json.dumps(value, sort_keys=True)}`")
            lines.append("")
    if len(lines) <= bare:
        lines.append("The registry file holds no decision yet.")
    return "\n".join(lines).rstrip() + "\n"


def validation_markdown(summary: Mapping[str, Any], report_dir: Path, max_failures: int = 20) -> str:
    """Validation verdict: totals, failures per rule and per file, the first failures, the report path."""
    ok = bool(summary.get("ok"))
    lines = [
        f"# Data validation {'passed' if ok else 'FAILED'}",
        "",
        f"{summary.get('num_failures', 0)} failure(s) in {summary.get('num_records', '?')} records of "
        f"{summary.get('num_files', '?')} files. Report: `{report_dir / 'index.html'}` "
        f"(summary: `{report_dir / 'summary.json'}`).",
        "",
    ]
    per_rule = summary.get("failures_per_rule") or {}
    if per_rule:
        lines += ["| rule | failures |", "|---|---:|"] + [
            f"| {_cell(r)} | {n} |" for r, n in per_rule.items()
        ]
        lines.append("")
    per_file = {f: n for f, n in (summary.get("failures_per_file") or {}).items() if n}
    if per_file:
        lines += ["| file | failures |", "|---|---:|"] + [
            f"| {_cell(f)} | {n} |" for f, n in per_file.items()
        ]
        lines.append("")
    failures = [f.get("text", "") for file in summary.get("files") or [] for f in file.get("failures") or []]
    if failures:
        lines.append("First failures:")
        lines += [f"- {_cell(t)}" for t in failures[:max_failures]]
        if len(failures) > max_failures:
            lines.append(f"- ... and {len(failures) - max_failures} more")
    return "\n".join(lines).rstrip() + "\n"
