"""Benchmark: the batched reward against the straightforward per-item reference, same definition.

    python tests/benchmarks/bench_rewards.py [--n 10000] [--seed 0] [--repeats 2] [--warm]

Builds a mixed batch of ``--n`` responses over every task (rollout groups of 8, valid / near-miss /
malformed, see :mod:`onethinker.rewards.synthetic`), scores it with
``onethinker.rewards.compute_score`` and ``onethinker.rewards.reference.compute_score``, checks that
every score and reason agree, and prints responses per second for both and the speed-up, overall and
per task slug, by wall clock and by this process's CPU time (the fairer figure on a shared machine).

"cold" clears every cache first (memoised grades and stems, math-verify's and sympy's caches) for
both paths: the first batch of a run. ``--warm`` also times both after each has scored a different
batch of the same size: the steady state of a training run, where the caches persist.

The file is named so that pytest does not collect it.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections import defaultdict
from typing import NamedTuple

from onethinker.rewards import clear_caches, compute_score, item_slug, reference
from onethinker.rewards.synthetic import make_items

KEYS = ("overall", "accuracy", "format", "structure")


class Timing(NamedTuple):
    wall: float  # seconds of wall-clock time
    cpu: float  # seconds of this process's CPU time (robust to other jobs on a shared machine)
    out: list[dict]


def _timed(fn, items: list, cold: bool) -> Timing:  # noqa: ANN001 - a scorer
    if cold:
        clear_caches()
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn(items)
    return Timing(time.perf_counter() - w0, time.process_time() - c0, out)


def _best(runs: list[Timing]) -> Timing:
    return Timing(min(r.wall for r in runs), min(r.cpu for r in runs), runs[0].out)


def _report(label: str, n: int, ref: Timing, fast: Timing, repeats: int) -> None:
    for name, t in (("reference", ref), ("batched", fast)):
        print(
            f"{label}  {name + ':':10s} {n / t.wall:9.0f} responses/s wall ({t.wall:6.3f} s), "
            f"{n / t.cpu:9.0f} responses/s cpu ({t.cpu:6.3f} s)  best of {repeats}"
        )
    print(f"{label}  speed-up:  {ref.wall / fast.wall:6.1f}x wall, {ref.cpu / fast.cpu:6.1f}x cpu")


def check_agreement(fast: list[dict], ref: list[dict]) -> int:
    """Number of items whose scores or reasons differ (tolerance 1e-9)."""
    bad = 0
    for f, r in zip(fast, ref, strict=True):
        if any(not math.isclose(f[k], r[k], abs_tol=1e-9) for k in KEYS) or f["reasons"] != r["reasons"]:
            bad += 1
    return bad


def run(n: int, seed: int, repeats: int, warm: bool) -> int:
    items = make_items(n, seed=seed)
    warmup = make_items(8 * 16, seed=seed + 1000)  # every task pair: imports and one-time setup, untimed
    compute_score(warmup)
    reference.compute_score(warmup)

    # Interleaved runs, best of each: a shared machine's load hits both paths alike.
    ref_runs, fast_runs = [], []
    for _ in range(repeats):
        ref_runs.append(_timed(reference.compute_score, items, cold=True))
        fast_runs.append(_timed(compute_score, items, cold=True))
    ref_t, fast_t = _best(ref_runs), _best(fast_runs)
    bad = check_agreement(fast_t.out, ref_t.out)

    print(f"mixed batch: {n} responses over {len({item_slug(it) for it in items})} task slugs (seed {seed})")
    print(f"agreement: {n - bad}/{n} items identical (scores within 1e-9, same reasons)")
    _report("cold", n, ref_t, fast_t, repeats)

    if warm:
        other = make_items(n, seed=seed + 1)
        clear_caches()
        reference.compute_score(other)
        compute_score(other)
        ref_w = _best([_timed(reference.compute_score, items, cold=False) for _ in range(repeats)])
        fast_w = _best([_timed(compute_score, items, cold=False) for _ in range(repeats)])
        _report("warm", n, ref_w, fast_w, repeats)

    by_slug: dict[str, list[dict]] = defaultdict(list)
    for it in items:
        by_slug[item_slug(it)].append(it)
    print("\nper task (cold, each slug scored alone, wall clock):")
    print(f"  {'slug':28s} {'n':>6s} {'reference/s':>12s} {'batched/s':>12s} {'speed-up':>9s}")
    for slug in sorted(by_slug):
        group = by_slug[slug]
        r_s = _timed(reference.compute_score, group, cold=True).wall
        f_s = _timed(compute_score, group, cold=True).wall
        print(
            f"  {slug:28s} {len(group):6d} {len(group) / r_s:12.0f} {len(group) / f_s:12.0f} {r_s / f_s:8.1f}x"
        )
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10_000, help="responses in the mixed batch")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic batch")
    p.add_argument("--repeats", type=int, default=2, help="timed runs of each scorer (the best is kept)")
    p.add_argument("--warm", action="store_true", help="also time the steady state (caches kept)")
    args = p.parse_args(argv)
    return run(args.n, args.seed, args.repeats, args.warm)


if __name__ == "__main__":
    sys.exit(main())
