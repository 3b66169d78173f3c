"""The OneThinker task table: problem types, modalities, slugs and EMA task keys.

This is the one place that knows which (problem_type, data_type) pairs exist. The strings are the
ones used by the released OneThinker data (``"multiple choice"``, ``"OCR"``, ``"spatial-temporal
grounding"``, ...), so released files drop in unchanged. Comparisons are case-insensitive.

- ``slug``: the name used in metrics and MLflow keys (``multiple_choice`` ... ``segmentation_video``).
- ``task_key``: the key of the per-task EMA statistics in EMA-GRPO (problem_type, with segmentation
  split into ``segmentation/image`` and ``segmentation/video``).

Data types: ``image`` and ``video`` are the task table's modalities. The release's evaluation code also
accepts ``video-image`` (a video plus one image, ``path`` + ``additional_path``); such a record belongs to
the video row of its problem type (``modality``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DATA_TYPES",
    "PROBLEM_TYPES",
    "RELEASE_DATA_TYPES",
    "TASK_PAIRS",
    "TASK_SLUGS",
    "TaskPair",
    "allowed_data_types",
    "answer_kind",
    "canonical_problem_type",
    "is_allowed",
    "is_known_problem_type",
    "modality",
    "problem_type_slug",
    "task_key",
    "task_slug",
]

PROBLEM_TYPES: tuple[str, ...] = (
    "multiple choice",
    "numerical",
    "regression",
    "OCR",
    "open-ended",
    "math",
    "temporal grounding",
    "spatial grounding",
    "spatial-temporal grounding",
    "tracking",
    "segmentation",
)
DATA_TYPES: tuple[str, ...] = ("image", "video")
RELEASE_DATA_TYPES: tuple[str, ...] = ("image", "video", "video-image")
"""Every ``data_type`` the release's code reads (``video-image`` only in evaluation files)."""

# problem_type -> the data types it is defined on (DESIGN.md's table).
_MODALITIES: dict[str, tuple[str, ...]] = {
    "multiple choice": ("image", "video"),
    "numerical": ("image", "video"),
    "regression": ("image", "video"),
    "OCR": ("image",),
    "open-ended": ("image", "video"),
    "math": ("image",),
    "temporal grounding": ("video",),
    "spatial grounding": ("image",),
    "spatial-temporal grounding": ("video",),
    "tracking": ("video",),
    "segmentation": ("image", "video"),
}

# Answer kind inside <answer>: "letter", "number", "text", "math" or "json".
_ANSWER_KIND: dict[str, str] = {
    "multiple choice": "letter",
    "numerical": "number",
    "regression": "number",
    "OCR": "text",
    "open-ended": "text",
    "math": "math",
    "temporal grounding": "json",
    "spatial grounding": "json",
    "spatial-temporal grounding": "json",
    "tracking": "json",
    "segmentation": "json",
}

TASK_SLUGS: tuple[str, ...] = (
    "multiple_choice",
    "numerical",
    "regression",
    "ocr",
    "open_ended",
    "math",
    "temporal_grounding",
    "spatial_grounding",
    "spatial_temporal_grounding",
    "tracking",
    "segmentation_image",
    "segmentation_video",
)


@dataclass(frozen=True)
class TaskPair:
    """One row/modality of the task table."""

    problem_type: str
    data_type: str

    @property
    def slug(self) -> str:
        return task_slug(self.problem_type, self.data_type)

    @property
    def key(self) -> str:
        return task_key(self.problem_type, self.data_type)

    @property
    def name(self) -> str:
        """A file-name-safe name for the pair, e.g. ``multiple_choice-video``."""
        return f"{problem_type_slug(self.problem_type)}-{self.data_type}"

    @property
    def answer_kind(self) -> str:
        return _ANSWER_KIND[self.problem_type]


TASK_PAIRS: tuple[TaskPair, ...] = tuple(TaskPair(pt, dt) for pt in PROBLEM_TYPES for dt in _MODALITIES[pt])

_CANON = {pt.lower(): pt for pt in PROBLEM_TYPES}


def canonical_problem_type(problem_type: str) -> str:
    """Return the release spelling of ``problem_type`` (case-insensitive); KeyError if unknown."""
    key = str(problem_type).strip().lower()
    if key not in _CANON:
        raise KeyError(f"unknown problem_type {problem_type!r}; known: {', '.join(PROBLEM_TYPES)}")
    return _CANON[key]


def is_known_problem_type(problem_type: object) -> bool:
    return isinstance(problem_type, str) and problem_type.strip().lower() in _CANON


def allowed_data_types(problem_type: str) -> tuple[str, ...]:
    return _MODALITIES[canonical_problem_type(problem_type)]


def modality(data_type: str) -> str:
    """The task table's modality of a release data type: ``video-image`` counts as ``video``."""
    dt = str(data_type).strip().lower()
    return "video" if dt == "video-image" else dt


def is_allowed(problem_type: object, data_type: object) -> bool:
    if not is_known_problem_type(problem_type) or not isinstance(data_type, str):
        return False
    return modality(data_type) in allowed_data_types(problem_type)  # type: ignore[arg-type]


def problem_type_slug(problem_type: str) -> str:
    return canonical_problem_type(problem_type).lower().replace("-", "_").replace(" ", "_")


def task_slug(problem_type: str, data_type: str) -> str:
    """Metric slug: the problem type, with segmentation split by modality."""
    base = problem_type_slug(problem_type)
    if base == "segmentation":
        return f"segmentation_{modality(data_type)}"
    return base


def task_key(problem_type: str, data_type: str) -> str:
    """EMA-GRPO task key: the (release-spelled) problem type; segmentation split by modality."""
    pt = canonical_problem_type(problem_type)
    if pt == "segmentation":
        return f"segmentation/{modality(data_type)}"
    return pt


def answer_kind(problem_type: str) -> str:
    return _ANSWER_KIND[canonical_problem_type(problem_type)]
