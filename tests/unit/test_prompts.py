"""The unified prompt: one function for every stage, with the task's answer instruction."""

from __future__ import annotations

import pytest

from onethinker.data.prompts import build_messages, build_prompt
from onethinker.tasks import TASK_PAIRS


@pytest.mark.parametrize("pair", TASK_PAIRS, ids=lambda p: p.name)
@pytest.mark.parametrize("style", ["full", "compact"])
def test_every_task_has_an_instruction(pair, style) -> None:
    text = build_prompt("<image>Question?", pair.problem_type, pair.data_type, ["A. x", "B. y"], style)
    assert text.startswith("Question?") and "<image>" not in text
    assert "<answer>" in text or "answer" in text.lower()
    if pair.problem_type == "multiple choice":
        assert "A. x\nB. y" in text


def test_segmentation_instruction_depends_on_modality() -> None:
    assert '"time"' in build_prompt("q", "segmentation", "video", style="compact")
    assert '"time"' not in build_prompt("q", "segmentation", "image", style="compact")


def test_problem_type_is_case_insensitive_and_checked() -> None:
    assert build_prompt("q", "ocr", "image") == build_prompt("q", "OCR", "image")
    with pytest.raises(KeyError, match="unknown problem_type"):
        build_prompt("q", "captioning", "image")


def test_messages_put_media_first() -> None:
    msgs = build_messages("hello", "video", response="<think>a</think><answer>b</answer>")
    assert msgs[0]["content"][0] == {"type": "video"} and msgs[1]["role"] == "assistant"
