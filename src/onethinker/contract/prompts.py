"""The prompt rule: one function turns a record's question into the user turn, in SFT, RL and evaluation.

**The rule.** The model is shown ``render_prompt(question, problem_type, data_type, style)``:

- ``question`` is the record's ``problem`` with, for multiple choice, its options appended as the release
  does (``f"{problem}\\nOptions:\\n" + "\\n".join(options)``); for an SFT record it is the user turn with
  a rendered template removed (``question_of_user_turn``): the release's SFT user turns that already hold
  the template re-render to the very same text, and a bare question gets the template that RL and
  evaluation add, so SFT, RL and evaluation show the model the same prompt for the same record;
- style ``full`` is the release's text byte for byte:
  ``QUESTION_TEMPLATE.format(Question=question) + TYPE_TEMPLATE[key]`` with the templates of
  ``EasyR1/verl/utils/dataset.py`` and ``Evaluation/Eval/eval_bench.py`` (``key``: the problem type, with
  segmentation split into ``segmentation_image`` / ``segmentation_video``);
- style ``compact`` is one short instruction line (for the tiny embedded model), asking for the same
  answer shapes.

``<image>`` / ``<video>`` placeholders stay in the rendered text and become the media items of the user
turn where they stand (``content_items``), as the release's RL dataset splits them; a text without
placeholders (the release's evaluation files) gets its media first, as ``eval_bench.py`` builds it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from onethinker.contract.tasks import canonical_problem_type, modality

PromptStyle = Literal["full", "compact"]
IMAGE_TOKEN, VIDEO_TOKEN = "<image>", "<video>"

# The release's templates (EasyR1/verl/utils/dataset.py, Evaluation/Eval/eval_bench.py), verbatim: note
# that there is no space after "visual content." nor after "</answer> tags.".
QUESTION_TEMPLATE = (
    "{Question}\n"
    "Please answer this question based on the visual content."
    "Provide your thinking process between the <think> and </think> tags, and then give your final answer "
    "between the <answer> and </answer> tags."
    "At the end, you must output the final answer in the format:\n"
    "<answer><your_answer_here></answer>\n"
)

TYPE_TEMPLATE: dict[str, str] = {
    "multiple choice": (
        "Please provide only the single option letter (e.g., A, B, C, D, etc.) "
        "within the <answer>...</answer> tags.\n"
        "Example:\n<answer>A</answer>"
    ),
    "numerical": (
        "Please provide only the numerical value within the <answer>...</answer> tags.\n"
        "Example:\n<answer>3.14</answer>"
    ),
    "OCR": (
        "Please provide only the transcribed text within the <answer>...</answer> tags.\n"
        "Example:\n<answer>Hello World</answer>"
    ),
    "open-ended": (
        "Please provide only your text answer within the <answer>...</answer> tags.\n"
        "Example:\n<answer>The capital of France is Paris.</answer>"
    ),
    "regression": (
        "Please provide only the numerical value within the <answer>...</answer> tags.\n"
        "Example:\n<answer>42.7</answer>"
    ),
    "math": (
        "Please provide only the final result (a number or LaTeX formula) within the <answer>...</answer> tags.\n"
        "Example:\n<answer>$$-\\dfrac{3}{2}$$</answer>"
    ),
    "temporal grounding": (
        "Please provide only the time span in seconds as JSON within the <answer>...</answer> tags.\n"
        'Example:\n<answer>{"time": [12.3, 25.7]}</answer>'
    ),
    "spatial grounding": (
        "Please provide only the bounding box as JSON with key 'boxes' within the <answer>...</answer> tags.\n"
        'Example:\n<answer>{"boxes": [35, 227, 437, 932]}</answer>'
    ),
    "spatial-temporal grounding": (
        "Please provide only the time span in seconds and bounding boxes as JSON within the <answer>...</answer> "
        "tags.\n"
        "You MUST output one bounding box for every integer second within the given time span (inclusive).\n"
        "Example:\n"
        '<answer>{"time": [8.125, 13.483], "boxes": {"9": [317, 422, 582, 997], '
        '"10": [332, 175, 442, 369], "11": [340, 180, 450, 370]}}</answer>\n'
        "Note: Each key in 'boxes' must be an integer second within the span, and its value must be a 4-number "
        "bounding box [x1, y1, x2, y2]."
    ),
    "tracking": (
        "Please track the target object throughout the video and provide one bounding box per second, "
        "ONLY up to 32 seconds, within the <answer>...</answer> tags.\n"
        "Example:\n"
        '<answer>{"boxes": {"1": [405, 230, 654, 463], "2": [435, 223, 678, 446], ..., '
        '"32": [415, 203, 691, 487]}}</answer>\n'
        "Note: Each key in 'boxes' must correspond to a second (1, 2, 3, ..., 32) and contain a 4-number "
        "bounding box [x1, y1, x2, y2]."
    ),
    "segmentation_image": (
        "This task prepares inputs for image object segmentation with a specialized model (e.g., SAM2).\n"
        "Please provide ONE bounding box, 3 positive points (clearly INSIDE the object), and 3 negative points "
        "(clearly OUTSIDE the object) within the <answer>...</answer> tags.\n"
        "Choose informative points that help distinguish object vs. background. Prefer negatives on clear "
        "non-object pixels INSIDE the box when safe; otherwise place them just outside on obvious background. "
        "Negatives must NEVER be on the object or on its boundary.\n"
        "Example:\n"
        '<answer>{"boxes": [x1, y1, x2, y2], "positive_points": [[x,y],[x,y],[x,y]], '
        '"negative_points": [[x,y],[x,y],[x,y]]}</answer>'
    ),
    "segmentation_video": (
        "This task prepares inputs for video object segmentation with a specialized model (e.g., SAM2).\n"
        "Please select ONE representative time (in seconds), and provide ONE bounding box, "
        "3 positive points (clearly INSIDE the object), and 3 negative points (clearly OUTSIDE the object) "
        "within the <answer>...</answer> tags.\n"
        "Choose informative points that help distinguish object vs. background. Prefer negatives on clear "
        "non-object pixels INSIDE the box when safe; otherwise place them just outside on obvious background. "
        "Negatives must NEVER be on the object or on its boundary.\n"
        "Example:\n"
        '<answer>{"time": <time_in_seconds>, "boxes": [x1, y1, x2, y2], '
        '"positive_points": [[x,y],[x,y],[x,y]], "negative_points": [[x,y],[x,y],[x,y]]}</answer>'
    ),
}

COMPACT_PREFIX = "Think in <think></think>, answer in <answer></answer>."
COMPACT_INSTRUCTIONS: dict[str, str] = {
    "multiple choice": "Answer with the option letter.",
    "numerical": "Answer with a number.",
    "regression": "Answer with a number.",
    "OCR": "Answer with the text.",
    "open-ended": "Answer in words.",
    "math": "Answer with the result.",
    "temporal grounding": 'Answer as JSON {"time": [start, end]} in seconds.',
    "spatial grounding": 'Answer as JSON {"boxes": [x1, y1, x2, y2]} on a 0-1000 grid.',
    "spatial-temporal grounding": 'Answer as JSON {"time": [s, e], "boxes": {"<second>": [x1, y1, x2, y2]}}.',
    "tracking": 'Answer as JSON {"boxes": {"1": [x1, y1, x2, y2], ...}}, one box per second.',
    "segmentation_image": 'Answer as JSON {"boxes": [..], "positive_points": [3 x [x, y]], '
    '"negative_points": [3 x [x, y]]}.',
    "segmentation_video": 'Answer as JSON {"time": t, "boxes": [..], "positive_points": [3 x [x, y]], '
    '"negative_points": [3 x [x, y]]}.',
}

_QUESTION_TAIL = QUESTION_TEMPLATE[len("{Question}") :]  # "\nPlease answer ... </answer>\n"


def type_key(problem_type: str, data_type: str) -> str:
    """The release's template key: the problem type, segmentation split by modality."""
    pt = canonical_problem_type(problem_type)
    if pt == "segmentation":
        return "segmentation_video" if modality(data_type) == "video" else "segmentation_image"
    return pt


def task_of_type_key(key: str) -> tuple[str, str | None]:
    """(problem_type, data_type or None) of a template key."""
    if key.startswith("segmentation_"):
        return "segmentation", key.removeprefix("segmentation_")
    return key, None


def strip_media_tokens(text: str) -> str:
    """Remove ``<image>``/``<video>`` placeholders."""
    return text.replace(IMAGE_TOKEN, "").replace(VIDEO_TOKEN, "").strip()


def question_text(problem: str, problem_type: str, options: Sequence[str] | None = None) -> str:
    """The question as the release shows it: ``problem``, plus the options for multiple choice."""
    if canonical_problem_type(problem_type) == "multiple choice" and options:
        return f"{problem}\nOptions:\n" + "\n".join(str(o) for o in options)
    return problem


def render_prompt(
    question: str,
    problem_type: str,
    data_type: str,
    style: PromptStyle = "full",
    options: Sequence[str] | None = None,
) -> str:
    """The user text for a question (placeholders kept). ``options`` are appended for multiple choice."""
    question = question_text(question, problem_type, options)
    key = type_key(problem_type, data_type)
    if style == "compact":
        return f"{question}\n{COMPACT_PREFIX} {COMPACT_INSTRUCTIONS[key]}"
    return QUESTION_TEMPLATE.format(Question=question) + TYPE_TEMPLATE[key]


def question_of_user_turn(text: str) -> tuple[str, str | None]:
    """Undo :func:`render_prompt` on an SFT user turn: (question, template key or None).

    A turn that ends with a rendered template (either style) gives back the question before it and the
    template's key; any other turn is itself the question (key None)."""
    for key, tail in TYPE_TEMPLATE.items():
        full = _QUESTION_TAIL + tail
        if text.endswith(full):
            return text[: -len(full)], key
    for key, line in COMPACT_INSTRUCTIONS.items():
        compact = f"\n{COMPACT_PREFIX} {line}"
        if text.endswith(compact):
            return text[: -len(compact)], key
    return text, None


def type_key_in(text: str) -> str | None:
    """The template key whose (full) instruction text appears in ``text`` (the longest when several do)."""
    found = [key for key, tail in TYPE_TEMPLATE.items() if tail in text]
    return max(found, key=lambda k: len(TYPE_TEMPLATE[k])) if found else None


def content_items(text: str, media: Sequence[str]) -> list[dict]:
    """The user turn's content: ``media`` (kinds, ``"image"``/``"video"``, in order) and text pieces.

    With placeholders in ``text``, each one becomes its media item where it stands and the text between them
    becomes text items (empty pieces dropped), as the release's RL dataset does; media beyond the
    placeholders go first. Without placeholders, all media go first, then the whole text (evaluation)."""
    pieces: list[dict] = []
    rest = text
    used = {"image": 0, "video": 0}
    while True:
        i, v = rest.find(IMAGE_TOKEN), rest.find(VIDEO_TOKEN)
        cut = min((p for p in (i, v) if p >= 0), default=-1)
        if cut < 0:
            break
        kind = "image" if cut == i else "video"
        if rest[:cut]:
            pieces.append({"type": "text", "text": rest[:cut]})
        pieces.append({"type": kind})
        used[kind] += 1
        rest = rest[cut + len(IMAGE_TOKEN if kind == "image" else VIDEO_TOKEN) :]
    if rest:
        pieces.append({"type": "text", "text": rest})
    left = {"image": media.count("image") - used["image"], "video": media.count("video") - used["video"]}
    head = []
    for kind in media:
        if left[kind] > 0:
            head.append({"type": kind})
            left[kind] -= 1
    return head + pieces


def build_messages(prompt: str, media: Sequence[str], response: str | None = None) -> list[dict]:
    """HF chat messages for a prompt (see :func:`content_items`); optionally the assistant's reply."""
    messages: list[dict] = [{"role": "user", "content": content_items(prompt, media)}]
    if response is not None:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": response}]})
    return messages
