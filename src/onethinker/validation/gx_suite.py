"""Great Expectations suites over the tabular view of a OneThinker file.

Importing this module imports Great Expectations (3-4 s) and registers the custom expectations, so the
rest of the package imports it lazily, inside functions.

The suite of a file mixes GE's built-in expectations (schema: not null, in set, regex, unique, not in
set) with three custom ones:

- ``ExpectRecordsToSatisfyRule`` / ``ExpectAnswersToMatchTaskShape`` / ``ExpectMediaToBeValid``: one
  ``MulticolumnMapExpectation`` family whose ``rule`` names a pure row check in ``rules.ROW_CHECKS``
  (record structure, answer shapes, media files). One expectation per rule, so the report has a
  pass/fail line per rule.
- ``ExpectColumnJsonListsToNotIntersectSet``: a ``ColumnMapExpectation`` for rules on JSON-list columns
  (kept for suites that compare lists of values against a set).

Every expectation carries ``meta = {"rule": id, "field": name}``; ``run_suite`` maps GE's
``unexpected_index_list`` (the DataFrame index is the record index) back to rule, field and records.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import great_expectations as gx
import pandas as pd
from great_expectations.data_context.types.base import ProgressBarsConfig
from great_expectations.execution_engine import PandasExecutionEngine
from great_expectations.expectations import (
    ExpectColumnValuesToBeInSet,
    ExpectColumnValuesToBeUnique,
    ExpectColumnValuesToMatchRegex,
    ExpectColumnValuesToNotBeInSet,
    ExpectColumnValuesToNotBeNull,
)
from great_expectations.expectations.expectation import ColumnMapExpectation, MulticolumnMapExpectation
from great_expectations.expectations.metrics import column_condition_partial
from great_expectations.expectations.metrics.map_metric_provider import (
    ColumnMapMetricProvider,
    MulticolumnMapMetricProvider,
)
from great_expectations.expectations.metrics.map_metric_provider.multicolumn_condition_partial import (
    multicolumn_condition_partial,
)

from onethinker.contract.records import FIELD_TYPES, REQUIRED
from onethinker.contract.tasks import RELEASE_DATA_TYPES, TASK_PAIRS

from .rules import ANSWER_RULES, KNOWN_PROBLEM_TYPES, ROW_CHECKS, SFT_ANSWER_TAG, SFT_THINK_TAG, run_check

ANSWER_FIELD = "@answer"  # resolved per row to the record's answer field
MEDIA_FIELD = "@media"  # resolved per row to 'images' / 'videos' / 'path'

# --------------------------------------------------------------------------------------------------
# Custom metrics and expectations


def _nulls_to_none(row: dict[str, Any]) -> dict[str, Any]:
    """GE hands object columns over with NaN for None; the checks expect None for a missing cell."""
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}


class RowRuleHolds(MulticolumnMapMetricProvider):
    """Row-wise: the pure check ``rules.ROW_CHECKS[rule]`` passes on the row's columns."""

    condition_metric_name = "multicolumn_values.onethinker_row_rule"
    condition_domain_keys = (
        "batch_id",
        "table",
        "column_list",
        "row_condition",
        "condition_parser",
        "ignore_row_if",
    )
    condition_value_keys = ("rule",)

    @multicolumn_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column_list: pd.DataFrame, **kwargs: Any) -> pd.Series:
        rule = kwargs["rule"]
        rows = column_list.to_dict("records")
        return pd.Series(
            [run_check(rule, _nulls_to_none(r)) is None for r in rows], index=column_list.index, dtype=bool
        )


class _RowRuleExpectation(MulticolumnMapExpectation):
    """Base of the row-rule expectations: ``rule`` names the check, ``column_list`` its columns."""

    rule: str
    ignore_row_if: str = "never"
    map_metric: ClassVar[str] = "multicolumn_values.onethinker_row_rule"
    success_keys: ClassVar[tuple[str, ...]] = ("mostly", "rule")


class ExpectRecordsToSatisfyRule(_RowRuleExpectation):
    """Each record satisfies a structural rule (media keys, options, segmentation truth, SFT turns, SFT answer)."""


class ExpectAnswersToMatchTaskShape(_RowRuleExpectation):
    """Each record's answer has its task's shape (letter, number, JSON boxes, spans, points)."""


class ExpectMediaToBeValid(_RowRuleExpectation):
    """Each record's media files exist, decode, and are of the declared data_type."""


class ColumnJsonListDisjoint(ColumnMapMetricProvider):
    """A cell holding a JSON list shares no element with ``value_set``."""

    condition_metric_name = "column_values.onethinker_json_list_disjoint"
    condition_value_keys = ("value_set",)

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column: pd.Series, **kwargs: Any) -> pd.Series:
        forbidden = frozenset(kwargs["value_set"])
        return column.map(lambda text: not forbidden.intersection(json.loads(text)))


class ExpectColumnJsonListsToNotIntersectSet(ColumnMapExpectation):
    """No element of a JSON-list column is in ``value_set`` (e.g. eval media paths vs training's)."""

    value_set: list[str]
    map_metric: ClassVar[str] = "column_values.onethinker_json_list_disjoint"
    success_keys: ClassVar[tuple[str, ...]] = ("mostly", "value_set")


# --------------------------------------------------------------------------------------------------
# Suites


@dataclass(frozen=True)
class CrossFileSets:
    """Training's content keys (media + question), for an evaluation file's suite."""

    content_keys: frozenset[str]


def _meta(rule: str, field: str) -> dict[str, str]:
    return {"rule": rule, "field": field}


def _row_rule(cls: type[_RowRuleExpectation], rule: str, field: str) -> Any:
    columns = list(ROW_CHECKS[rule][0])
    if len(columns) < 2:  # pragma: no cover - every registered check reads 2+ columns
        raise ValueError(f"rule {rule} must read at least 2 columns")
    return cls(column_list=columns, rule=rule, meta=_meta(rule, field))


def build_expectations(kind: str, check_media: bool, cross: CrossFileSets | None = None) -> list[Any]:
    """The expectations of a file of ``kind`` (``rl``, ``sft`` or ``eval``)."""
    exps: list[Any] = []
    fields = FIELD_TYPES[kind]
    for name in REQUIRED[kind]:
        exps.append(ExpectColumnValuesToNotBeNull(column=f"{name}__type", meta=_meta("required_field", name)))
    for name, types in fields.items():
        exps.append(
            ExpectColumnValuesToBeInSet(
                column=f"{name}__type",
                value_set=list(types),
                meta=_meta("field_type", name),
            )
        )
    exps += [
        ExpectColumnValuesToBeInSet(
            column="problem_type_norm",
            value_set=list(KNOWN_PROBLEM_TYPES),
            meta=_meta("problem_type_known", "problem_type"),
        ),
        ExpectColumnValuesToBeInSet(
            column="data_type_norm",
            value_set=list(RELEASE_DATA_TYPES if kind == "eval" else ("image", "video")),
            meta=_meta("data_type_known", "data_type"),
        ),
        ExpectColumnValuesToBeInSet(
            column="task_pair",
            value_set=[f"{p.problem_type}/{p.data_type}" for p in TASK_PAIRS],
            meta=_meta("task_pair", "data_type"),
        ),
        ExpectColumnValuesToBeUnique(column="problem_id", meta=_meta("unique_problem_id", "problem_id")),
        _row_rule(ExpectRecordsToSatisfyRule, "options_format", "options"),
        _row_rule(ExpectRecordsToSatisfyRule, "prompt_length", "messages" if kind == "sft" else "problem"),
    ]
    exps.append(_row_rule(ExpectRecordsToSatisfyRule, "media_field", MEDIA_FIELD))
    if kind == "rl":
        exps.append(_row_rule(ExpectRecordsToSatisfyRule, "media_tokens", "problem"))
    if kind == "eval":
        exps.append(_row_rule(ExpectRecordsToSatisfyRule, "segmentation_truth", "segmentation_output"))
    exps += [_row_rule(ExpectAnswersToMatchTaskShape, rule, ANSWER_FIELD) for rule in ANSWER_RULES]
    if kind == "sft":
        exps += [
            _row_rule(ExpectRecordsToSatisfyRule, "sft_messages", "messages"),
            _row_rule(ExpectRecordsToSatisfyRule, "media_tokens", "messages"),
            ExpectColumnValuesToMatchRegex(
                column="assistant",
                regex=SFT_THINK_TAG,
                meta=_meta("sft_think_tag", ANSWER_FIELD),
            ),
            ExpectColumnValuesToMatchRegex(
                column="assistant",
                regex=SFT_ANSWER_TAG,
                meta=_meta("sft_answer_tag", ANSWER_FIELD),
            ),
            _row_rule(ExpectRecordsToSatisfyRule, "sft_answer_matches", ANSWER_FIELD),
            _row_rule(ExpectRecordsToSatisfyRule, "response_length", ANSWER_FIELD),
        ]
    exps.append(_row_rule(ExpectMediaToBeValid, "media_in_root", MEDIA_FIELD))
    exps.append(_row_rule(ExpectMediaToBeValid, "media_exists", MEDIA_FIELD))
    if check_media:
        exps.append(_row_rule(ExpectMediaToBeValid, "media_decodes", MEDIA_FIELD))
        exps.append(_row_rule(ExpectMediaToBeValid, "media_type", MEDIA_FIELD))
    if cross is not None:
        exps.append(
            ExpectColumnValuesToNotBeInSet(
                column="content_key",
                value_set=sorted(cross.content_keys),
                meta=_meta("train_eval_disjoint", MEDIA_FIELD),
            )
        )
    return exps


@dataclass(frozen=True)
class SuiteOutcome:
    """One expectation's verdict, free of GE types."""

    rule: str
    field: str
    expectation_type: str
    column: str
    success: bool
    element_count: int
    unexpected_indices: tuple[int, ...]
    error: str | None = None


def _exception_message(info: Any) -> str | None:
    """GE's exception_info is either one info dict or a mapping of metric id to info dicts."""
    if not info:
        return None
    infos = [info] if "raised_exception" in info else list(info.values())
    for item in infos:
        if isinstance(item, dict) and item.get("raised_exception"):
            return str(item.get("exception_message") or "exception in expectation")
    return None


class SuiteRunner:
    """An ephemeral GE context that validates one DataFrame per call (each with its own asset)."""

    def __init__(self) -> None:
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        self._count = 0

    def run(self, df: pd.DataFrame, expectations: Sequence[Any], name: str) -> list[SuiteOutcome]:
        """Validate ``df`` (index = record index) against ``expectations``; COMPLETE results."""
        self._count += 1
        tag = f"{self._count:04d}-{name}"
        source = self.context.data_sources.add_pandas(name=f"source-{tag}")
        asset = source.add_dataframe_asset(name=f"asset-{tag}")
        batch = asset.add_batch_definition_whole_dataframe(name=f"batch-{tag}")
        # one add of the whole suite: add_expectation() re-serialises the suite on every call
        for order, exp in enumerate(expectations):  # GE returns results in its own order; restore ours
            exp.meta = {**(exp.meta or {}), "order": order}
        suite = self.context.suites.add(
            gx.ExpectationSuite(name=f"suite-{tag}", expectations=list(expectations))
        )
        definition = self.context.validation_definitions.add(
            gx.ValidationDefinition(name=f"validation-{tag}", data=batch, suite=suite)
        )
        result = definition.run(
            batch_parameters={"dataframe": df},
            result_format={"result_format": "COMPLETE", "return_unexpected_index_query": False},
        )
        outcomes = []
        for res in sorted(
            result.results, key=lambda r: (r.expectation_config.meta or {}).get("order", 1 << 30)
        ):
            cfg = res.expectation_config
            meta = cfg.meta or {}
            details = res.result or {}
            indices = tuple(
                int(i) for i in details.get("unexpected_index_list") or [] if not isinstance(i, dict)
            )
            kwargs = cfg.kwargs or {}
            outcomes.append(
                SuiteOutcome(
                    rule=str(meta.get("rule", cfg.type)),
                    field=str(meta.get("field", "")),
                    expectation_type=cfg.type,
                    column=str(kwargs.get("column") or ", ".join(kwargs.get("column_list") or [])),
                    success=bool(res.success),
                    element_count=int(details.get("element_count") or len(df)),
                    unexpected_indices=indices,
                    error=_exception_message(res.exception_info),
                )
            )
        return outcomes
