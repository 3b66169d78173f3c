"""The ``sft`` stage: train, export ``models/sft/``, run the held-out check, write ``metrics/sft.json``,
and log all of it to one MLflow run (nested under the pipeline's run when there is one)."""

from __future__ import annotations

import contextlib
import os
import resource
from pathlib import Path
from typing import Any

from onethinker.config import Params, to_dict
from onethinker.metrics_files import heldout_headline, write_with_headline


def _dataset_input(records: list, files: list[Path], data_root: str) -> None:
    """Log the SFT data as an MLflow dataset whose digest is DVC's hash of the data folder."""
    import mlflow
    import pandas as pd

    from onethinker import tracking

    rows = [
        {
            "uid": x.record.uid,
            "problem_type": x.record.problem_type,
            "data_type": x.record.data_type,
            "task_source": x.record.task_source,
            "file": Path(x.record.where.file).name,
        }
        for x in records
    ]
    digest = tracking.dvc_out_hash(data_root) or tracking.file_digest(*files)
    ds = mlflow.data.from_pandas(
        pd.DataFrame(rows), source=str(Path(data_root).resolve()), name="onethinker-sft", digest=digest[:36]
    )
    mlflow.log_input(ds, context="training")
    mlflow.set_tag("dvc_data_hash", digest)


def records_per_task(records: list) -> dict[str, int]:
    """SFT records per task slug, every one of the twelve listed (0 where there are none)."""
    from collections import Counter

    from onethinker.contract.tasks import TASK_SLUGS

    counts = Counter(x.record.slug for x in records)
    return {slug: counts.get(slug, 0) for slug in TASK_SLUGS}


def _folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def run_sft_stage(p: Params, stop_after_steps: int | None = None) -> dict[str, Any]:
    from onethinker import tracking
    from onethinker.contract import PreparedData
    from onethinker.generation.heldout import mlflow_metrics, run_heldout
    from onethinker.sft.trainer import export, train_sft

    cfg = p.sft
    data = PreparedData.load(p.data.root, p)
    records = data.rooted("sft")
    is_main = int(os.environ.get("RANK", "0")) == 0
    run_ctx = (
        tracking.stage_run(
            "sft",
            {
                "sft": to_dict(cfg),
                "media": to_dict(p.media),
                "prompt": to_dict(p.prompt),
                "reward": to_dict(p.reward),
            },
        )
        if cfg.log_mlflow and is_main
        else contextlib.nullcontext()
    )
    with run_ctx as run:
        if run is not None:
            _dataset_input(records, [data.path(f) for f in data.manifest.train_files], p.data.root)
        model, processor, result = train_sft(
            cfg,
            records,
            p.media,
            p.prompt.style,
            logger=tracking.log_metrics if run is not None else None,
            stop_after_steps=stop_after_steps,
        )
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
        metrics_path, _ = write_with_headline(cfg.metrics_file, summary, heldout_headline(summary, "sft"))
        if run is not None:
            flat = mlflow_metrics(summary.get("heldout", {}))
            flat.update({"perf/sft_seconds": result.seconds, "perf/tokens_per_s_mean": result.tokens_per_s})
            tracking.log_metrics(flat)
            tracking.log_artifact(metrics_path)
            if _folder_mb(out) < 200:
                tracking.log_artifacts(out, artifact_path="model")
            tracking.set_tags({"model_dir": str(out.resolve())})
            summary["mlflow_run_id"] = run.info.run_id
    return summary
