"""Data validation: Great Expectations suites over OneThinker RL, SFT and evaluation files.

Public API:

- ``validate_file(path, kind=None, media_root=None, check_media=True) -> FileReport``
- ``validate_dataset(train_files, eval_files, cfg) -> DatasetReport`` (``FileSpec(path, root, kind)`` each)
- ``validate_prepared(prepared_data, cfg) -> DatasetReport`` (the files of a prepared data folder)
- ``write_reports(report, out_dir) -> {"summary": Path, "html": Path}``

A report's ``ok`` is False when any rule failed; ``failures`` lists them, each naming the file, the
record (index and problem_id), the field and the rule id (catalogue: ``RULES``). Great Expectations is
imported only when a validation runs.
"""

from __future__ import annotations

from .core import FileSpec, validate_dataset, validate_file, validate_prepared
from .report import DatasetReport, ExpectationOutcome, Failure, FileReport, write_reports
from .rules import RULES, RuleSpec

__all__ = [
    "RULES",
    "DatasetReport",
    "ExpectationOutcome",
    "Failure",
    "FileSpec",
    "FileReport",
    "RuleSpec",
    "validate_dataset",
    "validate_file",
    "validate_prepared",
    "write_reports",
]
