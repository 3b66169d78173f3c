"""The per-task answer schema: what goes inside ``<answer>`` for each task, and the one parser of it.

| problem_type (data_type) | kind | JSON keys |
|---|---|---|
| multiple choice | letter | |
| numerical, regression | number | |
| OCR, open-ended | text | |
| math | math (number or LaTeX) | |
| temporal grounding | json | ``time``: span ``[s, e]`` |
| spatial grounding | json | ``boxes``: box ``[x1, y1, x2, y2]`` |
| spatial-temporal grounding | json | ``time``: span; ``boxes``: frames ``{"<second>": box}`` |
| tracking | json | ``boxes``: frames ``{"<second>": box}`` (key ``"1"`` is t = 0) |
| segmentation (image) | json | ``boxes``: box; ``positive_points``, ``negative_points``: 3 ``[x, y]`` each |
| segmentation (video) | json | the same plus ``time``: seconds (the key frame) |

Coordinates are on Qwen3-VL's 0-1000 grid, times in seconds.

The parser is a set of field readers over a decoded JSON object. "Is a number" means Python's ``float()``
accepts the value, so numeric strings, booleans, ``nan`` and ``inf`` count, as in the published reward
(whose numbers the rewards must reproduce); ``finite=True`` (ground truths, evaluation) also requires finite
values. Validation, the rewards, evaluation and the served model all read answers through this module.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Literal

from onethinker.contract.tasks import answer_kind, canonical_problem_type, modality

TIME = "time"
BOXES = "boxes"
POSITIVE = "positive_points"
NEGATIVE = "negative_points"
SPAN_LEN = 2
BOX_LEN = 4
POINTS = 3
POINT_LEN = 2
GRID_MAX = 1000.0
"""Coordinates are relative to width/height on a 0..GRID_MAX grid (Qwen3-VL convention)."""

Shape = Literal["span", "box", "frames", "points", "seconds"]
CONTAINERS: dict[str, type] = {"span": list, "box": list, "frames": dict, "points": list}
"""The JSON container of each shape (``seconds`` is a number)."""


@dataclass(frozen=True)
class AnswerField:
    key: str
    shape: Shape


@dataclass(frozen=True)
class AnswerSchema:
    """What one task answers: its kind (``letter``, ``number``, ``text``, ``math``, ``json``) and, for JSON
    answers, the keys with their shapes (all required)."""

    problem_type: str
    kind: str
    fields: tuple[AnswerField, ...] = ()

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(f.key for f in self.fields)


_FIELDS: dict[str, tuple[AnswerField, ...]] = {
    "temporal grounding": (AnswerField(TIME, "span"),),
    "spatial grounding": (AnswerField(BOXES, "box"),),
    "spatial-temporal grounding": (AnswerField(TIME, "span"), AnswerField(BOXES, "frames")),
    "tracking": (AnswerField(BOXES, "frames"),),
    "segmentation": (
        AnswerField(BOXES, "box"),
        AnswerField(POSITIVE, "points"),
        AnswerField(NEGATIVE, "points"),
    ),
}


def schema_for(problem_type: str, data_type: str = "image") -> AnswerSchema:
    """The answer schema of a task (KeyError for an unknown problem type)."""
    pt = canonical_problem_type(problem_type)
    fields = _FIELDS.get(pt, ())
    if pt == "segmentation" and modality(data_type) == "video":
        fields = (AnswerField(TIME, "seconds"), *fields)
    return AnswerSchema(pt, answer_kind(pt), fields)


# ---------------------------------------------------------------------------------------------------
# The parser: JSON, numbers and field readers
# ---------------------------------------------------------------------------------------------------


class _Unparseable:
    __slots__ = ()

    def __repr__(self) -> str:
        return "UNPARSEABLE"


#: What :func:`parse_json` returns for text that is not JSON (``None`` is the JSON value ``null``).
UNPARSEABLE = _Unparseable()


def parse_json(text: str) -> object:
    try:
        return json.loads(text)
    except Exception:  # noqa: BLE001 - any failure (ValueError, RecursionError, ...) means "not JSON"
        return UNPARSEABLE


def to_number(text: str) -> float | None:
    """float() of the text with commas removed (numerical / regression answers), or None."""
    try:
        return float(text.replace(",", ""))
    except Exception:  # noqa: BLE001
        return None


def numbers(x: object, n: int) -> tuple[float, ...] | None:
    """The values of ``x`` as floats if it is a list of exactly ``n`` numbers, else None."""
    if not isinstance(x, list) or len(x) != n:
        return None
    try:
        return tuple(map(float, x))
    except Exception:  # noqa: BLE001
        return None


def finite_numbers(x: object, n: int) -> tuple[float, ...] | None:
    """Like :func:`numbers`, and every value finite (ground truth)."""
    vals = numbers(x, n)
    if vals is None or not all(map(math.isfinite, vals)):
        return None
    return vals


def _numbers(x: object, n: int, finite: bool) -> tuple[float, ...] | None:
    return finite_numbers(x, n) if finite else numbers(x, n)


def points3(x: object, finite: bool = False) -> tuple[tuple[float, ...], ...] | None:
    """Exactly three [x, y] number pairs, or None."""
    if not isinstance(x, list) or len(x) != POINTS:
        return None
    out = []
    for p in x:
        vals = _numbers(p, POINT_LEN, finite)
        if vals is None:
            return None
        out.append(vals)
    return tuple(out)


def is_real(x: object) -> bool:
    """``isinstance(x, (int, float))`` (so booleans count), as the published reward checks ``time``."""
    return isinstance(x, (int, float))


def finite_real(x: object) -> bool:
    """:func:`is_real` and finite (ground-truth ``time``)."""
    if not isinstance(x, (int, float)):
        return False
    try:
        return math.isfinite(float(x))
    except OverflowError:
        return False


def read_span(obj: dict, finite: bool = False) -> tuple[float, ...] | None:
    """``time`` as ``[s, e]``."""
    return _numbers(obj.get(TIME), SPAN_LEN, finite)


def read_box(obj: dict, finite: bool = False) -> tuple[float, ...] | None:
    """``boxes`` as one box."""
    return _numbers(obj.get(BOXES), BOX_LEN, finite)


def read_frames(obj: dict, finite: bool = False) -> dict[str, tuple[float, ...] | None] | None:
    """``boxes`` as ``{second: box or None}`` (None when ``boxes`` is not an object)."""
    boxes = obj.get(BOXES)
    if not isinstance(boxes, dict):
        return None
    return {k: _numbers(v, BOX_LEN, finite) for k, v in boxes.items()}


def read_points(obj: dict, key: str, finite: bool = False) -> tuple[tuple[float, ...], ...] | None:
    """``positive_points`` / ``negative_points`` as exactly three points."""
    return points3(obj.get(key), finite)


# ---------------------------------------------------------------------------------------------------
# A structured answer as one typed value (evaluation, the served model)
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StructuredAnswer:
    """The fields of a JSON answer that are well formed (finite numbers); None where a field is missing or
    malformed. ``points`` keeps every well-formed ``[x, y]`` pair (a mask decoder can use fewer than 3)."""

    span: tuple[float, float] | None = None
    box: tuple[float, float, float, float] | None = None
    frames: dict[str, tuple[float, ...]] | None = None
    positive: tuple[tuple[float, ...], ...] = ()
    negative: tuple[tuple[float, ...], ...] = ()
    seconds: float | None = None


def _point_list(value: Any) -> tuple[tuple[float, ...], ...]:
    if not isinstance(value, list):
        return ()
    return tuple(p for v in value if (p := finite_numbers(v, POINT_LEN)) is not None)


def parse_structured(text: str) -> StructuredAnswer:
    """Read a JSON answer leniently into a :class:`StructuredAnswer` (an unparseable text gives the empty one)."""
    obj = parse_json(text)
    if not isinstance(obj, dict):
        return StructuredAnswer()
    frames = read_frames(obj, finite=True)
    t = obj.get(TIME)
    return StructuredAnswer(
        span=read_span(obj, finite=True),  # type: ignore[arg-type]
        box=read_box(obj, finite=True),  # type: ignore[arg-type]
        frames=None if frames is None else {str(k): v for k, v in frames.items() if v is not None},
        positive=_point_list(obj.get(POSITIVE)),
        negative=_point_list(obj.get(NEGATIVE)),
        seconds=float(t) if finite_real(t) and not isinstance(t, bool) else None,
    )


def field_ok(obj: dict, field: AnswerField) -> bool:
    """Whether ``obj[field.key]`` has the field's shape, with finite numbers."""
    if field.shape == "span":
        return read_span(obj, True) is not None
    if field.shape == "box":
        return read_box(obj, True) is not None
    if field.shape == "frames":
        frames = read_frames(obj, True)
        return frames is not None and all(v is not None for v in frames.values())
    if field.shape == "points":
        return read_points(obj, field.key, True) is not None
    return finite_real(obj.get(field.key)) and not isinstance(obj.get(field.key), bool)


def shape_problem(schema: AnswerSchema, text: str) -> str | None:
    """Why an answer does not have its task's shape (kind, JSON object, keys, containers and sizes), or None.

    The coarse check (the served model's ``answer_ok``); validation adds ranges, order and video bounds."""
    stripped = text.strip()
    if not stripped:
        return "the answer is empty"
    if schema.kind == "number":
        return None if to_number(stripped) is not None else f"{stripped[:40]!r} is not a number"
    if schema.kind == "letter":
        ok = len(stripped) == 1 and stripped.isalpha()
        return None if ok else f"{stripped[:40]!r} is not an option letter"
    if schema.kind != "json":
        return None
    obj = parse_json(stripped)
    if obj is UNPARSEABLE:
        return "not valid JSON"
    if not isinstance(obj, dict):
        return f"expected a JSON object, got {type(obj).__name__}"
    for field in schema.fields:
        if field.key not in obj:
            return f"missing key {field.key!r}"
        if not field_ok(obj, field):
            return f"{field.key!r} is not a valid {field.shape}"
    return None
