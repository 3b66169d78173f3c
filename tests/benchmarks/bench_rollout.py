"""Benchmark: rollout throughput of the Hugging Face engine and the vLLM engine, same model, same prompts.

    python tests/benchmarks/bench_rollout.py [--prompts 16] [--n 8] [--max-new-tokens 96] [--repeats 3]

Builds a text-only Qwen3 from a config (the tiny Qwen3-VL's language half by default: hidden 128, 2 layers,
weights drawn with std 0.25 so completions vary; ``--hidden``/``--layers`` for a larger one) with the
project's offline tokenizer, and one GRPO rollout batch (``--prompts`` synthetic questions x ``--n``
samples, up to ``--max-new-tokens`` tokens, temperature 1, seeded). It times the HF engine in this process
and the vLLM engine in the vLLM environment (``.venv-vllm``, ``make vllm-venv``; run as a child process on
the same model folder and prompts), ``--repeats`` batches each after one warm-up batch, and prints
generated tokens per second, by wall clock and by CPU time, and the ratio vLLM / HF. vLLM's start-up
time is printed apart (it is paid once per run, not per rollout). Both use float32 on CPU, since vLLM's
CPU build cannot run Qwen3-VL (its Qwen3-VL code needs torchvision): the figures compare the engines'
decoding of the language model.

The file is named so that pytest does not collect it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"

QUESTIONS = [
    "How many shapes are in the picture?",
    "What colour is the circle? Options: A. red B. blue C. green",
    "When is the square visible?",
    "Locate the triangle and give its box.",
    "Read the word in the image.",
    "What is {i} + {j}?",
    "Where does the red square move?",
    "How much of the image does the blue circle cover, in percent?",
]


def build_model(out: Path, hidden: int, layers: int) -> Path:
    from onethinker.contract.prompts import render_prompt
    from onethinker.modeling.builder import build_text_model
    from onethinker.modeling.config import TextConfig

    corpus = [
        render_prompt(q.format(i=i, j=2 * i), "numerical", "image", "compact")
        for i, q in enumerate(QUESTIONS)
    ]
    corpus = corpus * 20 + ["<think>two shapes</think><answer>2</answer>"] * 20
    text = TextConfig(hidden_size=hidden, num_hidden_layers=layers, intermediate_size=3 * hidden)
    return build_text_model(text, corpus, 2048, out, init_std=0.25)


def examples(count: int) -> list:
    from onethinker.data.examples import Example

    return [
        Example(
            messages=[
                {
                    "role": "user",
                    "content": [{"type": "text", "text": QUESTIONS[k % len(QUESTIONS)].format(i=k, j=k + 1)}],
                }
            ],
            images=[],
            videos=[],
            problem_type="numerical",
            data_type="image",
            problem_id=str(k),
        )
        for k in range(count)
    ]


def run_engine(engine_name: str, model_dir: Path, args: argparse.Namespace) -> dict:
    """Time one engine: warm-up batch, then ``repeats`` batches; tokens/s by wall clock and CPU time."""
    import torch

    from onethinker.generation.base import SamplingParams
    from onethinker.modeling import load_model, load_processor

    if args.threads:
        torch.set_num_threads(args.threads)
    processor = load_processor(model_dir)
    t0 = time.perf_counter()
    if engine_name == "hf":
        from onethinker.generation.hf import HFRolloutEngine

        engine = HFRolloutEngine(
            load_model(model_dir, dtype=torch.float32), processor, batch_size=args.prompts * args.n
        )
    else:
        from onethinker.generation.config import VLLMConfig
        from onethinker.generation.vllm_engine import VLLMRolloutEngine

        engine = VLLMRolloutEngine(
            model_dir, processor, VLLMConfig(max_model_len=1024, dtype="float32"), seed=0
        )
    startup = time.perf_counter() - t0
    batch = examples(args.prompts)
    sampling = [
        SamplingParams(n=args.n, temperature=1.0, max_new_tokens=args.max_new_tokens, seed=100 + r)
        for r in range(args.repeats + 1)
    ]
    engine.generate(batch, sampling[0])  # warm-up
    tokens, wall, cpu = 0, 0.0, 0.0
    for s in sampling[1:]:
        w0, c0 = time.perf_counter(), time.process_time()
        groups = engine.generate(batch, s)
        wall += time.perf_counter() - w0
        cpu += time.process_time() - c0
        tokens += sum(len(c.token_ids) + int(c.finished) for g in groups for c in g)
    return {
        "engine": engine_name,
        "startup_s": round(startup, 1),
        "tokens": tokens,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "tokens_per_s": round(tokens / wall, 1),
        "tokens_per_cpu_s": round(tokens / cpu, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=96)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--engine", choices=["both", "hf", "vllm"], default="both", help=argparse.SUPPRESS)
    p.add_argument("--model", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.engine != "both":  # a child run: one engine on a given model folder, result as JSON
        print(json.dumps(run_engine(args.engine, args.model, args)))
        return 0

    with tempfile.TemporaryDirectory(prefix="bench-rollout-") as tmp:
        model_dir = build_model(Path(tmp) / "qwen3", args.hidden, args.layers)
        print(
            f"rollout batch: {args.prompts} prompts x {args.n} samples, up to {args.max_new_tokens} new tokens, "
            f"temperature 1; text-only Qwen3 hidden {args.hidden}, {args.layers} layers, float32, CPU "
            f"({os.cpu_count()} cores); {args.repeats} timed batches per engine after a warm-up"
        )
        hf = run_engine("hf", model_dir, args)
        results = [hf]
        if VLLM_PYTHON.exists():
            child = [str(VLLM_PYTHON), __file__, "--engine", "vllm", "--model", str(model_dir)]
            child += [
                f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if k not in ("engine", "model")
            ]
            env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_KVCACHE_SPACE": "1"}
            env.pop("PYTHONPATH", None)
            out = subprocess.run(child, capture_output=True, text=True, env=env, check=False)
            if out.returncode != 0:
                print(out.stderr[-3000:], file=sys.stderr)
                return 1
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        for r in results:
            print(
                f"{r['engine']:>5}: {r['tokens_per_s']:8.1f} tokens/s wall, {r['tokens_per_cpu_s']:8.1f} tokens/CPU-s "
                f"({r['tokens']} tokens in {r['wall_s']:.2f} s; start-up {r['startup_s']:.1f} s)"
            )
        if len(results) == 2:
            vl = results[1]
            print(
                f"ratio vLLM / HF: {vl['tokens_per_s'] / hf['tokens_per_s']:.2f}x by wall clock, "
                f"{vl['tokens_per_cpu_s'] / hf['tokens_per_cpu_s']:.2f}x by CPU time"
            )
        else:
            print(f"vLLM half skipped: no {VLLM_PYTHON.relative_to(REPO)} (build it with `make vllm-venv`)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
