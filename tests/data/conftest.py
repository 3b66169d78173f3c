"""Fixtures for the data-validation tests: a small, clean prepared dataset with real media.

``clean_dataset`` writes, once per session, a prepared-data folder in the OneThinker layouts:
``train/rl.json`` (2 records per task pair, 32 in all), ``train/sft_image.json`` and
``train/sft_video.json`` (one SFT record per RL record, with the ground-truth extras), and
``eval/image_bench.json`` / ``eval/video_bench.json`` (1 record per pair; segmentation records with their
masks in ``segmentation_output`` as the release lays them out), with real 32x32 PNGs and 4-second 4-fps
MP4s (distinct pixels per file) under ``media/``. Every answer is well formed for its task. Tests copy it
(``copy_dataset``) before corrupting it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from onethinker.contract.media import MediaRoot
from onethinker.contract.tasks import TASK_PAIRS, TaskPair
from onethinker.data.media import write_video
from onethinker.validation import FileSpec

SIZE = 32
FPS = 4
DURATION = 4.0
NUM_FRAMES = int(FPS * DURATION)
TRAIN_PER_PAIR = 2
OPTIONS = ["A. red", "B. green", "C. blue", "D. yellow"]


def _rle(h: int, w: int) -> dict[str, Any]:
    from pycocotools import mask as mask_utils

    m = np.zeros((h, w), dtype=np.uint8)
    m[8:20, 8:20] = 1
    enc = mask_utils.encode(np.asfortranarray(m))
    return {"size": [h, w], "counts": enc["counts"].decode("ascii")}


def answer_for(pair: TaskPair) -> dict[str, Any]:
    """A well-formed answer (and extras) for a task pair: {"answer": str, "options"?, "masks"?, ...}."""
    pt, dt = pair.problem_type, pair.data_type
    box = [250, 250, 625, 625]
    out: dict[str, Any] = {}
    if pt == "multiple choice":
        out.update(answer="B", options=list(OPTIONS))
    elif pt == "numerical":
        out["answer"] = "3"
    elif pt == "regression":
        out["answer"] = "12.5"
    elif pt == "OCR":
        out["answer"] = "HELLO"
    elif pt == "open-ended":
        out["answer"] = "A green square moves to the right."
    elif pt == "math":
        out["answer"] = "7"
    elif pt == "temporal grounding":
        out["answer"] = json.dumps({"time": [1.0, 3.5]})
    elif pt == "spatial grounding":
        out["answer"] = json.dumps({"boxes": box})
    elif pt == "spatial-temporal grounding":
        out["answer"] = json.dumps(
            {"time": [0.5, 3.0], "boxes": {"1": box, "2": [300, 250, 675, 625], "3": [350, 250, 725, 625]}}
        )
    elif pt == "tracking":
        out["answer"] = json.dumps(
            {"boxes": {str(k): [100 * k, 250, 100 * k + 375, 625] for k in range(1, 5)}}
        )
    elif pt == "segmentation":
        ans: dict[str, Any] = {
            "boxes": box,
            "positive_points": [[400, 400], [450, 450], [500, 500]],
            "negative_points": [[50, 50], [900, 900], [50, 900]],
        }
        if dt == "video":
            ans = {"time": 2.0, **ans}
            keys = [f"{i:05d}" for i in range(NUM_FRAMES)]
            seg = {"frames": keys, "segmentation_rle": {k: _rle(SIZE, SIZE) for k in keys}}
            out["eval_extras"] = {
                "segmentation_output": seg,
                "fps": FPS,
                "resolution": {"width": SIZE, "height": SIZE},
            }
        else:
            seg = {"segmentation_rle": _rle(SIZE, SIZE)}
            out["eval_extras"] = {"segmentation_output": seg, "resolution": {"width": SIZE, "height": SIZE}}
        out["answer"] = json.dumps(ans)
    else:  # pragma: no cover
        raise KeyError(pt)
    return out


def write_image(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    arr = np.full((SIZE, SIZE, 3), rng.integers(0, 256, size=3), dtype=np.uint8)
    x, y = (int(v) for v in rng.integers(0, SIZE - 8, size=2))
    arr[y : y + 8, x : x + 8] = 255 - arr[y, x]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def write_clip(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    frames = np.zeros((NUM_FRAMES, SIZE, SIZE, 3), dtype=np.uint8)
    frames[:] = rng.integers(0, 200, size=3)
    y = int(rng.integers(0, SIZE - 8))
    for t in range(NUM_FRAMES):
        x = t * (SIZE - 8) // NUM_FRAMES
        frames[t, y : y + 8, x : x + 8] = (250, 250, 250)
    write_video(path, frames, FPS)


@dataclass(frozen=True)
class Dataset:
    """A prepared-data folder: ``root`` holds train/, eval/ and media/."""

    root: Path

    @property
    def media(self) -> Path:
        return self.root / "media"

    def read(self, rel: str) -> list[dict[str, Any]]:
        return json.loads((self.root / rel).read_text())

    def write(self, rel: str, records: list[Any]) -> None:
        (self.root / rel).write_text(json.dumps(records, indent=1))

    @property
    def train_files(self) -> list[str]:
        return ["train/rl.json", "train/sft_image.json", "train/sft_video.json"]

    @property
    def eval_files(self) -> list[str]:
        return ["eval/image_bench.json", "eval/video_bench.json"]

    def specs(self, train: list[str] | None = None, evals: list[str] | None = None) -> tuple[list, list]:
        """(training, evaluation) ``FileSpec`` lists, every file's media under ``media/``."""
        root = MediaRoot("media", self.media)
        return (
            [FileSpec(self.root / f, root) for f in (self.train_files if train is None else train)],
            [FileSpec(self.root / f, root) for f in (self.eval_files if evals is None else evals)],
        )


def build_dataset(root: Path) -> Dataset:
    """Write the clean dataset under ``root``."""
    rl: list[dict[str, Any]] = []
    sft: dict[str, list[dict[str, Any]]] = {"image": [], "video": []}
    evals: dict[str, list[dict[str, Any]]] = {"image": [], "video": []}
    seed = 0
    for pair in TASK_PAIRS:
        spec = answer_for(pair)
        ext, key, token = (
            ("png", "images", "<image>") if pair.data_type == "image" else ("mp4", "videos", "<video>")
        )
        for split, n in (("train", TRAIN_PER_PAIR), ("eval", 1)):
            for k in range(n):
                seed += 1
                rel = f"{key}/{split}/{pair.name}-{k}.{ext}"
                (write_image if pair.data_type == "image" else write_clip)(root / "media" / rel, seed)
                pid = f"{split}-{pair.name}-{k:03d}"
                rec: dict[str, Any] = {"problem_id": pid, "problem": f"{token}Question about {pair.name}?"}
                if "options" in spec:
                    rec["options"] = spec["options"]
                wrapped = f"<answer>{spec['answer']}</answer>"
                rec.update(problem_type=pair.problem_type, data_type=pair.data_type)
                if split == "train":
                    rl.append({**rec, "answer": wrapped, key: [rel]})
                    sft[pair.data_type].append(
                        {
                            "messages": [
                                {"role": "user", "content": rec["problem"]},
                                {
                                    "role": "assistant",
                                    "content": f"<think>Looking at the {pair.data_type}, the answer "
                                    f"follows.</think>{wrapped}",
                                },
                            ],
                            key: [rel],
                            "problem_id": pid,
                            "problem_type": pair.problem_type,
                            "data_type": pair.data_type,
                            "answer": wrapped,
                        }
                    )
                else:
                    problem = rec["problem"].replace(token, "")  # evaluation problems carry no placeholder
                    extras = spec.get("eval_extras", {})
                    evals[pair.data_type].append(
                        {**rec, "problem": problem, "solution": wrapped, "path": rel, **extras}
                    )
    ds = Dataset(root)
    (root / "train").mkdir(parents=True, exist_ok=True)
    (root / "eval").mkdir(parents=True, exist_ok=True)
    ds.write("train/rl.json", rl)
    ds.write("train/sft_image.json", sft["image"])
    ds.write("train/sft_video.json", sft["video"])
    ds.write("eval/image_bench.json", evals["image"])
    ds.write("eval/video_bench.json", evals["video"])
    return ds


@pytest.fixture(scope="session")
def clean_dataset(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """The clean dataset (read-only: copy it before changing anything)."""
    return build_dataset(tmp_path_factory.mktemp("clean") / "data")


@pytest.fixture(scope="session")
def copy_dataset(
    clean_dataset: Dataset, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], Dataset]:
    """Copy the clean dataset into a fresh folder named ``name``."""

    def copy(name: str) -> Dataset:
        dest = tmp_path_factory.mktemp(name) / "data"
        shutil.copytree(clean_dataset.root, dest)
        return Dataset(dest)

    return copy
