"""Tasks registered by name: each has a per-item accuracy function, a per-item structure function and,
optionally, a batched implementation of both.

Add a task without touching the others::

    from onethinker.rewards import register_task

    def accuracy(answer: str, ground_truth: str, data_type: str) -> float:
        return float(answer.strip().lower() == ground_truth.strip().lower())

    register_task("yes/no", accuracy)  # structure defaults to the constant 0.5

Items whose ``problem_type`` is ``"yes/no"`` (any case) are then scored with it. A function may
return a float or ``(float, reasons)``; an exception scores 0 with the reason ``"error"``.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from onethinker.rewards import parsing as P

ItemFn = Callable[[str, str, str], "float | tuple[float, Iterable[str]]"]
STRUCTURE_MAX = 0.5


@dataclass(frozen=True)
class TaskBatch:
    """The items of one task in a batch, already parsed. All lists have the same length."""

    answers: list[str]  # the first answer block, or the whole stripped response if there is none
    structure_answers: list[str]  # the first answer block, or "" if there is none
    ground_truths: list[str]  # the answer-block content of the ground truth (or all of it)
    data_types: list[str]  # lower-cased
    formatted: list[bool]  # format == 1: only these need a structure score

    def __len__(self) -> int:
        return len(self.answers)


class BatchScores(NamedTuple):
    """Per-item raw accuracy, structure and reasons (the scorer sanitises and clips)."""

    accuracy: Sequence[float]
    structure: Sequence[float]
    reasons: Sequence[Sequence[str]]


def _split(out: object) -> tuple[float, tuple[str, ...]]:
    if isinstance(out, tuple) and len(out) == 2:
        value, reasons = out
        return float(value), tuple(str(r) for r in reasons)
    return float(out), ()  # type: ignore[arg-type]


def _slugify(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "task"


@dataclass(frozen=True)
class Task:
    """A registered task. ``batch`` (optional) must give the same scores as the per-item functions."""

    name: str
    accuracy: ItemFn
    structure: ItemFn
    batch: Callable[[TaskBatch], BatchScores] | None = None
    slug: Callable[[str], str] | None = None  # data_type -> metric slug

    def slug_for(self, data_type: str) -> str:
        if self.slug is not None:
            return self.slug(data_type)
        return _slugify(self.name)

    def score_item(
        self, answer: str, structure_answer: str, ground_truth: str, data_type: str, formatted: bool
    ) -> tuple[float, float, tuple[str, ...]]:
        """The per-item path: (accuracy, structure, reasons); never raises."""
        reasons: tuple[str, ...] = ()
        try:
            acc, reasons = _split(self.accuracy(answer, ground_truth, data_type))
        except ImportError:  # a missing library is the environment's fault, not the input's: say so
            raise
        except Exception:  # noqa: BLE001 - a reward never raises
            acc, reasons = 0.0, (P.ERROR,)
        struct = 0.0
        if formatted:
            try:
                struct, more = _split(self.structure(structure_answer, ground_truth, data_type))
                reasons += more
            except ImportError:
                raise
            except Exception:  # noqa: BLE001
                struct, reasons = 0.0, (*reasons, P.ERROR)
        return acc, struct, reasons

    def score_batch(self, batch: TaskBatch) -> BatchScores:
        """The batched implementation if there is one, else a loop over the per-item functions.

        Should the batched implementation raise or return the wrong number of scores, the batch is scored
        again per item (the definition), with a warning, and the fallback is counted (:func:`fallbacks`);
        with ``ONETHINKER_REWARD_STRICT=1`` (the test suite sets it) it raises :class:`FastPathError` instead,
        so tests always exercise the fast path itself.
        """
        if self.batch is not None:
            try:
                out = self.batch(batch)
            except ImportError:
                raise
            except Exception as exc:  # noqa: BLE001 - fall back to the definition
                _fell_back(self.name, f"{type(exc).__name__}: {exc}", exc)
            else:
                if len(out.accuracy) == len(out.structure) == len(out.reasons) == len(batch):
                    return out
                _fell_back(
                    self.name,
                    f"returned {len(out.accuracy)}/{len(out.structure)}/{len(out.reasons)} scores "
                    f"for {len(batch)} items",
                )
        rows = [
            self.score_item(a, s, g, d, f)
            for a, s, g, d, f in zip(
                batch.answers,
                batch.structure_answers,
                batch.ground_truths,
                batch.data_types,
                batch.formatted,
                strict=True,
            )
        ]
        return BatchScores([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])


STRICT_ENV = "ONETHINKER_REWARD_STRICT"
"""Set to 1 to make a failing fast (batched) path raise instead of falling back to the per-item path."""

log = logging.getLogger(__name__)
_FALLBACKS: Counter[str] = Counter()


class FastPathError(RuntimeError):
    """A task's batched implementation failed while ``ONETHINKER_REWARD_STRICT`` is set."""


def _fell_back(task: str, why: str, exc: BaseException | None = None) -> None:
    if os.environ.get(STRICT_ENV, "").strip().lower() in ("1", "true", "yes"):
        raise FastPathError(f"batched reward for task {task!r} failed: {why}") from exc
    _FALLBACKS[task] += 1
    log.warning("batched reward for task %r failed (%s); scored this batch per item instead", task, why)


def fallbacks() -> dict[str, int]:
    """How many batches fell back from the batched to the per-item path, per task, since the process started."""
    return dict(_FALLBACKS)


def constant_structure(answer: str, ground_truth: str, data_type: str) -> float:
    """The structure bonus of tasks without a structured answer."""
    return STRUCTURE_MAX


#: Registered tasks by lower-case name.
REGISTRY: dict[str, Task] = {}


def task_key(problem_type: str) -> str:
    return problem_type.strip().lower()


def register_task(
    name: str,
    accuracy_fn: ItemFn,
    structure_fn: ItemFn | None = None,
    *,
    batch_fn: Callable[[TaskBatch], BatchScores] | None = None,
    slug: str | Callable[[str], str] | None = None,
    replace: bool = False,
) -> Task:
    """Register a task under ``name`` (matched case-insensitively against ``problem_type``).

    ``accuracy_fn(answer, ground_truth, data_type)`` returns accuracy in [0, 1] (or ``(accuracy,
    reasons)``); ``structure_fn`` the structure bonus in [0, 0.5] (default: always 0.5);
    ``batch_fn`` an optional batched implementation of both; ``slug`` the name used in metric keys
    (a string, or a function of data_type). Raises ValueError if the name is taken, unless ``replace``.
    """
    key = task_key(name)
    if not key:
        raise ValueError("a task needs a non-empty name")
    if key in REGISTRY and not replace:
        raise ValueError(f"task {name!r} is already registered; pass replace=True to override it")
    slug_fn = (lambda _dt, s=slug: s) if isinstance(slug, str) else slug
    task = Task(key, accuracy_fn, structure_fn or constant_structure, batch_fn, slug_fn)
    REGISTRY[key] = task
    return task


def unregister_task(name: str) -> Task | None:
    return REGISTRY.pop(task_key(name), None)


def get_task(problem_type: object) -> Task | None:
    if not isinstance(problem_type, str):
        return None
    return REGISTRY.get(task_key(problem_type))


def finite_or_zero(x: object) -> float:
    try:
        v = float(x)  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001
        return 0.0
    return v if math.isfinite(v) else 0.0


def _register_builtins() -> None:
    from onethinker.contract.tasks import PROBLEM_TYPES, task_slug
    from onethinker.rewards import batched
    from onethinker.rewards.definitions import DEFINITIONS

    for problem_type in PROBLEM_TYPES:
        key = problem_type.lower()
        acc_fn, struct_fn = DEFINITIONS[key]

        def slug(data_type: str, pt: str = problem_type) -> str:
            if pt == "segmentation" and data_type not in ("image", "video"):
                return "segmentation_unknown"
            return task_slug(pt, data_type)

        register_task(key, acc_fn, struct_fn, batch_fn=batched.BATCHED[key], slug=slug, replace=True)


_register_builtins()
