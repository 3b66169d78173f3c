"""Data tests on release-format files (``tests/fixtures/onethinker_release``).

The fixture's files pass validation as they are, each with its media root (training files under the training
root, evaluation files under the evaluation root). Copies with one corruption per case are each rejected on the
corrupted record, naming the file, the record, the field and the rule. The contract's strict parser, which the
stages use, names the same four things.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from onethinker.config import ValidateConfig
from onethinker.contract import MediaRoot, RecordError, parse_record, parse_records, read_records
from onethinker.contract.records import task_index
from onethinker.validation import DatasetReport, FileSpec, validate_dataset

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "onethinker_release"
RL = "train/onethinker_rl_train.json"
SFT_I, SFT_V = "train/onethinker_sft_image.json", "train/onethinker_sft_video.json"
MATH, VIDEO = "eval/eval_mathvista.json", "eval/eval_videomme.json"
SEG_I, SEG_V = "eval/eval_seg_refcoco.json", "eval/eval_seg_mevis.json"
TRAIN_FILES, EVAL_FILES = [RL, SFT_I, SFT_V], [MATH, VIDEO, SEG_I, SEG_V]


def _validate(root: Path) -> DatasetReport:
    train, evals = MediaRoot("train", root / "train"), MediaRoot("eval", root / "eval")
    return validate_dataset(
        [FileSpec(root / f, train) for f in TRAIN_FILES],
        [FileSpec(root / f, evals) for f in EVAL_FILES],
        ValidateConfig(),
    )


@pytest.fixture(scope="module")
def clean_report() -> DatasetReport:
    return _validate(FIX)


def test_release_files_pass_as_they_are(clean_report: DatasetReport) -> None:
    assert clean_report.ok, clean_report.summary_text()
    assert [r.kind for r in clean_report.files] == ["rl", "sft", "sft", "eval", "eval", "eval", "eval"]
    assert clean_report.extra_field_totals() == {"data_source": 3, "difficulty": 1}
    sft_i, sft_v = clean_report.files[1], clean_report.files[2]
    assert sft_i.task_sources == {"rl": 6, "instruction": 1, "answer": 1}
    assert sft_v.task_sources == {"rl": 6, "instruction": 1, "field": 1}


def test_sft_records_get_their_tasks() -> None:
    """The SFT task rule on the release's SFT files, which carry only messages and media."""
    index = task_index(parse_records(read_records(FIX / RL), FIX / RL))
    image = parse_records(read_records(FIX / SFT_I), FIX / SFT_I, index=index)
    video = parse_records(read_records(FIX / SFT_V), FIX / SFT_V, index=index)
    assert [(r.problem_type, r.task_source) for r in image] == [
        ("multiple choice", "rl"),
        ("numerical", "rl"),
        ("regression", "rl"),
        ("OCR", "rl"),
        ("open-ended", "rl"),
        ("math", "rl"),
        ("spatial grounding", "instruction"),  # the release's instruction text in the user turn
        ("segmentation", "answer"),  # a bare question on shared media: the answer's JSON keys
    ]
    assert [(r.problem_type, r.task_source) for r in video] == [
        ("multiple choice", "rl"),
        ("numerical", "rl"),
        ("regression", "rl"),
        ("open-ended", "rl"),
        ("temporal grounding", "rl"),
        ("spatial-temporal grounding", "rl"),
        ("tracking", "instruction"),
        ("segmentation", "field"),  # its own problem_type field
    ]
    assert {r.data_type for r in image} == {"image"} and {r.data_type for r in video} == {"video"}
    # joined records get the RL answer as ground truth and the RL record's prompt (the prompt rule)
    rl = parse_records(read_records(FIX / RL), FIX / RL)
    assert image[0].answer == "A" and image[0].prompt("full") == rl[0].prompt("full")
    assert image[1].prompt("full") == rl[1].prompt("full")  # a bare question gets RL's template


def _copy() -> Callable[[Path], Path]:
    def copy(dest: Path) -> Path:
        shutil.copytree(FIX, dest)
        return dest

    return copy


def _load(root: Path, rel: str) -> list[dict[str, Any]]:
    return json.loads((root / rel).read_text())


def _answer(text: str) -> str:
    return f"<think>Looking.</think>\n<answer>{text}</answer>"


def _same_media_and_question(rec: dict, root: Path) -> None:
    shutil.copy(root / "train/images/red_square.png", root / "eval/images/copied.png")
    rec["path"] = "images/copied.png"  # RL record 0's image, and the same question and options


@dataclass(frozen=True)
class Case:
    id: str
    file: str
    index: int
    rule: str
    field: str
    mutate: Callable[[dict, Path], Any]


CASES = [
    Case(
        "rl_no_placeholder",
        RL,
        9,
        "media_tokens",
        "problem",
        lambda r, _: r.update(problem="How many objects?"),
    ),
    Case("rl_no_problem_id", RL, 3, "required_field", "problem_id", lambda r, _: r.pop("problem_id")),
    Case(
        "rl_video_image",
        RL,
        11,
        "data_type_known",
        "data_type",
        lambda r, _: r.update(data_type="video-image"),
    ),
    Case(
        "rl_bad_option", RL, 8, "option_letter", "answer", lambda r, _: r.update(answer="<answer>E</answer>")
    ),
    Case(
        "sft_wrong_letter",
        SFT_I,
        0,
        "sft_answer_matches",
        "messages[1].content",
        lambda r, _: r["messages"][1].update(content=_answer("B")),
    ),
    Case(
        "sft_two_number_box",
        SFT_I,
        6,
        "box_length",
        "messages[1].content",
        lambda r, _: r["messages"][1].update(content=_answer('{"boxes": [62, 312]}')),
    ),
    Case(
        "sft_tracking_not_json",
        SFT_V,
        6,
        "answer_json",
        "messages[1].content",
        lambda r, _: r["messages"][1].update(content=_answer("it moves right")),
    ),
    Case(
        "sft_missing_media",
        SFT_V,
        3,
        "media_exists",
        "videos",
        lambda r, _: r.update(videos=["videos/nowhere.mp4"]),
    ),
    Case(
        "eval_media_missing",
        MATH,
        1,
        "media_exists",
        "path",
        lambda r, _: r.update(path="images/none.png"),
    ),
    Case(
        "video_image_without_image",
        VIDEO,
        7,
        "media_field",
        "path",
        lambda r, _: r.pop("additional_path"),
    ),
    Case(
        "stg_span_reversed",
        VIDEO,
        5,
        "span_order",
        "solution",
        lambda r, _: r.update(solution=r["solution"].replace("[0.0, 1.75]", "[1.75, 0.0]")),
    ),
    Case(
        "seg_image_bad_rle",
        SEG_I,
        0,
        "segmentation_truth",
        "segmentation_output",
        lambda r, _: r["segmentation_output"]["segmentation_rle"].update(size=[32]),
    ),
    Case(
        "seg_image_no_resolution",
        SEG_I,
        1,
        "segmentation_truth",
        "segmentation_output",
        lambda r, _: r.pop("resolution"),
    ),
    Case(
        "seg_video_frames_after_the_end",
        SEG_V,
        0,
        "segmentation_truth",
        "segmentation_output",
        lambda r, _: r["segmentation_output"]["frames"].extend(f"{i:05d}" for i in range(16, 20)),
    ),
    Case("train_eval_overlap", MATH, 0, "train_eval_disjoint", "path", _same_media_and_question),
]


@pytest.fixture(scope="module")
def corrupted(tmp_path_factory) -> DatasetReport:
    root = _copy()(tmp_path_factory.mktemp("corrupt") / "release")
    files = {f: _load(root, f) for f in TRAIN_FILES + EVAL_FILES}
    for case in CASES:
        case.mutate(files[case.file][case.index], root)
    for rel, records in files.items():
        (root / rel).write_text(json.dumps(records, indent=1))
    return _validate(root)


def test_cases_target_distinct_records() -> None:
    assert len({(c.file, c.index) for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_corrupted_release_file_is_rejected(corrupted: DatasetReport, case: Case) -> None:
    hits = [f for f in corrupted.failures if f.file.endswith(case.file) and f.index == case.index]
    matching = [f for f in hits if f.rule == case.rule]
    assert matching, (
        f"{case.id}: expected rule {case.rule} on record {case.index}, got {[str(f) for f in hits]}"
    )
    failure = matching[0]
    assert failure.field == case.field
    text = str(failure)
    assert text.startswith(failure.file) and case.file in text
    assert f"record {case.index}" in text and f"field '{case.field}'" in text and f"rule {case.rule}" in text


def test_only_corrupted_records_are_reported(corrupted: DatasetReport) -> None:
    reported = {(Path(f.file).name, f.index) for f in corrupted.failures}
    expected = {(Path(c.file).name, c.index) for c in CASES}
    # the SFT record that joins RL record 8 now disagrees with its ground truth: rightly reported too
    expected.add((Path(SFT_V).name, 0))
    assert reported == expected


@pytest.mark.parametrize(
    ("kind", "edit", "field", "rule"),
    [
        ("rl", lambda r: r.pop("answer"), "answer", "required_field"),
        ("rl", lambda r: r.update(problem_type="captioning"), "problem_type", "problem_type_known"),
        ("rl", lambda r: r.update(images=["a.png"]), "videos", "media_field"),
        ("eval", lambda r: r.pop("segmentation_output"), "segmentation_output", "segmentation_truth"),
        (
            "sft",
            lambda r: r.update(messages=[{"role": "user", "content": "<image>hi"}]),
            "messages",
            "sft_messages",
        ),
    ],
    ids=["missing_answer", "unknown_type", "two_media_keys", "seg_without_truth", "one_turn"],
)
def test_strict_parser_names_file_record_field_and_rule(kind, edit, field, rule) -> None:
    """What a stage raises on a bad record it reads (``RecordError``), even when ``validate`` was skipped."""
    source = {"rl": (RL, 15), "eval": (SEG_V, 0), "sft": (SFT_I, 0)}[kind]
    record = read_records(FIX / source[0])[source[1]]
    edit(record)
    with pytest.raises(RecordError) as exc:
        parse_records([*read_records(FIX / source[0])[: source[1]], record], FIX / source[0], kind)
    err = exc.value
    assert (err.where.index, err.problem.field, err.problem.rule) == (source[1], field, rule)
    assert str(err).startswith(f"{FIX / source[0]}: record {source[1]}")
    assert f"field '{field}': rule {rule}: " in str(err)


def test_unknown_fields_are_kept() -> None:
    record = read_records(FIX / RL)[7]
    parsed = parse_record(record, "rl")
    assert parsed.extra == {"difficulty": "easy"} and parsed.raw["difficulty"] == "easy"
