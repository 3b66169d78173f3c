"""Group-relative advantage estimators: GRPO, Dr.GRPO and OneThinker's EMA-GRPO, with explicit EMA state.

What it implements
    ``compute_advantages(scores, group_ids, task_keys, state, config) -> (advantages, new_state, stats)``,
    a pure function over one rollout batch of N responses (G groups, one group = the n responses to one
    prompt). ``config.estimator`` picks the estimator:

    - ``grpo``: ``(r - group mean) / (group std + eps)`` with the *sample* (unbiased, n - 1) std of the
      group, as the released EasyR1/verl ``compute_grpo_outcome_advantage`` does (``torch.std``). A group of
      one response gets advantage 0.
    - ``dr_grpo``: ``r - group mean`` (Dr.GRPO drops the std).
    - ``ema_grpo``: the paper's estimator. Each task key (``onethinker.tasks.task_key``: the problem type,
      segmentation split into ``segmentation/image`` and ``segmentation/video``) keeps an exponential
      moving average of the first and second moments of its raw scores. For every task in the batch the
      moments are updated first (``m <- beta * m + (1 - beta) * batch moment``; the first batch of a task
      initialises ``m1``/``m2`` to that batch's mean and mean of squares), then
      ``task std = sqrt(max(m2 - m1**2, min_std**2))`` and ``A = (r - group mean) / (task std + eps)``.
      Guard: a group in which any ``|A| > guard`` falls back, as a whole, to
      ``(r - group mean) / (population std of the group + eps)``.

    Every estimator gives exactly 0 to every response of a zero-variance group (no NaN, no 1e-11 noise).
    The EMA moments are tracked under every estimator (only ``ema_grpo`` divides by them), so a ``grpo`` or
    ``dr_grpo`` run logs the same ``ema_mean``/``ema_std`` curves and its checkpoints carry the same state.

How it departs from the released code
    The released OneThinker code keeps the EMA statistics in a process-local global that is never saved:
    they reset to the first-batch initialisation on every resume and differ between data-parallel ranks
    (each rank averages only its own shard). Here the statistics are an explicit ``EMAState`` value that
    goes in and comes out of the function, is saved in checkpoints (``to_dict``/``from_dict``, JSON), and,
    under data parallelism, is updated from per-task moments all-reduced across ranks
    (``allreduce_task_moments``), so every rank holds identical state, equal to what one process computes
    on the global batch. Groups never span ranks, so group means and stds stay local.

How to use it
    >>> cfg = AdvantageConfig(estimator="ema_grpo")
    >>> state = EMAState()                       # or EMAState.from_dict(checkpoint["ema_state"])
    >>> adv, state, stats = compute_advantages(scores, group_ids, task_keys, state, cfg,
    ...                                        reduce=allreduce_task_moments)  # None on one process
    >>> stats["multiple choice"]["ema_std"]

    ``reduce`` is ``None`` (one process), any callable mapping ``{task: (sum, sum_sq, count)}`` to the
    global ``{task: (sum, sum_sq, count)}``, or a ``torch.distributed`` process group (then
    ``allreduce_task_moments(local, group=reduce)`` is used). Every rank must call it at the same step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from onethinker.config import require

if TYPE_CHECKING:  # torch is imported where it is used: loading params (AdvantageConfig) stays light
    import torch

Estimator = Literal["grpo", "dr_grpo", "ema_grpo"]
ESTIMATORS: tuple[str, ...] = ("grpo", "dr_grpo", "ema_grpo")

TaskMomentSums = dict[str, tuple[float, float, int]]
"""Per task key: (sum of scores, sum of squared scores, number of scores)."""
MomentReducer = Callable[[TaskMomentSums], TaskMomentSums]


@dataclass(frozen=True)
class AdvantageConfig:
    """How advantages are estimated from the scalar scores of each rollout group."""

    estimator: Estimator = "ema_grpo"
    """``grpo``: (r - group mean) / (group sample std + eps); ``dr_grpo``: r - group mean; ``ema_grpo``:
    (r - group mean) / (per-task EMA std + eps), with the guard fallback."""
    ema_decay: float = 0.99
    """beta of the per-task EMA of the score moments: m <- beta * m + (1 - beta) * batch moment."""
    min_std: float = 1e-3
    """Floor of the per-task EMA std (a task whose scores are nearly constant is not blown up)."""
    eps: float = 1e-6
    """Added to every std denominator."""
    guard: float = 5.0
    """ema_grpo only: a group with any |advantage| above this falls back to its own population std."""

    def validate(self, key: str) -> None:
        require(self.estimator in ESTIMATORS, f"{key}.estimator", f"must be one of {list(ESTIMATORS)}")
        require(0.0 <= self.ema_decay < 1.0, f"{key}.ema_decay", "must be in [0, 1)")
        require(math.isfinite(self.min_std) and self.min_std > 0, f"{key}.min_std", "must be positive")
        require(math.isfinite(self.eps) and self.eps >= 0, f"{key}.eps", "must be >= 0 and finite")
        require(
            self.guard > 0 and not math.isnan(self.guard), f"{key}.guard", "must be positive (.inf disables)"
        )


@dataclass(frozen=True)
class TaskMoments:
    """EMA of one task's raw-score moments."""

    m1: float
    """EMA of the mean score."""
    m2: float
    """EMA of the mean squared score."""
    updates: int = 1
    """Number of batches that updated it (the first one initialised it)."""

    def std(self, min_std: float) -> float:
        return math.sqrt(max(self.m2 - self.m1 * self.m1, min_std * min_std))


@dataclass
class EMAState:
    """Per-task EMA statistics of EMA-GRPO: saved in checkpoints, identical on every rank.

    Treated as a value: ``compute_advantages`` returns a new one and never mutates its input.
    Equality (``==``) compares every task's moments exactly.
    """

    tasks: dict[str, TaskMoments] = field(default_factory=dict)

    VERSION = 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (floats round-trip exactly through ``json``)."""
        return {
            "version": self.VERSION,
            "tasks": {
                k: {"m1": float(v.m1), "m2": float(v.m2), "updates": int(v.updates)}
                for k, v in sorted(self.tasks.items())
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EMAState:
        if (
            not isinstance(data, dict)
            or data.get("version") != cls.VERSION
            or not isinstance(data.get("tasks"), dict)
        ):
            raise ValueError(f"not an EMAState dict (version {cls.VERSION}): {data!r}")
        tasks = {}
        for k, v in data["tasks"].items():
            try:
                tasks[str(k)] = TaskMoments(m1=float(v["m1"]), m2=float(v["m2"]), updates=int(v["updates"]))
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"EMAState task {k!r}: bad entry {v!r}") from exc
        return cls(tasks=tasks)


# --------------------------------------------------------------------------------------------------
# Distributed moments


def allreduce_task_moments(local: TaskMomentSums, group: Any = None) -> TaskMomentSums:
    """Sum per-task ``(sum, sum_sq, count)`` over the ranks of ``group`` (default: the world).

    Ranks may hold different task sets. The key lists are first all-gathered (``all_gather_object``) and
    their sorted union fixes the row order of one float64 ``(K, 3)`` tensor that is all-reduced (SUM), so
    the result is the same on every rank and any task key works, not only those of ``onethinker.tasks``.
    Without an initialised process group (or with one rank) it returns a copy of ``local``.
    Collective: every rank of ``group`` must call it.
    """
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size(group) == 1:
        return {k: (float(s), float(q), int(n)) for k, (s, q, n) in local.items()}
    gathered: list[list[str] | None] = [None] * dist.get_world_size(group)
    dist.all_gather_object(gathered, sorted(local), group=group)
    keys = sorted({k for ks in gathered for k in (ks or [])})
    device = torch.device("cpu")
    if "nccl" in str(dist.get_backend(group)).lower():
        device = torch.device("cuda", torch.cuda.current_device())
    buf = torch.zeros(len(keys), 3, dtype=torch.float64, device=device)  # (K, 3): sum, sum_sq, count
    for i, k in enumerate(keys):
        if k in local:
            buf[i] = torch.tensor(local[k], dtype=torch.float64)
    dist.all_reduce(buf, op=dist.ReduceOp.SUM, group=group)
    rows = buf.cpu().tolist()
    return {k: (s, q, round(n)) for k, (s, q, n) in zip(keys, rows, strict=True)}


def _resolve_reducer(reduce: MomentReducer | Any | None) -> MomentReducer | None:
    if reduce is None or (callable(reduce) and not _is_process_group(reduce)):
        return reduce
    return lambda local: allreduce_task_moments(local, group=reduce)


def _is_process_group(obj: Any) -> bool:
    try:
        import torch.distributed as dist

        return dist.is_available() and isinstance(obj, dist.ProcessGroup)
    except (ImportError, AttributeError):
        return False


def update_ema_state(state: EMAState, moments: TaskMomentSums, decay: float) -> EMAState:
    """A new state with each task of ``moments`` (count > 0) folded in; ``state`` is left unchanged."""
    tasks = dict(state.tasks)
    for key, (s, q, n) in sorted(moments.items()):
        if n <= 0:
            continue
        mean, mean_sq = s / n, q / n
        old = tasks.get(key)
        if old is None:
            tasks[key] = TaskMoments(m1=mean, m2=mean_sq, updates=1)
        else:
            tasks[key] = TaskMoments(
                m1=decay * old.m1 + (1.0 - decay) * mean,
                m2=decay * old.m2 + (1.0 - decay) * mean_sq,
                updates=old.updates + 1,
            )
    return EMAState(tasks=tasks)


# --------------------------------------------------------------------------------------------------
# The estimator


def compute_advantages(
    scores: torch.Tensor,
    group_ids: torch.Tensor,
    task_keys: Sequence[str],
    state: EMAState,
    config: AdvantageConfig,
    reduce: MomentReducer | Any | None = None,
) -> tuple[torch.Tensor, EMAState, dict[str, dict[str, float]]]:
    """Advantages of one rollout batch, the updated EMA state and per-task stats.

    Args:
        scores: (N,) float, the scalar reward of each response.
        group_ids: (N,) int, responses to the same prompt share an id (ids need not be contiguous or sorted).
        task_keys: N strings, the task key of each response (``onethinker.tasks.task_key``); every response
            of a group must have the same key.
        state: EMA statistics before this batch (not mutated).
        config: the estimator and its constants.
        reduce: ``None``, a callable all-reducing ``{task: (sum, sum_sq, count)}`` across data-parallel
            ranks, or a ``torch.distributed`` process group. Applied before the EMA update.

    Returns:
        advantages: (N,), dtype of ``scores``, one scalar per response (broadcast over its tokens).
        new_state: the EMA state after this batch (a new object).
        stats: ``{task_key: {"ema_mean", "ema_std", "guard_fallback_rate", "adv_abs_mean", "reward_std"}}``
            for each task key of this (local) batch, plain floats. ``ema_std`` is the floored std used for
            scaling; ``reward_std`` is the population std of the task's raw scores in the batch the EMA saw
            (the global batch when ``reduce`` is given); ``guard_fallback_rate`` (fraction of the task's
            groups that fell back; 0 unless ema_grpo) and ``adv_abs_mean`` are over the local batch.
    """
    import torch

    if scores.dim() != 1 or group_ids.dim() != 1 or scores.shape != group_ids.shape:
        raise ValueError(
            f"scores and group_ids must both be (N,), got {tuple(scores.shape)} and {tuple(group_ids.shape)}"
        )
    if len(task_keys) != scores.shape[0]:
        raise ValueError(f"task_keys has {len(task_keys)} entries for {scores.shape[0]} scores")
    if not torch.is_floating_point(scores):
        raise ValueError(f"scores must be a float tensor, got {scores.dtype}")
    if config.estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {config.estimator!r}; known: {', '.join(ESTIMATORS)}")

    f64 = torch.float64
    r = scores.detach().to(device="cpu", dtype=f64)  # (N,)
    if not bool(torch.isfinite(r).all()):
        raise ValueError("scores contain NaN or inf")
    n = r.shape[0]
    task_names = sorted(set(task_keys))  # (T,)
    task_index = {k: i for i, k in enumerate(task_names)}
    t_idx = torch.tensor([task_index[k] for k in task_keys], dtype=torch.long)  # (N,)

    # Group statistics, vectorised: scatter-reduce over the inverse index of the unique group ids.
    _, g_idx = torch.unique(group_ids.detach().cpu(), return_inverse=True)  # (N,) in [0, G)
    num_groups = int(g_idx.max()) + 1 if n else 0

    def per_group(values: torch.Tensor, reduce_op: str, init: float) -> torch.Tensor:
        out = torch.full((num_groups,), init, dtype=values.dtype)  # (G,)
        return out.scatter_reduce_(0, g_idx, values, reduce_op, include_self=reduce_op == "sum")  # (G,)

    g_count = per_group(torch.ones_like(r), "sum", 0.0)  # (G,)
    g_mean = per_group(r, "sum", 0.0) / g_count  # (G,)
    constant = per_group(r, "amax", -math.inf) == per_group(r, "amin", math.inf)  # (G,) zero-variance groups
    centred = torch.where(constant[g_idx], 0.0, r - g_mean[g_idx])  # (N,) exactly 0 in constant groups
    g_sq = per_group(centred * centred, "sum", 0.0)  # (G,)
    g_pop_std = torch.sqrt(g_sq / g_count)  # (G,)
    g_sample_std = torch.sqrt(g_sq / (g_count - 1).clamp(min=1.0))  # (G,) size-1 groups: 0

    g_task = per_group(t_idx, "amax", -1)  # (G,) task index of each group
    if bool((g_task != per_group(t_idx, "amin", n)).any()):
        raise ValueError("a group mixes task keys; all responses to one prompt must share its task key")

    # EMA update before the scaling, from (all-reduced) per-task moments.
    local: TaskMomentSums = {}
    for k, i in task_index.items():
        rk = r[t_idx == i]  # (N_k,)
        local[k] = (float(rk.sum()), float((rk * rk).sum()), int(rk.numel()))
    reducer = _resolve_reducer(reduce)
    moments = reducer(local) if reducer is not None else local
    new_state = update_ema_state(state, moments, config.ema_decay)

    fallback = torch.zeros(num_groups, dtype=torch.bool)  # (G,)
    if config.estimator == "grpo":
        adv = centred / (g_sample_std[g_idx] + config.eps)  # (N,)
    elif config.estimator == "dr_grpo":
        adv = centred.clone()  # (N,)
    else:
        stds = [new_state.tasks[k].std(config.min_std) for k in task_names]
        task_std = torch.tensor(stds, dtype=f64)  # (T,)
        adv = centred / (task_std[t_idx] + config.eps)  # (N,)
        fallback = per_group((adv.abs() > config.guard).to(f64), "amax", 0.0) > 0  # (G,) any |A| > guard
        adv = torch.where(fallback[g_idx], centred / (g_pop_std[g_idx] + config.eps), adv)  # (N,)

    stats: dict[str, dict[str, float]] = {}
    for k, i in task_index.items():
        tm = new_state.tasks[k]
        s, q, cnt = moments[k]
        in_task = g_task == i  # (G,)
        stats[k] = {
            "ema_mean": float(tm.m1),
            "ema_std": float(tm.std(config.min_std)),
            "guard_fallback_rate": float(fallback[in_task].to(f64).mean()),
            "adv_abs_mean": float(adv[t_idx == i].abs().mean()),
            "reward_std": math.sqrt(max(q / cnt - (s / cnt) ** 2, 0.0)),
        }
    return adv.to(dtype=scores.dtype, device=scores.device), new_state, stats
