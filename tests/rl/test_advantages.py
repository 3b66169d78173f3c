"""GRPO / Dr.GRPO / EMA-GRPO advantages against hand-worked numbers, and the fast path against a plain loop."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from onethinker.config import ConfigError, from_dict
from onethinker.contract.tasks import task_key
from onethinker.rl.advantages import (
    AdvantageConfig,
    EMAState,
    TaskMoments,
    compute_advantages,
    update_ema_state,
)

MC = task_key("multiple choice", "image")  # "multiple choice"
NUM = task_key("numerical", "video")  # "numerical"
SEG_IMG = task_key("segmentation", "image")  # "segmentation/image"


def _run(scores, groups, tasks, state=None, **cfg):
    return compute_advantages(
        torch.tensor(scores, dtype=torch.float32),
        torch.tensor(groups),
        tasks,
        state if state is not None else EMAState(),
        AdvantageConfig(**cfg),
    )


def _close(actual: torch.Tensor, expected: list[float], atol: float = 1e-5) -> None:
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=actual.dtype), atol=atol, rtol=0)


# Batch used by the grpo / dr_grpo tests (all one task):
#   group 0: [1, 0, 0, 1]        mean 0.5
#   group 1: [.5, .5, .5, .5]    zero variance
#   group 2: [1, 0]              mean 0.5
SCORES = [1.0, 0.0, 0.0, 1.0, 0.5, 0.5, 0.5, 0.5, 1.0, 0.0]
GROUPS = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2]
TASKS = [MC] * 10


def test_grpo_uses_the_sample_std_of_each_group():
    adv, _, stats = _run(SCORES, GROUPS, TASKS, estimator="grpo")
    # group 0: sample std = sqrt((4 * 0.25) / 3) = 0.577350 -> +-0.5 / 0.577350 = +-0.866025
    # group 1: zero variance -> 0 (not 0/eps noise)
    # group 2: sample std = sqrt((2 * 0.25) / 1) = 0.707107 -> +-0.5 / 0.707107 = +-0.707107
    _close(adv, [0.866025, -0.866025, -0.866025, 0.866025, 0, 0, 0, 0, 0.707107, -0.707107])
    assert torch.equal(adv[4:8], torch.zeros(4))
    assert stats[MC]["guard_fallback_rate"] == 0.0
    # mean |A| = (4 * 0.866025 + 2 * 0.707107) / 10 = 0.487832
    assert stats[MC]["adv_abs_mean"] == pytest.approx(0.487832, abs=1e-5)


def test_dr_grpo_is_the_centred_score():
    adv, _, _ = _run(SCORES, GROUPS, TASKS, estimator="dr_grpo")
    _close(adv, [0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0, 0.5, -0.5])


@pytest.mark.parametrize("estimator", ["grpo", "dr_grpo", "ema_grpo"])
def test_zero_variance_groups_give_exact_zeros(estimator):
    # 0.3 is not exactly representable: a naive (r - mean) / (0 + eps) gives ~1e-11 noise, not 0.
    scores = [0.3, 0.3, 0.3, 0.7, 0.7, 0.7, 0.0, 0.0]
    adv, state, stats = _run(scores, [5, 5, 5, 9, 9, 9, 2, 2], [NUM] * 6 + [MC] * 2, estimator=estimator)
    assert torch.equal(adv, torch.zeros(8))
    # a task whose whole batch is constant: the EMA std is floored at min_std, no NaN anywhere
    assert state.tasks[MC] == TaskMoments(m1=0.0, m2=0.0, updates=1)
    assert stats[MC]["ema_std"] == pytest.approx(1e-3)
    assert all(math.isfinite(v) for s in stats.values() for v in s.values())


def test_ema_first_batch_initialises_then_second_batch_updates_with_beta():
    # Batch 1, one task: group 0 = [1, 0, 0, 1] (mean 0.5), group 1 = [1, 1, 1, 0] (mean 0.75).
    # First batch of the task: m1 = mean = 5/8 = 0.625; m2 = mean of squares = 5/8 = 0.625 (binary).
    # std = sqrt(0.625 - 0.625^2) = sqrt(0.234375) = 0.484123
    # group 0: +-0.5 / 0.484123 = +-1.032796; group 1: 0.25 / 0.484123 = 0.516398, -0.75 / 0.484123 = -1.549193
    scores1 = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0]
    adv1, state1, stats1 = _run(scores1, [0, 0, 0, 0, 1, 1, 1, 1], [MC] * 8)
    assert state1.tasks[MC].m1 == pytest.approx(0.625)
    assert state1.tasks[MC].m2 == pytest.approx(0.625)
    assert state1.tasks[MC].updates == 1
    _close(adv1, [1.032796, -1.032796, -1.032796, 1.032796, 0.516398, 0.516398, 0.516398, -1.549193])
    assert stats1[MC]["ema_mean"] == pytest.approx(0.625)
    assert stats1[MC]["ema_std"] == pytest.approx(0.484123, abs=1e-6)
    assert stats1[MC]["reward_std"] == pytest.approx(0.484123, abs=1e-6)  # batch std = EMA std on batch 1

    # Batch 2: group 2 = [1, 0, 0, 0] (mean 0.25), group 3 = [0, 0, 0, 0] (zero variance).
    # Batch mean = batch mean of squares = 1/8 = 0.125. With beta = 0.99:
    #   m1 = 0.99 * 0.625 + 0.01 * 0.125 = 0.62;  m2 = 0.62 as well
    #   std = sqrt(0.62 - 0.62^2) = sqrt(0.2356) = 0.485386
    # group 2: 0.75 / 0.485386 = 1.545161, -0.25 / 0.485386 = -0.515054; group 3: 0
    scores2 = [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    adv2, state2, stats2 = _run(scores2, [2, 2, 2, 2, 3, 3, 3, 3], [MC] * 8, state=state1, ema_decay=0.99)
    assert state2.tasks[MC].m1 == pytest.approx(0.62)
    assert state2.tasks[MC].m2 == pytest.approx(0.62)
    assert state2.tasks[MC].updates == 2
    _close(adv2, [1.545161, -0.515054, -0.515054, -0.515054, 0, 0, 0, 0])
    assert stats2[MC]["ema_std"] == pytest.approx(0.485386, abs=1e-6)
    # the batch's own std, sqrt(0.125 - 0.125^2) = 0.330719, is what grpo-style scaling would have used
    assert stats2[MC]["reward_std"] == pytest.approx(0.330719, abs=1e-6)


def test_ema_guard_falls_back_to_the_group_population_std():
    # History says "numerical" scores barely move: m1 = 0, m2 = 1e-4 (std 0.01).
    state = EMAState({NUM: TaskMoments(m1=0.0, m2=1e-4, updates=10)})
    # Batch: group 0 = [1, 0, 0, 0], group 1 = [0.02, 0, 0, 0].
    # batch mean = 1.02 / 8 = 0.1275; batch mean of squares = 1.0004 / 8 = 0.12505
    # m1 = 0.99 * 0 + 0.01 * 0.1275 = 0.001275; m2 = 0.99 * 1e-4 + 0.01 * 0.12505 = 0.0013495
    # task std = sqrt(0.0013495 - 0.001275^2) = 0.0367134
    # group 0: 0.75 / 0.0367134 = 20.43 > 5 -> the whole group falls back to its population std
    #          sqrt(0.25 * 0.75) = 0.433013: 0.75 / 0.433013 = 1.732051, -0.25 / 0.433013 = -0.577350
    # group 1: mean 0.005, denominator task std + eps = 0.0367144 (eps = 1e-6 shows at this scale):
    #          0.015 / 0.0367144 = 0.408559, -0.005 / 0.0367144 = -0.136186 (kept)
    adv, new_state, stats = _run(
        [1.0, 0, 0, 0, 0.02, 0, 0, 0], [0, 0, 0, 0, 1, 1, 1, 1], [NUM] * 8, state=state
    )
    _close(adv, [1.732051, -0.577350, -0.577350, -0.577350, 0.408559, -0.136186, -0.136186, -0.136186])
    assert new_state.tasks[NUM].m1 == pytest.approx(0.001275)
    assert new_state.tasks[NUM].m2 == pytest.approx(0.0013495)
    assert new_state.tasks[NUM].updates == 11
    assert stats[NUM]["guard_fallback_rate"] == 0.5  # 1 of 2 groups
    assert stats[NUM]["ema_std"] == pytest.approx(0.0367134, abs=1e-6)
    # a guard of 25 keeps group 0 on the task std: 0.75 / 0.0367144 = 20.4279
    adv_loose, _, stats_loose = _run(
        [1.0, 0, 0, 0, 0.02, 0, 0, 0], [0, 0, 0, 0, 1, 1, 1, 1], [NUM] * 8, state=state, guard=25.0
    )
    assert adv_loose[0].item() == pytest.approx(20.4279, abs=1e-3)
    assert stats_loose[NUM]["guard_fallback_rate"] == 0.0


def test_ema_grpo_balances_tasks_with_different_reward_scales():
    # multiple choice (binary): groups [1, 0, 1, 0] and [1, 1, 1, 0]
    # segmentation (IoU, 10x smaller): groups [.1, 0, .1, 0] and [.1, .1, .1, 0]
    # Task moments, first batch: mc mean 5/8, mean sq 5/8 -> std sqrt(0.234375) = 0.484123;
    #                            seg mean 1/16, mean sq 1/160 -> std 0.0484123 (10x smaller)
    # ema_grpo: mc group 0: +-0.5 / 0.484123 = +-1.032796; seg group 0: +-0.05 / 0.0484123 = +-1.032796
    # dr_grpo: mc +-0.5 but seg +-0.05: the binary task would dominate the gradient 10:1.
    scores = [1.0, 0, 1, 0, 1, 1, 1, 0, 0.1, 0, 0.1, 0, 0.1, 0.1, 0.1, 0]
    groups = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3]
    tasks = [MC] * 8 + [SEG_IMG] * 8
    ema, _, ema_stats = _run(scores, groups, tasks, estimator="ema_grpo")
    dr, _, dr_stats = _run(scores, groups, tasks, estimator="dr_grpo")
    _close(ema[:4], [1.032796, -1.032796, 1.032796, -1.032796])
    torch.testing.assert_close(ema[8:], ema[:8], atol=1e-4, rtol=0)
    _close(dr[:4], [0.5, -0.5, 0.5, -0.5])
    _close(dr[8:12], [0.05, -0.05, 0.05, -0.05])
    assert ema_stats[SEG_IMG]["adv_abs_mean"] == pytest.approx(ema_stats[MC]["adv_abs_mean"], rel=1e-4)
    assert dr_stats[MC]["adv_abs_mean"] == pytest.approx(10 * dr_stats[SEG_IMG]["adv_abs_mean"], rel=1e-4)
    assert ema_stats[SEG_IMG]["ema_std"] == pytest.approx(0.0484123, abs=1e-6)
    assert ema_stats[SEG_IMG]["ema_mean"] == pytest.approx(0.0625)


def test_compute_advantages_is_pure():
    state = EMAState({MC: TaskMoments(m1=0.4, m2=0.3, updates=3)})
    before = copy.deepcopy(state)
    scores = torch.tensor([1.0, 0.0, 0.0, 1.0])
    scores_before = scores.clone()
    _, new_state, _ = compute_advantages(
        scores, torch.tensor([0, 0, 0, 0]), [MC] * 4, state, AdvantageConfig()
    )
    assert state == before
    assert torch.equal(scores, scores_before)
    assert new_state is not state and new_state != state
    # same inputs, same outputs
    again = compute_advantages(scores, torch.tensor([0, 0, 0, 0]), [MC] * 4, state, AdvantageConfig())
    assert again[1] == new_state


@pytest.mark.parametrize("estimator", ["grpo", "dr_grpo"])
def test_ema_state_is_tracked_under_every_estimator(estimator):
    _, state, stats = _run([1.0, 0, 0, 1], [0, 0, 0, 0], [MC] * 4, estimator=estimator)
    assert state.tasks[MC] == TaskMoments(m1=0.5, m2=0.5, updates=1)
    assert stats[MC]["ema_std"] == pytest.approx(0.5)


def test_ema_state_round_trips_through_json():
    _, state, _ = _run([1.0, 0, 0.3, 0.1, 0.7, 0.2], [0, 0, 1, 1, 2, 2], [MC, MC, NUM, NUM, SEG_IMG, SEG_IMG])
    _, state, _ = _run([0.9, 0.1, 0.2, 0.4], [0, 0, 1, 1], [MC, MC, NUM, NUM], state=state)
    restored = EMAState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert restored == state
    assert restored.tasks[MC].updates == 2 and restored.tasks[SEG_IMG].updates == 1
    assert EMAState.from_dict(EMAState().to_dict()) == EMAState()
    with pytest.raises(ValueError):
        EMAState.from_dict({"tasks": {}})
    with pytest.raises(ValueError):
        EMAState.from_dict({"version": 1, "tasks": {MC: {"m1": 0.1}}})


def test_update_happens_before_scaling_and_reduce_sees_local_moments():
    # A reducer standing in for a second rank whose batch of this task was [1, 1] (sum 2, sum sq 2, count 2).
    seen = {}

    def fake_allreduce(local):
        seen.update(local)
        s, q, n = local[MC]
        return {MC: (s + 2.0, q + 2.0, n + 2), NUM: (0.5, 0.25, 1)}

    adv, state, stats = compute_advantages(
        torch.tensor([1.0, 0.0]),
        torch.tensor([7, 7]),
        [MC, MC],
        EMAState(),
        AdvantageConfig(),
        reduce=fake_allreduce,
    )
    assert seen == {MC: (1.0, 1.0, 2)}
    # global batch [1, 0, 1, 1]: m1 = m2 = 0.75, std = sqrt(0.1875) = 0.433013; +-0.5 / 0.433013 = +-1.154701
    _close(adv, [1.154701, -1.154701])
    assert state.tasks[MC] == TaskMoments(m1=0.75, m2=0.75, updates=1)
    assert state.tasks[NUM] == TaskMoments(m1=0.5, m2=0.25, updates=1)  # a task only the other rank saw
    assert set(stats) == {MC}  # stats cover the local batch's tasks
    assert stats[MC]["reward_std"] == pytest.approx(0.433013, abs=1e-6)  # of the global batch


def test_bad_inputs_are_rejected():
    cfg = AdvantageConfig()
    with pytest.raises(ValueError, match="mixes task keys"):
        compute_advantages(torch.tensor([1.0, 0.0]), torch.tensor([0, 0]), [MC, NUM], EMAState(), cfg)
    with pytest.raises(ValueError, match="task_keys"):
        compute_advantages(torch.tensor([1.0, 0.0]), torch.tensor([0, 0]), [MC], EMAState(), cfg)
    with pytest.raises(ValueError, match="NaN"):
        compute_advantages(torch.tensor([1.0, float("nan")]), torch.tensor([0, 0]), [MC, MC], EMAState(), cfg)


def test_update_ema_state_skips_empty_tasks():
    state = update_ema_state(EMAState(), {MC: (0.0, 0.0, 0)}, 0.99)
    assert state == EMAState()


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"estimator": "ppo"}, "grpo.advantage.estimator"),
        ({"ema_decay": 1.0}, "grpo.advantage.ema_decay"),
        ({"ema_decay": -0.1}, "grpo.advantage.ema_decay"),
        ({"min_std": 0.0}, "grpo.advantage.min_std"),
        ({"eps": -1e-6}, "grpo.advantage.eps"),
        ({"guard": 0.0}, "grpo.advantage.guard"),
    ],
)
def test_config_rejects_bad_values_naming_the_key(values, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        from_dict(AdvantageConfig, values, "grpo.advantage")


def test_config_defaults_load():
    cfg = from_dict(AdvantageConfig, {"estimator": "grpo", "guard": 3}, "grpo.advantage")
    assert cfg == AdvantageConfig(estimator="grpo", guard=3.0)
    AdvantageConfig().validate("grpo.advantage")


# --------------------------------------------------------------------------------------------------
# The vectorised estimator against a plain loop over groups.


def _reference(scores, groups, tasks, state, cfg):
    """Slow, obvious implementation of the three estimators (lists and math only)."""
    by_group: dict[int, list[int]] = {}
    for i, g in enumerate(groups):
        by_group.setdefault(g, []).append(i)
    tasks_state = dict(state.tasks)
    for t in sorted(set(tasks)):
        xs = [s for s, k in zip(scores, tasks, strict=True) if k == t]
        mean, mean_sq = sum(xs) / len(xs), sum(x * x for x in xs) / len(xs)
        old = tasks_state.get(t)
        if old is None:
            tasks_state[t] = TaskMoments(mean, mean_sq, 1)
        else:
            b = cfg.ema_decay
            tasks_state[t] = TaskMoments(
                b * old.m1 + (1 - b) * mean, b * old.m2 + (1 - b) * mean_sq, old.updates + 1
            )
    adv = [0.0] * len(scores)
    for idx in by_group.values():
        xs = [scores[i] for i in idx]
        if max(xs) == min(xs):
            continue
        mu = sum(xs) / len(xs)
        pop = math.sqrt(sum((x - mu) ** 2 for x in xs) / len(xs))
        if cfg.estimator == "grpo":
            sample = math.sqrt(sum((x - mu) ** 2 for x in xs) / (len(xs) - 1))
            vals = [(x - mu) / (sample + cfg.eps) for x in xs]
        elif cfg.estimator == "dr_grpo":
            vals = [x - mu for x in xs]
        else:
            std = tasks_state[tasks[idx[0]]].std(cfg.min_std)
            vals = [(x - mu) / (std + cfg.eps) for x in xs]
            if any(abs(v) > cfg.guard for v in vals):
                vals = [(x - mu) / (pop + cfg.eps) for x in xs]
        for i, v in zip(idx, vals, strict=True):
            adv[i] = v
    return adv, EMAState(tasks_state)


_KEYS = [MC, NUM, SEG_IMG]


@st.composite
def _batches(draw):
    n_groups = draw(st.integers(1, 6))
    ids = draw(st.lists(st.integers(-50, 50), min_size=n_groups, max_size=n_groups, unique=True))
    scores, groups, tasks = [], [], []
    for gid in ids:
        size = draw(st.integers(2, 5))
        key = draw(st.sampled_from(_KEYS))
        scale = draw(st.sampled_from([1.0, 0.05, 3.0]))
        xs = draw(st.lists(st.sampled_from([0.0, 0.25, 0.5, 1.0]), min_size=size, max_size=size))
        scores += [x * scale for x in xs]
        groups += [gid] * size
        tasks += [key] * size
    order = draw(st.permutations(list(range(len(scores)))))  # groups need not be contiguous
    return [scores[i] for i in order], [groups[i] for i in order], [tasks[i] for i in order]


@settings(max_examples=60, deadline=None)
@given(
    batch=_batches(),
    estimator=st.sampled_from(["grpo", "dr_grpo", "ema_grpo"]),
    prior=st.booleans(),
    guard=st.sampled_from([1.5, 5.0]),
)
def test_vectorised_matches_reference_loop(batch, estimator, prior, guard):
    scores, groups, tasks = batch
    state = EMAState({MC: TaskMoments(0.3, 0.2, 4), NUM: TaskMoments(0.0, 1e-6, 2)}) if prior else EMAState()
    cfg = AdvantageConfig(estimator=estimator, guard=guard)
    adv, new_state, _ = compute_advantages(
        torch.tensor(scores, dtype=torch.float64), torch.tensor(groups), tasks, state, cfg
    )
    ref_adv, ref_state = _reference(scores, groups, tasks, state, cfg)
    torch.testing.assert_close(adv, torch.tensor(ref_adv, dtype=torch.float64), atol=1e-9, rtol=1e-9)
    assert new_state.tasks.keys() == ref_state.tasks.keys()
    for k, tm in ref_state.tasks.items():
        assert new_state.tasks[k].m1 == pytest.approx(tm.m1, abs=1e-12)
        assert new_state.tasks[k].m2 == pytest.approx(tm.m2, abs=1e-12)
        assert new_state.tasks[k].updates == tm.updates
