"""The promotion gate, as pure functions: scores in, a decision with its reasons out.

A candidate replaces the current champion only if

1. its aggregate score (``mean_accuracy`` of its entry in ``metrics/eval.json``) is at least the champion's
   plus ``gate.margin``, and
2. no task's accuracy drops below the champion's by more than ``gate.task_tolerance`` (a task the champion
   was scored on but the candidate was not counts as a failure: the drop cannot be ruled out).

With no champion yet (or a champion whose version carries no scores, e.g. one set by hand), the candidate
must instead reach the absolute floors ``gate.floors.mean_accuracy`` and ``gate.floors.format_rate``.

Scores are only comparable on the same evaluation sample: ``metrics/eval.json`` carries a ``sample``
fingerprint (the questions and the generation settings), kept on each version as ``eval.sample``. A champion
scored on another sample (or on an unknown one) fails the ``sample`` check; the ``register`` stage first
re-scores such a champion on the current sample (``register_version(rescore=...)``), so the comparison is fair.

Comparisons allow 1e-9 of float slack, so a margin of exactly 0.01 passes at an improvement of 0.01.
Scores travel with each model version as tags (``eval.mean_accuracy``, ``eval.format_rate``,
``eval.task.<slug>``), so the gate needs nothing but the registry to compare two versions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from onethinker.registry.config import GateConfig

EPS = 1e-9
TAG_AGGREGATE = "eval.mean_accuracy"
TAG_FORMAT = "eval.format_rate"
TAG_TASK_PREFIX = "eval.task."
TAG_SAMPLE = "eval.sample"


class ScoresError(ValueError):
    """The evaluation metrics lack what the gate needs (names the file's key)."""


@dataclass(frozen=True)
class Scores:
    """What the gate compares: the aggregate, the format rate and per-task accuracy (task slug -> [0, 1])."""

    mean_accuracy: float
    format_rate: float | None = None
    tasks: Mapping[str, float] = field(default_factory=dict)
    sample: str | None = None
    """Fingerprint of the evaluation sample the scores come from (None: unknown, e.g. older versions)."""


@dataclass(frozen=True)
class Check:
    """One gate condition: a short name (``aggregate``, ``task:ocr``, ``floor:format_rate``), its outcome and
    a human-readable message with the numbers."""

    name: str
    passed: bool
    message: str


@dataclass(frozen=True)
class GateDecision:
    """The gate's verdict. ``reasons``: the failed checks' messages when refused, all messages when passed."""

    passed: bool
    checks: tuple[Check, ...]
    champion_version: str | None = None
    """The version compared against; None when the floors were used."""

    @property
    def decision(self) -> str:
        return "promoted" if self.passed else "refused"

    @property
    def reasons(self) -> tuple[str, ...]:
        if self.passed:
            return tuple(c.message for c in self.checks)
        return tuple(c.message for c in self.checks if not c.passed)

    @property
    def failed(self) -> tuple[str, ...]:
        """Names of the failed checks (``task:ocr`` ...)."""
        return tuple(c.name for c in self.checks if not c.passed)


# --------------------------------------------------------------------------------------------------
# Scores from metrics/eval.json and from version tags


def _finite(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    return float(x) if math.isfinite(float(x)) else None


def scores_from_eval(eval_metrics: Mapping[str, Any], model_key: str) -> Scores:
    """The gate's scores for ``model_key`` from ``metrics/eval.json``'s content.

    ``{"models": {model_key: {"mean_accuracy": f, "format_rate": f, "tasks": {slug: {"accuracy": f}}}}}``.
    Tasks whose accuracy is missing or not a finite number are left out.
    """
    models = eval_metrics.get("models")
    if not isinstance(models, Mapping) or model_key not in models:
        have = ", ".join(sorted(models)) if isinstance(models, Mapping) else "nothing"
        raise ScoresError(f"eval metrics have no entry 'models.{model_key}' (have: {have})")
    entry = models[model_key]
    if not isinstance(entry, Mapping):
        raise ScoresError(f"models.{model_key}: expected a mapping")
    agg = _finite(entry.get("mean_accuracy"))
    if agg is None:
        raise ScoresError(
            f"models.{model_key}.mean_accuracy: expected a finite number, got {entry.get('mean_accuracy')!r}"
        )
    tasks: dict[str, float] = {}
    for slug, metrics in (entry.get("tasks") or {}).items():
        acc = _finite(metrics.get("accuracy")) if isinstance(metrics, Mapping) else None
        if acc is not None:
            tasks[str(slug)] = acc
    sample = eval_metrics.get("sample")
    return Scores(
        agg,
        _finite(entry.get("format_rate")),
        dict(sorted(tasks.items())),
        sample if isinstance(sample, str) and sample else None,
    )


def scores_to_tags(scores: Scores) -> dict[str, str]:
    """Version tags carrying the scores (``repr`` keeps full float precision)."""
    tags = {TAG_AGGREGATE: repr(scores.mean_accuracy)}
    if scores.format_rate is not None:
        tags[TAG_FORMAT] = repr(scores.format_rate)
    if scores.sample is not None:
        tags[TAG_SAMPLE] = scores.sample
    tags.update({f"{TAG_TASK_PREFIX}{slug}": repr(acc) for slug, acc in scores.tasks.items()})
    return tags


def scores_from_tags(tags: Mapping[str, str]) -> Scores | None:
    """The inverse of :func:`scores_to_tags`; None when the version carries no aggregate score."""

    def num(v: str | None) -> float | None:
        try:
            return _finite(float(v)) if v is not None else None
        except ValueError:
            return None

    agg = num(tags.get(TAG_AGGREGATE))
    if agg is None:
        return None
    tasks = {k[len(TAG_TASK_PREFIX) :]: num(v) for k, v in tags.items() if k.startswith(TAG_TASK_PREFIX)}
    return Scores(
        agg,
        num(tags.get(TAG_FORMAT)),
        {k: v for k, v in sorted(tasks.items()) if v is not None},
        tags.get(TAG_SAMPLE) or None,
    )


# --------------------------------------------------------------------------------------------------
# The gate


def check_floors(candidate: Scores, gate: GateConfig) -> list[Check]:
    """Absolute floors (first champion)."""
    floors = gate.floors
    checks = [
        Check(
            "floor:mean_accuracy",
            candidate.mean_accuracy + EPS >= floors.mean_accuracy,
            f"mean_accuracy {candidate.mean_accuracy:.4f} "
            f"{'>=' if candidate.mean_accuracy + EPS >= floors.mean_accuracy else '<'} floor {floors.mean_accuracy:.4f}",
        )
    ]
    if candidate.format_rate is None:
        checks.append(
            Check(
                "floor:format_rate",
                floors.format_rate <= 0.0,
                f"format_rate missing (floor {floors.format_rate:.4f})",
            )
        )
    else:
        ok = candidate.format_rate + EPS >= floors.format_rate
        checks.append(
            Check(
                "floor:format_rate",
                ok,
                f"format_rate {candidate.format_rate:.4f} {'>=' if ok else '<'} "
                f"floor {floors.format_rate:.4f}",
            )
        )
    return checks


def check_against_champion(
    candidate: Scores, champion: Scores, gate: GateConfig, champion_version: str | None = None
) -> list[Check]:
    """Aggregate margin, then every task the champion was scored on."""
    who = f"champion v{champion_version}" if champion_version else "champion"
    gain = candidate.mean_accuracy - champion.mean_accuracy
    ok = gain + EPS >= gate.margin
    checks = [
        Check(
            "aggregate",
            ok,
            f"mean_accuracy {candidate.mean_accuracy:.4f} vs {who} {champion.mean_accuracy:.4f}: "
            f"{gain:+.4f} {'>=' if ok else '<'} margin {gate.margin:.4f}",
        )
    ]
    worst: tuple[float, str] | None = None
    for slug, before in champion.tasks.items():
        after = candidate.tasks.get(slug)
        if after is None:
            checks.append(
                Check(
                    f"task:{slug}", False, f"task {slug}: not scored for the candidate ({who} {before:.4f})"
                )
            )
            continue
        drop = before - after
        if drop > gate.task_tolerance + EPS:
            checks.append(
                Check(
                    f"task:{slug}",
                    False,
                    f"task {slug} dropped {drop:.4f} ({before:.4f} -> {after:.4f}) "
                    f"> tolerance {gate.task_tolerance:.4f}",
                )
            )
        elif worst is None or drop > worst[0]:
            worst = (drop, slug)
    if not any(c.name.startswith("task:") for c in checks):
        detail = f"; largest drop {worst[1]} {worst[0]:+.4f}" if worst and worst[0] > 0 else ""
        checks.append(
            Check("tasks", True, f"no task dropped more than tolerance {gate.task_tolerance:.4f}{detail}")
        )
    return checks


def comparable(candidate: Scores, champion: Scores) -> bool:
    """Both scored on the same evaluation sample (or the candidate's sample is unknown: nothing to check)."""
    return candidate.sample is None or champion.sample == candidate.sample


def decide(
    candidate: Scores, champion: Scores | None, gate: GateConfig, champion_version: str | None = None
) -> GateDecision:
    """Apply the gate: compare with the champion when it has scores, else apply the floors."""
    if champion is None:
        checks = check_floors(candidate, gate)
        if champion_version is not None:  # a champion exists but carries no scores
            checks.insert(
                0,
                Check(
                    "champion_scores",
                    True,
                    f"champion v{champion_version} has no eval scores: floors applied",
                ),
            )
        return GateDecision(all(c.passed for c in checks), tuple(checks), None)
    if not comparable(candidate, champion):
        who = f"champion v{champion_version}" if champion_version else "champion"
        check = Check(
            "sample",
            False,
            f"{who} was scored on another evaluation sample ({champion.sample or 'unknown'} vs "
            f"{candidate.sample}): its scores are not comparable; re-score it on this sample "
            "(the register stage does) or promote by hand with --force",
        )
        return GateDecision(False, (check,), champion_version)
    checks = check_against_champion(candidate, champion, gate, champion_version)
    return GateDecision(all(c.passed for c in checks), tuple(checks), champion_version)
