"""The data engine's pure parts, with hand-worked numbers: the choice, backoff, Retry-After, the cache key,
which records are asked for, the SFT record written, and the serve stage's media confinement."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from onethinker.annotate import core
from onethinker.annotate.client import Budget, ResponseCache, backoff_delay, parse_retry_after, request_key
from onethinker.config import ConfigError, load_params
from onethinker.contract import MediaRoot, Record, Where, parse_record
from onethinker.serve import BadRequest, confined_media_path


def test_choose_takes_the_most_accurate_well_formed_response_reaching_the_threshold() -> None:
    scores = [
        {"format": 0.0, "accuracy": 1.0, "overall": 0.9},  # right answer, wrong format: never accepted
        {"format": 1.0, "accuracy": 0.6, "overall": 0.64},
        {"format": 1.0, "accuracy": 0.8, "overall": 0.82},
        {"format": 1.0, "accuracy": 0.8, "overall": 0.85},  # same accuracy, higher overall (structure)
    ]
    assert core.choose(scores, 0.5) == 3
    assert core.choose(scores, 0.9) is None
    assert core.choose(scores[:2], 0.6) == 1  # the threshold is inclusive
    assert core.choose([], 0.0) is None


def test_backoff_doubles_with_jitter_is_capped_and_retry_after_wins() -> None:
    assert backoff_delay(0, 1.0, 60.0, 1.0, None) == 1.0
    assert backoff_delay(3, 1.0, 60.0, 0.5, None) == 4.0  # 1 * 2**3 * 0.5
    assert backoff_delay(10, 1.0, 60.0, 1.2, None) == 60.0
    assert backoff_delay(0, 1.0, 60.0, 1.0, 7.0) == 7.0
    assert backoff_delay(0, 1.0, 5.0, 1.0, 7.0) == 5.0
    assert (
        parse_retry_after("3") == 3.0
        and parse_retry_after(None) is None
        and parse_retry_after("soon") is None
    )
    assert parse_retry_after("Thu, 01 Jan 1970 00:01:40 GMT", now=90.0) == pytest.approx(10.0)


def test_budget_stops_at_tokens_or_cost() -> None:
    b = Budget(token_budget=1000)
    b.add(999)
    assert b.spent() is None
    b.add(1)
    assert "token budget spent: 1000 of 1000" in (b.spent() or "")
    c = Budget(cost_per_1k_tokens=0.5, cost_budget=1.0)
    c.add(1999)  # 0.9995
    assert c.spent() is None
    c.add(1)
    assert "cost budget spent" in (c.spent() or "")


def _rl(problem_id: str, media: str = "img/x.png", problem_type: str = "OCR", answer: str = "cat") -> Record:
    raw = {
        "problem_id": problem_id,
        "problem": "<image>What is written?",
        "problem_type": problem_type,
        "data_type": "image",
        "images": [media],
        "answer": f"<answer>{answer}</answer>",
    }
    return parse_record(raw, "rl", Where("rl.json", 0))


def test_request_key_depends_on_content_not_order_nor_media_location(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for root in (a, b):
        (root / "img").mkdir(parents=True)
        (root / "img" / "x.png").write_bytes(b"\x89PNG same bytes")
    rec = _rl("7")
    kw = dict(model="m", n=2, temperature=1.0, top_p=1.0, max_tokens=8, seed=1)
    keys = []
    for root in (a, b):
        refs = core.media_refs(rec, MediaRoot("train", root), "file", {})
        assert refs[0].url.startswith("file://") and str(root) in refs[0].url
        keys.append(request_key(core.chat_body("q", refs, for_key=True, **kw)))
    assert keys[0] == keys[1]
    refs = core.media_refs(rec, MediaRoot("train", a), "data", {})
    assert refs[0].url.startswith("data:image/png;base64,")
    assert core.media_refs(rec, MediaRoot("train", a), "relative", {})[0].url == "img/x.png"
    assert request_key(core.chat_body("q", refs, for_key=True, **{**kw, "seed": 2})) != keys[0]
    assert request_key({"x": 1, "y": 2}) == request_key({"y": 2, "x": 1})


def test_records_to_annotate_are_rl_records_without_sft_record_in_file_order() -> None:
    rl = [_rl("1", "a.png"), _rl("2", "b.png"), _rl("3", "c.png"), _rl("2", "b.png")]
    assert [r.problem_id for r in core.records_to_annotate(rl, [_rl("x", "b.png")])] == ["1", "3"]
    assert core.record_seed(0, rl[0]) == core.record_seed(0, _rl("1", "a.png"))
    assert core.record_seed(0, rl[0]) != core.record_seed(1, rl[0])


def test_sft_record_is_release_layout_with_relative_media() -> None:
    rec = _rl("9", "a.png", "numerical", "3")
    out = core.sft_record(rec, "<image>How many?", " <think>t</think><answer>3</answer> ", {"accuracy": 1.0})
    assert out["messages"] == [
        {"role": "user", "content": "<image>How many?"},
        {"role": "assistant", "content": "<think>t</think><answer>3</answer>"},
    ]
    assert out["images"] == ["a.png"] and out["answer"] == "<answer>3</answer>"
    partial = core.sft_record(rec, "q", "r", {"accuracy": 0.5})
    assert "answer" not in partial and partial["reward_accuracy"] == 0.5
    assert partial["messages"][0]["content"] == "<image>q"


def test_response_texts_pad_malformed_replies() -> None:
    reply = {"choices": [{"message": {"content": "a"}}, {"message": {"content": None}}, "junk"]}
    assert core.response_texts(reply, 4) == ["a", "", "", ""]
    assert core.response_texts({"error": "x"}, 2) == ["", ""]


def test_cache_entries_are_written_atomically(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "c")
    key = "ab" + "0" * 62
    assert cache.get(key) is None
    cache.put(key, {"choices": []})
    assert cache.get(key) == {"choices": []} and len(cache) == 1
    assert not list((tmp_path / "c").rglob("*.tmp"))
    cache.path(key).write_text("{trunc")  # a torn file (not ours: we replace atomically) reads as a miss
    assert cache.get(key) is None


def test_media_references_are_confined_to_the_media_root(tmp_path: Path) -> None:
    root = tmp_path / "media"
    (root / "img").mkdir(parents=True)
    (root / "img" / "ok.png").write_bytes(b"x")
    (tmp_path / "secret.png").write_bytes(b"x")
    os.symlink(tmp_path / "secret.png", root / "img" / "link.png")
    assert confined_media_path("img/ok.png", root) == (root / "img" / "ok.png").resolve()
    assert confined_media_path((root / "img" / "ok.png").as_uri(), root).name == "ok.png"
    for ref, why in [
        ("../secret.png", "'..' is not allowed"),
        ("img/../../secret.png", "'..' is not allowed"),
        (str(tmp_path / "secret.png"), "outside the media root"),
        ((tmp_path / "secret.png").as_uri(), "outside the media root"),
        ("img/link.png", "outside the media root"),
        ("img/missing.png", "not found"),
        ("https://example.com/x.png", "remote media URL"),
    ]:
        with pytest.raises(BadRequest, match=why.replace("(", r"\(")):
            confined_media_path(ref, root)


def test_annotate_params_are_checked_naming_the_key() -> None:
    p = load_params(None)
    assert p.annotate.enabled is False
    with pytest.raises(ConfigError, match="annotate.api_key_env"):
        load_params(None, {"annotate.api_key_env": "sk-live-123"})
    with pytest.raises(ConfigError, match="annotate.cost_budget"):
        load_params(None, {"annotate.cost_budget": 1.0})
    with pytest.raises(ConfigError, match="annotate.k"):
        load_params(None, {"annotate.k": 0})


def test_disabled_stage_writes_an_empty_result_and_drops_stale_files(tmp_path: Path, monkeypatch) -> None:
    import json

    from typer.testing import CliRunner

    from onethinker.annotate.files import annotated_train_files
    from onethinker.cli import app

    monkeypatch.chdir(tmp_path)
    (tmp_path / "annotated").mkdir()
    (tmp_path / "annotated" / "sft_annotated_image.json").write_text("[]\n")  # from an earlier enabled run
    result = CliRunner().invoke(app, ["annotate"])
    assert result.exit_code == 0 and "disabled" in result.output
    assert json.loads((tmp_path / "annotated" / "manifest.json").read_text()) == {
        "enabled": False,
        "files": [],
    }
    assert not (tmp_path / "annotated" / "sft_annotated_image.json").exists()
    assert json.loads((tmp_path / "metrics" / "annotate.json").read_text())["enabled"] is False
    assert annotated_train_files(tmp_path / "annotated") == []
