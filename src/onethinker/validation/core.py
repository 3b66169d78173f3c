"""Validate OneThinker files: per-file expectation suites plus the cross-file checks.

``validate_file`` checks one RL, SFT or evaluation file; ``validate_dataset`` checks the training and
evaluation files of a prepared data folder together:

1. each file is read (a malformed file is a ``file_json`` / ``file_readable`` failure naming the
   position), turned into a table (``table.build_rows``) and run through its GE suite
   (``gx_suite.build_expectations``);
2. RL files go first, so SFT records without the ground-truth extras are checked against the RL answer
   of the same ``problem_id``;
3. evaluation files are checked against everything training holds: problem ids, media paths and media
   content hashes (``train_eval_disjoint_*``).

GE's unexpected indices are record indices; each is explained by the rule's own message function, so a
failure reads ``file: record i (problem_id=...): field '...': rule ...: message``.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from onethinker.config import ValidateConfig
from onethinker.tasks import PROBLEM_TYPES, allowed_data_types

from .media_probe import probe_media
from .report import DatasetReport, ExpectationOutcome, Failure, FileReport
from .rules import ROW_CHECKS, load_json_cell, run_check, short
from .table import ANSWER_FIELD as ANSWER_FIELD_OF
from .table import FIELD_TYPES, KINDS, Context, GroundTruth, LoadError, build_rows, infer_kind, load_records

if TYPE_CHECKING:
    from .gx_suite import SuiteRunner

FileKind = Literal["rl", "sft", "eval"]


@dataclass
class TrainingIndex:
    """Where training's problem ids, media paths and media hashes occur (for the disjointness rules)."""

    problem_ids: dict[str, str] = field(default_factory=dict)  # id -> "file record i"
    media_paths: dict[str, str] = field(default_factory=dict)  # relative path -> "file record i"
    media_hashes: dict[str, tuple[str, str]] = field(default_factory=dict)  # sha256 -> (where, path)
    ground_truth: dict[str, GroundTruth] = field(default_factory=dict)  # RL answers by problem id

    def add_rows(self, display: str, kind: str, rows: Iterable[Mapping[str, Any]]) -> None:
        for row in rows:
            where = f"{display} record {row['record_index']}"
            pid = row.get("problem_id")
            if pid is not None:
                self.problem_ids.setdefault(pid, where)
                if kind == "rl" and row.get("answer") is not None:
                    self.ground_truth.setdefault(
                        pid,
                        GroundTruth(
                            row["answer"], row.get("problem_type_canon"), row.get("data_type_norm"), where
                        ),
                    )
            paths = load_json_cell(row.get("media")) or []
            for p in paths:
                self.media_paths.setdefault(p, where)
            for p, h in zip(paths, load_json_cell(row.get("media_sha256")) or [], strict=False):
                self.media_hashes.setdefault(h, (where, p))


# --------------------------------------------------------------------------------------------------
# Messages for built-in expectations (custom ones explain themselves through rules.run_check)


def _explain(
    rule: str,
    field_name: str,
    row: Mapping[str, Any],
    record: Mapping[str, Any],
    kind: str,
    train: TrainingIndex | None,
    duplicates: Mapping[str, list[int]],
) -> str:
    if rule in ROW_CHECKS:
        return run_check(rule, row) or "the check failed on this record"
    value = record.get(field_name)
    if rule == "required_field":
        if field_name == "options":
            return "multiple choice needs a list of 'options'"
        return "required field is missing" if field_name not in record else "required field is null"
    if rule == "field_type":
        types = " or ".join(FIELD_TYPES[kind][field_name])
        return f"expected {types}, got {row.get(f'{field_name}__type')} {short(value)}"
    if rule == "problem_type_known":
        return f"unknown problem_type {short(record.get('problem_type'))} (known: {', '.join(PROBLEM_TYPES)})"
    if rule == "data_type_known":
        return (
            f"unknown data_type {short(record.get('data_type', row.get('data_type_norm')))} "
            "(expected 'image' or 'video')"
        )
    if rule == "task_pair":
        pt, dt = row.get("problem_type_canon"), row.get("data_type_norm")
        allowed = " or ".join(allowed_data_types(pt)) if pt else "?"
        return f"problem_type {pt!r} is not defined on {dt!r} data (only {allowed})"
    if rule == "unique_problem_id":
        pid = row.get("problem_id")
        others = [i for i in duplicates.get(pid, []) if i != row["record_index"]]
        return f"problem_id {pid!r} is also used by record(s) {', '.join(map(str, others))}"
    if rule == "sft_think_tag":
        return f"the assistant turn does not start with <think>...</think>: {short(row.get('assistant'), 60)}"
    if rule == "sft_answer_tag":
        return f"the assistant turn does not end with <answer>...</answer>: {short(row.get('assistant'), 60)}"
    if rule == "train_eval_disjoint_id" and train is not None:
        pid = row.get("problem_id")
        return f"problem_id {pid!r} is also in training ({train.problem_ids.get(pid, '?')})"
    if rule == "train_eval_disjoint_media" and train is not None:
        hits = [p for p in load_json_cell(row.get("media")) or [] if p in train.media_paths]
        return "; ".join(f"{p} is also used in training ({train.media_paths[p]})" for p in hits) or rule
    if rule == "train_eval_disjoint_content" and train is not None:
        pairs = zip(
            load_json_cell(row.get("media")) or [],
            load_json_cell(row.get("media_sha256")) or [],
            strict=False,
        )
        hits = [(p, h) for p, h in pairs if h in train.media_hashes]
        return (
            "; ".join(
                f"{p} has the same content (sha256 {h[:12]}) as training's {train.media_hashes[h][1]} "
                f"({train.media_hashes[h][0]})"
                for p, h in hits
            )
            or rule
        )
    return f"rule {rule} failed"


def _suite_field(field_name: str, kind: str) -> str:
    """The field an expectation covers, as the report's expectation table names it."""
    from .gx_suite import ANSWER_FIELD, MEDIA_FIELD

    if field_name == ANSWER_FIELD:
        return "messages (assistant turn)" if kind == "sft" else ANSWER_FIELD_OF[kind]
    if field_name == MEDIA_FIELD:
        return "path" if kind == "eval" else "images / videos"
    return field_name


def _field_of(field_name: str, row: Mapping[str, Any]) -> str:
    from .gx_suite import ANSWER_FIELD, MEDIA_FIELD

    if field_name == ANSWER_FIELD:
        return str(row.get("answer_field"))
    if field_name == MEDIA_FIELD:
        return str(row.get("media_key"))
    return field_name


# --------------------------------------------------------------------------------------------------
# One file


def _file_failure(display: str, rule: str, message: str, kind: str | None, n: int, t0: float) -> FileReport:
    outcome = ExpectationOutcome(rule, "", "python", "", False, n, 1)
    return FileReport(
        display, kind, n, [outcome], [Failure(display, rule, message)], time.perf_counter() - t0
    )


def _check_file(
    display: str,
    records: list[Any] | LoadError,
    kind: str | None,
    media_root: Path,
    check_media: bool,
    runner: SuiteRunner,
    train: TrainingIndex | None,
    cross: bool,
) -> tuple[FileReport, list[dict[str, Any]]]:
    """Validate one loaded file; returns its report and its table rows (for the cross-file index)."""
    import pandas as pd

    from .gx_suite import CrossFileSets, build_expectations

    t0 = time.perf_counter()
    if isinstance(records, LoadError):
        return _file_failure(display, records.rule, str(records), kind, 0, t0), []
    kind = kind or infer_kind(records)
    if not records:
        return _file_failure(display, "file_empty", "the file holds no records", kind, 0, t0), []

    ctx = Context(
        media_root=media_root,
        probe=probe_media if check_media else None,
        ground_truth=train.ground_truth if (train is not None and kind == "sft") else {},
    )
    rows, not_objects = build_rows(records, kind, ctx)
    failures = [
        Failure(display, "record_object", f"expected a JSON object, got {short(records[i], 40)}", i)
        for i in not_objects
    ]
    outcomes = [
        ExpectationOutcome("record_object", "", "python", "", not not_objects, len(records), len(not_objects))
    ]
    if rows:
        sets = None
        if cross and train is not None:
            sets = CrossFileSets(
                frozenset(train.problem_ids), frozenset(train.media_paths), frozenset(train.media_hashes)
            )
        df = pd.DataFrame(rows, index=[r["record_index"] for r in rows])
        results = runner.run(df, build_expectations(kind, check_media, sets), name=Path(display).stem)
        by_index = {r["record_index"]: r for r in rows}
        duplicates: dict[str, list[int]] = defaultdict(list)
        for r in rows:
            if r["problem_id"] is not None:
                duplicates[r["problem_id"]].append(r["record_index"])
        for res in results:
            outcomes.append(
                ExpectationOutcome(
                    res.rule,
                    _suite_field(res.field, kind),
                    res.expectation_type,
                    res.column,
                    res.success,
                    res.element_count,
                    len(res.unexpected_indices),
                    res.error,
                )
            )
            if res.error is not None:
                failures.append(
                    Failure(
                        display, res.rule, f"expectation {res.expectation_type} could not run: {res.error}"
                    )
                )
                continue
            if not res.success and not res.unexpected_indices:
                message = f"expectation {res.expectation_type} on {res.column} failed without naming records"
                failures.append(Failure(display, res.rule, message))
            for i in res.unexpected_indices:
                row = by_index.get(i)
                if row is None:  # pragma: no cover - GE reports DataFrame index values, i.e. record indices
                    failures.append(Failure(display, res.rule, f"failed on unknown row {i}"))
                    continue
                failures.append(
                    Failure(
                        file=display,
                        rule=res.rule,
                        message=_explain(res.rule, res.field, row, records[i], kind, train, duplicates),
                        index=i,
                        problem_id=row.get("problem_id"),
                        field=_field_of(res.field, row),
                    )
                )
    failures.sort(key=lambda f: (f.index if f.index is not None else -1, f.rule, f.field or ""))
    report = FileReport(display, kind, len(records), outcomes, failures, time.perf_counter() - t0)
    return report, rows


def _load(path: Path) -> list[Any] | LoadError:
    try:
        return load_records(path)
    except LoadError as exc:
        return exc


def validate_file(
    path: str | Path,
    kind: FileKind | None = None,
    media_root: str | Path | None = None,
    check_media: bool = True,
) -> FileReport:
    """Validate one OneThinker-format file.

    ``kind`` is inferred from the records' fields when None (``messages`` -> sft; ``solution``/``path`` ->
    eval; else rl). Media paths are resolved under ``media_root`` (default: the file's folder).
    ``check_media=False`` skips decoding and hashing (existence is still checked).
    """
    from .gx_suite import SuiteRunner

    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)} or None, got {kind!r}")
    path = Path(path)
    root = Path(media_root) if media_root is not None else path.parent
    report, _ = _check_file(str(path), _load(path), kind, root, check_media, SuiteRunner(), None, cross=False)
    return report


def _resolve(data_root: Path, files: Sequence[str | Path] | None, sub: str) -> list[Path]:
    if files is None:
        folder = data_root / sub
        return (
            sorted(p for p in folder.glob("*.json*") if p.suffix in (".json", ".jsonl"))
            if folder.is_dir()
            else []
        )
    out = []
    for f in files:
        p = Path(f)
        if not p.is_absolute() and not (data_root / p).exists() and p.exists():
            out.append(p)  # already relative to the working directory
        else:
            out.append(p if p.is_absolute() else data_root / p)
    return out


def validate_dataset(
    data_root: str | Path,
    media_root: str | Path,
    cfg: ValidateConfig | None = None,
    train_files: Sequence[str | Path] | None = None,
    eval_files: Sequence[str | Path] | None = None,
) -> DatasetReport:
    """Validate training and evaluation files together.

    ``train_files`` / ``eval_files``: paths relative to ``data_root`` (or absolute; a relative path that
    exists as given and not under ``data_root`` is used as is); None finds ``data_root/train/*.json`` and
    ``data_root/eval/*.json``. Every file gets its suite; SFT answers are checked against the RL file's
    ground truth when the SFT records lack it; evaluation files must share no problem id, media path or
    media content with training. ``cfg.check_media=False`` skips decoding and hashing.
    """
    from .gx_suite import SuiteRunner

    cfg = cfg or ValidateConfig()
    t0 = time.perf_counter()
    data_root, media_root = Path(data_root), Path(media_root)
    runner = SuiteRunner()
    train = TrainingIndex()
    loaded_train = [(p, _load(p)) for p in _resolve(data_root, train_files, "train")]
    kinds = {p: (None if isinstance(recs, LoadError) else infer_kind(recs)) for p, recs in loaded_train}
    loaded_train.sort(key=lambda item: kinds[item[0]] != "rl")  # RL first: SFT joins on its answers
    reports: dict[Path, FileReport] = {}
    for path, records in loaded_train:
        report, rows = _check_file(
            str(path), records, kinds[path], media_root, cfg.check_media, runner, train, cross=False
        )
        train.add_rows(str(path), report.kind or "rl", rows)
        reports[path] = report
    files = [reports[p] for p in _resolve(data_root, train_files, "train")]  # in the order given
    for path in _resolve(data_root, eval_files, "eval"):
        report, _ = _check_file(
            str(path), _load(path), None, media_root, cfg.check_media, runner, train, cross=True
        )
        files.append(report)
    return DatasetReport(files=files, elapsed_s=time.perf_counter() - t0)
