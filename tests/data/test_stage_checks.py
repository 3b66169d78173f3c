"""The stages check the records they read with validation's rules, with or without ``validate``.

Each case corrupts one record of a copy of the clean prepared dataset (``conftest.py``) and loads it the way
``sft``, ``grpo`` or ``evaluate`` do (``validation.stage_checks.stage_data``, or the evaluation stage's own
``_benchmarks``), with no ``validate`` run: the load stops with a ``RecordError`` naming the file, the record,
its problem_id, the field and the rule, before any record is handed to a trainer. The stage entry points
themselves stop the same way before any model is loaded (no model exists here). Media loading refuses paths
that leave the media root whoever calls it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from onethinker.config import MediaConfig, Params, load_params
from onethinker.contract import (
    Manifest,
    ManifestFile,
    MediaRoot,
    RecordError,
    RootRef,
    parse_record,
    write_manifest,
)
from onethinker.contract.records import Where
from onethinker.data.examples import load_media
from onethinker.data.media import MediaError
from onethinker.validation.stage_checks import stage_data

Record = dict[str, Any]
RL, SFT_I, EVAL_I, EVAL_V = (
    "train/rl.json",
    "train/sft_image.json",
    "eval/image_bench.json",
    "eval/video_bench.json",
)
FILES = {
    RL: "rl",
    SFT_I: "sft",
    "train/sft_video.json": "sft",
    EVAL_I: "eval",
    EVAL_V: "eval",
}


def prepared(ds: Any) -> Params:
    """Write the manifest ``prepare`` would write for the dataset; the params of a stage reading it."""
    files = tuple(ManifestFile(path, kind, "media") for path, kind in FILES.items())
    write_manifest(ds.root, Manifest("synthetic", files, {"media": RootRef(data="media")}))
    return load_params(None, {"data.root": str(ds.root)})


def load_kind(p: Params, kind: str) -> int:
    """Read the records of ``kind`` as the stage that trains or scores them does; how many were read."""
    data = stage_data(p)
    if kind == "eval":
        return sum(len(records) for _, records in data.eval_sets())
    return len(data.rooted(kind))


def _set(key: str, value: Any) -> Callable[[Record, Path], None]:
    return lambda rec, root: rec.__setitem__(key, value)


def _outside(root: Path) -> Path:
    outside = root.parent / "secret.png"
    outside.write_bytes((root / "media/images/train/ocr-image-0.png").read_bytes())
    return outside


def _link_out(rec: Record, root: Path) -> None:
    (root / "media/images/train/link-out.png").symlink_to(_outside(root))
    rec["images"] = ["images/train/link-out.png"]


@dataclass(frozen=True)
class Case:
    id: str
    file: str
    target: str  # problem_id of the record to corrupt
    mutate: Callable[[Record, Path], Any]
    rule: str
    field: str
    message: str = ""  # a part of the expected message


CASES = [
    Case(
        "question_of_20000_chars",
        RL,
        "train-numerical-image-000",
        _set("problem", "<image>" + "x" * 20_000),
        "prompt_length",
        "problem",
        "the prompt text holds 20007 characters, over validate.max_prompt_chars=16384",
    ),
    Case(
        "sft_target_too_long",
        SFT_I,
        "train-numerical-image-000",
        lambda r, _: r["messages"][-1].__setitem__(
            "content", f"<think>{'y' * 17_000}</think><answer>3</answer>"
        ),
        "response_length",
        "messages[1].content",
        "the assistant turn holds 17033 characters, over validate.max_response_chars=16384",
    ),
    Case(
        "nan_answer",
        RL,
        "train-numerical-image-001",
        _set("answer", "<answer>nan</answer>"),
        "answer_number",
        "answer",
        "'nan' is not a finite number",
    ),
    Case(
        "box_x1_after_x2",
        RL,
        "train-spatial_grounding-image-000",
        _set("answer", '<answer>{"boxes": [700, 250, 625, 625]}</answer>'),
        "box_order",
        "answer",
        "has x1 >= x2",
    ),
    Case(
        "duplicate_id",
        RL,
        "train-math-image-001",
        _set("problem_id", "train-math-image-000"),
        "unique_problem_id",
        "problem_id",
        "problem_id 'train-math-image-000' is also used by record",
    ),
    Case(
        "missing_media",
        RL,
        "train-ocr-image-001",
        _set("images", ["images/train/gone.png"]),
        "media_exists",
        "images",
        "images/train/gone.png: file not found",
    ),
    Case(
        "media_dotdot",
        RL,
        "train-ocr-image-000",
        _set("images", ["../../secret.png"]),
        "media_in_root",
        "images",
        "media '../../secret.png' resolves outside the media root 'media'",
    ),
    Case(
        "media_absolute_outside",
        RL,
        "train-math-image-000",
        lambda r, root: r.__setitem__("images", [str(_outside(root))]),
        "media_in_root",
        "images",
        "resolves outside the media root 'media'",
    ),
    Case("media_link_out", RL, "train-open_ended-image-000", _link_out, "media_in_root", "images"),
    Case(
        "eval_media_climbing_out",
        EVAL_I,
        "eval-ocr-image-000",
        _set("path", "images/../../../secret.png"),
        "media_in_root",
        "path",
    ),
    Case(
        "eval_box_x1_after_x2",
        EVAL_V,
        "eval-tracking-video-000",
        _set("solution", '<answer>{"boxes": {"1": [700, 250, 625, 625]}}</answer>'),
        "box_order",
        "solution",
    ),
    Case(
        "sft_answer_not_ground_truth",
        SFT_I,
        "train-numerical-image-001",
        lambda r, _: r["messages"][-1].__setitem__("content", "<think>Count.</think><answer>4</answer>"),
        "sft_answer_matches",
        "messages[1].content",
    ),
]


def corrupt(ds: Any, case: Case) -> int:
    """Apply the case to its record; the record's index."""
    records = ds.read(case.file)
    i = next(k for k, r in enumerate(records) if r.get("problem_id") == case.target)
    case.mutate(records[i], ds.root)
    ds.write(case.file, records)
    return i


def test_clean_data_passes_the_stage_checks(copy_dataset: Callable[[str], Any]) -> None:
    p = prepared(copy_dataset("stage-clean"))
    assert (load_kind(p, "rl"), load_kind(p, "sft"), load_kind(p, "eval")) == (32, 32, 16)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_bad_record_stops_the_load_naming_it(copy_dataset: Callable[[str], Any], case: Case) -> None:
    ds = copy_dataset(f"stage-{case.id}")
    p = prepared(ds)
    i = corrupt(ds, case)
    pid = ds.read(case.file)[i]["problem_id"]
    with pytest.raises(RecordError) as err:
        load_kind(p, FILES[case.file])
    text = str(err.value)
    assert text.startswith(f"{ds.root / case.file}: record {i} (problem_id={pid}): field '{case.field}': ")
    assert f"rule {case.rule}: " in text and case.message in text, text
    assert "\n" not in text


def test_the_stages_stop_before_training_or_scoring(copy_dataset: Callable[[str], Any]) -> None:
    """``run_sft_stage``, ``run_grpo_stage`` and ``run_evaluate_stage`` on data with a bad record (and no model
    anywhere): each stops with the record's error while reading its data."""
    from onethinker.evaluation.stage import run_evaluate_stage
    from onethinker.rl.stage import run_grpo_stage
    from onethinker.sft.stage import run_sft_stage

    for run, case in ((run_grpo_stage, CASES[0]), (run_sft_stage, CASES[1]), (run_evaluate_stage, CASES[-2])):
        ds = copy_dataset(f"stage-run-{case.id}")
        p = prepared(ds)
        corrupt(ds, case)
        with pytest.raises(RecordError, match=re.escape(f"field '{case.field}': rule {case.rule}: ")):
            run(p)


def test_evaluate_checks_benchmark_files_it_is_given(copy_dataset: Callable[[str], Any]) -> None:
    from onethinker.evaluation.stage import _benchmarks

    ds = copy_dataset("stage-benchmarks")
    corrupt(ds, CASES[-3])  # an evaluation path climbing out of the root
    bench = str(ds.root / EVAL_I)
    p = load_params(None, {"evaluate.benchmarks": [bench], "evaluate.media_root": str(ds.media)})
    with pytest.raises(RecordError, match="field 'path': rule media_in_root: "):
        _benchmarks(p.evaluate, p)
    assert json.loads((ds.root / EVAL_I).read_text())  # nothing rewritten


# ----------------------------------------------------------------------------------------------------------
# Media loading (what SFT, GRPO and evaluation call for every record)


def _record(media: str, kind: str = "rl") -> Any:
    raw = (
        {"problem_id": "p1", "problem": "<image>How many?", "answer": "3", "problem_type": "numerical"}
        | {"data_type": "image", "images": [media]}
        if kind == "rl"
        else {"problem": "How many?", "solution": "3", "problem_type": "numerical", "data_type": "image"}
        | {"path": media, "problem_id": "e1"}
    )
    return parse_record(raw, kind, Where("file.json", 4))


@pytest.mark.parametrize(
    ("media", "kind", "field"),
    [
        ("../outside.png", "rl", "images"),
        ("images/../../outside.png", "rl", "images"),
        ("@ABS", "rl", "images"),
        ("link.png", "rl", "images"),
        ("images/../../outside.png", "eval", "path"),
        ("link.png", "eval", "path"),
    ],
)
def test_load_media_refuses_paths_out_of_the_root(tmp_path: Path, media: str, kind: str, field: str) -> None:
    root = tmp_path / "media"
    (root / "images").mkdir(parents=True)
    outside = tmp_path / "outside.png"
    from PIL import Image

    Image.new("RGB", (8, 8)).save(outside)
    (root / "link.png").symlink_to(outside)
    path = str(outside) if media == "@ABS" else media
    with pytest.raises(MediaError) as err:
        load_media(_record(path, kind), MediaRoot("train", root), MediaConfig())
    pid = "p1" if kind == "rl" else "e1"
    assert str(err.value) == (
        f"file.json: record 4 (problem_id={pid}): field '{field}': rule media_in_root: "
        f"media {path!r} resolves outside the media root 'train'"
    )
    # the same words when the outside file does not exist: nothing is revealed about it
    outside.unlink()
    with pytest.raises(MediaError) as again:
        load_media(_record(path, kind), MediaRoot("train", root), MediaConfig())
    assert str(again.value) == str(err.value)


def test_load_media_names_the_record_of_a_missing_file(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    with pytest.raises(MediaError) as err:
        load_media(_record("images/gone.png"), MediaRoot("train", tmp_path), MediaConfig())
    assert str(err.value).startswith(
        "file.json: record 4 (problem_id=p1): field 'images': media 'images/gone.png' under root 'train': "
        "image file not found"
    )
