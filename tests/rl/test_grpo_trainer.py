"""The GRPO trainer on the tiny model: every trainable parameter moves, malformed completions score 0 and
are counted, and resume after an interruption equals an uninterrupted run (EMA state included)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from onethinker.config import MediaConfig
from onethinker.rl.config import GRPOConfig
from onethinker.rl.trainer import GRPOTrainer


@pytest.fixture(scope="module")
def tiny_sft(tiny_base, tiny_data, tmp_path_factory) -> Path:
    """A briefly fine-tuned tiny model: enough to emit <think>/<answer> sometimes, so rewards vary."""
    from onethinker.sft.config import SFTConfig
    from onethinker.sft.trainer import train_sft
    from onethinker.training.model_utils import save_hf_folder

    tmp = tmp_path_factory.mktemp("sft")
    cfg = SFTConfig(
        base_model_dir=str(tiny_base),
        output_dir=str(tmp / "sft"),
        checkpoint_dir=str(tmp / "ckpt"),
        max_steps=40,
        batch_size=8,
        lr=3e-3,
        warmup_ratio=0.05,
        log_every=40,
        save_every=1000,
        heldout_per_task=0,
        log_mlflow=False,
        freeze_vision_tower=False,
        freeze_projector=False,
    )
    model, proc, _ = train_sft(cfg, tiny_data["sft"], MediaConfig(), "compact", progress=False)
    return save_hf_folder(model, proc, tmp / "sft")


def _cfg(model_dir: Path, tmp: Path, **kw) -> GRPOConfig:
    base = dict(
        sft_model_dir=str(model_dir),
        checkpoint_dir=str(tmp / "ckpt"),
        output_dir=str(tmp / "out"),
        steps=2,
        rollout_batch_size=4,
        n=4,
        max_response_length=32,
        global_batch_size=2,
        micro_batch_size=8,
        lr=1e-3,
        weight_decay=0.0,
        online_filter=False,
        freeze_vision_tower=True,
        freeze_projector=True,
        log_mlflow=False,
        save_every=1,
        temperature=1.0,
        seed=0,
    )
    base.update(kw)
    return GRPOConfig(**base)


def _trainer(cfg: GRPOConfig, tiny_data: dict) -> GRPOTrainer:
    return GRPOTrainer(cfg, tiny_data["rl"], MediaConfig(), "compact", progress=False)


def test_malformed_completions_score_zero_and_are_counted(tiny_base, tiny_data, tmp_path) -> None:
    """The untrained base model babbles: every completion is malformed, its format and structure rewards are
    0 (accuracy follows the published definition: the whole response stands as the answer), and the
    malformed rate shows it per task. Nothing raises."""
    tr = _trainer(_cfg(tiny_base, tmp_path, steps=1), tiny_data)
    stats = tr.step()
    assert stats.metrics["train/malformed_rate"] == 1.0
    per_task = [k.rsplit("/", 1)[1] for k in stats.metrics if k.startswith("train/malformed_rate/")]
    assert per_task
    for slug in per_task:
        assert stats.metrics[f"train/malformed_rate/{slug}"] == 1.0
        assert stats.metrics[f"train/reward/format/{slug}"] == 0.0
        assert stats.metrics[f"train/reward/structure/{slug}"] == 0.0
    assert stats.metrics["train/reward/overall"] <= 0.9 * stats.metrics["train/reward/accuracy"] + 1e-9


def test_short_run_moves_every_trainable_parameter(tiny_sft, tiny_data, tmp_path) -> None:
    cfg = _cfg(tiny_sft, tmp_path, steps=3, rollout_batch_size=8, n=4)
    tr = _trainer(cfg, tiny_data)
    before = {k: v.detach().clone() for k, v in tr.model.named_parameters()}
    for _ in range(cfg.steps):
        stats = tr.step()
    assert stats.metrics["train/reward_std/open_ended"] >= 0.0
    unchanged = [k for k, p in tr.model.named_parameters() if p.requires_grad and torch.equal(before[k], p)]
    frozen_moved = [
        k for k, p in tr.model.named_parameters() if not p.requires_grad and not torch.equal(before[k], p)
    ]
    assert not unchanged, unchanged
    assert not frozen_moved
    assert tr.ema.tasks, "the EMA state holds every task seen"


def test_resume_equals_uninterrupted(tiny_sft, tiny_data, tmp_path) -> None:
    full = _trainer(_cfg(tiny_sft, tmp_path / "full", steps=3), tiny_data)
    for _ in range(3):
        full.step()
    cfg = _cfg(tiny_sft, tmp_path / "cut", steps=3)
    first = _trainer(cfg, tiny_data)
    for _ in range(2):
        first.step()
    first.save()
    del first
    resumed = _trainer(cfg, tiny_data)
    assert resumed.maybe_resume() == 2
    resumed.step()
    assert resumed.ema == full.ema
    for (k, a), (_, b) in zip(
        full.model.state_dict().items(), resumed.model.state_dict().items(), strict=True
    ):
        assert torch.allclose(a, b, atol=1e-6), k


def test_online_filter_drops_uniform_groups(tiny_base, tiny_data, tmp_path) -> None:
    """Groups outside [filter_low, filter_high] are dropped; with none left the step reports it and skips the
    update. The untrained model's accuracy stays far below 0.5, so every group falls under filter_low=0.5."""
    cfg = dataclasses.replace(
        _cfg(tiny_base, tmp_path, steps=1), online_filter=True, max_filter_retries=1, filter_low=0.5
    )
    tr = _trainer(cfg, tiny_data)
    stats = tr.step()
    assert stats.metrics["train/filtered_frac"] == 1.0
    assert stats.metrics["train/batch_fill"] == 0.0 and stats.metrics["train/filter_retries"] == 1.0
    assert stats.kept_groups == 0
