"""Validation reports: failures that name file, record, field and rule; JSON summary and HTML page.

A ``Failure`` reads like
``data/train/rl.json: record 17 (problem_id=train-x-00017): field 'answer': rule box_order: box [10, 20,
5, 40] has x1 >= x2``. A ``FileReport`` holds one file's expectation outcomes (one line per rule and
field, pass/fail) and failures; a ``DatasetReport`` holds the files. ``write_reports`` writes
``summary.json`` (counts per file and rule, every failure) and a self-contained ``index.html`` (inline
CSS, no scripts, no CDN). ``summary.json`` holds no timings: the same data gives the same bytes, so the DVC
stages that depend on it do not rerun after a re-validation. Timings go to the HTML page and the terminal.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .rules import RULES


@dataclass(frozen=True)
class Failure:
    """One broken rule on one record (``index`` None: a file-level failure)."""

    file: str
    rule: str
    message: str
    index: int | None = None
    problem_id: str | None = None
    field: str | None = None

    def __str__(self) -> str:
        parts = [self.file]
        if self.index is not None:
            pid = f" (problem_id={self.problem_id})" if self.problem_id is not None else ""
            parts.append(f"record {self.index}{pid}")
        if self.field:
            parts.append(f"field '{self.field}'")
        parts.append(f"rule {self.rule}")
        parts.append(self.message)
        return ": ".join(parts)


@dataclass(frozen=True)
class ExpectationOutcome:
    """One expectation of a file's suite (or one plain-Python file check) and its verdict."""

    rule: str
    field: str
    expectation_type: str
    column: str
    success: bool
    element_count: int
    unexpected_count: int
    error: str | None = None

    @property
    def description(self) -> str:
        spec = RULES.get(self.rule)
        return spec.description if spec else ""


@dataclass
class FileReport:
    """The verdict on one file."""

    path: str
    kind: str | None
    num_records: int
    expectations: list[ExpectationOutcome] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    elapsed_s: float = 0.0
    extra_fields: dict[str, int] = field(default_factory=dict)
    """Fields the pipeline does not read -> how many records carry them (kept in the files, never dropped)."""
    task_sources: dict[str, int] = field(default_factory=dict)
    """SFT files: how each record's task was derived (field, rl, rl-media, instruction, answer) -> count."""

    @property
    def ok(self) -> bool:
        return not self.failures

    def counts_per_rule(self) -> dict[str, int]:
        return dict(sorted(Counter(f.rule for f in self.failures).items()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "kind": self.kind,
            "ok": self.ok,
            "num_records": self.num_records,
            "num_failures": len(self.failures),
            "failures_per_rule": self.counts_per_rule(),
            "extra_fields": dict(sorted(self.extra_fields.items())),
            **({"task_sources": dict(sorted(self.task_sources.items()))} if self.kind == "sft" else {}),
            "expectations": [{**asdict(e), "description": e.description} for e in self.expectations],
            "failures": [{**asdict(f), "text": str(f)} for f in self.failures],
        }


@dataclass
class DatasetReport:
    """The verdict on a set of files, cross-file checks included (they are reported on the file at fault)."""

    files: list[FileReport] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def failures(self) -> list[Failure]:
        return [f for report in self.files for f in report.failures]

    @property
    def ok(self) -> bool:
        return all(report.ok for report in self.files)

    def counts_per_rule(self) -> dict[str, int]:
        return dict(sorted(Counter(f.rule for f in self.failures).items()))

    def extra_field_totals(self) -> dict[str, int]:
        """Fields the pipeline does not read, over all files -> how many records carry them."""
        total: Counter = Counter()
        for r in self.files:
            total.update(r.extra_fields)
        return dict(sorted(total.items()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "num_files": len(self.files),
            "num_records": sum(r.num_records for r in self.files),
            "num_failures": len(self.failures),
            "failures_per_rule": self.counts_per_rule(),
            "failures_per_file": {r.path: len(r.failures) for r in self.files},
            "extra_fields": self.extra_field_totals(),
            "rules": {
                rid: {"group": s.group, "description": s.description, "engine": s.engine}
                for rid, s in RULES.items()
            },
            "files": [r.to_dict() for r in self.files],
        }

    def summary_text(self, max_failures: int = 50) -> str:
        """A terminal summary: one line per file, then the first ``max_failures`` failures."""
        lines = [
            f"{'ok  ' if r.ok else 'FAIL'} {r.path} ({r.kind or '?'}, {r.num_records} records, "
            f"{len(r.failures)} failures)"
            for r in self.files
        ]
        failures = self.failures
        lines += [str(f) for f in failures[:max_failures]]
        if len(failures) > max_failures:
            lines.append(f"... and {len(failures) - max_failures} more failures (see the report)")
        lines.append(
            f"validation {'passed' if self.ok else 'FAILED'}: {len(self.files)} files, "
            f"{len(failures)} failures"
        )
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Writers

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; } h3 { font-size: 1em; }
table { border-collapse: collapse; margin: .5em 0 1em; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
.pass { color: #116611; font-weight: bold; } .fail { color: #b00020; font-weight: bold; }
.msg { font-family: ui-monospace, monospace; white-space: pre-wrap; }
.badge { display: inline-block; padding: .1em .6em; border-radius: .3em; color: #fff; }
.badge.pass { background: #1a7f37; } .badge.fail { background: #b00020; }
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _verdict(ok: bool) -> str:
    return '<span class="pass">pass</span>' if ok else '<span class="fail">FAIL</span>'


def render_html(report: DatasetReport) -> str:
    """A readable, self-contained HTML page of the report. No timings: the page is a DVC output, and the
    same data must give the same bytes (the CLI prints the time taken)."""
    verdict = "pass" if report.ok else "fail"
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>OneThinker data validation</title>',
        f"<style>{_CSS}</style></head><body>",
        f'<h1>OneThinker data validation <span class="badge {verdict}">{"passed" if report.ok else "FAILED"}'
        "</span></h1>",
        f"<p>{len(report.files)} files, {sum(r.num_records for r in report.files)} records, "
        f"{len(report.failures)} failures.</p>",
        "<table><tr><th>file</th><th>kind</th><th>records</th><th>failures</th><th>verdict</th></tr>",
    ]
    for i, r in enumerate(report.files):
        out.append(
            f'<tr><td><a href="#file-{i}">{_e(r.path)}</a></td><td>{_e(r.kind)}</td>'
            f"<td>{r.num_records}</td><td>{len(r.failures)}</td><td>{_verdict(r.ok)}</td></tr>"
        )
    out.append("</table>")
    for i, r in enumerate(report.files):
        out.append(f'<h2 id="file-{i}">{_e(r.path)} {_verdict(r.ok)}</h2>')
        out.append(f"<p>kind {_e(r.kind)}, {r.num_records} records, {len(r.failures)} failures.</p>")
        if r.extra_fields:
            listed = ", ".join(f"{_e(k)} ({v})" for k, v in sorted(r.extra_fields.items()))
            out.append(f"<p>Fields kept but not read by the pipeline (records carrying them): {listed}.</p>")
        if r.task_sources:
            listed = ", ".join(f"{_e(k)} ({v})" for k, v in sorted(r.task_sources.items()))
            out.append(f"<p>How the SFT records' tasks were derived: {listed}.</p>")
        out.append(
            "<h3>Expectations</h3><table><tr><th>rule</th><th>field</th><th>what it checks</th>"
            "<th>expectation</th><th>column(s)</th><th>unexpected</th><th>verdict</th></tr>"
        )
        for e in r.expectations:
            err = f'<br><span class="msg">{_e(e.error)}</span>' if e.error else ""
            out.append(
                f"<tr><td>{_e(e.rule)}</td><td>{_e(e.field)}</td><td>{_e(e.description)}</td>"
                f"<td>{_e(e.expectation_type)}</td><td>{_e(e.column)}</td>"
                f"<td>{e.unexpected_count} / {e.element_count}</td><td>{_verdict(e.success)}{err}</td></tr>"
            )
        out.append("</table>")
        if r.failures:
            out.append(
                "<h3>Failures</h3><table><tr><th>record</th><th>problem_id</th><th>field</th>"
                "<th>rule</th><th>message</th></tr>"
            )
            for f in r.failures:
                out.append(
                    f"<tr><td>{_e(f.index)}</td><td>{_e(f.problem_id)}</td><td>{_e(f.field)}</td>"
                    f'<td>{_e(f.rule)}</td><td class="msg">{_e(f.message)}</td></tr>'
                )
            out.append("</table>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def write_reports(report: DatasetReport | FileReport, out_dir: str | Path) -> dict[str, Path]:
    """Write ``summary.json`` and ``index.html`` under ``out_dir``; returns their paths."""
    if isinstance(report, FileReport):
        report = DatasetReport(files=[report], elapsed_s=report.elapsed_s)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"summary": out / "summary.json", "html": out / "index.html"}
    paths["summary"].write_text(
        json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    paths["html"].write_text(render_html(report), encoding="utf-8")
    return paths
