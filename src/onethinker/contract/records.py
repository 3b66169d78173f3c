"""Typed OneThinker records: the release's three layouts, checked and parsed in one place.

Three kinds, as the release's own code reads them:

- **rl** (``onethinker_rl_train.json``; EasyR1 ``verl/utils/dataset.py`` and ``workers/reward/function.py``):
  ``problem`` (with ``<image>``/``<video>`` placeholders), ``answer`` (the ground truth, ``<answer>`` optional),
  ``problem_type``, ``data_type``, ``images`` or ``videos`` (lists of paths under the training root),
  ``options`` (multiple choice), ``problem_id``; ``problem_reserved_text`` (the question the reward sees).
- **sft** (``onethinker_sft_{image,video}.json``; LLaMA-Factory ``dataset_info.json``): sharegpt ``messages``
  (``role``/``content``, ``user``/``assistant``) plus ``images`` or ``videos``. Nothing else is required:
  the task is derived (:func:`derive_sft_task`).
- **eval** (OneThinker-eval; ``Evaluation/Eval/eval_bench.py``, ``seg_post_sam2.py``): ``problem``,
  ``solution``, ``problem_type``, ``data_type`` (``image``, ``video`` or ``video-image``), ``path`` (and
  ``additional_path`` for ``video-image``) under the evaluation root, ``options``; segmentation records carry
  their masks in ``segmentation_output`` with ``resolution`` and (video) ``fps``.

**The record-kind rule** (``record_kind``): ``messages`` (or ``conversations``) makes an SFT record,
``solution`` or ``path`` an evaluation record, anything else an RL record.

**The ground-truth rule**: an RL record's ground truth is its ``answer``, an evaluation record's its
``solution``; an SFT record's is its own ``answer`` field when it has one, else the ``answer`` of the RL
record it joins (below). The answer inside is ``answers.truth_answer`` of it.

**The SFT task rule** (``derive_sft_task``), first that applies:

1. the record's own ``problem_type`` (and ``data_type``) fields;
2. the RL record with the same media and question (the user turn with its template removed, media
   placeholders dropped, whitespace folded); failing that, the only RL record with the same media;
3. the release's per-type instruction text (``prompts.TYPE_TEMPLATE``) found in the user turn;
4. the shape of the assistant's answer: JSON keys (points: segmentation; ``time`` and per-second ``boxes``:
   spatial-temporal grounding; per-second ``boxes``: tracking; ``time``: temporal grounding; one box:
   spatial grounding), an option letter with ``Options:`` in the user turn (multiple choice), a number
   (numerical), else open-ended text.

``data_type`` is the record's field when it has one, else its media key (``images``: image, ``videos``:
video).

Ids: ``problem_id`` is unique within a file only (the release numbers each file on its own), so a record is
known across files by ``uid`` = ``<file stem>/<problem_id>`` (``#<index>`` when it has no id). Records are
compared across files by content (``content_key``: media plus question), never by id.

Fields a record carries that the pipeline does not read are kept (``extra``) and counted by validation.
``parse_record`` raises ``RecordError`` naming the file, the record, the field and the rule.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from onethinker.contract import answers as A
from onethinker.contract import prompts as Pr
from onethinker.contract.media import media_key
from onethinker.contract.tasks import (
    PROBLEM_TYPES,
    RELEASE_DATA_TYPES,
    allowed_data_types,
    canonical_problem_type,
    is_allowed,
    is_known_problem_type,
    modality,
    task_key,
    task_slug,
)

Kind = Literal["rl", "sft", "eval"]
KINDS: tuple[str, ...] = ("rl", "sft", "eval")

# field -> allowed JSON types, per kind: every field the release's code reads (and ours)
FIELD_TYPES: dict[str, dict[str, tuple[str, ...]]] = {
    "rl": {
        "problem_id": ("string", "integer"),
        "problem": ("string",),
        "answer": ("string",),
        "problem_type": ("string",),
        "data_type": ("string",),
        "options": ("array",),
        "images": ("array",),
        "videos": ("array",),
        "problem_reserved_text": ("string",),
        "data_source": ("string",),
    },
    "eval": {
        "problem_id": ("string", "integer"),
        "problem": ("string",),
        "solution": ("string",),
        "problem_type": ("string",),
        "data_type": ("string",),
        "path": ("string",),
        "additional_path": ("string",),
        "options": ("array",),
        "segmentation_output": ("object",),
        "resolution": ("object",),
        "fps": ("integer", "number"),
        "data_source": ("string",),
    },
    "sft": {
        "messages": ("array",),
        "images": ("array",),
        "videos": ("array",),
        "problem_id": ("string", "integer"),
        "problem_type": ("string",),
        "data_type": ("string",),
        "answer": ("string",),
    },
}
REQUIRED: dict[str, tuple[str, ...]] = {
    "rl": ("problem_id", "problem", "answer", "problem_type", "data_type"),
    "eval": ("problem", "solution", "problem_type", "data_type", "path"),
    "sft": ("messages",),
}
UNUSED: frozenset[str] = frozenset({"data_source"})
"""Release fields the pipeline reads nowhere: kept in the files and counted like unknown fields."""
ANSWER_FIELD: dict[str, str] = {"rl": "answer", "eval": "solution", "sft": "messages"}


# --------------------------------------------------------------------------------------------------
# Small rules


def json_type(value: Any) -> str | None:
    """The JSON type name of a value (None for null)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def record_kind(record: Mapping[str, Any]) -> Kind:
    """``sft``, ``eval`` or ``rl`` from the fields a record carries (the record-kind rule)."""
    if "messages" in record or "conversations" in record:
        return "sft"
    if "solution" in record or "path" in record:
        return "eval"
    return "rl"


def infer_kind(records: Sequence[Any]) -> Kind:
    """The most common record kind of a file (``rl`` for a file with no object records)."""
    votes: dict[str, int] = defaultdict(int)
    for r in records:
        if isinstance(r, dict):
            votes[record_kind(r)] += 1
    return max(votes, key=lambda k: (votes[k], k == "rl")) if votes else "rl"  # type: ignore[return-value]


def extra_fields(record: Mapping[str, Any], kind: str) -> list[str]:
    """The fields of a record that the pipeline does not read (kept in files, counted by validation)."""
    known = FIELD_TYPES[kind]
    return sorted(k for k in record if k not in known or k in UNUSED)


def local_id(problem_id: Any, index: int) -> str:
    """A record's id within its file: its ``problem_id``, or ``#<index>`` when it has none."""
    return str(problem_id) if json_type(problem_id) in ("string", "integer") else f"#{index}"


def file_tag(path: str | Path) -> str:
    """The namespace of a file's ids: its stem."""
    return Path(path).stem


def fold_question(text: str) -> str:
    """A question as compared across records: media placeholders dropped, whitespace folded."""
    return " ".join(Pr.strip_media_tokens(text).split())


def short(value: Any, limit: int = 80) -> str:
    """A compact JSON-ish rendering of a value for messages."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------------------------------
# Errors


@dataclass(frozen=True)
class Where:
    """A record's place: file and index (and its problem_id when it has one)."""

    file: str
    index: int
    problem_id: str | None = None

    def __str__(self) -> str:
        pid = f" (problem_id={self.problem_id})" if self.problem_id is not None else ""
        return f"{self.file}: record {self.index}{pid}"


@dataclass(frozen=True)
class Problem:
    """One broken rule of a record: the field and the rule id (validation's catalogue) and why."""

    field: str
    rule: str
    message: str


class RecordError(ValueError):
    """A record breaks a rule: ``file: record i (problem_id=...): field 'f': rule r: message``."""

    def __init__(self, where: Where, problem: Problem) -> None:
        super().__init__(f"{where}: field '{problem.field}': rule {problem.rule}: {problem.message}")
        self.where, self.problem = where, problem


# --------------------------------------------------------------------------------------------------
# Structural checks (shared by parse_record and validation)


def sft_turns(messages: Any) -> tuple[str | None, str | None]:
    """(the user turns' text joined by newlines, the last assistant turn's text) of sharegpt messages."""
    if not isinstance(messages, list):
        return None, None
    users = [m["content"] for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    users = [u for u in users if isinstance(u, str)]
    assistant = next(
        (
            m["content"]
            for m in reversed(messages)
            if isinstance(m, dict) and m.get("role") == "assistant" and isinstance(m.get("content"), str)
        ),
        None,
    )
    return ("\n".join(users) if users else None), assistant


_ROLES = ("system", "user", "assistant")


def messages_problem(messages: Any) -> str | None:
    """Why sharegpt ``messages`` are malformed (role/content turns ending with the assistant), or None."""
    if messages is None:
        return None  # missing: required_field
    if not isinstance(messages, list) or len(messages) < 2:
        return f"'messages' must be a list of at least 2 turns, got {short(messages)}"
    for i, m in enumerate(messages):
        if not (isinstance(m, dict) and m.get("role") in _ROLES and isinstance(m.get("content"), str)):
            return f"turn {i} must be {{'role': user|assistant|system, 'content': str}}, got {short(m)}"
    if messages[-1]["role"] != "assistant":
        return f"the last turn must be the assistant's, got {messages[-1]['role']!r}"
    if not any(m["role"] == "user" for m in messages):
        return "no user turn"
    return None


def media_lists_problem(record: Mapping[str, Any], data_type: str | None) -> str | None:
    """RL/SFT: a non-empty ``images`` or ``videos`` list of path strings (not both), matching data_type."""
    images, videos = record.get("images"), record.get("videos")
    for name, value in (("images", images), ("videos", videos)):
        if value is not None and not (
            isinstance(value, list) and all(isinstance(p, str) and p for p in value)
        ):
            return f"'{name}' must be a list of non-empty path strings, got {short(value)}"
    has_i, has_v = bool(images), bool(videos)
    if data_type == "image" and (has_v or not has_i):
        return "data_type is 'image' but the record " + ("carries 'videos'" if has_v else "has no 'images'")
    if data_type == "video" and (has_i or not has_v):
        return "data_type is 'video' but the record " + ("carries 'images'" if has_i else "has no 'videos'")
    if data_type == "video-image":
        return "data_type 'video-image' is read by the release's evaluation only ('path' + 'additional_path')"
    if data_type is None and has_i == has_v:
        return "the record must carry exactly one of 'images' and 'videos'"
    return None


def eval_media_problem(record: Mapping[str, Any], data_type: str | None) -> str | None:
    """Evaluation: a ``path``; ``video-image`` also needs ``additional_path`` (the image)."""
    if data_type == "video-image" and not (
        isinstance(record.get("additional_path"), str) and record["additional_path"]
    ):
        return "data_type 'video-image' needs 'additional_path' (the image shown with the video)"
    path = record.get("path")
    if isinstance(path, str) and not path:
        return "'path' is empty"
    return None


def placeholders_problem(text: str | None, record: Mapping[str, Any]) -> str | None:
    """The text holds one ``<image>`` per image and one ``<video>`` per video: EasyR1 turns each placeholder into
    its media item and LLaMA-Factory refuses a count that differs from the media's."""
    if text is None:
        return None
    for token, name in ((Pr.IMAGE_TOKEN, "images"), (Pr.VIDEO_TOKEN, "videos")):
        media = record.get(name)
        n = len(media) if isinstance(media, list) else 0
        if text.count(token) != n:
            return f"the text holds {text.count(token)} {token} placeholder(s) for {n} {name}"
    return None


def check_fields(record: Mapping[str, Any], kind: str) -> list[Problem]:
    """The structural problems of a record of ``kind``: required fields and their JSON types, known
    problem/data types, the task pair, media fields, SFT turns and media placeholders (task-level
    problems of SFT records are left to :func:`derive_sft_task`)."""
    out: list[Problem] = []
    for name in REQUIRED[kind]:
        if record.get(name) is None:
            out.append(
                Problem(
                    name,
                    "required_field",
                    "required field is missing" if name not in record else "required field is null",
                )
            )
    for name, types in FIELD_TYPES[kind].items():
        value = record.get(name)
        if value is not None and json_type(value) not in types:
            out.append(
                Problem(
                    name,
                    "field_type",
                    f"expected {' or '.join(types)}, got {json_type(value)} {short(value)}",
                )
            )
    pt, dt = record.get("problem_type"), record.get("data_type")
    if isinstance(pt, str) and not is_known_problem_type(pt):
        out.append(
            Problem(
                "problem_type",
                "problem_type_known",
                f"unknown problem_type {short(pt)} (known: {', '.join(PROBLEM_TYPES)})",
            )
        )
    dtn = dt.strip().lower() if isinstance(dt, str) else None
    allowed_dt = RELEASE_DATA_TYPES if kind == "eval" else ("image", "video")
    if isinstance(dt, str) and dtn not in allowed_dt:
        out.append(
            Problem(
                "data_type",
                "data_type_known",
                f"unknown data_type {short(dt)} (expected {' or '.join(map(repr, allowed_dt))})",
            )
        )
    elif isinstance(pt, str) and is_known_problem_type(pt) and dtn is not None and not is_allowed(pt, dtn):
        allowed = " or ".join(allowed_data_types(pt))
        out.append(
            Problem(
                "data_type",
                "task_pair",
                f"problem_type {canonical_problem_type(pt)!r} is not defined on {dtn!r} data (only {allowed})",
            )
        )
    if kind == "eval":
        why = eval_media_problem(record, dtn if dtn in RELEASE_DATA_TYPES else None)
        if why:
            out.append(Problem("path", "media_field", why))
    else:
        why = media_lists_problem(record, dtn if dtn in RELEASE_DATA_TYPES else None)
        if why:
            out.append(Problem("images" if dtn == "image" else "videos", "media_field", why))
    if kind == "sft":
        why = messages_problem(record.get("messages"))
        if why:
            out.append(Problem("messages", "sft_messages", why))
        else:
            why = placeholders_problem(sft_turns(record.get("messages"))[0], record)
            if why:
                out.append(Problem("messages", "media_tokens", why))
    elif kind == "rl" and isinstance(record.get("problem"), str):
        why = placeholders_problem(record["problem"], record)
        if why:
            out.append(Problem("problem", "media_tokens", why))
    return out


# --------------------------------------------------------------------------------------------------
# Segmentation ground truth (evaluation records)


@dataclass(frozen=True)
class SegmentationTruth:
    """``segmentation_output`` of a segmentation evaluation record, as ``seg_post_sam2.py`` reads it.

    Image: one COCO RLE (``segmentation_rle``). Video: the frame keys in order (``frames``) and an RLE per key
    (``segmentation_rle``); frame ``i`` is at ``i / fps`` seconds; a key without an RLE is not scored. Masks are
    compared at ``resolution`` (``width`` x ``height``): a mask of another size is resized (nearest)."""

    data_type: str
    frames: tuple[str, ...]  # frame keys (image: ("",))
    rles: Mapping[str, Mapping[str, Any] | None]
    width: int
    height: int
    fps: float | None = None

    def frame_time(self, i: int) -> float:
        return i / float(self.fps) if self.fps else 0.0

    def masks(self) -> list[Any]:
        """Ground-truth masks (bool arrays, height x width); video: one per frame key with an RLE, in order, as
        ``(frame index, mask)`` pairs."""
        out = []
        for i, key in enumerate(self.frames):
            rle = self.rles.get(key)
            if rle:
                out.append((i, decode_rle(rle, self.height, self.width)))
        return out


def coco_rle(rle: Mapping[str, Any]) -> dict[str, Any]:
    """A COCO RLE as pycocotools takes it (compressed, bytes counts) from the forms the release's files hold:
    a compressed string, a list of run lengths (uncompressed) or no ``counts`` at all (an empty mask)."""
    from pycocotools import mask as mask_utils

    h, w = (int(v) for v in rle["size"])
    counts = rle.get("counts")
    if counts is None:
        import numpy as np

        return mask_utils.encode(np.asfortranarray(np.zeros((h, w), dtype=np.uint8)))
    if isinstance(counts, list):
        return mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    return {"size": [h, w], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def decode_rle(rle: Mapping[str, Any], height: int | None = None, width: int | None = None) -> Any:
    """A COCO RLE (see :func:`coco_rle`) as a bool mask, resized (nearest) to ``height`` x ``width`` when given
    and different, as ``seg_post_sam2.py`` compares masks at the record's resolution."""
    import numpy as np
    from pycocotools import mask as mask_utils

    mask = mask_utils.decode(coco_rle(rle)).astype(bool)
    if mask.ndim == 3:
        mask = mask[..., 0]
    if height and width and mask.shape != (height, width):
        from PIL import Image

        mask = np.asarray(Image.fromarray(mask.astype(np.uint8)).resize((width, height), Image.NEAREST)) > 0
    return mask


def segmentation_truth(record: Mapping[str, Any], data_type: str) -> SegmentationTruth | None:
    """The segmentation ground truth of an evaluation record, or None when it has none (malformed parts are
    validation's ``segmentation_truth`` rule)."""
    seg = record.get("segmentation_output")
    reso = record.get("resolution")
    if not isinstance(seg, dict) or not isinstance(reso, dict):
        return None
    try:
        width, height = int(reso["width"]), int(reso["height"])
    except (KeyError, TypeError, ValueError):
        return None
    rles = seg.get("segmentation_rle")
    if modality(data_type) == "image":
        return SegmentationTruth(
            "image", ("",), {"": rles if isinstance(rles, dict) else None}, width, height
        )
    frames = seg.get("frames")
    fps = record.get("fps")
    if (
        not isinstance(frames, list)
        or not isinstance(rles, dict)
        or json_type(fps) not in ("integer", "number")
    ):
        return None
    return SegmentationTruth("video", tuple(str(f) for f in frames), rles, width, height, float(fps))


def segmentation_truth_problem(record: Mapping[str, Any], data_type: str) -> str | None:
    """Why a segmentation evaluation record's ``segmentation_output``/``resolution``/``fps`` cannot be scored as
    ``seg_post_sam2.py`` scores it, or None."""
    seg, reso = record.get("segmentation_output"), record.get("resolution")
    if not isinstance(seg, dict):
        return "segmentation needs 'segmentation_output' (the ground-truth masks as COCO RLE)"
    if not (
        isinstance(reso, dict)
        and all(
            isinstance(reso.get(k), int) and not isinstance(reso.get(k), bool) and reso[k] > 0
            for k in ("width", "height")
        )
    ):
        return f"segmentation needs 'resolution' {{'width': int, 'height': int}}, got {short(reso)}"
    rles = seg.get("segmentation_rle")
    if modality(data_type) == "image":
        return _rle_problem(rles, "segmentation_output.segmentation_rle")
    fps = record.get("fps")
    if json_type(fps) not in ("integer", "number") or not math.isfinite(fps) or fps <= 0:
        return f"video segmentation needs a positive 'fps' (frame i is at i / fps s), got {short(fps)}"
    frames = seg.get("frames")
    if not (isinstance(frames, list) and frames and all(isinstance(f, str) for f in frames)):
        return f"'segmentation_output.frames' must be a non-empty list of frame keys, got {short(frames)}"
    if not isinstance(rles, dict):
        return f"'segmentation_output.segmentation_rle' must map frame keys to RLEs, got {short(rles)}"
    unknown = [k for k in rles if k not in set(frames)]
    if unknown:
        return f"'segmentation_rle' has frame key {unknown[0]!r} that is not in 'frames'"
    for key in frames:
        if rles.get(key):
            why = _rle_problem(rles[key], f"segmentation_rle[{key!r}]")
            if why:
                return why
    if not any(rles.get(k) for k in frames):
        return "no frame has a ground-truth mask"
    return None


def _rle_problem(rle: Any, name: str) -> str | None:
    if not (
        isinstance(rle, dict)
        and isinstance(rle.get("size"), list)
        and len(rle["size"]) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in rle["size"])
    ):
        return f"{name} is not a COCO RLE {{'size': [h, w], 'counts': ...}}: {short(rle)}"
    counts = rle.get("counts")
    if counts is not None and not isinstance(counts, str | list):
        return f"{name}: 'counts' must be an RLE string or a list of run lengths, got {short(counts)}"
    if isinstance(counts, list):
        if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
            return f"{name}: run lengths must be non-negative integers"
        h, w = rle["size"]
        if sum(counts) != h * w:
            return f"{name}: run lengths sum to {sum(counts)}, not h * w = {h * w}"
    return None


# --------------------------------------------------------------------------------------------------
# Typed records


@dataclass(frozen=True)
class Media:
    kind: str  # "image" | "video"
    path: str  # as written in the file


@dataclass(frozen=True, kw_only=True)
class Record:
    """What every kind has, normalised: canonical problem_type, lower-case data_type, media in order, the
    question as shown (placeholders kept; multiple-choice options appended), the ground truth as written."""

    kind: str
    where: Where
    problem_id: str | None
    problem_type: str
    data_type: str
    media: tuple[Media, ...]
    question: str
    ground_truth: str
    extra: Mapping[str, Any] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def local_id(self) -> str:
        return local_id(self.problem_id, self.where.index)

    @property
    def uid(self) -> str:
        """The record's id across files: ``<file stem>/<problem_id or #index>``."""
        return f"{file_tag(self.where.file)}/{self.local_id}"

    @property
    def slug(self) -> str:
        return task_slug(self.problem_type, self.data_type)

    @property
    def task_key(self) -> str:
        return task_key(self.problem_type, self.data_type)

    @property
    def answer(self) -> str:
        """The ground truth's answer (inside ``<answer>`` when wrapped)."""
        return A.truth_answer(self.ground_truth)

    @property
    def media_kinds(self) -> list[str]:
        return [m.kind for m in self.media]

    def prompt(self, style: Pr.PromptStyle) -> str:
        """The user text the model is shown for this record (the prompt rule)."""
        return Pr.render_prompt(self.question, self.problem_type, self.data_type, style)

    @property
    def reward_problem(self) -> str:
        """The question the reward (and its judge) sees: the question without media placeholders."""
        return Pr.strip_media_tokens(self.question)

    def reward_item(self, response: str) -> dict[str, Any]:
        """The reward's input for a response to this record: the fields the release's reward manager passes
        (``EasyR1/verl/workers/reward/function.py``: ground_truth, data_type, problem_type,
        problem_reserved_text as ``problem``, problem_id), the id namespaced by file."""
        return {
            "response": response,
            "ground_truth": self.ground_truth,
            "problem_type": self.problem_type,
            "data_type": self.data_type,
            "problem": self.reward_problem,
            "problem_id": self.uid,
        }

    def content_key(self) -> tuple[tuple[str, ...], str]:
        """(media paths under the record's root, folded question): how records are matched across files."""
        return tuple(media_key(m.path, self.kind) for m in self.media), fold_question(self.question)


@dataclass(frozen=True, kw_only=True)
class RLRecord(Record):
    problem: str
    options: tuple[str, ...] = ()
    reserved_text: str = ""  # problem_reserved_text: the question the reward (and its judge) sees

    @property
    def reward_problem(self) -> str:
        return self.reserved_text


@dataclass(frozen=True, kw_only=True)
class EvalRecord(Record):
    problem: str
    options: tuple[str, ...] = ()
    segmentation: SegmentationTruth | None = None


@dataclass(frozen=True, kw_only=True)
class SFTRecord(Record):
    user_text: str  # the user turns, placeholders kept
    response: str  # the assistant's reply
    task_source: str  # how the task was derived: field, rl, rl-media, instruction, answer
    template_key: str | None = None  # the template the user turn ended with, if any

    @property
    def response_answer(self) -> str | None:
        """The assistant's ``<answer>`` content (None without an answer block)."""
        return A.extract_answer(self.response)


# --------------------------------------------------------------------------------------------------
# The SFT task rule


@dataclass(frozen=True)
class TaskInfo:
    """What an SFT record can learn from the RL record it joins."""

    problem_type: str
    data_type: str
    ground_truth: str
    where: str


@dataclass
class TaskIndex:
    """RL records by content (media + question) and by media alone, for the SFT join."""

    by_content: dict[tuple[tuple[str, ...], str], TaskInfo] = field(default_factory=dict)
    by_media: dict[tuple[str, ...], list[TaskInfo]] = field(default_factory=lambda: defaultdict(list))

    def add(self, record: Record) -> None:
        info = TaskInfo(record.problem_type, record.data_type, record.ground_truth, str(record.where))
        media, question = record.content_key()
        self.by_content.setdefault((media, question), info)
        self.by_media[media].append(info)

    def lookup(self, media: tuple[str, ...], question: str) -> tuple[TaskInfo | None, str]:
        hit = self.by_content.get((media, question))
        if hit is not None:
            return hit, "rl"
        same = self.by_media.get(media, [])
        return (same[0], "rl-media") if len(same) == 1 else (None, "")


def task_index(records: Iterable[Record]) -> TaskIndex:
    index = TaskIndex()
    for r in records:
        index.add(r)
    return index


def task_from_answer(answer: str | None, user_text: str, data_type: str) -> str:
    """Step 4 of the SFT task rule: the problem type an answer's shape says."""
    from onethinker.contract import schema as S

    text = (answer or "").strip()
    obj = S.parse_json(text)
    if isinstance(obj, dict):
        if S.POSITIVE in obj or S.NEGATIVE in obj:
            return "segmentation"
        if isinstance(obj.get(S.BOXES), dict):
            return "spatial-temporal grounding" if S.TIME in obj else "tracking"
        if S.TIME in obj:
            return "temporal grounding"
        if S.BOXES in obj:
            return "spatial grounding"
    if len(text) == 1 and text.isalpha() and "Options:" in user_text:
        return "multiple choice"
    if text and S.to_number(text) is not None:
        return "numerical"
    return "open-ended"


@dataclass(frozen=True)
class SFTTask:
    problem_type: str
    data_type: str
    source: str  # field, rl, rl-media, instruction, answer
    ground_truth: str | None
    question: str
    template_key: str | None
    joined: str | None = None  # the RL record joined (``file: record i``), if any


def derive_sft_task(record: Mapping[str, Any], index: TaskIndex | None = None) -> SFTTask:
    """The SFT task rule (module docstring). ``record`` must pass :func:`check_fields`."""
    user, assistant = sft_turns(record.get("messages"))
    user = user or ""
    question, key = Pr.question_of_user_turn(user)
    media_dt = "video" if record.get("videos") else "image"
    dt = record.get("data_type")
    data_type = dt.strip().lower() if isinstance(dt, str) else media_dt
    truth = record.get("answer") if isinstance(record.get("answer"), str) else None
    pt = record.get("problem_type")
    if isinstance(pt, str) and is_known_problem_type(pt):
        return SFTTask(canonical_problem_type(pt), data_type, "field", truth, question, key)
    if index is not None:
        media = tuple(media_key(p, "sft") for p in record.get("images") or record.get("videos") or [])
        hit, how = index.lookup(media, fold_question(question))
        if hit is not None:
            gt = truth if truth is not None else hit.ground_truth
            dtype = data_type if isinstance(dt, str) else hit.data_type
            return SFTTask(hit.problem_type, dtype, how, gt, question, key, hit.where)
    found = key or Pr.type_key_in(user)
    if found is not None:
        problem_type, _ = Pr.task_of_type_key(found)
        return SFTTask(problem_type, data_type, "instruction", truth, question, key)
    answer = A.extract_answer(assistant or "")
    return SFTTask(task_from_answer(answer, user, data_type), data_type, "answer", truth, question, key)


# --------------------------------------------------------------------------------------------------
# Parsing


def _media(record: Mapping[str, Any], kind: str, data_type: str) -> tuple[Media, ...]:
    if kind == "eval":
        out = [Media("image" if data_type == "image" else "video", str(record["path"]))]
        if data_type == "video-image":
            out.append(Media("image", str(record["additional_path"])))
        return tuple(out)
    images, videos = record.get("images") or [], record.get("videos") or []
    return tuple(Media("image", str(p)) for p in images) + tuple(Media("video", str(p)) for p in videos)


def _options(record: Mapping[str, Any]) -> tuple[str, ...]:
    options = record.get("options")
    return tuple(str(o) for o in options) if isinstance(options, list) else ()


def parse_record(
    record: Any,
    kind: str | None = None,
    where: Where | None = None,
    index: TaskIndex | None = None,
) -> Record:
    """A checked, typed record (``RLRecord``, ``SFTRecord`` or ``EvalRecord``); raises ``RecordError`` on the
    first broken rule. ``index``: the RL records an SFT record may join (the SFT task rule)."""
    where = where or Where("<record>", 0)
    if not isinstance(record, dict):
        raise RecordError(
            where, Problem("", "record_object", f"expected a JSON object, got {short(record, 40)}")
        )
    kind = kind or record_kind(record)
    pid = record.get("problem_id")
    where = Where(where.file, where.index, str(pid) if json_type(pid) in ("string", "integer") else None)
    problems = check_fields(record, kind)
    if problems:
        raise RecordError(where, problems[0])
    extra = {k: record[k] for k in extra_fields(record, kind)}
    common: dict[str, Any] = {
        "kind": kind,
        "where": where,
        "problem_id": where.problem_id,
        "extra": extra,
        "raw": record,
    }
    if kind == "sft":
        task = derive_sft_task(record, index)
        if not is_allowed(task.problem_type, task.data_type):
            raise RecordError(
                where,
                Problem(
                    "messages",
                    "task_pair",
                    f"derived task {task.problem_type!r} ({task.source}) is not defined on {task.data_type!r} data",
                ),
            )
        user, assistant = sft_turns(record["messages"])
        return SFTRecord(
            **common,
            problem_type=task.problem_type,
            data_type=task.data_type,
            media=_media(record, kind, task.data_type),
            question=task.question,
            ground_truth=task.ground_truth or "",
            user_text=user or "",
            response=assistant or "",
            task_source=task.source,
            template_key=task.template_key,
        )
    pt = canonical_problem_type(record["problem_type"])
    dt = record["data_type"].strip().lower()
    options = _options(record)
    question = Pr.question_text(record["problem"], pt, options)
    shared = {
        **common,
        "problem_type": pt,
        "data_type": dt,
        "media": _media(record, kind, dt),
        "question": question,
        "problem": record["problem"],
        "options": options,
    }
    if kind == "rl":
        reserved = record.get("problem_reserved_text")
        if not isinstance(reserved, str):
            reserved = Pr.strip_media_tokens(record["problem"])
        return RLRecord(**shared, ground_truth=record["answer"], reserved_text=reserved)
    seg = None
    if pt == "segmentation":
        why = segmentation_truth_problem(record, dt)
        if why:
            raise RecordError(where, Problem("segmentation_output", "segmentation_truth", why))
        seg = segmentation_truth(record, dt)
    return EvalRecord(**shared, ground_truth=record["solution"], segmentation=seg)


def parse_records(
    records: Sequence[Any], file: str | Path, kind: str | None = None, index: TaskIndex | None = None
) -> list[Record]:
    """Every record of a file, typed; raises ``RecordError`` on the first bad one."""
    kind = kind or infer_kind(records)
    return [parse_record(r, kind, Where(str(file), i), index) for i, r in enumerate(records)]
