"""Validate OneThinker files: per-file expectation suites plus the cross-file checks.

``validate_file`` checks one RL, SFT or evaluation file; ``validate_dataset`` checks training and
evaluation files together, each with its named media root (``validate_prepared``: the files of a prepared
data folder, from its manifest):

1. each file is read (a malformed file is a ``file_json`` / ``file_readable`` failure naming the
   position), turned into a table (``table.build_rows``, through the data contract) and run through its GE
   suite (``gx_suite.build_expectations``);
2. RL files go first, so SFT records get their task and ground truth by the contract's SFT task rule
   (joining the RL record with the same media and question);
3. evaluation files are checked against everything training holds, by content: no evaluation record may
   have a training record's media (content hash, or resolved path without ``check_media``) and question.
   Ids are unique within a file only (the release numbers each file on its own), so they are not compared
   across files.

GE's unexpected indices are record indices; each is explained by the rule's own message function, so a
failure reads ``file: record i (problem_id=...): field '...': rule ...: message``. Each file's report also
counts the fields the pipeline does not read (kept, never dropped) and, for SFT files, how tasks were derived.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from onethinker.config import ValidateConfig
from onethinker.contract.checks import LengthLimits
from onethinker.contract.io import RecordFileError, read_raw
from onethinker.contract.manifest import PreparedData
from onethinker.contract.media import MediaRoot
from onethinker.contract.records import ANSWER_FIELD as ANSWER_FIELD_OF
from onethinker.contract.records import FIELD_TYPES, KINDS, TaskIndex, Where, infer_kind, parse_record
from onethinker.contract.tasks import PROBLEM_TYPES, RELEASE_DATA_TYPES, allowed_data_types

from .media_probe import probe_media
from .report import DatasetReport, ExpectationOutcome, Failure, FileReport
from .rules import ROW_CHECKS, load_json_cell, run_check, short
from .table import Context, build_rows

if TYPE_CHECKING:
    from .gx_suite import SuiteRunner

FileKind = Literal["rl", "sft", "eval"]


@dataclass(frozen=True)
class FileSpec:
    """A file to validate: its path, its media root and its kind (None: inferred from its records)."""

    path: Path
    root: MediaRoot
    kind: str | None = None


@dataclass
class TrainingIndex:
    """Training's records by content (for the disjointness rule) and its RL records (for the SFT task rule)."""

    content_keys: dict[str, str] = field(default_factory=dict)  # content key -> "file record i"
    tasks: TaskIndex = field(default_factory=TaskIndex)

    def add_rows(self, display: str, rows: Iterable[Mapping[str, Any]]) -> None:
        for row in rows:
            key = row.get("content_key")
            if key is not None:
                self.content_keys.setdefault(key, f"{display} record {row['record_index']}")

    def add_rl_records(self, display: str, records: Sequence[Any]) -> None:
        for i, rec in enumerate(records):
            try:
                self.tasks.add(parse_record(rec, "rl", Where(display, i)))
            except ValueError:
                continue  # a bad RL record is reported by its own file's suite


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
        return "required field is missing" if field_name not in record else "required field is null"
    if rule == "field_type":
        types = " or ".join(FIELD_TYPES[kind][field_name])
        return f"expected {types}, got {row.get(f'{field_name}__type')} {short(value)}"
    if rule == "problem_type_known":
        return f"unknown problem_type {short(record.get('problem_type'))} (known: {', '.join(PROBLEM_TYPES)})"
    if rule == "data_type_known":
        allowed = RELEASE_DATA_TYPES if kind == "eval" else ("image", "video")
        return (
            f"unknown data_type {short(record.get('data_type', row.get('data_type_norm')))} "
            f"(expected {' or '.join(map(repr, allowed))})"
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
    if rule == "train_eval_disjoint" and train is not None:
        where = train.content_keys.get(row.get("content_key"), "?")
        paths = ", ".join(load_json_cell(row.get("media")) or [])
        return f"the same media ({paths}) and question as training's {where}"
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
    records: list[Any] | RecordFileError,
    kind: str | None,
    root: MediaRoot,
    check_media: bool,
    runner: SuiteRunner,
    train: TrainingIndex | None,
    cross: bool,
    limits: LengthLimits,
) -> tuple[FileReport, list[dict[str, Any]]]:
    """Validate one loaded file; returns its report and its table rows (for the cross-file index)."""
    import pandas as pd

    from .gx_suite import CrossFileSets, build_expectations

    t0 = time.perf_counter()
    if isinstance(records, RecordFileError):
        return _file_failure(display, records.rule, records.reason, kind, 0, t0), []
    kind = kind or infer_kind(records)
    if not records:
        return _file_failure(display, "file_empty", "the file holds no records", kind, 0, t0), []

    ctx = Context(
        root=root,
        probe=probe_media if check_media else None,
        index=train.tasks if (train is not None and kind == "sft") else None,
        display=display,
        limits=limits,
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
        sets = CrossFileSets(frozenset(train.content_keys)) if cross and train is not None else None
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
    extra: Counter = Counter()
    for r in rows:
        extra.update(json.loads(r["extra_fields"]))
    report.extra_fields = dict(sorted(extra.items()))
    if kind == "sft":
        report.task_sources = dict(
            sorted(Counter(r["task_source"] for r in rows if r["task_source"]).items())
        )
    return report, rows


def _load(path: Path) -> list[Any] | RecordFileError:
    try:
        return read_raw(path)
    except RecordFileError as exc:
        return exc


def validate_file(
    path: str | Path,
    kind: FileKind | None = None,
    media_root: str | Path | None = None,
    check_media: bool = True,
    limits: LengthLimits | None = None,
) -> FileReport:
    """Validate one OneThinker-format file.

    ``kind`` is inferred from the records' fields when None (``messages`` -> sft; ``solution``/``path`` ->
    eval; else rl). Media paths are resolved under ``media_root`` (default: the file's folder) by the
    release's rule for the kind. ``check_media=False`` skips decoding and hashing (existence is still checked).
    An SFT file checked alone gets its tasks from its own fields, the instruction text or the answers' shape.
    ``limits``: the length rules' limits (default: ``ValidateConfig``'s).
    """
    from .gx_suite import SuiteRunner

    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)} or None, got {kind!r}")
    path = Path(path)
    root = MediaRoot("media", Path(media_root) if media_root is not None else path.parent)
    limits = limits or ValidateConfig().limits
    report, _ = _check_file(
        str(path), _load(path), kind, root, check_media, SuiteRunner(), None, cross=False, limits=limits
    )
    return report


def validate_dataset(
    train_files: Sequence[FileSpec],
    eval_files: Sequence[FileSpec],
    cfg: ValidateConfig | None = None,
    limits: LengthLimits | None = None,
) -> DatasetReport:
    """Validate training and evaluation files together, each file's media under its own root.

    RL files are checked first, so SFT records get their task and ground truth from the RL record they join;
    evaluation records must share no media-and-question with a training record. ``cfg.check_media=False``
    skips decoding and hashing (media are then compared by resolved path). ``limits``: the length rules'
    limits (default: ``ValidateConfig``'s).
    """
    from .gx_suite import SuiteRunner

    cfg = cfg or ValidateConfig()
    limits = limits or ValidateConfig().limits
    t0 = time.perf_counter()
    runner = SuiteRunner()
    train = TrainingIndex()
    loaded = [(spec, _load(spec.path)) for spec in train_files]
    kinds = {
        spec.path: spec.kind or (None if isinstance(recs, RecordFileError) else infer_kind(recs))
        for spec, recs in loaded
    }
    for spec, recs in loaded:  # RL first: SFT records join on them
        if kinds[spec.path] == "rl" and not isinstance(recs, RecordFileError):
            train.add_rl_records(str(spec.path), recs)
    reports: dict[Path, FileReport] = {}
    for spec, records in sorted(loaded, key=lambda item: kinds[item[0].path] != "rl"):
        report, rows = _check_file(
            str(spec.path),
            records,
            kinds[spec.path],
            spec.root,
            cfg.check_media,
            runner,
            train,
            cross=False,
            limits=limits,
        )
        train.add_rows(str(spec.path), rows)
        reports[spec.path] = report
    files = [reports[spec.path] for spec in train_files]  # in the order given
    for spec in eval_files:
        report, _ = _check_file(
            str(spec.path),
            _load(spec.path),
            spec.kind,
            spec.root,
            cfg.check_media,
            runner,
            train,
            cross=True,
            limits=limits,
        )
        files.append(report)
    return DatasetReport(files=files, elapsed_s=time.perf_counter() - t0)


def validate_prepared(
    data: PreparedData, cfg: ValidateConfig | None = None, limits: LengthLimits | None = None
) -> DatasetReport:
    """Validate the files of a prepared data folder, as its manifest lists them (kinds and media roots)."""
    specs = [FileSpec(data.path(f), data.root_of(f), f.kind) for f in data.manifest.files]
    train = [s for s in specs if s.kind != "eval"]
    evals = [s for s in specs if s.kind == "eval"]
    return validate_dataset(train, evals, cfg, limits)
