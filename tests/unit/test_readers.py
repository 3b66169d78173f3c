"""Readers for the released OneThinker files (through HF datasets), on hand-written fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from onethinker.config import DataConfig, OneThinkerSourceConfig, PrepareConfig
from onethinker.data.formats import FormatError, load_release, media_paths, read_records, record_kind
from onethinker.data.prepare import counts_per_task, prepare_onethinker, read_manifest

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "onethinker"


def test_load_release_rl_keeps_fields(tmp_path: Path) -> None:
    recs = load_release(FIX / "rl.json", cache_dir=tmp_path / "hf")
    assert [r["problem_id"] for r in recs] == [1, 2, 3]
    assert recs[0]["options"][0] == "A. red"
    assert "options" not in recs[1]  # absent in the file, so absent after the Arrow round trip
    assert recs[2]["videos"] == ["videos/charades_0003.mp4"]
    assert [record_kind(r) for r in recs] == ["rl"] * 3


def test_load_release_sft_and_eval(tmp_path: Path) -> None:
    sft = load_release(FIX / "sft_video.json", cache_dir=tmp_path / "hf")
    assert sft[0]["messages"][1]["role"] == "assistant" and record_kind(sft[0]) == "sft"
    ev = load_release(FIX / "eval" / "refcoco_mini.json", cache_dir=tmp_path / "hf")
    assert record_kind(ev[0]) == "eval" and media_paths(ev[0]) == ["images/refcoco_val_0201.png"]


def test_load_release_missing_and_malformed(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="file not found"):
        load_release(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text('[{"problem": "x", "answer": ')
    with pytest.raises(FormatError, match="bad.json"):
        load_release(bad, cache_dir=tmp_path / "hf")
    with pytest.raises(FormatError, match="line 1 column"):
        read_records(bad)


def test_prepare_from_release_resolves_media(tmp_path: Path) -> None:
    cfg = PrepareConfig(
        source="onethinker",
        onethinker=OneThinkerSourceConfig(
            rl=str(FIX / "rl.json"),
            sft=[str(FIX / "sft_image.json"), str(FIX / "sft_video.json")],
            eval=[str(FIX / "eval" / "charades_mini.json"), str(FIX / "eval" / "refcoco_mini.json")],
            media_root=str(FIX / "media"),
        ),
    )
    data = DataConfig(root=str(tmp_path / "data"))
    result = prepare_onethinker(cfg, data, cache_dir=tmp_path / "hf")
    manifest = read_manifest(data)
    assert manifest["source"] == "onethinker"
    assert len(result.train_files) == 3 and len(result.eval_files) == 2
    for f in result.train_files + result.eval_files:
        for rec in read_records(f):
            for p in media_paths(rec):
                assert Path(p).is_absolute() and Path(p).is_file(), p
    counts = counts_per_task(result)
    assert counts["train"] == {"multiple_choice": 1, "spatial_grounding": 1, "temporal_grounding": 1}
    assert counts["eval"] == {"multiple_choice": 1, "spatial_grounding": 1, "temporal_grounding": 1}
