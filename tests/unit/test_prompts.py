"""The prompt rule: the ``full`` style is the release's text byte for byte, and one rendering serves SFT, RL and
evaluation."""

from __future__ import annotations

from pathlib import Path

import pytest

from onethinker.contract.prompts import (
    build_messages,
    content_items,
    question_of_user_turn,
    render_prompt,
    type_key_in,
)
from onethinker.contract.tasks import TASK_PAIRS

# The release's own definitions, lines 36-117 of tulerfeng/OneThinker EasyR1/verl/utils/dataset.py (commit
# 768b20f3ede94a2b55f4c276f1f7556f411ed600; Evaluation/Eval/eval_bench.py holds the same text), copied
# verbatim into the fixture folder: the expected values of the tests below.
RELEASE_TEMPLATES = (
    Path(__file__).resolve().parents[1] / "fixtures" / "onethinker_release" / "dataset_py_templates.txt"
)


def _release_definitions() -> dict:
    namespace: dict = {}
    exec(compile(RELEASE_TEMPLATES.read_text(), str(RELEASE_TEMPLATES), "exec"), namespace)  # noqa: S102
    return namespace


_RELEASE = _release_definitions()
QUESTION_TEMPLATE: str = _RELEASE["QUESTION_TEMPLATE"]
TYPE_TEMPLATE: dict[str, str] = _RELEASE["TYPE_TEMPLATE"]


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
