"""Client processes the production-stack tests start several of at once (``MLFLOW_TRACKING_URI`` names the
server). Each waits until the wall-clock time ``--start-at`` so that they really run together, then prints
one JSON line with what it did.

    python stack_clients.py write --index 0 --keys 10 --steps 100 --deadline 240 --start-at T
    python stack_clients.py register --name NAME --model-uri URI --score 0.4 --root DIR --start-at T

``write``: a training-like writer through the project's tracking helpers (``onethinker.tracking.stage_run``
and ``log_metrics``): one run, ``--keys`` metrics per step (one ``log-batch`` request per step, as the SFT
and GRPO loops log) for ``--steps`` steps, stopping early at ``--deadline`` seconds; values are
:func:`metric_value`, so a reader can check every point. ``register``: ``registry.core.register_version``
(the read-gate-move the ``register`` stage does) of an already logged model with the given score.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def metric_value(index: int, key: int, step: int) -> float:
    """The value writer ``index`` logs for metric ``key`` at ``step`` (exact in a double)."""
    return index * 1000.0 + key + step / 1024.0


def metric_key(key: int) -> str:
    return f"train/m{key:02d}"


def _wait(start_at: float) -> None:
    while time.time() < start_at:
        time.sleep(min(0.01, max(0.0, start_at - time.time())))


def write(args: argparse.Namespace) -> dict:
    from onethinker import tracking

    _wait(args.start_at)
    latencies: list[float] = []
    with tracking.stage_run(f"writer-{args.index}", tags={"test.writer": str(args.index)}) as run:
        t0 = time.monotonic()
        steps = 0
        for step in range(args.steps):
            if time.monotonic() - t0 > args.deadline:
                break
            t = time.monotonic()
            tracking.log_metrics(
                {metric_key(k): metric_value(args.index, k, step) for k in range(args.keys)}, step=step
            )
            latencies.append(time.monotonic() - t)
            steps += 1
        seconds = time.monotonic() - t0
    latencies.sort()
    return {
        "index": args.index,
        "run_id": run.info.run_id,
        "steps": steps,
        "points": steps * args.keys,
        "requests": steps,
        "seconds": round(seconds, 3),
        "start": time.time() - seconds,
        "p50_ms": round(1000 * latencies[len(latencies) // 2], 1) if latencies else None,
        "p95_ms": round(1000 * latencies[int(len(latencies) * 0.95)], 1) if latencies else None,
    }


def register(args: argparse.Namespace) -> dict:
    from onethinker.registry.config import FloorsConfig, GateConfig, RegistryConfig
    from onethinker.registry.core import register_version
    from onethinker.registry.gate import Scores

    cfg = RegistryConfig(name=args.name, gate=GateConfig(floors=FloorsConfig()))
    scores = Scores(args.score, 1.0, {"task": args.score}, "race-sample")
    _wait(args.start_at)
    result = register_version(cfg, args.model_uri, scores, {"race.score": str(args.score)}, root=args.root)
    return {
        "version": result.version,
        "score": args.score,
        "decision": result.decision.decision,
        "champion_before": result.champion_before,
        "champion_after": result.champion_after,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("write")
    w.add_argument("--index", type=int, required=True)
    w.add_argument("--keys", type=int, default=10)
    w.add_argument("--steps", type=int, default=100)
    w.add_argument("--deadline", type=float, default=240.0)
    r = sub.add_parser("register")
    r.add_argument("--name", required=True)
    r.add_argument("--model-uri", required=True)
    r.add_argument("--score", type=float, required=True)
    r.add_argument("--root", type=Path, required=True)
    for p in (w, r):
        p.add_argument("--start-at", type=float, default=0.0)
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    out = write(args) if args.command == "write" else register(args)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
