"""The evaluation cache and the sample fingerprint cover every setting that changes an answer or a score, and
over-long prompts are not generated."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from onethinker.config import MediaConfig, RewardConfig
from onethinker.evaluation import stage as S
from onethinker.evaluation.config import EvaluateConfig

ANSWER_FIELDS = ("max_new_tokens", "max_prompt_length", "engine", "batch_size")


def _changed(value: object) -> object:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    return {"hf": "vllm", "vllm": "hf"}.get(value, f"{value}-other")  # type: ignore[arg-type]


def test_every_setting_that_shapes_an_answer_changes_the_cache_key() -> None:
    cfg, media = EvaluateConfig(), MediaConfig()
    base = S.settings_key(cfg, media, "compact")
    changed = []
    for f in dataclasses.fields(MediaConfig):  # every media field, including any added later
        other = dataclasses.replace(media, **{f.name: _changed(getattr(media, f.name))})
        changed.append((f"media.{f.name}", S.settings_key(cfg, other, "compact")))
    for name in ANSWER_FIELDS:
        other = dataclasses.replace(cfg, **{name: _changed(getattr(cfg, name))})
        changed.append((f"evaluate.{name}", S.settings_key(other, media, "compact")))
    changed.append(("prompt.style", S.settings_key(cfg, media, "full")))
    same = [name for name, key in changed if key == base]
    assert not same, f"these settings do not change the evaluation cache key: {same}"


def test_the_sample_fingerprint_also_covers_the_reward(tiny_data) -> None:
    benches = _benchmarks(tiny_data)
    cfg, media = EvaluateConfig(), MediaConfig()
    base = S.sample_fingerprint(benches, cfg, media, "compact", RewardConfig())
    assert base == S.sample_fingerprint(benches, cfg, media, "compact", None)
    assert base != S.sample_fingerprint(benches, cfg, media, "compact", RewardConfig(math_strict=False))
    assert base != S.sample_fingerprint(
        benches, cfg, dataclasses.replace(media, video_max_frames=7), "compact"
    )


def _benchmarks(tiny_data: dict) -> list:
    return [(f.name, records) for f, records in tiny_data["eval_sets"]][:4]


def _evaluate(tiny_base: Path, tiny_data: dict, tmp_path: Path, cfg: EvaluateConfig, media: MediaConfig):
    from onethinker.evaluation.masks import make_decoder

    return S.evaluate_model(
        "m",
        tiny_base,
        _benchmarks(tiny_data),
        cfg,
        media,
        "compact",
        make_decoder("grabcut"),
        False,
    )


def test_a_changed_media_setting_misses_the_cache(tiny_base, tiny_data, tmp_path, monkeypatch) -> None:
    cfg = EvaluateConfig(max_new_tokens=4, batch_size=8, cache_dir=str(tmp_path / "cache"), log_mlflow=False)
    media = MediaConfig()
    first, _ = _evaluate(tiny_base, tiny_data, tmp_path, cfg, media)
    assert first["model_fingerprint"] and first["skipped_overlong_prompts"] == 0

    def refuse(*args, **kwargs):
        raise RuntimeError("generation needed")

    monkeypatch.setattr("onethinker.modeling.load_model", refuse)
    again, _ = _evaluate(tiny_base, tiny_data, tmp_path, cfg, media)  # all cached: no model is loaded
    assert again["tasks"] == first["tasks"]
    for change in ({"video_max_frames": 4}, {"video_min_pixels": 512}, {"image_min_pixels": 512}):
        with pytest.raises(RuntimeError, match="generation needed"):
            _evaluate(tiny_base, tiny_data, tmp_path, cfg, dataclasses.replace(media, **change))


def test_overlong_prompts_are_not_generated_and_counted(tiny_base, tiny_data, tmp_path, caplog) -> None:
    cfg = EvaluateConfig(
        max_new_tokens=4,
        max_prompt_length=8,
        batch_size=8,
        cache_dir=str(tmp_path / "cache"),
        log_mlflow=False,
    )
    with caplog.at_level("WARNING", logger="onethinker.generation.heldout"):
        summary, rows = _evaluate(tiny_base, tiny_data, tmp_path, cfg, MediaConfig())
    assert summary["skipped_overlong_prompts"] == len(rows) > 0
    assert all(r["response"] == "" and r["accuracy"] == 0.0 for r in rows)
    assert "longer than the limit (8)" in caplog.text
