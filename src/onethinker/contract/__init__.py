"""The data contract: the only code that knows the release's record layouts, the answer syntax, the
per-task answer schemas, the prompt rule and where media live. Every stage and the served model import it.

- :mod:`~onethinker.contract.tasks`: the task table (problem types, modalities, slugs, EMA keys);
- :mod:`~onethinker.contract.answers`: ``<think>``/``<answer>`` syntax and the one answer parser;
- :mod:`~onethinker.contract.schema`: the per-task answer schema (keys, shapes) and its field readers;
- :mod:`~onethinker.contract.prompts`: the release's templates and the prompt rule;
- :mod:`~onethinker.contract.records`: typed RL / SFT / evaluation records, the record-kind, ground-truth
  and SFT-task rules, ``RecordError`` (file, record, field, rule);
- :mod:`~onethinker.contract.media`: named media roots and the release's path rules;
- :mod:`~onethinker.contract.checks`: length limits and media confined to their root (validation and stages);
- :mod:`~onethinker.contract.io`: reading and writing record files;
- :mod:`~onethinker.contract.manifest`: the typed manifest of a prepared data folder.

Check one record: ``parse_record(raw, kind)`` (raises ``RecordError``); resolve one media path:
``MediaRoot(name, folder).resolve(path, kind)``.
"""

from onethinker.contract.answers import (
    extract_answer,
    format_response,
    graded_answer,
    split_response,
    truth_answer,
    wrap_answer,
)
from onethinker.contract.io import RecordFileError, read_raw, read_records, write_records
from onethinker.contract.manifest import (
    Manifest,
    ManifestError,
    ManifestFile,
    PreparedData,
    RootRef,
    read_manifest,
    write_manifest,
)
from onethinker.contract.media import EVAL_ROOT, TRAIN_ROOT, MediaRoot, resolve_media
from onethinker.contract.prompts import PromptStyle, build_messages, render_prompt
from onethinker.contract.records import (
    EvalRecord,
    Media,
    Record,
    RecordError,
    RLRecord,
    SFTRecord,
    TaskIndex,
    Where,
    parse_record,
    parse_records,
    record_kind,
)
from onethinker.contract.schema import AnswerSchema, schema_for

__all__ = [
    "EVAL_ROOT",
    "TRAIN_ROOT",
    "AnswerSchema",
    "EvalRecord",
    "Manifest",
    "ManifestError",
    "ManifestFile",
    "Media",
    "MediaRoot",
    "PreparedData",
    "PromptStyle",
    "RLRecord",
    "Record",
    "RecordError",
    "RecordFileError",
    "RootRef",
    "SFTRecord",
    "TaskIndex",
    "Where",
    "build_messages",
    "extract_answer",
    "format_response",
    "graded_answer",
    "parse_record",
    "parse_records",
    "read_manifest",
    "read_raw",
    "read_records",
    "record_kind",
    "render_prompt",
    "resolve_media",
    "schema_for",
    "split_response",
    "truth_answer",
    "wrap_answer",
    "write_manifest",
    "write_records",
]
