"""Benchmark: the data engine end to end on this machine: acceptance rate per task and requests per second.

    python tests/benchmarks/bench_annotate.py [--train-per-task 2] [--steps 60] [--k 4] [--concurrency 2]

Prepares the synthetic world, builds the tiny model, SFT-trains a "teacher" on the multiple-choice and
numerical records only (``--steps``), serves it with ``onethinker serve`` on a free loopback port, removes
the SFT records of those tasks and of OCR (so the engine must annotate them: the teacher knows the first two
and has never seen OCR chain-of-thought) and runs ``onethinker annotate`` against the server. Prints
``metrics/annotate.json``'s figures: acceptance rate and mean reward per task, requests, tokens and
requests per second (wall clock, concurrency as given). Everything runs in a temporary folder.

The file is named so that pytest does not collect it.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

TAUGHT = ("multiple choice", "numerical")
ASKED = (*TAUGHT, "OCR")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train-per-task", type=int, default=2)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--concurrency", type=int, default=2)
    args = ap.parse_args()

    from onethinker.config import DataConfig, MediaConfig, PrepareConfig
    from onethinker.contract import PreparedData, read_records, write_records
    from onethinker.data.prepare import prepare_synthetic
    from onethinker.modeling import BaseModelConfig, build_base_model
    from onethinker.sft.config import SFTConfig
    from onethinker.sft.trainer import export, train_sft

    with tempfile.TemporaryDirectory(prefix="bench-annotate-") as tmp:
        work = Path(tmp)
        res = prepare_synthetic(
            PrepareConfig(train_per_task=args.train_per_task, eval_per_task=1),
            DataConfig(root=str(work / "data")),
            "compact",
        )
        sft_files = [Path(f) for f in res.train_files if Path(f).name.startswith("sft")]
        corpus = [m["content"] for f in sft_files for r in read_records(f) for m in r["messages"]]
        base = build_base_model(BaseModelConfig(vocab_size=512), corpus, work / "base")
        sft = PreparedData.load(work / "data").rooted("sft")
        taught = [x for x in sft if x.record.problem_type in TAUGHT]
        drop = {
            (Path(x.record.where.file).name, x.record.where.index)
            for x in sft
            if x.record.problem_type in ASKED
        }
        for f in sft_files:
            write_records(f, [r for i, r in enumerate(read_records(f)) if (f.name, i) not in drop])
        cfg = SFTConfig(
            base_model_dir=str(base),
            output_dir=str(work / "teacher"),
            checkpoint_dir=str(work / "ckpt"),
            max_steps=args.steps,
            batch_size=8,
            lr=3e-3,
            warmup_ratio=0.0,
            cutoff_len=512,
            save_every=10**6,
            heldout_per_task=0,
            log_mlflow=False,
            freeze_vision_tower=False,
            freeze_projector=False,
        )
        t0 = time.perf_counter()
        model, processor, result = train_sft(cfg, taught, MediaConfig(), "compact", progress=False)
        export(model, processor, cfg.output_dir, result)
        print(f"teacher: {args.steps} SFT steps on {len(taught)} records in {time.perf_counter() - t0:.0f}s")
        del model

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        params = {
            "data": {"root": "data"},
            "prompt": {"style": "compact"},
            "annotate": {
                "enabled": True,
                "base_url": f"http://127.0.0.1:{port}/v1",
                "model": "teacher",
                "k": args.k,
                "min_accuracy": 1.0,
                "temperature": 0.5,
                "max_tokens": 96,
                "concurrency": args.concurrency,
                "media": "relative",
                "log_mlflow": False,
            },
        }
        (work / "params.yaml").write_text(yaml.safe_dump(params))
        cli = [sys.executable, "-m", "onethinker.cli"]
        server = subprocess.Popen(
            [
                *cli,
                "serve",
                "teacher",
                "--served-model-name",
                "teacher",
                "--port",
                str(port),
                "--media-root",
                "data/media",
            ],
            cwd=work,
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(600):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5)
                    break
                except OSError:
                    time.sleep(0.5)
            out = subprocess.run([*cli, "annotate"], cwd=work, capture_output=True, text=True)
            if out.returncode != 0:
                sys.exit(out.stderr[-2000:])
        finally:
            server.terminate()
            server.wait()
        m = json.loads((work / "metrics" / "annotate.json").read_text())
        print(f"records asked: {m['records']} (k={args.k}, concurrency {args.concurrency}, min_accuracy 1.0)")
        print(f"{'task':<20} {'n':>3} {'accepted':>8} {'rate':>6} {'mean reward':>11}")
        for slug, t in m["tasks"].items():
            print(
                f"{slug:<20} {t['n']:>3} {t['accepted']:>8} {t['acceptance_rate']:>6.2f} {t['mean_reward']:>11.3f}"
            )
        print(
            f"overall acceptance {m['acceptance_rate']:.2f}; {m['requests']} requests, {m['tokens']} tokens in "
            f"{m['seconds']:.1f}s: {m['requests_per_s']:.3f} requests/s, "
            f"{m['tokens'] / m['seconds']:.0f} tokens/s"
        )


if __name__ == "__main__":
    main()
