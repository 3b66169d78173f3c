"""Data tests: the validation suites accept clean OneThinker data and reject each kind of corruption.

A clean fixture set (every task pair; RL, SFT and evaluation files; real PNG/MP4 media) must pass. A
copy carrying one corrupted record per case in ``CASES`` (each case on its own record) is validated
once; every case must be reported on its record (index and problem_id) under its rule id, and no
untouched record may be reported.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from onethinker.config import ValidateConfig
from onethinker.validation import DatasetReport, validate_dataset, validate_file, write_reports

Record = dict[str, Any]


def _validate(ds: Any, cfg: ValidateConfig | None = None) -> DatasetReport:
    return validate_dataset(*ds.specs(), cfg or ValidateConfig())


def _answer(rec: Record) -> Any:
    text = rec.get("answer", rec.get("solution"))
    return json.loads(text.removeprefix("<answer>").removesuffix("</answer>"))


def _set_answer(rec: Record, value: Any) -> None:
    key = "answer" if "answer" in rec else "solution"
    rec[key] = f"<answer>{value if isinstance(value, str) else json.dumps(value)}</answer>"


def _edit_answer(fn: Callable[[dict], None]) -> Callable[[Record, Path], None]:
    def edit(rec: Record, root: Path) -> None:
        obj = _answer(rec)
        fn(obj)
        _set_answer(rec, obj)

    return edit


def _assistant(rec: Record) -> dict[str, str]:
    return rec["messages"][-1]


def _garbage_media(rec: Record, root: Path) -> None:
    (root / "media/videos/train/garbage.mp4").write_bytes(b"\x00\x01 this is not a video" * 40)
    rec["videos"] = ["videos/train/garbage.mp4"]


def _copied_train_image(rec: Record, root: Path) -> None:
    shutil.copy(root / "media/images/train/ocr-image-1.png", root / "media/images/eval/copy-of-train.png")
    rec["path"] = "images/eval/copy-of-train.png"


LONG_QUESTION = "<image>" + "How many red squares are there? " * 625  # 20,007 characters


def _outside_file(root: Path, name: str) -> Path:
    """A real file next to the data folder, outside the media root (``root/media``)."""
    outside = root.parent / name
    shutil.copy(root / "media/images/train/ocr-image-0.png", outside)
    return outside


def _absolute_outside(rec: Record, root: Path) -> None:
    rec["videos"] = [str(_outside_file(root, "outside.mp4"))]


def _link_out(rec: Record, root: Path) -> None:
    link = root / "media/images/eval/link-out.png"
    link.symlink_to(_outside_file(root, "secret.png"))
    rec["path"] = "images/eval/link-out.png"


@dataclass(frozen=True)
class Case:
    """One corruption: which record of which file, how, and the rule that must catch it."""

    id: str
    file: str
    target: str  # the clean record's problem_id
    rule: str
    mutate: Callable[[Record, Path], Any]
    field: str | None = None
    also: tuple[str, ...] = ()  # clean records this corruption legitimately implicates (by problem_id)


def _set(key: str, value: Any) -> Callable[[Record, Path], None]:
    return lambda rec, root: rec.__setitem__(key, value)


def _rename(old: str, new: str) -> Callable[[Record, Path], None]:
    return lambda rec, root: rec.__setitem__(new, rec.pop(old))


RL, SFT_I, SFT_V = "train/rl.json", "train/sft_image.json", "train/sft_video.json"
EVAL_I, EVAL_V = "eval/image_bench.json", "eval/video_bench.json"

CASES: list[Case] = [
    # schema
    Case(
        "missing_field",
        RL,
        "train-numerical-image-000",
        "required_field",
        lambda r, _: r.pop("problem"),
        "problem",
    ),
    Case(
        "null_required_field",
        EVAL_V,
        "eval-numerical-video-000",
        "required_field",
        _set("solution", None),
        "solution",
    ),
    Case("wrong_type", RL, "train-numerical-video-000", "field_type", _set("problem", ["what?"]), "problem"),
    Case(
        "wrong_type_problem_id",
        EVAL_V,
        "eval-regression-video-000",
        "field_type",
        _set("problem_id", True),
        "problem_id",
    ),
    Case(
        "unknown_problem_type",
        RL,
        "train-ocr-image-000",
        "problem_type_known",
        _set("problem_type", "captioning"),
        "problem_type",
    ),
    Case(
        "unknown_data_type",
        EVAL_I,
        "eval-math-image-000",
        "data_type_known",
        _set("data_type", "audio"),
        "data_type",
    ),
    Case(
        "problem_type_data_type_mismatch",
        RL,
        "train-open_ended-video-000",
        "task_pair",
        _set("problem_type", "OCR"),
    ),
    Case(
        "images_vs_videos_mismatch",
        RL,
        "train-multiple_choice-video-000",
        "media_field",
        _rename("videos", "images"),
        "images",
    ),
    Case(
        "duplicate_problem_id",
        RL,
        "train-math-image-001",
        "unique_problem_id",
        _set("problem_id", "train-math-image-000"),
        "problem_id",
        also=("train-math-image-000",),
    ),
    Case(
        "options_without_letters",
        EVAL_V,
        "eval-multiple_choice-video-000",
        "options_format",
        _set("options", ["red", "green", "blue"]),
        "options",
    ),
    Case(
        "segmentation_without_fps",
        EVAL_V,
        "eval-segmentation-video-000",
        "segmentation_truth",
        lambda r, _: r.pop("fps"),
        "segmentation_output",
    ),
    Case(
        "eval_without_path",
        EVAL_I,
        "eval-spatial_grounding-image-000",
        "required_field",
        _rename("path", "video_path"),
        "path",
    ),
    Case(
        "video_image_without_image",
        EVAL_V,
        "eval-open_ended-video-000",
        "media_field",
        _set("data_type", "video-image"),
        "path",
    ),
    Case(
        "rl_problem_without_placeholder",
        RL,
        "train-open_ended-image-001",
        "media_tokens",
        lambda r, _: r.__setitem__("problem", r["problem"].replace("<image>", "")),
        "problem",
    ),
    # answers
    Case(
        "empty_answer",
        RL,
        "train-open_ended-image-000",
        "answer_nonempty",
        _set("answer", "<answer> </answer>"),
        "answer",
    ),
    Case(
        "number_not_a_number",
        RL,
        "train-numerical-video-001",
        "answer_number",
        _set("answer", "<answer>three</answer>"),
        "answer",
    ),
    Case(
        "option_letter_not_among_options",
        RL,
        "train-multiple_choice-image-000",
        "option_letter",
        _set("answer", "<answer>E</answer>"),
        "answer",
    ),
    Case(
        "unparseable_json_answer",
        RL,
        "train-spatial_temporal_grounding-video-000",
        "answer_json",
        _set("answer", '<answer>{"time": [0.5, 3.0], "boxes": </answer>'),
        "answer",
    ),
    Case(
        "boxes_not_per_second",
        RL,
        "train-spatial_temporal_grounding-video-001",
        "answer_schema",
        _edit_answer(lambda a: a.__setitem__("boxes", [250, 250, 625, 625])),
        "answer",
    ),
    Case(
        "box_x1_ge_x2",
        RL,
        "train-spatial_grounding-image-000",
        "box_order",
        _edit_answer(lambda a: a.__setitem__("boxes", [700, 250, 625, 625])),
        "answer",
    ),
    Case(
        "box_outside_grid",
        RL,
        "train-segmentation-image-000",
        "box_in_range",
        _edit_answer(lambda a: a.__setitem__("boxes", [250, 250, 625, 1200])),
        "answer",
    ),
    Case(
        "box_wrong_length",
        RL,
        "train-tracking-video-000",
        "box_length",
        _edit_answer(lambda a: a["boxes"].__setitem__("2", [200, 250, 575])),
        "answer",
    ),
    Case(
        "tracking_key_zero",
        RL,
        "train-tracking-video-001",
        "frame_keys",
        _edit_answer(lambda a: a["boxes"].__setitem__("0", [100, 250, 475, 625])),
        "answer",
    ),
    Case(
        "span_outside_duration",
        RL,
        "train-temporal_grounding-video-000",
        "span_in_duration",
        _edit_answer(lambda a: a.__setitem__("time", [1.0, 9.0])),
        "answer",
    ),
    Case(
        "span_reversed",
        EVAL_V,
        "eval-spatial_temporal_grounding-video-000",
        "span_order",
        _edit_answer(lambda a: a.__setitem__("time", [3.0, 0.5])),
        "solution",
    ),
    Case(
        "two_plus_three_points",
        RL,
        "train-segmentation-video-000",
        "points_count",
        _edit_answer(lambda a: a.__setitem__("positive_points", a["positive_points"][:2])),
        "answer",
    ),
    Case(
        "point_outside_grid",
        EVAL_I,
        "eval-segmentation-image-000",
        "points_in_range",
        _edit_answer(lambda a: a["negative_points"].__setitem__(0, [-5, 50])),
        "solution",
    ),
    Case(
        "keyframe_time_string",
        RL,
        "train-segmentation-video-001",
        "keyframe_time",
        _edit_answer(lambda a: a.__setitem__("time", "2.0")),
        "answer",
    ),
    # media
    Case(
        "missing_media",
        RL,
        "train-numerical-image-001",
        "media_exists",
        _set("images", ["images/train/missing.png"]),
        "images",
    ),
    Case("undecodable_media", RL, "train-regression-video-000", "media_decodes", _garbage_media, "videos"),
    Case(
        "image_declared_as_video",
        RL,
        "train-open_ended-video-001",
        "media_type",
        _set("videos", ["images/train/open_ended-image-0.png"]),
        "videos",
    ),
    # SFT
    Case(
        "sft_answer_not_ground_truth",
        SFT_I,
        "train-spatial_grounding-image-001",
        "sft_answer_matches",
        lambda r, _: _assistant(r).__setitem__(
            "content", '<think>It is there.</think><answer>{"boxes": [1, 2, 300, 400]}</answer>'
        ),
        "messages[1].content",
    ),
    Case(
        "sft_missing_think",
        SFT_V,
        "train-temporal_grounding-video-001",
        "sft_think_tag",
        lambda r, _: _assistant(r).__setitem__("content", _assistant(r)["content"].split("</think>")[1]),
        "messages[1].content",
    ),
    Case(
        "sft_missing_answer_tag",
        SFT_V,
        "train-tracking-video-001",
        "sft_answer_tag",
        lambda r, _: _assistant(r).__setitem__("content", "<think>I follow it.</think> It moves right."),
        "messages[1].content",
    ),
    Case(
        "sft_placeholder_count",
        SFT_I,
        "train-ocr-image-001",
        "media_tokens",
        lambda r, _: r["messages"][0].__setitem__("content", "Read the text."),
        "messages",
    ),
    # train / eval overlap: the same media (by content) and the same question
    Case(
        "train_eval_same_media_path",
        EVAL_V,
        "eval-temporal_grounding-video-000",
        "train_eval_disjoint",
        _set("path", "videos/train/temporal_grounding-video-1.mp4"),
        "path",
    ),
    Case(
        "train_eval_same_media_content",
        EVAL_I,
        "eval-ocr-image-000",
        "train_eval_disjoint",
        _copied_train_image,
        "path",
    ),
    # lengths: a 20,000-character question (it OOM-killed grpo), an SFT target over the response limit
    Case(
        "prompt_too_long",
        RL,
        "train-math-image-000",
        "prompt_length",
        _set("problem", LONG_QUESTION),
        "problem",
    ),
    Case(
        "sft_response_too_long",
        SFT_I,
        "train-numerical-image-000",
        "response_length",
        lambda r, _: _assistant(r).__setitem__("content", f"<think>{'y' * 20_000}</think><answer>3</answer>"),
        "messages[1].content",
    ),
    # media confined to their root: climbing out, an absolute path elsewhere, a link pointing out
    Case(
        "media_dotdot",
        RL,
        "train-multiple_choice-image-001",
        "media_in_root",
        _set("images", ["../../outside.png"]),
        "images",
    ),
    Case(
        "media_absolute_outside",
        SFT_V,
        "train-regression-video-001",
        "media_in_root",
        _absolute_outside,
        "videos",
    ),
    Case("media_link_out", EVAL_I, "eval-numerical-image-000", "media_in_root", _link_out, "path"),
]


def _index_of(records: list[Record], pid: str) -> int:
    return next(i for i, r in enumerate(records) if r.get("problem_id") == pid)


@dataclass(frozen=True)
class Corrupted:
    """The corrupted dataset's report, and where each case landed: case id -> (file, index, problem_id)."""

    report: DatasetReport
    where: dict[str, tuple[str, int, str | None]]
    implicated: set[tuple[str, int]]


@pytest.fixture(scope="module")
def corrupted(copy_dataset: Callable[[str], Any]) -> Corrupted:
    ds = copy_dataset("corrupted")
    files = {f: ds.read(f) for f in ds.train_files + ds.eval_files}
    where: dict[str, tuple[str, int, str | None]] = {}
    implicated: set[tuple[str, int]] = set()
    for case in CASES:
        records = files[case.file]
        i = _index_of(records, case.target)
        for pid in case.also:
            implicated.add((case.file, _index_of(records, pid)))
        case.mutate(records[i], ds.root)
        pid = records[i].get("problem_id")
        where[case.id] = (
            case.file,
            i,
            str(pid) if isinstance(pid, str | int) and not isinstance(pid, bool) else None,
        )
        implicated.add((case.file, i))
    for f, records in files.items():
        ds.write(f, records)
    return Corrupted(_validate(ds), where, implicated)


def _short(path: str) -> str:
    return "/".join(Path(path).parts[-2:])


def test_cases_target_distinct_records() -> None:
    targets = [(c.file, c.target) for c in CASES]
    assert len(targets) == len(set(targets))


def test_clean_dataset_passes(clean_dataset: Any) -> None:
    report = _validate(clean_dataset)
    assert report.ok, report.summary_text()
    assert [r.kind for r in report.files] == ["rl", "sft", "sft", "eval", "eval"]
    assert sum(r.num_records for r in report.files) == 32 + 16 + 16 + 8 + 8
    rules = {e.rule for r in report.files for e in r.expectations}
    assert {
        "train_eval_disjoint",
        "segmentation_truth",
        "media_tokens",
        "sft_answer_matches",
        "box_order",
        "media_decodes",
    } <= rules
    assert all(e.success for r in report.files for e in r.expectations)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_corruption_is_rejected(corrupted: Corrupted, case: Case) -> None:
    file, index, pid = corrupted.where[case.id]
    assert not corrupted.report.ok
    hits = [f for f in corrupted.report.failures if _short(f.file) == file and f.index == index]
    assert hits, f"{case.id}: no failure on {file} record {index}"
    matching = [f for f in hits if f.rule == case.rule]
    assert matching, f"{case.id}: expected rule {case.rule}, got {[str(f) for f in hits]}"
    failure = matching[0]
    assert failure.problem_id == pid
    if case.field is not None:
        assert failure.field == case.field
    text = str(failure)
    assert f"record {index}" in text and f"rule {case.rule}" in text and failure.message
    if pid is not None:
        assert f"problem_id={pid}" in text


def test_only_corrupted_records_are_reported(corrupted: Corrupted) -> None:
    reported = {(_short(f.file), f.index) for f in corrupted.report.failures}
    assert None not in {i for _, i in reported}, "no file-level failure expected"
    assert reported == corrupted.implicated


def test_failure_message_names_everything(corrupted: Corrupted) -> None:
    file, index, pid = corrupted.where["box_x1_ge_x2"]
    (failure,) = [f for f in corrupted.report.failures if f.rule == "box_order"]
    assert str(failure) == (
        f"{failure.file}: record {index} (problem_id={pid}): field 'answer': rule box_order: "
        "box [700, 250, 625, 625] has x1 >= x2"
    )
    assert failure.file.endswith(file)


def test_long_question_is_refused_with_the_limit(corrupted: Corrupted) -> None:
    file, index, pid = corrupted.where["prompt_too_long"]
    (failure,) = [f for f in corrupted.report.failures if f.rule == "prompt_length"]
    assert str(failure) == (
        f"{failure.file}: record {index} (problem_id={pid}): field 'problem': rule prompt_length: "
        f"the prompt text holds {len(LONG_QUESTION)} characters, over validate.max_prompt_chars=16384"
    )
    assert failure.file.endswith(file) and len(LONG_QUESTION) == 20_007


def test_media_outside_the_root_is_never_opened(corrupted: Corrupted) -> None:
    """Only ``media_in_root`` is reported for a path outside the root (no existence or decoding verdict, the
    same words whether or not the file exists): nothing is learnt about files outside."""
    for case in ("media_dotdot", "media_absolute_outside", "media_link_out"):
        file, index, _ = corrupted.where[case]
        rules = {f.rule for f in corrupted.report.failures if _short(f.file) == file and f.index == index}
        assert rules == {"media_in_root"}, (case, rules)
    file, index, _ = corrupted.where["media_dotdot"]
    (failure,) = [f for f in corrupted.report.failures if _short(f.file) == file and f.index == index]
    assert failure.message == "media '../../outside.png' resolves outside the media root 'media'"


def test_reports_are_written(corrupted: Corrupted, tmp_path: Path) -> None:
    paths = write_reports(corrupted.report, tmp_path / "reports")
    summary = json.loads(paths["summary"].read_text())
    assert summary["ok"] is False
    assert summary["num_failures"] == len(corrupted.report.failures)
    assert summary["failures_per_rule"]["box_order"] == 1
    rl = next(f for f in summary["files"] if f["path"].endswith("rl.json"))
    assert rl["num_records"] == 32 and rl["failures_per_rule"]["media_decodes"] == 1
    assert any(e["rule"] == "box_order" and e["success"] is False for e in rl["expectations"])
    texts = [f["text"] for f in rl["failures"]]
    assert any("problem_id=train-spatial_grounding-image-000" in t for t in texts)
    page = paths["html"].read_text()
    assert page.startswith("<!DOCTYPE html>") and "<table>" in page
    assert "train-spatial_grounding-image-000" in page and "box_order" in page
    assert "http://" not in page and "https://" not in page and "<script" not in page


def test_summary_is_the_same_bytes_whatever_the_timing(corrupted: Corrupted, tmp_path: Path) -> None:
    """DVC hashes summary.json and index.html (reports/validation is a cached output; base_model depends on
    the summary): a re-validation must not change either."""
    import dataclasses

    written = write_reports(corrupted.report, tmp_path / "a")
    first, page = written["summary"].read_bytes(), written["html"].read_bytes()
    slower = dataclasses.replace(
        corrupted.report,
        files=[dataclasses.replace(f, elapsed_s=f.elapsed_s + 9.0) for f in corrupted.report.files],
        elapsed_s=corrupted.report.elapsed_s + 60.0,
    )
    again = write_reports(slower, tmp_path / "b")
    assert again["summary"].read_bytes() == first
    assert again["html"].read_bytes() == page


def test_multiple_choice_may_carry_its_choices_in_the_problem(copy_dataset: Callable[[str], Any]) -> None:
    """The release appends ``options`` when a record has them; benchmarks with the choices written into the
    problem have none, and the answer is then just a letter."""
    ds = copy_dataset("inline_choices")
    rl = ds.read(RL)
    rec = rl[_index_of(rl, "train-multiple_choice-image-001")]
    rec["problem"] += " Choices: (A) red (B) green (C) blue (D) yellow"
    rec.pop("options")
    ds.write(RL, rl)
    assert validate_file(ds.root / RL, media_root=ds.media).ok


def test_ids_are_namespaced_per_file(copy_dataset: Callable[[str], Any]) -> None:
    """The release numbers each file on its own: an evaluation id that a training file also uses is fine."""
    ds = copy_dataset("same_ids")
    ev = ds.read(EVAL_I)
    ev[0]["problem_id"] = ds.read(RL)[0]["problem_id"]
    ds.write(EVAL_I, ev)
    assert _validate(ds).ok


def test_sft_without_extras_is_joined_with_rl(copy_dataset: Callable[[str], Any]) -> None:
    ds = copy_dataset("release_sft")
    sft = ds.read(SFT_I)
    for rec in sft:
        for key in ("problem_type", "data_type", "answer"):
            rec.pop(key)
    i = _index_of(sft, "train-numerical-image-000")
    sft[i]["messages"][-1]["content"] = "<think>I count them.</think><answer>4</answer>"
    ds.write(SFT_I, sft)
    report = validate_dataset(*ds.specs([RL, SFT_I], []), ValidateConfig())
    failures = report.failures
    assert [(f.index, f.rule) for f in failures] == [(i, "sft_answer_matches")]
    assert "answer of" in failures[0].message and "rl.json: record" in failures[0].message
    # by media and question; the multiple-choice turns lack the options RL appends, so by media alone
    assert report.files[1].task_sources == {"rl": len(sft) - 2, "rl-media": 2}
    alone = validate_file(ds.root / SFT_I, media_root=ds.media)  # no RL file to join with: tags only
    assert alone.ok and alone.kind == "sft"


def test_validate_file_infers_kind(clean_dataset: Any) -> None:
    report = validate_file(clean_dataset.root / EVAL_V, media_root=clean_dataset.media)
    assert report.ok and report.kind == "eval" and report.num_records == 8


def test_check_media_off_skips_decoding(copy_dataset: Callable[[str], Any]) -> None:
    ds = copy_dataset("nomedia")
    rl = ds.read(RL)
    _garbage_media(rl[_index_of(rl, "train-regression-video-000")], ds.root)
    rl[_index_of(rl, "train-numerical-image-001")]["images"] = ["images/train/missing.png"]
    ds.write(RL, rl)
    report = validate_file(ds.root / RL, media_root=ds.media, check_media=False)
    assert [f.rule for f in report.failures] == ["media_exists"]
    assert "media_decodes" not in {e.rule for e in report.expectations}


@pytest.mark.parametrize(
    ("text", "rule", "snippet"),
    [
        ('[{"problem_id": 1,\n  "problem": "x",\n  oops}]', "file_json", "line 3 column 3"),
        ('{"problem_id": 1,\n "problem": "x"}', "file_json", "single object"),
        ("[]", "file_empty", "no records"),
        ('{"problem_id": 1}\n{"problem_id": 2, oops\n', "file_json", "line 2"),
    ],
    ids=["truncated", "object", "empty", "jsonl"],
)
def test_malformed_file_is_a_failure(tmp_path: Path, text: str, rule: str, snippet: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    report = validate_file(path)
    assert not report.ok
    (failure,) = report.failures
    assert failure.rule == rule and snippet in failure.message and failure.index is None
    assert str(failure).startswith(f"{path}: rule {rule}: ")


def test_missing_file_and_non_object_records(tmp_path: Path) -> None:
    missing = validate_file(tmp_path / "nope.json")
    assert [f.rule for f in missing.failures] == ["file_readable"]
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps(["just a string", {"problem_id": "p1"}]))
    report = validate_file(path)
    assert (0, "record_object") in {(f.index, f.rule) for f in report.failures}
    assert (1, "required_field") in {(f.index, f.rule) for f in report.failures}


def test_import_does_not_load_great_expectations() -> None:
    code = "import sys, onethinker.validation; assert 'great_expectations' not in sys.modules; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"
