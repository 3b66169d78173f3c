"""The validation rules: a catalogue of rule ids and the pure checks behind the custom ones.

Every check here is a plain function of one row of the tabular view (a mapping of column name to a
scalar: strings, JSON-encoded lists, floats that may be NaN) and returns ``None`` when the row passes
or a human message when it fails. They never raise: a check that crashes reports the crash as its
message. The Great Expectations suites (``gx_suite``) call them through custom map expectations; the
report uses the same functions to explain a failing row, so the message always matches the verdict.

Answer shapes (coordinates on the 0-1000 grid, times in seconds) are the contract's per-task schema
(``onethinker.contract.schema``); the checks here add ranges, order and video bounds, tolerant of a
half-frame rounding at the end of a video. Structural rules (media fields, SFT turns, placeholders,
segmentation ground truth) are the contract's verdicts, carried by the row.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from onethinker.contract.records import short
from onethinker.contract.schema import CONTAINERS, GRID_MAX, schema_for
from onethinker.contract.tasks import (
    PROBLEM_TYPES,
    answer_kind,
    canonical_problem_type,
    is_known_problem_type,
    modality,
)

Row = Mapping[str, Any]
Check = Callable[[Row], "str | None"]

EPS = 1e-6


@dataclass(frozen=True)
class RuleSpec:
    """One rule of the catalogue: its id, what it checks and how it runs."""

    id: str
    group: str  # file, schema, record, answer, media, sft, cross-file
    description: str
    engine: str  # "gx-builtin", "gx-custom" or "python"


def _specs(*rows: tuple[str, str, str, str]) -> dict[str, RuleSpec]:
    return {r[0]: RuleSpec(*r) for r in rows}


RULES: dict[str, RuleSpec] = _specs(
    ("file_readable", "file", "the file exists and can be read as UTF-8 text", "python"),
    ("file_json", "file", "the file is a JSON array (or JSON Lines) of records", "python"),
    ("file_empty", "file", "the file holds at least one record", "python"),
    ("record_object", "file", "every record is a JSON object", "python"),
    ("required_field", "schema", "required fields are present and not null", "gx-builtin"),
    ("field_type", "schema", "fields have the expected JSON type", "gx-builtin"),
    ("problem_type_known", "schema", "problem_type is one of the known task types", "gx-builtin"),
    (
        "data_type_known",
        "schema",
        "data_type is 'image' or 'video' ('video-image' too in evaluation files)",
        "gx-builtin",
    ),
    ("task_pair", "schema", "the (problem_type, data_type) pair exists in the task table", "gx-builtin"),
    ("unique_problem_id", "schema", "problem_id is unique within the file", "gx-builtin"),
    (
        "prompt_length",
        "record",
        "the prompt text (RL/evaluation: problem + options; SFT: user turns) is at most validate.max_prompt_chars "
        "characters",
        "gx-custom",
    ),
    (
        "response_length",
        "sft",
        "the assistant turn (the SFT target) is at most validate.max_response_chars characters",
        "gx-custom",
    ),
    (
        "media_field",
        "record",
        "RL/SFT: 'images' or 'videos' as data_type says; evaluation: 'path' (+ 'additional_path' for video-image)",
        "gx-custom",
    ),
    (
        "media_tokens",
        "record",
        "<image>/<video> placeholders (RL problem, SFT user turn) match the number of media files",
        "gx-custom",
    ),
    (
        "options_format",
        "record",
        "options are strings labelled with distinct letters ('A. red')",
        "gx-custom",
    ),
    (
        "segmentation_truth",
        "record",
        "segmentation evaluation records carry segmentation_output (COCO RLE; video: frame keys at i / fps "
        "inside the video), resolution and (video) fps",
        "gx-custom",
    ),
    ("answer_nonempty", "answer", "the answer inside <answer> is not empty", "gx-custom"),
    ("answer_number", "answer", "numerical/regression answers are finite numbers", "gx-custom"),
    (
        "option_letter",
        "answer",
        "multiple-choice answers are a letter among the options' letters",
        "gx-custom",
    ),
    ("answer_json", "answer", "structured answers are a JSON object", "gx-custom"),
    ("answer_schema", "answer", "structured answers have the task's keys and containers", "gx-custom"),
    ("box_length", "answer", "every box is 4 numbers [x1, y1, x2, y2]", "gx-custom"),
    ("box_order", "answer", "every box has x1 < x2 and y1 < y2", "gx-custom"),
    ("box_in_range", "answer", "box coordinates lie in [0, 1000]", "gx-custom"),
    ("span_order", "answer", "a time span is two numbers with 0 <= start < end", "gx-custom"),
    ("span_in_duration", "answer", "a time span ends within the video's duration", "gx-custom"),
    ("frame_keys", "answer", "per-second box keys are integers inside the span / video", "gx-custom"),
    ("points_count", "answer", "exactly 3 positive and 3 negative [x, y] points", "gx-custom"),
    ("points_in_range", "answer", "point coordinates lie in [0, 1000]", "gx-custom"),
    ("keyframe_time", "answer", "video segmentation 'time' is a number inside the video", "gx-custom"),
    (
        "media_in_root",
        "media",
        "every media path stays inside its media root (no '..' out, no absolute path elsewhere, no link out)",
        "gx-custom",
    ),
    ("media_exists", "media", "every media file exists under the media root", "gx-custom"),
    (
        "media_decodes",
        "media",
        "every media file decodes (image: PIL; video: PyAV, first frame)",
        "gx-custom",
    ),
    ("media_type", "media", "media files are of the declared data_type", "gx-custom"),
    ("sft_messages", "sft", "messages are user/assistant turns ending with the assistant", "gx-custom"),
    ("sft_think_tag", "sft", "the assistant turn starts with <think>...</think>", "gx-builtin"),
    ("sft_answer_tag", "sft", "the assistant turn ends with <answer>...</answer>", "gx-builtin"),
    ("sft_answer_matches", "sft", "the assistant's answer equals the ground truth", "gx-custom"),
    (
        "train_eval_disjoint",
        "cross-file",
        "no evaluation record has a training record's media (by content) and question",
        "gx-builtin",
    ),
)

# --------------------------------------------------------------------------------------------------
# Small helpers


def is_number(value: Any) -> bool:
    """A finite JSON number (bool is not a number here)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def known(value: Any) -> float | None:
    """A row's float cell as a float, or None when it is missing/NaN."""
    if value is None or isinstance(value, bool):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


@lru_cache(maxsize=4096)
def load_json_cell(text: str | None) -> Any:
    """Decode a JSON-encoded cell (lists and dicts are stored as JSON text in the table).

    The cache is small on purpose: cells can be large (a video's masks) and a row's cells are decoded
    by several expectations in turn. Callers must not mutate the result.
    """
    return None if text is None else json.loads(text)


def _fmt(x: float) -> str:
    return f"{x:g}"


def half_frame(fps: float | None) -> float:
    """The tolerance on times at the end of a video: half a native frame (plus a hair)."""
    return (0.5 / fps if fps else 0.0) + EPS


def last_frame_time(duration: float | None, fps: float | None) -> float | None:
    """The time of a video's last frame (a span may end at ``duration``; a frame index may not)."""
    if duration is None:
        return None
    return max(0.0, duration - 1.0 / fps) if fps else duration


_OPTION_LABEL = re.compile(r"^\s*\(?([A-Za-z])\s*[.):]")
_ANSWER_LETTER = re.compile(r"^\s*\(?([A-Za-z])\)?(?:\s*[.:)]\s*.*)?\s*$", re.DOTALL)


def option_letters(options: Any) -> tuple[list[str] | None, str | None]:
    """The letter labels of a list of options (``"A. red"`` -> ``"A"``), or (None, why not)."""
    if not isinstance(options, list) or not options:
        return None, "multiple choice needs a non-empty list of options"
    letters: list[str] = []
    for i, opt in enumerate(options):
        if not isinstance(opt, str):
            return None, f"option {i} is not a string: {short(opt)}"
        m = _OPTION_LABEL.match(opt)
        if not m:
            return None, f"option {i} {opt!r} has no letter label like 'A. ...'"
        letter = m.group(1).upper()
        if letter in letters:
            return None, f"option letter {letter!r} appears twice"
        letters.append(letter)
    return letters, None


def answer_letter(text: str) -> str | None:
    """The option letter an answer names (``"B"``, ``"(B)"``, ``"B. green"``), else None."""
    m = _ANSWER_LETTER.match(text)
    return m.group(1).upper() if m else None


# --------------------------------------------------------------------------------------------------
# Answer shapes


_CONTAINER_NAMES = {
    "span": "a list [start, end]",
    "box": "a list",
    "frames": "an object of second -> box",
    "points": "a list of [x, y] points",
}


def _boxes_of(problem_type: str, obj: dict) -> list[tuple[str, Any]]:
    """(label, box) pairs of a structured answer whose 'boxes' has the right container."""
    boxes = obj.get("boxes")
    if isinstance(boxes, list):
        return [("box", boxes)]
    if isinstance(boxes, dict):
        return [(f"box at key {k!r}", v) for k, v in boxes.items()]
    return []


def _box_problems(problem_type: str, obj: dict) -> dict[str, str]:
    out: dict[str, str] = {}
    for label, box in _boxes_of(problem_type, obj):
        if not (isinstance(box, list) and len(box) == 4 and all(is_number(v) for v in box)):
            n = len(box) if isinstance(box, list) else None
            what = f"{n} values" if n is not None else type(box).__name__
            out.setdefault(
                "box_length", f"{label} {short(box)} must be 4 numbers [x1, y1, x2, y2], got {what}"
            )
            continue
        x1, y1, x2, y2 = box
        if not (x1 < x2 and y1 < y2):
            which = "x1 >= x2" if x1 >= x2 else "y1 >= y2"
            out.setdefault("box_order", f"{label} {short(box)} has {which}")
        if not all(0.0 <= v <= GRID_MAX for v in box):
            out.setdefault("box_in_range", f"{label} {short(box)} leaves the 0-1000 grid")
    return out


def _span(obj: dict) -> tuple[float, float] | None:
    t = obj.get("time")
    if isinstance(t, list) and len(t) == 2 and all(is_number(v) for v in t) and 0 <= t[0] < t[1]:
        return float(t[0]), float(t[1])
    return None


def _span_problems(obj: dict, duration: float | None, tol: float) -> dict[str, str]:
    t = obj.get("time")
    if not isinstance(t, list):
        return {}
    if not (len(t) == 2 and all(is_number(v) for v in t)):
        return {"span_order": f"time {short(t)} must be two numbers [start, end]"}
    s, e = t
    if not (0 <= s < e):
        return {"span_order": f"time {short(t)} must satisfy 0 <= start < end"}
    if duration is not None and e > duration + tol:
        return {"span_in_duration": f"time {short(t)} ends after the video's duration {_fmt(duration)} s"}
    return {}


_INT_KEY = re.compile(r"^(0|[1-9][0-9]*)$")


def _frame_key_problems(
    problem_type: str, obj: dict, duration: float | None, fps: float | None, tol: float
) -> dict[str, str]:
    boxes = obj.get("boxes")
    if not isinstance(boxes, dict):
        return {}
    if not boxes:
        return {"frame_keys": "'boxes' holds no per-second box"}
    span = _span(obj) if problem_type == "spatial-temporal grounding" else None
    for key in boxes:
        if not _INT_KEY.match(key):
            return {"frame_keys": f"key {key!r} is not a whole number of seconds"}
        k = int(key)
        if problem_type == "tracking":
            if k < 1:
                return {"frame_keys": f"key {key!r} must be >= 1 (key '1' is t=0)"}
            t = float(k - 1)
        else:
            t = float(k)
            if span is not None and not (span[0] - tol <= t <= span[1] + tol):
                return {"frame_keys": f"key {key!r} lies outside the span [{_fmt(span[0])}, {_fmt(span[1])}]"}
        last = last_frame_time(duration, fps)
        if last is not None and t > last + tol:
            why = f"key {key!r} (t={_fmt(t)} s) lies after the video's last frame ({_fmt(last)} s)"
            return {"frame_keys": why}
    return {}


def _point_problems(obj: dict) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in ("positive_points", "negative_points"):
        pts = obj.get(name)
        if not isinstance(pts, list):
            continue
        if len(pts) != 3 or not all(
            isinstance(p, list) and len(p) == 2 and all(is_number(v) for v in p) for p in pts
        ):
            out.setdefault("points_count", f"{name} {short(pts)} must be exactly 3 [x, y] pairs of numbers")
            continue
        if not all(0.0 <= v <= GRID_MAX for p in pts for v in p):
            out.setdefault("points_in_range", f"{name} {short(pts)} leave the 0-1000 grid")
    return out


def _keyframe_problems(obj: dict, duration: float | None, fps: float | None, tol: float) -> dict[str, str]:
    if "time" not in obj:
        return {}
    t = obj["time"]
    if not is_number(t):
        return {"keyframe_time": f"'time' must be a number of seconds, got {type(t).__name__} {short(t)}"}
    last = last_frame_time(duration, fps)
    if t < 0 or (last is not None and t > last + tol):
        frames = f" (frames from 0 to {_fmt(last)} s)" if last is not None else " (must be >= 0)"
        return {"keyframe_time": f"'time' {_fmt(t)} s is not a time inside the video{frames}"}
    return {}


@lru_cache(maxsize=1 << 18)
def answer_problems(
    problem_type: str | None,
    data_type: str | None,
    text: str | None,
    options: str | None,
    duration: float | None,
    fps: float | None,
) -> dict[str, str]:
    """Every answer-shape rule the answer breaks, as {rule id: message} (empty when it is well formed).

    ``text`` is the answer without its ``<answer>`` wrapper; ``options`` the JSON-encoded options list;
    ``duration``/``fps`` the video's (None when unknown: end-of-video bounds are then not checked).
    Rows with an unknown problem type or no answer pass here: other rules report those.
    """
    if text is None or problem_type is None or not is_known_problem_type(problem_type):
        return {}
    pt = canonical_problem_type(problem_type)
    data_type = modality(data_type) if data_type else None
    kind = answer_kind(pt)
    stripped = text.strip()
    if not stripped:
        return {"answer_nonempty": "the answer is empty"}
    if kind == "number":
        try:
            value = float(stripped)
        except ValueError:
            return {"answer_number": f"{stripped!r} is not a number"}
        return {} if math.isfinite(value) else {"answer_number": f"{stripped!r} is not a finite number"}
    if kind == "letter":
        letter = answer_letter(stripped)
        if letter is None:
            return {"option_letter": f"{short(stripped)} is not an option letter"}
        letters, _ = option_letters(load_json_cell(options))
        if letters is not None and letter not in letters:
            return {
                "option_letter": f"answer {letter!r} is not among the options' letters {', '.join(letters)}"
            }
        return {}
    if kind != "json":
        return {}
    try:
        obj = json.loads(stripped)
    except json.JSONDecodeError as exc:
        return {"answer_json": f"not valid JSON ({exc.msg} at char {exc.pos}): {short(stripped)}"}
    if not isinstance(obj, dict):
        return {"answer_json": f"expected a JSON object, got {type(obj).__name__}: {short(obj)}"}
    for fld in schema_for(pt, data_type or "image").fields:
        if fld.key not in obj:
            what = " (the key frame, in seconds)" if fld.shape == "seconds" else ""
            return {"answer_schema": f"missing key {fld.key!r}{what}"}
        container = CONTAINERS.get(fld.shape)
        if container is not None and not isinstance(obj[fld.key], container):
            return {
                "answer_schema": f"{fld.key!r} must be {_CONTAINER_NAMES[fld.shape]}, got {short(obj[fld.key])}"
            }
    tol = half_frame(fps)
    problems: dict[str, str] = {}
    problems.update(_box_problems(pt, obj))
    if pt in ("temporal grounding", "spatial-temporal grounding"):
        problems.update(_span_problems(obj, duration, tol))
    if pt in ("tracking", "spatial-temporal grounding"):
        problems.update(_frame_key_problems(pt, obj, duration, fps, tol))
    if pt == "segmentation":
        problems.update(_point_problems(obj))
        if data_type == "video":
            problems.update(_keyframe_problems(obj, duration, fps, tol))
    return problems


ANSWER_RULES: tuple[str, ...] = (
    "answer_nonempty",
    "answer_number",
    "option_letter",
    "answer_json",
    "answer_schema",
    "box_length",
    "box_order",
    "box_in_range",
    "span_order",
    "span_in_duration",
    "frame_keys",
    "points_count",
    "points_in_range",
    "keyframe_time",
)
ANSWER_COLUMNS: tuple[str, ...] = (
    "problem_type_canon",
    "data_type_norm",
    "answer",
    "options",
    "duration",
    "fps",
)


def _answer_check(rule: str) -> Check:
    def check(row: Row) -> str | None:
        problems = answer_problems(
            row.get("problem_type_canon"),
            row.get("data_type_norm"),
            row.get("answer"),
            row.get("options"),
            known(row.get("duration")),
            known(row.get("fps")),
        )
        return problems.get(rule)

    check.__name__ = f"check_{rule}"
    return check


# --------------------------------------------------------------------------------------------------
# Record structure


def _record_problem(rule: str) -> Check:
    """A structural rule the contract judged when the row was built (``record_problems``)."""

    def check(row: Row) -> str | None:
        return (load_json_cell(row.get("record_problems")) or {}).get(rule)

    check.__name__ = f"check_{rule}"
    return check


SFT_THINK_TAG = r"^\s*<think>[\s\S]*?\S[\s\S]*?</think>"
"""``sft_think_tag``: the assistant turn starts with a non-empty think block."""
SFT_ANSWER_TAG = r"<answer>[\s\S]*?</answer>\s*$"
"""``sft_answer_tag``: the assistant turn ends with an answer block."""


def check_options_format(row: Row) -> str | None:
    """Multiple-choice options are letter-labelled strings; other tasks may omit them."""
    options = load_json_cell(row.get("options"))
    if row.get("problem_type_canon") != "multiple choice" or options is None:
        return None  # a missing options list on multiple choice is a required_field failure
    _, why = option_letters(options)
    return why


def check_segmentation_truth(row: Row) -> str | None:
    """The contract's verdict on ``segmentation_output`` / ``resolution`` / ``fps``, and for a video the last
    ground-truth frame (at (n - 1) / fps s, where ``seg_post_sam2.py`` extracts it) inside the video."""
    problem = row.get("segmentation_problem")
    if problem:
        return str(problem)
    frames, fps = known(row.get("segmentation_frames")), known(row.get("segmentation_fps"))
    duration, native = known(row.get("duration")), known(row.get("fps"))
    if frames is None or not fps or duration is None:
        return None
    last = (frames - 1) / fps
    if last > duration + half_frame(native):
        return f"{int(frames)} ground-truth frames at {_fmt(fps)} fps end at {_fmt(last)} s, after the video's {_fmt(duration)} s"
    return None


# --------------------------------------------------------------------------------------------------
# SFT answer against ground truth


def normalize_answer(problem_type: str | None, text: str) -> Any:
    """A comparable form of an answer: parsed JSON, a float, an option letter or whitespace-folded text."""
    stripped = text.strip()
    kind = answer_kind(problem_type) if problem_type and is_known_problem_type(problem_type) else "text"
    try:
        if kind == "json":
            return ("json", json.loads(stripped))
        if kind == "number":
            return ("number", float(stripped))
        if kind == "letter":
            letter = answer_letter(stripped)
            if letter is not None:
                return ("letter", letter)
    except (ValueError, json.JSONDecodeError):
        pass
    return ("text", " ".join(stripped.split()))


def check_sft_answer_matches(row: Row) -> str | None:
    """The assistant's <answer> content equals the ground truth (when one is known)."""
    answer, truth = row.get("answer"), row.get("ground_truth")
    if answer is None or truth is None:
        return None
    pt = row.get("problem_type_canon")
    a, t = normalize_answer(pt, answer), normalize_answer(pt, truth)
    if a == t or (a[0] == t[0] == "number" and math.isclose(a[1], t[1], rel_tol=1e-9, abs_tol=1e-9)):
        return None
    src = row.get("ground_truth_source") or "ground truth"
    return f"assistant answer {short(answer.strip())} differs from the {src} {short(truth.strip())}"


# --------------------------------------------------------------------------------------------------
# Registry of custom row checks: rule id -> (columns it reads, check)

ROW_CHECKS: dict[str, tuple[tuple[str, ...], Check]] = {
    **{
        rule: (("kind", "record_problems"), _record_problem(rule))
        for rule in ("media_field", "media_tokens", "sft_messages", "prompt_length", "response_length")
    },
    "options_format": (("problem_type_canon", "options"), check_options_format),
    "segmentation_truth": (
        ("segmentation_problem", "segmentation_frames", "segmentation_fps", "duration", "fps"),
        check_segmentation_truth,
    ),
    "sft_answer_matches": (
        ("problem_type_canon", "answer", "ground_truth", "ground_truth_source"),
        check_sft_answer_matches,
    ),
    **{rule: (ANSWER_COLUMNS, _answer_check(rule)) for rule in ANSWER_RULES},
}


def run_check(rule: str, row: Row) -> str | None:
    """Run a registered row check; a crash is reported as the failure's message, never raised."""
    _, check = ROW_CHECKS[rule]
    try:
        return check(row)
    except Exception as exc:  # a check must not take the validator down
        return f"check crashed on this record: {type(exc).__name__}: {exc}"


KNOWN_PROBLEM_TYPES: tuple[str, ...] = tuple(pt.lower() for pt in PROBLEM_TYPES)


# --------------------------------------------------------------------------------------------------
# Media (the only checks that touch the disk, through the cached probe)


def _media_pairs(row: Row) -> list[tuple[str, str]]:
    """(path as written, resolved path) of a row's media; none when a path leaves the root (a file outside
    is never opened: ``media_in_root`` says why)."""
    if check_media_in_root(row):
        return []
    rel = load_json_cell(row.get("media")) or []
    files = load_json_cell(row.get("media_files")) or []
    return list(zip(rel, files, strict=False))


def check_media_in_root(row: Row) -> str | None:
    """The contract's verdict (``contract.checks``), given when the row was built: it needs the root."""
    return (load_json_cell(row.get("record_problems")) or {}).get("media_in_root")


def check_media_exists(row: Row) -> str | None:
    from .media_probe import probe_media

    for rel, path in _media_pairs(row):
        probe = probe_media(path, decode=False)
        if not probe.exists:
            return f"{rel}: {probe.error} (looked for {path})"
    return None


def check_media_decodes(row: Row) -> str | None:
    from .media_probe import probe_media

    for rel, path in _media_pairs(row):
        probe = probe_media(path)
        if probe.exists and probe.kind is None:
            return f"{rel}: {probe.error}"
    return None


def _a(kind: str) -> str:
    return f"an {kind}" if kind == "image" else f"a {kind}"


def check_media_type(row: Row) -> str | None:
    from .media_probe import probe_media

    declared = row.get("data_type_norm")
    for rel, path in _media_pairs(row):
        probe = probe_media(path)
        if probe.kind is None:
            continue  # missing or undecodable: other rules
        if declared in ("image", "video") and probe.kind != declared:
            return f"data_type is {declared!r} but {rel} decodes as {_a(probe.kind)}"
        if probe.ext_kind is not None and probe.ext_kind != probe.kind:
            return f"{rel} has {_a(probe.ext_kind)} extension but decodes as {_a(probe.kind)}"
    return None


ROW_CHECKS.update(
    {
        "media_in_root": (("kind", "record_problems"), check_media_in_root),
        "media_exists": (("media", "media_files", "record_problems"), check_media_exists),
        "media_decodes": (("media", "media_files", "record_problems"), check_media_decodes),
        "media_type": (("media", "media_files", "data_type_norm", "record_problems"), check_media_type),
    }
)
