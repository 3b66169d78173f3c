"""The unified prompt interface: one question template plus a per-task answer instruction.

Every task answers ``<think>…</think><answer>…</answer>``; structured answers are JSON (shapes in
DESIGN.md). ``build_prompt`` is the only function that turns a record into the user's text, and it
is used by SFT data generation, RL rollouts and evaluation alike, so the model sees the same prompt
everywhere.

Two styles:
- ``full``: the wording of the released recipe's templates (a general instruction plus a per-task
  instruction with an example), for real checkpoints.
- ``compact``: one short line per task, for the tiny embedded model, whose context and training
  budget are small. It asks for the same answer shapes.
"""

from __future__ import annotations

from typing import Literal

from onethinker.tasks import canonical_problem_type

PromptStyle = Literal["full", "compact"]

QUESTION_TEMPLATE = (
    "{question}\n"
    "Please answer this question based on the visual content. "
    "Provide your thinking process between the <think> and </think> tags, and then give your final answer "
    "between the <answer> and </answer> tags. "
    "At the end, you must output the final answer in the format:\n"
    "<answer><your_answer_here></answer>\n"
)

FULL_INSTRUCTIONS: dict[str, str] = {
    "multiple choice": "Please provide only the single option letter (e.g., A, B, C, D, etc.) within the "
    "<answer>...</answer> tags.\nExample:\n<answer>A</answer>",
    "numerical": "Please provide only the numerical value within the <answer>...</answer> tags.\n"
    "Example:\n<answer>3.14</answer>",
    "regression": "Please provide only the numerical value within the <answer>...</answer> tags.\n"
    "Example:\n<answer>42.7</answer>",
    "OCR": "Please provide only the transcribed text within the <answer>...</answer> tags.\n"
    "Example:\n<answer>Hello World</answer>",
    "open-ended": "Please provide only your text answer within the <answer>...</answer> tags.\n"
    "Example:\n<answer>The capital of France is Paris.</answer>",
    "math": "Please provide only the final result (a number or LaTeX formula) within the "
    "<answer>...</answer> tags.\nExample:\n<answer>$$-\\dfrac{3}{2}$$</answer>",
    "temporal grounding": "Please provide only the time span in seconds as JSON within the "
    '<answer>...</answer> tags.\nExample:\n<answer>{"time": [12.3, 25.7]}</answer>',
    "spatial grounding": "Please provide only the bounding box as JSON with key 'boxes' within the "
    '<answer>...</answer> tags.\nExample:\n<answer>{"boxes": [35, 227, 437, 932]}</answer>',
    "spatial-temporal grounding": "Please provide only the time span in seconds and bounding boxes as JSON "
    "within the <answer>...</answer> tags.\nYou MUST output one bounding box for every integer second within "
    'the given time span (inclusive).\nExample:\n<answer>{"time": [8.125, 13.483], "boxes": {"9": '
    '[317, 422, 582, 997], "10": [332, 175, 442, 369], "11": [340, 180, 450, 370]}}</answer>\n'
    "Note: Each key in 'boxes' must be an integer second within the span, and its value must be a "
    "4-number bounding box [x1, y1, x2, y2].",
    "tracking": "Please track the target object throughout the video and provide one bounding box per second, "
    'ONLY up to 32 seconds, within the <answer>...</answer> tags.\nExample:\n<answer>{"boxes": {"1": '
    '[405, 230, 654, 463], "2": [435, 223, 678, 446], ..., "32": [415, 203, 691, 487]}}</answer>\n'
    "Note: Each key in 'boxes' must correspond to a second (1, 2, 3, ..., 32) and contain a 4-number "
    "bounding box [x1, y1, x2, y2].",
    "segmentation/image": "This task prepares inputs for image object segmentation with a specialized model "
    "(e.g., SAM2).\nPlease provide ONE bounding box, 3 positive points (clearly INSIDE the object), and 3 "
    "negative points (clearly OUTSIDE the object) within the <answer>...</answer> tags.\nExample:\n"
    '<answer>{"boxes": [x1, y1, x2, y2], "positive_points": [[x,y],[x,y],[x,y]], '
    '"negative_points": [[x,y],[x,y],[x,y]]}</answer>',
    "segmentation/video": "This task prepares inputs for video object segmentation with a specialized model "
    "(e.g., SAM2).\nPlease select ONE representative time (in seconds), and provide ONE bounding box, 3 "
    "positive points (clearly INSIDE the object), and 3 negative points (clearly OUTSIDE the object) within "
    'the <answer>...</answer> tags.\nExample:\n<answer>{"time": <time_in_seconds>, "boxes": '
    '[x1, y1, x2, y2], "positive_points": [[x,y],[x,y],[x,y]], "negative_points": '
    "[[x,y],[x,y],[x,y]]}</answer>",
}

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
    "segmentation/image": 'Answer as JSON {"boxes": [..], "positive_points": [3 x [x, y]], '
    '"negative_points": [3 x [x, y]]}.',
    "segmentation/video": 'Answer as JSON {"time": t, "boxes": [..], "positive_points": [3 x [x, y]], '
    '"negative_points": [3 x [x, y]]}.',
}
COMPACT_PREFIX = "Think in <think></think>, answer in <answer></answer>."


def _instruction_key(problem_type: str, data_type: str) -> str:
    pt = canonical_problem_type(problem_type)
    if pt == "segmentation":
        return "segmentation/video" if str(data_type).strip().lower() == "video" else "segmentation/image"
    return pt


def strip_media_tokens(text: str) -> str:
    """Remove ``<image>``/``<video>`` placeholders (sharegpt files carry them in the user turn)."""
    return text.replace("<image>", "").replace("<video>", "").strip()


def build_prompt(
    problem: str,
    problem_type: str,
    data_type: str,
    options: list[str] | None = None,
    style: PromptStyle = "full",
) -> str:
    """The user text for a record: question, options (multiple choice) and the task's instruction."""
    question = strip_media_tokens(problem)
    if canonical_problem_type(problem_type) == "multiple choice" and options:
        question = f"{question}\nOptions:\n" + "\n".join(str(o) for o in options)
    key = _instruction_key(problem_type, data_type)
    if style == "compact":
        return f"{question}\n{COMPACT_PREFIX} {COMPACT_INSTRUCTIONS[key]}"
    return QUESTION_TEMPLATE.format(question=question) + FULL_INSTRUCTIONS[key]


def build_messages(prompt: str, data_type: str, response: str | None = None) -> list[dict]:
    """HF chat messages: the media placeholder first, then the prompt; optionally the assistant reply."""
    media = {"type": "video"} if str(data_type).strip().lower() == "video" else {"type": "image"}
    messages: list[dict] = [{"role": "user", "content": [media, {"type": "text", "text": prompt}]}]
    if response is not None:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": response}]})
    return messages


def format_response(think: str, answer: str) -> str:
    return f"<think>{think}</think><answer>{answer}</answer>"
