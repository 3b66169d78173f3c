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


# --------------------------------------------------------------------------------------------------
# Updates: every sequence once per epoch, and the same update however it is micro-batched


def test_update_windows_never_straddle_two_updates() -> None:
    from onethinker.rl.trainer import update_windows

    # 10 sequences, 6 per update, micro-batches of 4: the second micro-batch stops at the update's end
    assert update_windows(10, 6, 4) == [[(0, 4), (4, 6)], [(6, 10)]]
    assert update_windows(8, 8, 1) == [[(i, i + 1) for i in range(8)]]
    assert update_windows(8, 8, 8) == [[(0, 8)]]
    assert update_windows(0, 4, 2) == []
    for n, per, micro in ((37, 12, 5), (12, 4, 3), (5, 8, 8)):
        flat = [ab for w in update_windows(n, per, micro) for ab in w]
        assert [i for a, b in flat for i in range(a, b)] == list(range(n))  # each sequence exactly once


def _record_training(tr: GRPOTrainer) -> list[tuple[int, bool]]:
    """(sequences, closes an update) of every micro-batch trained, in order."""
    seen: list[tuple[int, bool]] = []
    loss_fn, backward = tr.loss_fn, tr.engine.backward

    def counting_loss(lp, *args, **kwargs):
        seen.append((int(lp.shape[0]), False))
        return loss_fn(lp, *args, **kwargs)

    def marking_backward(loss, boundary=None):
        seen[-1] = (seen[-1][0], bool(boundary))
        return backward(loss, boundary=boundary)

    tr.loss_fn = counting_loss
    tr.engine.backward = marking_backward
    return seen


def test_each_sequence_is_trained_once_when_micro_does_not_divide_the_update(
    tiny_base, tiny_data, tmp_path
) -> None:
    """global_batch_size * n = 4 sequences per update, micro-batches of 3 (the config check rejects this; the
    trainer must still be right): 8 sequences give updates of 4 + 4, each as micro-batches 3 + 1. The old
    windows overlapped and trained 11 sequences, the middle micro-batch twice."""
    cfg = _cfg(
        tiny_base, tmp_path, steps=1, rollout_batch_size=4, n=2, global_batch_size=2, micro_batch_size=3
    )
    tr = _trainer(cfg, tiny_data)
    seen = _record_training(tr)
    tr.step()
    assert seen == [(3, False), (1, True), (3, False), (1, True)]


def test_same_update_as_one_micro_batch_of_8_or_8_of_1(tiny_sft, tiny_data, tmp_path) -> None:
    """TRL-style invariance: one update over the same 8 sequences, as 1 micro-batch of 8 or as 8 micro-batches
    of 1 with gradient accumulation, gives the same gradient and the same new weights."""
    grads, params = {}, {}
    for micro in (8, 1):
        cfg = _cfg(
            tiny_sft,
            tmp_path / str(micro),
            steps=1,
            rollout_batch_size=2,
            n=4,
            global_batch_size=2,
            micro_batch_size=micro,
        )
        tr = _trainer(cfg, tiny_data)
        step = tr.engine.step

        def capturing_step(tr=tr, step=step, micro=micro):
            if getattr(tr.engine, "_boundary", False):
                grads[micro] = {
                    k: p.grad.detach().clone() for k, p in tr.model.named_parameters() if p.grad is not None
                }
            return step()

        tr.engine.step = capturing_step
        stats = tr.step()
        assert stats.kept_groups == 2
        params[micro] = {k: p.detach().clone() for k, p in tr.model.named_parameters() if p.requires_grad}
    assert grads[8].keys() == grads[1].keys() and grads[8]
    for k in grads[8]:
        assert torch.allclose(grads[8][k], grads[1][k], rtol=1e-4, atol=1e-7), k
    # Adam divides by sqrt(v): where a gradient is float noise (|g| ~ 1e-9) the two summation orders can move a
    # weight by up to lr in either direction. Where the gradient is real, the new weights agree closely.
    lr = tr.cfg.lr
    for k in params[8]:
        diff = (params[8][k] - params[1][k]).abs()
        assert diff.max() <= 2.5 * lr, k  # no step larger than Adam's bound anywhere
        real = grads[8][k].abs() > 1e-6 if k in grads[8] else torch.ones_like(diff, dtype=torch.bool)
        assert torch.all(diff[real] <= 1e-2 * lr + 1e-5 * params[8][k].abs()[real]), k


# --------------------------------------------------------------------------------------------------
# Over-long prompts, missing media, reward timeouts


def _with(item, **changes):
    """``item`` (a record with its media root) with fields of its release record changed, checked again."""
    from onethinker.contract import parse_record
    from onethinker.contract.manifest import RootedRecord

    r = item.record
    return RootedRecord(parse_record({**r.raw, **changes}, r.kind, r.where), item.root)


def test_overlong_prompts_are_skipped_counted_and_named(tiny_base, tiny_data, tmp_path, caplog) -> None:
    """A 20,000-character question is never generated nor trained on (that OOM-killed grpo): it is skipped,
    counted in ``train/skipped_overlong_prompts`` and named in a warning; the batch is refilled."""
    items = tiny_data["rl"]
    long = {i for i in range(len(items)) if i % 4}  # three records in four
    records = [
        # ~20,000 characters more, the media placeholders kept
        _with(x, problem=x.record.raw["problem"] + " Describe every detail." * 900) if i in long else x
        for i, x in enumerate(items)
    ]
    cfg = dataclasses.replace(
        _cfg(tiny_base, tmp_path, steps=1), max_prompt_length=1024, max_filter_retries=3, online_filter=False
    )
    tr = GRPOTrainer(cfg, records, MediaConfig(), "compact", progress=False)
    with caplog.at_level("WARNING", logger="onethinker.rl.trainer"):
        stats = tr.step()
    assert stats.metrics["train/skipped_overlong_prompts"] >= 1
    assert stats.kept_groups >= 1
    assert "max_prompt_length=1024" in caplog.text and "problem_id" in caplog.text
    trained = {s["problem_id"] for s in stats.table_rows}
    assert not trained & {records[i].record.problem_id for i in long}


def test_missing_media_names_the_record(tiny_base, tiny_data, tmp_path) -> None:
    from onethinker.data.media import MediaError

    records = [
        _with(x, images=["images/not-there.png"]) for x in tiny_data["rl"] if x.record.raw.get("images")
    ]
    tr = GRPOTrainer(
        _cfg(tiny_base, tmp_path, steps=1), records[:4], MediaConfig(), "compact", progress=False
    )
    with pytest.raises(
        MediaError, match=r"rl.json: record \d+ \(problem_id=.+\): field 'images': media .*not found"
    ):
        tr.step()


def test_reward_timeouts_are_counted_per_task() -> None:
    from types import SimpleNamespace

    from onethinker.rl.trainer import Sequence

    def seq(slug_pt: str, reasons: list[str]) -> Sequence:
        ex = SimpleNamespace(slug=slug_pt)
        score = {"overall": 0.1, "accuracy": 0.0, "format": 1.0, "structure": 0.5, "reasons": reasons}
        return Sequence(0, ex, {}, None, score, [1, 2])  # type: ignore[arg-type]

    groups = [[seq("math", ["timeout"]), seq("math", ["incorrect"]), seq("multiple_choice", ["timeout"])]]
    m = GRPOTrainer._reward_metrics(None, groups)  # type: ignore[arg-type]
    assert m["train/timeouts/math"] == 1.0 and m["train/timeouts/multiple_choice"] == 1.0
    assert m["train/timeouts"] == 2.0 and "train/reward_fallbacks" in m
