"""The ``grpo`` stage: run the EMA-GRPO trainer, export ``models/grpo/``, run the held-out check on the same
sample as SFT, write ``metrics/grpo.json`` and per-task reward curves (CSV for ``dvc plots`` plus PNGs drawn
offline with matplotlib), and log everything to one MLflow run: a training resumed from a checkpoint
continues the run that checkpoint names; checkpoints and the exported model are MLflow logged models.
``metrics/grpo.json`` carries the run's and the model's ids."""

from __future__ import annotations

import contextlib
import csv
import json
import resource
from collections import defaultdict
from pathlib import Path
from typing import Any

from onethinker.config import Params, to_dict
from onethinker.contract.tasks import TASK_SLUGS
from onethinker.generation.base import check_engine
from onethinker.metrics_files import heldout_headline, write_with_headline


def reward_format_weight() -> float:
    """The format weight rollouts are scored with: ``compute_score``'s default (the trainer passes none);
    the reward plots spell out what ``overall`` is with it."""
    import inspect

    from onethinker.rewards import compute_score

    return float(inspect.signature(compute_score).parameters["format_weight"].default)


def write_curves(history: list[dict[str, float]], plots_dir: Path) -> list[Path]:
    """``reward_curves.csv`` (long format: step, task, metric, value) and one PNG per reward part: a small
    panel per task (see :func:`onethinker.plots.reward_small_multiples`)."""
    plots_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for h in history:
        for slug in TASK_SLUGS:
            for part in ("overall", "accuracy"):
                key = f"train/reward/{part}/{slug}"
                if key in h:
                    rows.append(
                        {"step": int(h["step"]), "task": slug, "metric": part, "value": round(h[key], 6)}
                    )
    csv_path = plots_dir / "reward_curves.csv"
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["step", "task", "metric", "value"])
        writer.writeheader()
        writer.writerows(rows)
    from onethinker.plots import reward_small_multiples
    from onethinker.rewards.registry import STRUCTURE_MAX

    pngs = []
    for part in ("overall", "accuracy"):
        series: dict[str, list[tuple[int, float]]] = defaultdict(list)
        for r in rows:
            if r["metric"] == part:
                series[r["task"]].append((r["step"], r["value"]))
        path = plots_dir / f"reward_{part}.png"
        pngs.append(
            reward_small_multiples(
                series, part, path, format_weight=reward_format_weight(), structure_max=STRUCTURE_MAX
            )
        )
    return pngs


def run_grpo_stage(p: Params, stop_after_steps: int | None = None, progress: bool = True) -> dict[str, Any]:
    from tqdm import tqdm

    from onethinker import tracking
    from onethinker.generation.heldout import mlflow_metrics, run_heldout
    from onethinker.rl.trainer import GRPOTrainer
    from onethinker.tracking import lineage
    from onethinker.training.model_utils import save_hf_folder
    from onethinker.validation.stage_checks import stage_data

    cfg = p.grpo
    check_engine(cfg.engine, "grpo.engine")
    data = stage_data(p)  # every record checked by validation's rules as it is read
    trainer = GRPOTrainer(cfg, data.rooted("rl"), p.media, p.prompt.style, reward_options=p.reward)
    is_main = trainer.rank == 0
    start = trainer.maybe_resume()
    # a resumed training continues the MLflow run its checkpoint names (one run, one curve)
    resume_id = (trainer.resumed_state or {}).get("mlflow_run_id")
    run_ctx = (
        tracking.stage_run(
            "grpo",
            {"grpo": to_dict(cfg), "media": to_dict(p.media), "reward": to_dict(p.reward)},
            resume_run_id=resume_id,
            system_metrics=True,
        )
        if cfg.log_mlflow and is_main
        else contextlib.nullcontext()
    )
    history: list[dict[str, float]] = []
    hist_path = Path(cfg.checkpoint_dir) / "history.jsonl"
    with run_ctx as run:
        keep = lineage.resume_filter(
            run.info.run_id if run else None, bool(run) and run.info.run_id == resume_id
        )
        if run is not None:
            trainer.extra_state = {"mlflow_run_id": run.info.run_id}
            rl_files = [data.path(f) for f in data.manifest.of_kind("rl")]
            lineage.log_dataset(p.data.root, rl_files, "onethinker-rl", "training")
        if start and hist_path.exists():  # the curves of the interrupted run, up to its checkpoint
            history = [h for h in map(json.loads, hist_path.read_text().splitlines()) if h["step"] <= start]
        elif hist_path.exists():
            hist_path.unlink()
        bar = tqdm(
            total=cfg.steps, initial=start, desc="grpo", unit="step", disable=not progress or not is_main
        )
        while trainer.step_no < cfg.steps:
            stats = trainer.step()
            bar.update(1)
            bar.set_postfix(reward=f"{stats.metrics.get('train/reward/overall', float('nan')):.3f}")
            step = trainer.step_no
            history.append({"step": step, **stats.metrics})
            if run is not None and step % cfg.log_every == 0 and keep(step):
                tracking.log_metrics(stats.metrics, step=step)
            if run is not None and step % cfg.rollout_table_every == 0 and stats.table_rows and keep(step):
                tracking.log_table(_columns(stats.table_rows), artifact_file=f"rollouts/step_{step:06d}.json")
            if step % cfg.save_every == 0 or step == cfg.steps:
                trainer.save()
                if is_main:
                    hist_path.parent.mkdir(parents=True, exist_ok=True)
                    hist_path.write_text("".join(json.dumps(h) + "\n" for h in history))
                if run is not None and step < cfg.steps:  # the last one is the exported model
                    saved = Path(cfg.checkpoint_dir) / f"step-{step:08d}"
                    lineage.log_checkpoint("grpo-checkpoint", step, saved, with_files=False)
            if stop_after_steps is not None and step >= stop_after_steps and step < cfg.steps:
                bar.close()
                return {"steps": step, "interrupted": True, "ema": trainer.ema.to_dict()}
        bar.close()
        summary: dict[str, Any] = {
            "steps": trainer.step_no,
            "resumed_from_step": start,
            "ema": trainer.ema.to_dict(),
            "parameters": trainer.param_counts,
        }
        if not is_main:
            return summary
        last = history[-max(1, min(5, len(history))) :]
        final: dict[str, dict[str, float]] = {}
        for slug in TASK_SLUGS:
            vals = {
                part: [h[f"train/reward/{part}/{slug}"] for h in last if f"train/reward/{part}/{slug}" in h]
                for part in ("overall", "accuracy", "format", "structure")
            }
            if vals["overall"]:
                final[slug] = {part: sum(v) / len(v) for part, v in vals.items() if v}
        summary["train_reward_last5"] = final
        perf = [h for h in history if "perf/step_s" in h]
        if perf:
            summary["seconds"] = round(sum(h["perf/step_s"] for h in perf), 2)
            summary["tokens_per_s"] = round(sum(h["perf/tokens_per_s"] for h in perf) / len(perf), 1)
        summary["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        out = save_hf_folder(
            trainer.model,
            trainer.processor,
            cfg.output_dir,
            trainer.engine.full_state_dict() if getattr(trainer.engine, "zero_stage", 0) == 3 else None,
        )
        if cfg.heldout_per_task > 0:
            summary["heldout"] = run_heldout(
                trainer.model,
                trainer.processor,
                data.eval_sets(),
                cfg.heldout_per_task,
                p.media,
                p.prompt.style,
                cfg.heldout_max_new_tokens,
                cfg.generation_batch_size,
                Path(cfg.plots_dir) / "heldout_predictions.jsonl",
                engine=trainer.rollout,  # the engine that trained, holding the final weights
                max_prompt_length=cfg.max_prompt_length,
                reward_options=p.reward,
            )
        pngs = write_curves(history, Path(cfg.plots_dir))
        if run is not None:
            # the exported model as an MLflow logged model at its last step, the held-out scores attached
            summary["mlflow_run_id"] = run.info.run_id
            summary["mlflow_model_id"] = lineage.log_checkpoint(
                "grpo",
                trainer.step_no,
                out,
                with_files=True,
                metrics=mlflow_metrics(summary.get("heldout", {})),
            )
        metrics_path, _ = write_with_headline(
            cfg.metrics_file,
            {k: v for k, v in summary.items() if k != "ema"},
            heldout_headline(summary, "grpo"),
        )
        if run is not None:
            tracking.log_artifact(metrics_path)
            for png in pngs:
                tracking.log_artifact(png, artifact_path="plots")
            tracking.set_tags({"model_dir": cfg.output_dir})
    return summary


def _columns(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    cols: dict[str, list[Any]] = defaultdict(list)
    for r in rows:
        for k, v in r.items():
            cols[k].append(v)
    return dict(cols)
