"""The ``sft`` stage: train, export ``models/sft/``, run the held-out check, write ``metrics/sft.json``,
and log all of it to one MLflow run (nested under the pipeline's run when there is one). A training resumed
from a checkpoint continues the run that checkpoint names; checkpoints and the exported model are MLflow
logged models; ``metrics/sft.json`` carries the run's and the model's ids."""

from __future__ import annotations

import contextlib
import os
import resource
from pathlib import Path
from typing import Any

from onethinker.config import Params, to_dict
from onethinker.metrics_files import heldout_headline, write_with_headline


def records_per_task(records: list) -> dict[str, int]:
    """SFT records per task slug, every one of the twelve listed (0 where there are none)."""
    from collections import Counter

    from onethinker.contract.tasks import TASK_SLUGS

    counts = Counter(x.record.slug for x in records)
    return {slug: counts.get(slug, 0) for slug in TASK_SLUGS}


def run_sft_stage(p: Params, stop_after_steps: int | None = None) -> dict[str, Any]:
    from onethinker import tracking
    from onethinker.generation.heldout import mlflow_metrics, run_heldout
    from onethinker.sft.trainer import export, train_sft
    from onethinker.tracking import lineage
    from onethinker.validation.stage_checks import stage_data

    cfg = p.sft
    data = stage_data(p)  # every record checked by validation's rules as it is read
    records = data.rooted("sft")
    sft_files = [data.path(f) for f in data.manifest.of_kind("sft")]
    if p.annotate.enabled:  # the annotate stage's accepted responses join the prepared SFT records
        from onethinker.annotate.files import annotated_records, annotated_train_files

        records = [*records, *annotated_records(data, p.annotate.out_dir)]
        sft_files += [Path(f["path"]) for f in annotated_train_files(p.annotate.out_dir)]
    is_main = int(os.environ.get("RANK", "0")) == 0
    track = cfg.log_mlflow and is_main
    params = {
        "sft": to_dict(cfg),
        "media": to_dict(p.media),
        "prompt": to_dict(p.prompt),
        "reward": to_dict(p.reward),
    }
    live: dict[str, Any] = {"run": None, "keep": lambda step: True}

    with contextlib.ExitStack() as stack:

        def on_start(resumed: dict[str, Any] | None) -> dict[str, Any]:
            """Open the MLflow run once the trainer knows whether it resumes: a resumed training continues
            the run its checkpoint names, without logging again the steps that run already has."""
            if not track:
                return {}
            resume_id = (resumed or {}).get("mlflow_run_id")
            run = stack.enter_context(
                tracking.stage_run("sft", params, resume_run_id=resume_id, system_metrics=True)
            )
            live["run"] = run
            live["keep"] = lineage.resume_filter(run.info.run_id, run.info.run_id == resume_id)
            lineage.log_dataset(p.data.root, sft_files, "onethinker-sft", "training")
            return {"mlflow_run_id": run.info.run_id}

        def log(metrics: dict[str, float], step: int) -> None:
            if live["keep"](step):
                tracking.log_metrics(metrics, step=step)

        def on_checkpoint(step: int, path: Path) -> None:
            if live["run"] is not None:
                lineage.log_checkpoint("sft-checkpoint", step, path, with_files=False)

        model, processor, result = train_sft(
            cfg,
            records,
            p.media,
            p.prompt.style,
            logger=log if track else None,
            stop_after_steps=stop_after_steps,
            on_start=on_start,
            on_checkpoint=on_checkpoint,
        )
        run = live["run"]
        summary: dict[str, Any] = {
            "steps": result.steps,
            "seconds": round(result.seconds, 2),
            "tokens": result.tokens,
            "tokens_per_s": round(result.tokens_per_s, 1),
            "final_loss": result.final_loss,
            "skipped_overlong": result.skipped_overlong,
            "resumed_from_step": result.resumed_from,
            "parameters": result.parameters,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "records_per_task": records_per_task(records),
        }
        if run is not None:
            summary["mlflow_run_id"] = run.info.run_id
        if stop_after_steps is not None and result.steps < (cfg.max_steps or result.steps + 1):
            return summary  # interrupted on purpose (tests): no export
        if not is_main:
            return summary
        out = export(model, processor, cfg.output_dir, result)
        if cfg.heldout_per_task > 0:
            summary["heldout"] = run_heldout(
                model,
                processor,
                data.eval_sets(),
                cfg.heldout_per_task,
                p.media,
                p.prompt.style,
                cfg.heldout_max_new_tokens,
                cfg.generation_batch_size,
                Path("reports") / "sft" / "heldout_predictions.jsonl",
                max_prompt_length=cfg.cutoff_len,
                reward_options=p.reward,
            )
        if run is not None:
            # the exported model as an MLflow logged model at its last step, the held-out scores attached
            summary["mlflow_model_id"] = lineage.log_checkpoint(
                "sft", result.steps, out, with_files=True, metrics=mlflow_metrics(summary.get("heldout", {}))
            )
            tracking.log_metrics(
                {"perf/sft_seconds": result.seconds, "perf/tokens_per_s_mean": result.tokens_per_s}
            )
            tracking.set_tags({"model_dir": cfg.output_dir})
        metrics_path, _ = write_with_headline(cfg.metrics_file, summary, heldout_headline(summary, "sft"))
        if run is not None:
            tracking.log_artifact(metrics_path)
    return summary
