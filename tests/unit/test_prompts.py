"""The prompt rule: the ``full`` style is the release's text byte for byte, and one rendering serves SFT, RL and
evaluation."""

from __future__ import annotations

import pytest

from onethinker.contract.prompts import (
    build_messages,
    content_items,
    question_of_user_turn,
    render_prompt,
    type_key_in,
)
from onethinker.contract.tasks import TASK_PAIRS

# ---- Copied verbatim from the release: tulerfeng/OneThinker, EasyR1/verl/utils/dataset.py (the same text is in
# ---- Evaluation/Eval/eval_bench.py). The expected values of the tests below; do not edit.
# fmt: off
QUESTION_TEMPLATE = (
    "{Question}\n"
    "Please answer this question based on the visual content."
    "Provide your thinking process between the <think> and </think> tags, and then give your final answer between the <answer> and </answer> tags."
    "At the end, you must output the final answer in the format:\n"
    "<answer><your_answer_here></answer>\n"
)

TYPE_TEMPLATE = {
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
        "Example:\n<answer>{\"time\": [12.3, 25.7]}</answer>"
    ),
    "spatial grounding": (
        "Please provide only the bounding box as JSON with key 'boxes' within the <answer>...</answer> tags.\n"
        "Example:\n<answer>{\"boxes\": [35, 227, 437, 932]}</answer>"
    ),
    "spatial-temporal grounding": (
        "Please provide only the time span in seconds and bounding boxes as JSON within the <answer>...</answer> tags.\n"
        "You MUST output one bounding box for every integer second within the given time span (inclusive).\n"
        "Example:\n"
        "<answer>{\"time\": [8.125, 13.483], \"boxes\": {\"9\": [317, 422, 582, 997], "
        "\"10\": [332, 175, 442, 369], \"11\": [340, 180, 450, 370]}}</answer>\n"
        "Note: Each key in 'boxes' must be an integer second within the span, and its value must be a 4-number bounding box [x1, y1, x2, y2]."
    ),
    "tracking": (
        "Please track the target object throughout the video and provide one bounding box per second, "
        "ONLY up to 32 seconds, within the <answer>...</answer> tags.\n"
        "Example:\n"
        "<answer>{\"boxes\": {\"1\": [405, 230, 654, 463], \"2\": [435, 223, 678, 446], ..., "
        "\"32\": [415, 203, 691, 487]}}</answer>\n"
        "Note: Each key in 'boxes' must correspond to a second (1, 2, 3, ..., 32) and contain a 4-number bounding box [x1, y1, x2, y2]."
    ),
    "segmentation_image": (
        "This task prepares inputs for image object segmentation with a specialized model (e.g., SAM2).\n"
        "Please provide ONE bounding box, 3 positive points (clearly INSIDE the object), and 3 negative points "
        "(clearly OUTSIDE the object) within the <answer>...</answer> tags.\n"
        "Choose informative points that help distinguish object vs. background. Prefer negatives on clear non-object "
        "pixels INSIDE the box when safe; otherwise place them just outside on obvious background. "
        "Negatives must NEVER be on the object or on its boundary.\n"
        "Example:\n"
        "<answer>{\"boxes\": [x1, y1, x2, y2], \"positive_points\": [[x,y],[x,y],[x,y]], "
        "\"negative_points\": [[x,y],[x,y],[x,y]]}</answer>"
    ),
    "segmentation_video": (
        "This task prepares inputs for video object segmentation with a specialized model (e.g., SAM2).\n"
        "Please select ONE representative time (in seconds), and provide ONE bounding box, "
        "3 positive points (clearly INSIDE the object), and 3 negative points (clearly OUTSIDE the object) "
        "within the <answer>...</answer> tags.\n"
        "Choose informative points that help distinguish object vs. background. Prefer negatives on clear non-object "
        "pixels INSIDE the box when safe; otherwise place them just outside on obvious background. "
        "Negatives must NEVER be on the object or on its boundary.\n"
        "Example:\n"
        "<answer>{\"time\": <time_in_seconds>, \"boxes\": [x1, y1, x2, y2], "
        "\"positive_points\": [[x,y],[x,y],[x,y]], \"negative_points\": [[x,y],[x,y],[x,y]]}</answer>"
    )
}
# fmt: on
# ---- end of the copy


def release_prompt(problem: str, pt: str, dt: str, options: list[str] | None) -> str:
    """RLHFDataset._build_messages' text (EasyR1/verl/utils/dataset.py), before it is split at placeholders."""
    question = problem
    if (pt == "multiple choice") and isinstance(options, list) and options:
        opts = "\n".join(options)
        question = f"{question}\nOptions:\n{opts}"
    type_key = (
        ("segmentation_video" if dt == "video" else "segmentation_image") if pt == "segmentation" else pt
    )
    return QUESTION_TEMPLATE.format(Question=question) + TYPE_TEMPLATE.get(type_key, "")


def release_content(prompt_str: str, token: str, kind: str) -> list[dict]:
    """The same method's split of the text into content items at the media placeholder."""
    content_list = []
    for i, content in enumerate(prompt_str.split(token)):
        if i != 0:
            content_list.append({"type": kind})
        if content:
            content_list.append({"type": "text", "text": content})
    return content_list


OPTIONS = ["A. red", "B. green", "C. blue", "D. yellow"]


@pytest.mark.parametrize("pair", TASK_PAIRS, ids=lambda p: p.name)
def test_full_prompt_is_the_release_text(pair) -> None:
    token = f"<{pair.data_type}>"
    problem = f"{token}What is in the {pair.data_type}?"
    options = OPTIONS if pair.problem_type == "multiple choice" else None
    ours = render_prompt(problem, pair.problem_type, pair.data_type, "full", options)
    assert ours == release_prompt(problem, pair.problem_type, pair.data_type, options)
    # and the user turn's content items are the release's
    assert content_items(ours, [pair.data_type]) == release_content(ours, token, pair.data_type)


def test_full_prompt_has_no_space_after_the_sentences() -> None:
    text = render_prompt("q", "numerical", "image", "full")
    assert "visual content.Provide" in text and "</answer> tags.At the end" in text


def test_every_segmentation_template_asks_for_informative_points() -> None:
    for dt in ("image", "video"):
        assert "Choose informative points" in render_prompt("q", "segmentation", dt, "full")


@pytest.mark.parametrize("pair", TASK_PAIRS, ids=lambda p: p.name)
@pytest.mark.parametrize("style", ["full", "compact"])
def test_an_sft_user_turn_renders_back_to_itself(pair, style) -> None:
    """The prompt rule: a user turn that already holds a template gives back its question, and rendering that
    question again gives the same text (SFT trains on what RL and evaluation show)."""
    options = OPTIONS if pair.problem_type == "multiple choice" else None
    turn = render_prompt(f"<{pair.data_type}>Question?", pair.problem_type, pair.data_type, style, options)
    question, key = question_of_user_turn(turn)
    assert key is not None and question.startswith(f"<{pair.data_type}>Question?")
    assert render_prompt(question, pair.problem_type, pair.data_type, style) == turn


def test_a_bare_question_is_its_own_question() -> None:
    assert question_of_user_turn("<image>What colour?") == ("<image>What colour?", None)


def test_the_instruction_text_names_its_task() -> None:
    assert type_key_in(render_prompt("q", "regression", "video", "full")) == "regression"
    assert type_key_in(render_prompt("q", "numerical", "video", "full")) == "numerical"
    assert type_key_in(render_prompt("q", "segmentation", "video", "full")) == "segmentation_video"
    assert type_key_in("no template here") is None


def test_problem_type_is_case_insensitive_and_checked() -> None:
    assert render_prompt("q", "ocr", "image") == render_prompt("q", "OCR", "image")
    with pytest.raises(KeyError, match="unknown problem_type"):
        render_prompt("q", "captioning", "image")


def test_media_without_placeholders_go_first() -> None:
    """Evaluation problems carry no placeholder: eval_bench.py puts the media first (video, then the image of a
    video-image record)."""
    msgs = build_messages("hello", ["video", "image"], response="<think>a</think><answer>b</answer>")
    assert msgs[0]["content"] == [{"type": "video"}, {"type": "image"}, {"type": "text", "text": "hello"}]
    assert msgs[1]["role"] == "assistant"


def test_placeholders_place_the_media() -> None:
    items = content_items("Compare <image> with <image>.", ["image", "image"])
    assert items == [
        {"type": "text", "text": "Compare "},
        {"type": "image"},
        {"type": "text", "text": " with "},
        {"type": "image"},
        {"type": "text", "text": "."},
    ]
