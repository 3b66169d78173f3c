"""Reading the release's files: the one reader, the typed manifest, ``prepare`` from release-format files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from onethinker.config import DataConfig, OneThinkerSourceConfig, PrepareConfig
from onethinker.contract import (
    Manifest,
    ManifestError,
    PreparedData,
    RecordFileError,
    read_records,
    record_kind,
)
from onethinker.contract.manifest import read_manifest
from onethinker.data.prepare import counts_per_task, prepare_onethinker

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "onethinker_release"
EVAL_FILES = ["eval_mathvista.json", "eval_videomme.json", "eval_seg_refcoco.json", "eval_seg_mevis.json"]


def release_config(
    train_root: str | Path = FIX / "train", eval_root: str | Path = FIX / "eval"
) -> PrepareConfig:
    return PrepareConfig(
        source="onethinker",
        onethinker=OneThinkerSourceConfig(
            rl=str(FIX / "train" / "onethinker_rl_train.json"),
            sft=[
                str(FIX / "train" / "onethinker_sft_image.json"),
                str(FIX / "train" / "onethinker_sft_video.json"),
            ],
            eval=[str(FIX / "eval" / name) for name in EVAL_FILES],
            train_media_root=str(train_root),
            eval_media_root=str(eval_root),
        ),
    )


class _Params:
    """The params keys a manifest's media roots name (``config.Params`` in the stages)."""

    def __init__(self, cfg: PrepareConfig) -> None:
        self.prepare = cfg


def test_record_kinds_of_the_release_files() -> None:
    assert {record_kind(r) for r in read_records(FIX / "train" / "onethinker_rl_train.json")} == {"rl"}
    assert {record_kind(r) for r in read_records(FIX / "train" / "onethinker_sft_video.json")} == {"sft"}
    assert {record_kind(r) for name in EVAL_FILES for r in read_records(FIX / "eval" / name)} == {"eval"}


def test_reader_names_file_and_position(tmp_path: Path) -> None:
    with pytest.raises(RecordFileError, match="file not found") as exc:
        read_records(tmp_path / "nope.json")
    assert exc.value.rule == "file_readable"
    bad = tmp_path / "bad.json"
    bad.write_text('[{"problem": "x", "answer": ')
    with pytest.raises(RecordFileError, match=r"bad\.json: not valid JSON at line 1 column") as exc:
        read_records(bad)
    assert exc.value.rule == "file_json"
    (tmp_path / "rows.jsonl").write_text('{"a": 1}\n\n{"a": 2}\n')
    assert read_records(tmp_path / "rows.jsonl") == [{"a": 1}, {"a": 2}]


def test_prepare_keeps_release_records_and_writes_no_absolute_path(tmp_path: Path) -> None:
    data = DataConfig(root=str(tmp_path / "data"))
    result = prepare_onethinker(release_config(), data)
    assert [f.path for f in result.files] == [
        "train/rl.json",
        "train/sft_onethinker_sft_image.json",
        "train/sft_onethinker_sft_video.json",
        *[f"eval/{name}" for name in EVAL_FILES],
    ]
    # record for record, every field kept, media paths as the release writes them
    assert read_records(tmp_path / "data" / "train" / "rl.json") == read_records(
        FIX / "train" / "onethinker_rl_train.json"
    )
    manifest_text = (tmp_path / "data" / "manifest.json").read_text()
    assert str(tmp_path) not in manifest_text and str(FIX) not in manifest_text
    for f in result.files:
        assert str(FIX) not in (tmp_path / "data" / f.path).read_text()
    counts = counts_per_task(result)
    assert sum(counts["train"].values()) == 16 and len(counts["train"]) == 12
    assert len(counts["sft"]) == 12 and len(counts["eval"]) == 12  # SFT tasks derived, all twelve slugs


def test_the_two_media_roots_resolve_from_params(tmp_path: Path) -> None:
    cfg = release_config()
    prepare_onethinker(cfg, DataConfig(root=str(tmp_path / "data")))
    data = PreparedData.load(tmp_path / "data", _Params(cfg))
    assert data.roots["train"].path == FIX / "train" and data.roots["eval"].path == FIX / "eval"
    for kind in ("rl", "sft", "eval"):
        for item in data.rooted(kind):
            for m in item.record.media:
                assert item.root.resolve(m.path, item.record.kind).is_file(), (item.record.where, m.path)
    with pytest.raises(ManifestError, match="prepare.onethinker.eval_media_root"):
        PreparedData.load(tmp_path / "data", _Params(PrepareConfig()))


def test_manifest_is_typed_and_checked(tmp_path: Path) -> None:
    prepare_onethinker(release_config(), DataConfig(root=str(tmp_path)))
    manifest = read_manifest(tmp_path)
    assert isinstance(manifest, Manifest) and manifest.source == "onethinker"
    assert [f.kind for f in manifest.files] == ["rl", "sft", "sft", "eval", "eval", "eval", "eval"]
    raw = json.loads((tmp_path / "manifest.json").read_text())
    raw["files"][0]["media_root"] = "elsewhere"
    with pytest.raises(ManifestError, match=r"'files\[0\]\.media_root' names no media root"):
        Manifest.from_json(raw)
    raw["version"] = 1
    with pytest.raises(ManifestError, match="run `onethinker prepare` again"):
        Manifest.from_json(raw)
