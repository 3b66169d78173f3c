"""The ``evaluate`` stage: every listed model on every benchmark, greedy, resumable, scored officially.

For each model (``base``, ``sft``, ``grpo`` by default) and benchmark file, responses come from the same
rollout engines as RL (greedy; ``evaluate.engine``: ``hf`` or ``vllm``, settings in ``evaluate.vllm``). Each scored sample is appended to a cache keyed by the model's fingerprint,
so an interrupted evaluation only generates what is missing. Outputs: ``metrics/eval.json`` (DVC metrics),
per-sample predictions ``reports/eval/predictions/<model>.jsonl``, ``reports/eval/accuracy_by_task.csv`` (a DVC plot)
and PNG plots comparing the models per task; all of it logged to one MLflow run.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from onethinker.config import MediaConfig, Params, to_dict
from onethinker.data.formats import read_records, resolve_media
from onethinker.data.prompts import PromptStyle
from onethinker.evaluation.config import EvaluateConfig
from onethinker.evaluation.core import model_summary, score_benchmark
from onethinker.generation.base import check_engine


def _mask_fn(media_root: Path, decoder):
    from onethinker.data.media import decode_video
    from onethinker.evaluation.core import _box, _points

    def fn(record: dict[str, Any], pred: dict[str, Any]):
        from PIL import Image

        gt = record.get("masks") or []
        path = resolve_media(
            media_root, record.get("path") or (record.get("images") or record.get("videos"))[0]
        )
        box, pos, neg = (
            _box(pred.get("boxes")),
            _points(pred.get("positive_points")),
            _points(pred.get("negative_points")),
        )
        if record.get("data_type") == "video":
            clip = decode_video(path, fps=1e6, max_frames=100000)  # every native frame: masks are per frame
            h, w = clip.frames.shape[1:3]
            t = pred.get("time")
            ok = isinstance(t, int | float) and not isinstance(t, bool) and len(pos) == 3
            if not ok or box[2] <= box[0] or box[3] <= box[1]:
                return np.zeros((len(gt), h, w), bool), gt
            key = int(np.clip(round(float(t) * clip.info.fps), 0, len(clip.frames) - 1))
            pm = decoder.video_masks(clip.frames, key, box, pos, neg)
            return np.stack(pm)[: len(gt)], gt
        image = np.asarray(Image.open(path).convert("RGB"))
        if len(pos) != 3 or box[2] <= box[0] or box[3] <= box[1]:
            return np.zeros(image.shape[:2], bool), gt[0]
        return decoder.image_mask(image, box, pos, neg), gt[0]

    return fn


def _benchmarks(cfg: EvaluateConfig, manifest: dict[str, Any]) -> tuple[list[Path], Path]:
    if cfg.benchmarks:
        return [Path(b) for b in cfg.benchmarks], Path(cfg.media_root or manifest["media_root"])
    return [Path(f) for f in manifest["eval_files"]], Path(manifest["media_root"])


def answer_settings(cfg: EvaluateConfig, media: MediaConfig, style: PromptStyle) -> list[Any]:
    """The settings that shape a model's answers to the same questions (the generation cache and the sample
    fingerprint both key on them)."""
    return [cfg.max_new_tokens, str(style), media.video_fps, media.image_max_pixels, media.video_max_pixels]


def sample_fingerprint(
    benchmarks: list[Path], cfg: EvaluateConfig, media: MediaConfig, style: PromptStyle
) -> str:
    """Identifies the evaluation sample: the questions evaluated and the settings that shape the answers.

    Two evaluations with the same fingerprint scored the same records the same way, so their accuracies
    can be compared (the registry gate insists on it).
    """
    h = hashlib.sha256()
    h.update(json.dumps(answer_settings(cfg, media, style)).encode())
    for bench in benchmarks:
        h.update(bench.stem.encode())
        for record in read_records(bench)[: cfg.max_per_benchmark]:
            h.update(json.dumps(record, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def evaluate_model(
    name: str,
    model_dir: Path,
    benchmarks: list[Path],
    media_root: Path,
    cfg: EvaluateConfig,
    media: MediaConfig,
    style: PromptStyle,
    decoder,
    progress: bool = True,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Evaluate one model on every benchmark; generation results are cached per model fingerprint (the files'
    contents) and answer settings."""
    from tqdm import tqdm

    from onethinker.data.examples import prompt_example
    from onethinker.generation import make_engine
    from onethinker.generation.base import SamplingParams
    from onethinker.modeling import load_model, load_processor
    from onethinker.training.checkpoint import model_fingerprint
    from onethinker.training.model_utils import device

    # the model's file contents, not their mtimes: a `dvc checkout` or a registry download reuses the cache
    settings = f"{model_fingerprint(model_dir)}-{json.dumps(answer_settings(cfg, media, style))}"
    cache_dir = Path(cfg.cache_dir) / name
    cache_dir.mkdir(parents=True, exist_ok=True)
    model = processor = engine = None
    summaries: dict[str, Any] = {}
    all_rows: list[dict[str, Any]] = []
    for bench in benchmarks:
        records = read_records(bench)[: cfg.max_per_benchmark]
        cache_file = cache_dir / f"{bench.stem}.jsonl"
        cached: dict[str, str] = {}
        if cache_file.exists():
            for line in cache_file.read_text().splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by an interruption
                if row.get("settings") == settings:
                    cached[str(row["problem_id"])] = row["response"]
        else:
            cache_file.touch()
        todo = [r for r in records if str(r.get("problem_id")) not in cached]
        if todo:
            if engine is None:
                processor = load_processor(model_dir)
                # vLLM loads the folder itself: no Hugging Face copy of the model is needed then
                model = load_model(model_dir).to(device()) if cfg.engine == "hf" else None
                engine = make_engine(
                    cfg.engine,
                    model,
                    processor,
                    model_dir=model_dir,
                    batch_size=cfg.batch_size,
                    vllm=cfg.vllm,
                )
            sampling = SamplingParams(n=1, greedy=True, max_new_tokens=cfg.max_new_tokens)
            with (
                tqdm(
                    total=len(records),
                    initial=len(records) - len(todo),
                    desc=f"eval {name}:{bench.stem}",
                    unit="sample",
                    disable=not progress,
                ) as bar,
                open(cache_file, "a") as out,
            ):
                for i in range(0, len(todo), cfg.batch_size):
                    chunk = todo[i : i + cfg.batch_size]
                    examples = [prompt_example(r, media_root, media, style) for r in chunk]
                    for r, c in zip(chunk, engine.generate(examples, sampling), strict=True):
                        cached[str(r.get("problem_id"))] = c[0].text
                        out.write(
                            json.dumps(
                                {
                                    "problem_id": str(r.get("problem_id")),
                                    "response": c[0].text,
                                    "settings": settings,
                                }
                            )
                            + "\n"
                        )
                    out.flush()
                    bar.update(len(chunk))
        responses = [cached[str(r.get("problem_id"))] for r in records]
        summary, rows = score_benchmark(records, responses, _mask_fn(media_root, decoder))
        summaries[bench.stem] = summary
        all_rows.extend({"model": name, "benchmark": bench.stem, **row} for row in rows)
    if engine is not None and hasattr(engine, "close"):
        engine.close()  # frees vLLM's memory before the next model
    return model_summary(summaries), all_rows


def write_plots(result: dict[str, Any], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(result["models"])
    slugs = sorted({s for m in result["models"].values() for s in m["tasks"]})
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "accuracy_by_task.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "task", "accuracy", "format_rate"])
        for m in models:
            for s in slugs:
                t = result["models"][m]["tasks"].get(s, {})
                w.writerow([m, s, round(t.get("accuracy", 0.0), 6), round(t.get("format_rate", 0.0), 6)])
    paths = []
    for metric, title in (
        ("accuracy", "Held-out accuracy per task"),
        ("format_rate", "Format rate per task"),
    ):
        fig, ax = plt.subplots(figsize=(11, 5))
        width = 0.8 / max(1, len(models))
        x = np.arange(len(slugs))
        for i, m in enumerate(models):
            vals = [result["models"][m]["tasks"].get(s, {}).get(metric, 0.0) for s in slugs]
            ax.bar(x + i * width - 0.4 + width / 2, vals, width, label=m)
        ax.set_xticks(x)
        ax.set_xticklabels(slugs, rotation=35, ha="right", fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_ylabel(metric)
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = out_dir / f"{metric}_by_task.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def run_evaluate_stage(p: Params, progress: bool = True) -> dict[str, Any]:
    from onethinker import tracking
    from onethinker.data.prepare import read_manifest
    from onethinker.evaluation.masks import make_decoder

    cfg: EvaluateConfig = p.evaluate
    check_engine(cfg.engine, "evaluate.engine")
    manifest = read_manifest(p.data)
    benchmarks, media_root = _benchmarks(cfg, manifest)
    decoder = make_decoder(cfg.mask_decoder, cfg.sam2_config, cfg.sam2_checkpoint)
    reports = Path(cfg.reports_dir)
    reports.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    run_ctx = (
        tracking.stage_run("evaluate", {"evaluate": to_dict(cfg)})
        if cfg.log_mlflow
        else contextlib.nullcontext()
    )
    with run_ctx as run:
        result: dict[str, Any] = {"models": {}}
        result["sample"] = sample_fingerprint(benchmarks, cfg, p.media, p.prompt.style)
        for name in cfg.models:
            model_dir = Path(cfg.model_dir(name))
            if not (model_dir / "config.json").exists():
                raise FileNotFoundError(f"evaluate.models: {name!r} has no model at {model_dir}")
            t_model = time.perf_counter()
            summary, rows = evaluate_model(
                name, model_dir, benchmarks, media_root, cfg, p.media, p.prompt.style, decoder, progress
            )
            summary["seconds"] = round(time.perf_counter() - t_model, 2)
            result["models"][name] = summary
            pred_dir = reports / "predictions"
            pred_dir.mkdir(parents=True, exist_ok=True)
            (pred_dir / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
            if run is not None:
                import mlflow

                flat = {
                    f"eval/{name}/mean_accuracy": summary["mean_accuracy"],
                    f"eval/{name}/format_rate": summary["format_rate"],
                }
                for slug, t in summary["tasks"].items():
                    for k, v in t.items():
                        if k != "n":
                            flat[f"eval/{name}/{slug}/{k}"] = v
                tracking.log_metrics(flat)
                cols: dict[str, list] = {
                    k: []
                    for k in (
                        "benchmark",
                        "task",
                        "problem_id",
                        "response",
                        "ground_truth",
                        "accuracy",
                        "format",
                    )
                }
                for r in rows:
                    for k in cols:
                        cols[k].append(r.get(k) if k != "problem_id" else str(r.get(k)))
                mlflow.log_table(data=cols, artifact_file=f"predictions/{name}.json")
        result["eval_seconds"] = round(time.perf_counter() - t0, 2)
        pngs = write_plots(result, reports)
        if run is not None:
            import mlflow

            for png in pngs:
                mlflow.log_artifact(str(png), artifact_path="plots")
            result["mlflow_run_id"] = run.info.run_id
    metrics_path = Path(cfg.metrics_file)
    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    metrics_path.write_text(json.dumps(result, indent=2) + "\n")
    return result


def evaluate_logged_model(model_uri: str, p: Params, progress: bool = True) -> dict[str, Any]:
    """Evaluate a logged or registered MLflow model (``models:/name/3``) on the current evaluation sample.

    The Hugging Face folder logged as the pyfunc's artifact is downloaded and scored exactly as the
    ``evaluate`` stage scores ``models/*``. Returns ``metrics/eval.json``'s shape for that one model under
    the key ``"registered"``, with the sample's fingerprint (what the registry needs to re-score a champion).
    """
    import tempfile

    import mlflow
    import yaml

    from onethinker.data.prepare import read_manifest
    from onethinker.evaluation.masks import make_decoder
    from onethinker.registry.pyfunc import MODEL_ARTIFACT

    cfg: EvaluateConfig = p.evaluate
    benchmarks, media_root = _benchmarks(cfg, read_manifest(p.data))
    decoder = make_decoder(cfg.mask_decoder, cfg.sam2_config, cfg.sam2_checkpoint)
    with tempfile.TemporaryDirectory(prefix="onethinker-rescore-") as tmp:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tmp))
        flavor = yaml.safe_load((local / "MLmodel").read_text())["flavors"]["python_function"]
        model_dir = local / flavor["artifacts"][MODEL_ARTIFACT]["path"]
        t0 = time.perf_counter()
        summary, _ = evaluate_model(
            "registered", model_dir, benchmarks, media_root, cfg, p.media, p.prompt.style, decoder, progress
        )
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    return {
        "models": {"registered": summary},
        "sample": sample_fingerprint(benchmarks, cfg, p.media, p.prompt.style),
        "model_uri": model_uri,
    }
