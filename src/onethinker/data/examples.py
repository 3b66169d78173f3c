"""From OneThinker records to model inputs: media loaded with the shared budgets, prompts built the same way.

``prompt_example`` (RL, evaluation) and ``sft_example`` (SFT) are the only places a record becomes chat
messages plus media, so the model sees identical prompts and identically sampled frames in every stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from onethinker.config import MediaConfig
from onethinker.data.formats import ground_truth, media_paths, resolve_media
from onethinker.data.media import VideoClip, decode_video, load_image
from onethinker.data.prompts import PromptStyle, build_messages, build_prompt, strip_media_tokens
from onethinker.tasks import canonical_problem_type, task_slug


@dataclass
class Example:
    """One record ready for the processor."""

    messages: list[dict[str, Any]]
    images: list[Image.Image]
    videos: list[VideoClip]
    problem_type: str
    data_type: str
    problem_id: str
    ground_truth: str = ""
    problem: str = ""

    @property
    def slug(self) -> str:
        return task_slug(self.problem_type, self.data_type)


def data_type_of(record: dict[str, Any]) -> str:
    dt = record.get("data_type")
    if isinstance(dt, str) and dt.strip():
        return dt.strip().lower()
    return "video" if record.get("videos") else "image"


def load_media(
    record: dict[str, Any], media_root: str | Path, media: MediaConfig
) -> tuple[list[Image.Image], list[VideoClip]]:
    paths = [resolve_media(media_root, p) for p in media_paths(record)]
    if data_type_of(record) == "video":
        clips = [
            decode_video(
                p, media.video_fps, media.video_max_frames, media.video_min_pixels, media.video_max_pixels
            )
            for p in paths
        ]
        return [], clips
    return [load_image(p, media.image_min_pixels, media.image_max_pixels) for p in paths], []


def prompt_example(
    record: dict[str, Any], media_root: str | Path, media: MediaConfig, style: PromptStyle
) -> Example:
    """An RL or evaluation record as a generation prompt (user turn only)."""
    dt = data_type_of(record)
    pt = canonical_problem_type(record["problem_type"])
    prompt = build_prompt(str(record.get("problem", "")), pt, dt, record.get("options"), style)
    images, videos = load_media(record, media_root, media)
    return Example(
        build_messages(prompt, dt),
        images,
        videos,
        pt,
        dt,
        str(record.get("problem_id", "")),
        ground_truth(record),
        str(record.get("problem", "")),
    )


def sft_example(record: dict[str, Any], media_root: str | Path, media: MediaConfig) -> Example:
    """A sharegpt SFT record (user prompt as written in the file, assistant chain of thought)."""
    turns = record.get("messages") or record.get("conversations") or []
    user = next(t for t in turns if t.get("role", t.get("from")) in ("user", "human"))
    assistant = next(t for t in turns if t.get("role", t.get("from")) in ("assistant", "gpt"))
    text = lambda t: str(t.get("content", t.get("value", "")))  # noqa: E731
    dt = data_type_of(record)
    images, videos = load_media(record, media_root, media)
    messages = build_messages(strip_media_tokens(text(user)), dt, response=text(assistant))
    pt = record.get("problem_type") or ("open-ended")
    return Example(
        messages,
        images,
        videos,
        canonical_problem_type(pt),
        dt,
        str(record.get("problem_id", "")),
        str(record.get("answer", "")),
    )
