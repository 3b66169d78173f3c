"""Benchmark: our GRPO step against TRL's ``GRPOTrainer`` on the same work, side by side.

    make bench-trl
    .venv-trl/bin/python tests/benchmarks/bench_grpo_trl.py [--threads 1 2] [--runs 3] [--steps 2] [--model DIR]

The work of one step, the same for both trainers: 16 image prompts x 8 completions (temperature 1.0, top-p 1,
up to 96 new tokens, Hugging Face generation on the policy, one batch of 128), scored by our reward
(``onethinker.rewards.compute_score``'s ``overall``, wrapped for TRL as a reward function over the completions
and the dataset's columns), group-normalised advantages, old log-probs, then two optimizer updates of 8 prompts
(64 sequences each, micro-batches of ``--micro`` with gradient accumulation), PPO clip 0.2 / 0.3, no KL, no
entropy bonus, fp32, vision tower and projector frozen in both.

TRL's settings (``trl.GRPOConfig``): ``num_generations=8``, ``per_device_train_batch_size=micro``,
``gradient_accumulation_steps=64/micro``, ``steps_per_generation=128/micro`` (one generation batch of 16 prompts
feeds two optimizer steps, so TRL computes old log-probs for it, as we do), ``num_iterations=1``,
``max_completion_length=96``, ``beta=0``, ``temperature=1.0``, ``top_p=1.0``, ``use_vllm=False``,
``bf16=fp16=False``, ``loss_type="dapo"`` (token mean over the update, like our ``token-mean``). One of our
steps is two of TRL's optimizer steps; its time is measured between the ends of every second optimizer step.

The model: ``models/sft`` when the pipeline has made it (the figures in the README come from it), else a tiny
Qwen3-VL built from params.yaml's ``base_model`` section and fine-tuned for ``--sft-steps`` SFT steps on the
synthetic data (kept in ``.cache/bench-trl/``, reused by later runs), so that completions end at different
lengths as a trained model's do.

Each (trainer, threads) run is a child process (``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` and
``torch.set_num_threads``), runs one warm-up step and ``--steps`` timed steps; the runs alternate (ours, TRL,
TRL, ours, ...) in the same window, ``--runs`` times. It prints the machine's load before and after, seconds
per step, generated tokens per second of generation, and the split (generation, reward, old log-probs,
update = the rest) for both, the medians over every timed step, and the ratio TRL / ours.

Run it from ``.venv-trl`` (``make trl-venv``: TRL, our package and the project's pins); the file is named so that
pytest does not collect it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache" / "bench-trl"
PROMPTS, N, MAX_NEW, PER_UPDATE = 16, 8, 96, 8
SPLIT = ("generation", "reward", "old_logprobs", "update")


# ---------------------------------------------------------------------------------------------- the model
def ensure_model(sft_steps: int) -> tuple[Path, Path, str]:
    """(model folder, prepared data folder, where it came from): ``models/sft`` with the pipeline's data when
    present, else a tiny Qwen3-VL built from params.yaml and fine-tuned briefly, cached under .cache/."""
    from onethinker.config import load_params

    p = load_params(REPO / "params.yaml")
    if (REPO / "models" / "sft" / "config.json").exists() and (REPO / p.data.root / "manifest.json").exists():
        return REPO / "models" / "sft", REPO / p.data.root, "models/sft (the pipeline's SFT model)"
    out = CACHE / f"sft-{sft_steps}"
    data_root = CACHE / "data"
    if not (out / "config.json").exists():
        import dataclasses

        from onethinker.cli import _training_corpus
        from onethinker.config import DataConfig, Params
        from onethinker.contract import PreparedData
        from onethinker.data.prepare import prepare_synthetic
        from onethinker.modeling import build_base_model
        from onethinker.sft.trainer import train_sft
        from onethinker.training.model_utils import save_hf_folder

        print(f"building the benchmark model in {out.relative_to(REPO)} (once) ...", flush=True)
        data = DataConfig(root=str(data_root))
        prep = dataclasses.replace(p.prepare, train_per_task=40, eval_per_task=1)
        prepare_synthetic(prep, data, p.prompt.style)
        base = build_base_model(
            p.base_model, _training_corpus(Params({**p.sections, "data": data})), CACHE / "base"
        )
        cfg = dataclasses.replace(
            p.sft,
            base_model_dir=str(base),
            output_dir=str(out),
            checkpoint_dir=str(CACHE / "sft-ckpt"),
            metrics_file=str(CACHE / "sft.json"),
            max_steps=sft_steps,
            save_every=10**6,
            heldout_per_task=0,
            log_mlflow=False,
        )
        sft = PreparedData.load(data_root).rooted("sft")
        model, proc, _ = train_sft(cfg, sft, p.media, p.prompt.style, progress=False)
        save_hf_folder(model, proc, out)
    return out, data_root, f"tiny Qwen3-VL from params.yaml, {sft_steps} SFT steps"


def data_folder(path: Path) -> Path:
    """A prepared data folder (with manifest.json), or the folder holding an RL file's train/ folder."""
    return path if (path / "manifest.json").exists() else path.parent.parent


def image_records(path: Path) -> list:
    """The first 16 image records of the RL files (the same prompts for both trainers), with their roots."""
    from onethinker.contract import PreparedData

    records = [r for r in PreparedData.load(data_folder(path)).rooted("rl") if r.record.data_type == "image"]
    records = [r for r in records if r.record.media]
    if len(records) < PROMPTS:
        raise SystemExit(f"{path}: only {len(records)} image records, the benchmark needs {PROMPTS}")
    return records[:PROMPTS]


# ---------------------------------------------------------------------------------------------- ours
def run_ours(model: Path, rl_file: Path, args: argparse.Namespace, tmp: Path) -> list[dict[str, float]]:
    from onethinker.config import load_params
    from onethinker.rl.advantages import AdvantageConfig
    from onethinker.rl.config import GRPOConfig
    from onethinker.rl.trainer import GRPOTrainer

    p = load_params(REPO / "params.yaml")
    cfg = GRPOConfig(
        sft_model_dir=str(model),
        output_dir=str(tmp / "out"),
        checkpoint_dir=str(tmp / "ckpt"),
        steps=args.steps + 1,
        rollout_batch_size=PROMPTS,
        n=N,
        temperature=1.0,
        top_p=1.0,
        max_response_length=MAX_NEW,
        global_batch_size=PER_UPDATE,
        micro_batch_size=args.micro,
        ppo_epochs=1,
        lr=1e-6,
        weight_decay=0.0,
        kl_coef=0.0,
        entropy_coef=0.0,
        online_filter=False,
        advantage=AdvantageConfig(estimator="grpo"),
        engine="hf",
        generation_batch_size=PROMPTS * N,
        gradient_checkpointing="off",
        bf16="off",
        log_mlflow=False,
    )
    tr = GRPOTrainer(cfg, image_records(rl_file), p.media, p.prompt.style, progress=False)
    steps = []
    for k in range(args.steps + 1):
        t0 = time.perf_counter()
        m = tr.step().metrics
        total = time.perf_counter() - t0
        if k == 0:
            continue  # warm-up
        gen, rew, old = m["perf/rollout_s"], m["perf/reward_s"], m.get("perf/old_logprob_s", 0.0)
        steps.append(
            {
                "step_s": total,
                "generation": gen,
                "reward": rew,
                "old_logprobs": old,
                "update": total - gen - rew - old,
                "tokens": m["perf/generated_tokens"],
            }
        )
    return steps


# ---------------------------------------------------------------------------------------------- TRL
def run_trl(model_dir: Path, rl_file: Path, args: argparse.Namespace, tmp: Path) -> list[dict[str, float]]:
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig as TRLConfig
    from trl import GRPOTrainer as TRLTrainer

    from onethinker.config import load_params
    from onethinker.data.examples import prompt_example
    from onethinker.modeling import load_model, load_processor
    from onethinker.rewards import compute_score
    from onethinker.training.model_utils import freeze_vision

    p = load_params(REPO / "params.yaml")
    examples = [prompt_example(r.record, r.root, p.media, p.prompt.style) for r in image_records(rl_file)]
    rows = [{"prompt": ex.messages, "image": ex.images[0], "example": i} for i, ex in enumerate(examples)]

    def onethinker_reward(completions, example, **_):
        """Our reward over TRL's completions, with the dataset's ``example`` column naming each one's
        record: ``overall`` per completion, as our trainer scores it (``Example.reward_item``)."""
        items = [
            examples[i].reward_item(c[0]["content"] if isinstance(c, list) else c)
            for c, i in zip(completions, example, strict=True)
        ]
        return [float(s["overall"]) for s in compute_score(items)]

    model = load_model(model_dir, dtype=torch.float32)
    freeze_vision(model, True, True)
    micro = args.micro
    pair = 2  # TRL optimizer steps per step of ours (two updates of 8 prompts)
    config = TRLConfig(
        output_dir=str(tmp / "trl"),
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=PER_UPDATE * N // micro,
        steps_per_generation=PROMPTS * N // micro,
        num_generations=N,
        num_iterations=1,
        max_completion_length=MAX_NEW,
        temperature=1.0,
        top_p=1.0,
        beta=0.0,
        epsilon=0.2,
        epsilon_high=0.3,
        loss_type="dapo",
        scale_rewards="group",
        learning_rate=1e-6,
        lr_scheduler_type="constant",
        weight_decay=0.0,
        max_grad_norm=1.0,
        use_vllm=False,
        bf16=False,
        fp16=False,
        use_cpu=True,
        gradient_checkpointing=False,
        max_steps=pair * (args.steps + 1),
        logging_steps=10**6,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        log_completions=False,
        seed=0,
    )
    trainer = TRLTrainer(
        model=model,
        reward_funcs=onethinker_reward,
        args=config,
        train_dataset=Dataset.from_list(rows),
        processing_class=load_processor(model_dir),
    )
    split = dict.fromkeys((*SPLIT[:3], "tokens"), 0.0)

    def timed(name: str, fn, only_without_grad: bool = False):
        def wrapper(*a, **kw):
            if only_without_grad and torch.is_grad_enabled():
                return fn(*a, **kw)
            t0 = time.perf_counter()
            try:
                out = fn(*a, **kw)
            finally:
                split[name] += time.perf_counter() - t0
            if name == "generation":
                split["tokens"] += sum(len(ids) for ids in out[0])
            return out

        return wrapper

    trainer._generate_single_turn = timed("generation", trainer._generate_single_turn)
    trainer._calculate_rewards = timed("reward", trainer._calculate_rewards)
    trainer._get_per_token_logps_and_entropies = timed(
        "old_logprobs", trainer._get_per_token_logps_and_entropies, only_without_grad=True
    )
    marks: list[tuple[float, dict[str, float]]] = []

    class PairTimer(TrainerCallback):
        def on_step_end(self, _args, state, control, **kw):
            if state.global_step % pair == 0:
                marks.append((time.perf_counter(), dict(split)))

    trainer.add_callback(PairTimer())
    trainer.train()
    steps = []
    # the first pair (the warm-up step) only opens the window
    for (t0, s0), (t1, s1) in zip(marks, marks[1:], strict=False):
        d = {k: s1[k] - s0[k] for k in split}
        total = t1 - t0
        steps.append(
            {
                "step_s": total,
                **{k: d[k] for k in SPLIT[:3]},
                "update": total - sum(d[k] for k in SPLIT[:3]),
                "tokens": d["tokens"],
            }
        )
    return steps


# ---------------------------------------------------------------------------------------------- driver
def child(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(args.threads[0])
    torch.manual_seed(0)
    model, rl_file = Path(args.model), Path(args.records)
    with tempfile.TemporaryDirectory(prefix="bench-trl-") as tmp:
        run = run_ours if args.child == "ours" else run_trl
        steps = run(model, rl_file, args, Path(tmp))
    print("RESULT " + json.dumps(steps))
    return 0


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min)"


def spawn(who: str, threads: int, model: Path, rl_file: Path, args: argparse.Namespace) -> list[dict]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("HF_HUB_OFFLINE", "1")
    cmd = [
        sys.executable,
        __file__,
        "--child",
        who,
        "--threads",
        str(threads),
        "--model",
        str(model),
        "--records",
        str(rl_file),
        "--steps",
        str(args.steps),
        "--micro",
        str(args.micro),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    result = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not result:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-8000:])
        raise SystemExit(f"the {who} run at {threads} thread(s) failed (exit {proc.returncode})")
    return json.loads(result[-1][len("RESULT ") :])


def summary(steps: list[dict]) -> dict[str, float]:
    med = {k: statistics.median(s[k] for s in steps) for k in ("step_s", *SPLIT, "tokens")}
    med["tokens_per_s"] = statistics.median(s["tokens"] / s["generation"] for s in steps)
    return med


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch threads per run")
    ap.add_argument("--runs", type=int, default=3, help="alternated runs per trainer and thread count")
    ap.add_argument("--steps", type=int, default=2, help="timed steps per run (after one warm-up step)")
    ap.add_argument("--micro", type=int, default=16, help="sequences per forward/backward pass (both)")
    ap.add_argument("--sft-steps", type=int, default=300, help="SFT steps of the built model")
    ap.add_argument("--model", type=Path, default=None, help="a Qwen3-VL folder (default: see above)")
    ap.add_argument("--records", type=Path, default=None, help="its prepared data folder (with --model)")
    ap.add_argument("--child", choices=["ours", "trl"], default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if (PER_UPDATE * N) % args.micro:
        ap.error(f"--micro must divide {PER_UPDATE * N} (the sequences of one update)")
    if args.child:
        return child(args)

    if args.model is not None:
        if args.records is None:
            ap.error("--model needs --records (a prepared data folder, with its manifest.json)")
        model, rl_file, origin = args.model, args.records, str(args.model)
    else:
        model, rl_file, origin = ensure_model(args.sft_steps)
    import trl

    print(
        f"GRPO step, ours vs TRL {trl.__version__} GRPOTrainer: {PROMPTS} image prompts x {N} completions, "
        f"up to {MAX_NEW} new tokens, temperature 1.0, 2 updates of {PER_UPDATE} prompts, micro-batches of "
        f"{args.micro}, no KL, fp32, CPU\nmodel: {origin}\nbefore: {load()}",
        flush=True,
    )
    results: dict[tuple[str, int], list[dict]] = {}
    for run in range(args.runs):
        for threads in args.threads:
            order = ("ours", "trl") if (run + threads) % 2 == 0 else ("trl", "ours")
            for who in order:
                steps = spawn(who, threads, model, rl_file, args)
                results.setdefault((who, threads), []).extend(steps)
                print(
                    f"  run {run + 1} {who:4s} {threads} thread(s): "
                    + ", ".join(f"{s['step_s']:.2f}" for s in steps)
                    + f" s/step ({load()})",
                    flush=True,
                )
    print(f"after: {load()}")
    header = f"{'threads':>7} {'trainer':7} {'s/step':>7} {'tok/s':>7} {'tokens':>7} " + " ".join(
        f"{k:>12}" for k in SPLIT
    )
    print("\nmedians over every timed step (split in seconds; tok/s = generated tokens / generation time)")
    print(header)
    for threads in args.threads:
        rows = {who: summary(results[(who, threads)]) for who in ("ours", "trl")}
        for who, med in rows.items():
            print(
                f"{threads:>7} {who:7} {med['step_s']:7.2f} {med['tokens_per_s']:7.0f} {med['tokens']:7.0f} "
                + " ".join(f"{med[k]:12.3f}" for k in SPLIT)
            )
        ratio = rows["trl"]["step_s"] / rows["ours"]["step_s"]
        print(f"{threads:>7} ratio   TRL / ours = {ratio:.2f}x (target: >= 2.00x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
