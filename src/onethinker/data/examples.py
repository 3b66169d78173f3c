"""From typed records to model inputs: media loaded with the shared budgets, the prompt by the contract's rule.

``prompt_example`` (RL, evaluation) and ``sft_example`` (SFT) are the only places a record becomes chat
messages plus media. Both show the model ``record.prompt(style)`` (``onethinker.contract.prompts``: the same
text for the same record in SFT, RL and evaluation) and sample frames with the same code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PIL import Image

from onethinker.config import MediaConfig
from onethinker.contract import prompts as Pr
from onethinker.contract.checks import media_root_message
from onethinker.contract.media import MediaRoot
from onethinker.contract.records import Record, SFTRecord
from onethinker.contract.tasks import task_slug
from onethinker.data.media import MediaError, VideoClip, decode_video, load_image


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
    record: Record | None = None

    @property
    def slug(self) -> str:
        return task_slug(self.problem_type, self.data_type)

    def reward_item(self, response: str) -> dict[str, Any]:
        """The reward's input for a response to this example (``Record.reward_item``)."""
        if self.record is None:
            raise ValueError("an example built without a record has no ground truth to score against")
        return self.record.reward_item(response)


def media_fields(record: Record) -> list[str]:
    """The field each of a record's media comes from (``images``/``videos``; ``path``/``additional_path``)."""
    if record.kind == "eval":
        return ["path", "additional_path"][: len(record.media)]
    return ["images" if m.kind == "image" else "videos" for m in record.media]


def load_media(
    record: Record, root: MediaRoot, media: MediaConfig
) -> tuple[list[Image.Image], list[VideoClip]]:
    """The record's images and video clips, in order, resolved under ``root`` by the release's rule.

    A path that leaves the root (``..``, an absolute path elsewhere, a link pointing out) is refused before
    anything is opened: ``MediaError`` naming the record, the field and the rule ``media_in_root``."""
    images, videos = [], []
    for m, field in zip(record.media, media_fields(record), strict=True):
        path = root.resolve(m.path, record.kind)
        if not root.contains(path):
            raise MediaError(
                f"{record.where}: field '{field}': rule media_in_root: {media_root_message(m.path, root)}"
            )
        try:
            if m.kind == "video":
                videos.append(
                    decode_video(
                        path,
                        media.video_fps,
                        media.video_max_frames,
                        media.video_min_pixels,
                        media.video_max_pixels,
                    )
                )
            else:
                images.append(load_image(path, media.image_min_pixels, media.image_max_pixels))
        except MediaError as exc:
            raise MediaError(
                f"{record.where}: field '{field}': media {m.path!r} under root {root.name!r}: {exc}"
            ) from exc
    return images, videos


def _example(
    record: Record, root: MediaRoot, media: MediaConfig, style: Pr.PromptStyle, response: str | None
) -> Example:
    images, videos = load_media(record, root, media)
    return Example(
        Pr.build_messages(record.prompt(style), record.media_kinds, response),
        images,
        videos,
        record.problem_type,
        record.data_type,
        record.uid,
        record.ground_truth,
        record.reward_problem,
        record,
    )


def prompt_example(record: Record, root: MediaRoot, media: MediaConfig, style: Pr.PromptStyle) -> Example:
    """An RL or evaluation record as a generation prompt (user turn only)."""
    return _example(record, root, media, style, None)


def sft_example(record: SFTRecord, root: MediaRoot, media: MediaConfig, style: Pr.PromptStyle) -> Example:
    """An SFT record: the user turn by the prompt rule, then the assistant's reply as written in the file."""
    return _example(record, root, media, style, record.response)
