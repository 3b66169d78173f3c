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
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onethinker.config import MediaConfig, Params, to_dict
from onethinker.contract.manifest import RootedRecord
from onethinker.contract.prompts import PromptStyle
from onethinker.evaluation.config import EvaluateConfig
from onethinker.evaluation.core import model_summary, score_benchmark
from onethinker.generation.base import check_engine
from onethinker.metrics_files import eval_headline, write_with_headline
from onethinker.rewards.options import RewardConfig

log = logging.getLogger(__name__)
detail_log = logging.getLogger(f"{__name__}.detail")
"""One line per model and benchmark: to ``<reports_dir>/evaluate.log`` during the stage (not the terminal)."""


def _benchmarks(cfg: EvaluateConfig, p: Params) -> list[tuple[str, list[RootedRecord]]]:
    """(name, records with their media root) per benchmark: ``evaluate.benchmarks`` when set (media under
    ``evaluate.media_root``), else the prepared evaluation files. Every file's records pass validation's
    record rules as they are read (``validation.stage_checks``)."""
    from onethinker.contract import MediaRoot, parse_records, read_records
    from onethinker.validation.stage_checks import record_checks, stage_data

    if cfg.benchmarks:
        root = MediaRoot("eval", Path(cfg.media_root or "."))
        check = record_checks(p)
        out = []
        for b in cfg.benchmarks:
            records = parse_records(read_records(b), b, "eval")
            check(str(b), records, root)
            out.append((Path(b).stem, [RootedRecord(r, root) for r in records]))
        return out
    data = stage_data(p)
    return [(f.name, records) for f, records in data.eval_sets()]


def answer_settings(cfg: EvaluateConfig, media: MediaConfig, style: PromptStyle) -> dict[str, Any]:
    """Every setting that shapes a model's answers to the same questions: the generation cache and the sample
    fingerprint both key on them. The whole ``media`` section is included (a field added to it later is
    covered too), and so are the engine and the batch size (batched generation pads prompts, which can move
    a greedy answer)."""
    return {
        "max_new_tokens": cfg.max_new_tokens,
        "max_prompt_length": cfg.max_prompt_length,
        "prompt_style": str(style),
        "engine": cfg.engine,
        "batch_size": cfg.batch_size,
        "media": to_dict(media),
    }


def settings_key(cfg: EvaluateConfig, media: MediaConfig, style: PromptStyle) -> str:
    return json.dumps(answer_settings(cfg, media, style), sort_keys=True)


def sample_fingerprint(
    benchmarks: list[tuple[str, list[RootedRecord]]],
    cfg: EvaluateConfig,
    media: MediaConfig,
    style: PromptStyle,
    reward: RewardConfig | None = None,
) -> str:
    """Identifies the evaluation sample: the questions evaluated, the settings that shape the answers and the
    reward options that score them.

    Two evaluations with the same fingerprint scored the same records the same way, so their accuracies
    can be compared (the registry gate insists on it).
    """
    h = hashlib.sha256()
    h.update(settings_key(cfg, media, style).encode())
    h.update(json.dumps(to_dict(reward or RewardConfig()), sort_keys=True).encode())
    for name, records in benchmarks:
        h.update(name.encode())
        for item in records[: cfg.max_per_benchmark]:
            h.update(json.dumps(item.record.raw, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


@dataclass
class BenchmarkJob:
    """One model on one benchmark: its records (with their media root), the cache file and the answers
    already in it (``skipped``: the cached answers that were never generated, their prompt being over
    ``max_prompt_length``)."""

    bench: str
    records: list[RootedRecord]
    cache_file: Path
    cached: dict[str, str]
    skipped: set[str] = field(default_factory=set)

    @property
    def todo(self) -> list[RootedRecord]:
        return [x for x in self.records if x.record.local_id not in self.cached]


@dataclass
class ModelPlan:
    """What evaluating one model takes: the cache key of its answers and one job per benchmark."""

    name: str
    settings: str
    cache_dir: Path
    jobs: list[BenchmarkJob]
    fingerprint: str = ""
    """The model files' fingerprint (recorded in ``eval.json``: the registry checks it)."""

    @property
    def n(self) -> int:
        return sum(len(j.records) for j in self.jobs)

    @property
    def n_todo(self) -> int:
        return sum(len(j.todo) for j in self.jobs)


def _read_cache(cache_file: Path, settings: str) -> tuple[dict[str, str], set[str]]:
    """The answers cached under ``settings`` and the ids among them whose prompt was too long."""
    cached: dict[str, str] = {}
    skipped: set[str] = set()
    if cache_file.exists():
        for line in cache_file.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by an interruption
            if row.get("settings") == settings:
                cached[str(row["problem_id"])] = row["response"]
                if row.get("skipped"):
                    skipped.add(str(row["problem_id"]))
    return cached, skipped


def plan_model(
    name: str,
    model_dir: Path,
    benchmarks: list[tuple[str, list[RootedRecord]]],
    cfg: EvaluateConfig,
    media: MediaConfig,
    style: PromptStyle,
) -> ModelPlan:
    """Read the answer cache of ``name``: which samples still need generating (cached per model fingerprint,
    i.e. the files' contents, and answer settings)."""
    from onethinker.training.checkpoint import model_fingerprint

    # the model's file contents, not their mtimes: a `dvc checkout` or a registry download reuses the cache
    fingerprint = model_fingerprint(model_dir)
    settings = f"{fingerprint}-{settings_key(cfg, media, style)}"
    cache_dir = Path(cfg.cache_dir) / name
    jobs = []
    for bench, items in benchmarks:
        cache_file = cache_dir / f"{bench}.jsonl"
        jobs.append(
            BenchmarkJob(
                bench, items[: cfg.max_per_benchmark], cache_file, *_read_cache(cache_file, settings)
            )
        )
    return ModelPlan(name, settings, cache_dir, jobs, fingerprint)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


@contextlib.contextmanager
def _detail_log_to(path: Path):
    """Send :data:`detail_log` to ``path`` (overwritten) instead of the terminal while the block runs."""
    handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(message)s"))
    saved = detail_log.propagate, detail_log.level
    detail_log.addHandler(handler)
    detail_log.propagate = False
    detail_log.setLevel(logging.INFO)
    try:
        yield path
    finally:
        detail_log.removeHandler(handler)
        handler.close()
        detail_log.propagate, detail_log.level = saved


@contextlib.contextmanager
def _quiet_hf_progress():
    """No Hugging Face "Loading weights" bar under the evaluation's own bar."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


class EvalProgress:
    """One progress bar for a whole evaluation (every model on every benchmark), with the time left.

    The work is the answers still to generate plus every sample to score (answers from the cache are only
    scored), so the estimate holds whether the cache is empty or full. The bar names the model, benchmark
    and phase; the lines above it (the ``onethinker`` log, redirected through tqdm so the bar stays whole)
    say how many answers come from the cache. What each benchmark scored goes to ``detail_log_file`` (or to
    the log when there is none). Close it (or use it as a context manager) to restore the logging.
    """

    def __init__(
        self,
        plans: list[ModelPlan],
        enabled: bool = True,
        file: Any = None,
        detail_log_file: Path | None = None,
    ) -> None:
        from tqdm import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        self.plans = plans
        self._contexts = contextlib.ExitStack()
        self._contexts.enter_context(logging_redirect_tqdm(loggers=[logging.getLogger("onethinker")]))
        if detail_log_file is not None:
            self._contexts.enter_context(_detail_log_to(detail_log_file))
        self._open = True
        self.report_cache()
        n_bench = max((len(p.jobs) for p in plans), default=0)
        total = sum(p.n_todo + p.n for p in plans)
        size = shutil.get_terminal_size((120, 24))
        self.bar = tqdm(
            total=total,
            desc=f"evaluate {_count(len(plans), 'model')} x {_count(n_bench, 'benchmark')}",
            bar_format="{desc}: {percentage:3.0f}%|{bar:20}| {elapsed}<{remaining}{postfix}",
            disable=not enabled,
            file=file,
            # the terminal's size (COLUMNS / LINES first): one that reports 0 x 0 would hide the bar
            ncols=size.columns or 120,
            nrows=size.lines or 24,
        )

    def report_cache(self) -> None:
        """One line per model saying how many answers come from the cache."""
        for plan in self.plans:
            cached = plan.n - plan.n_todo
            if plan.n and cached == plan.n:
                log.info(
                    "%s: all %d answers from the cache (%s/; model files and answer settings unchanged), "
                    "scoring only",
                    plan.name,
                    plan.n,
                    plan.cache_dir.as_posix(),
                )
            elif cached:
                log.info(
                    "%s: %d of %d answers from the cache (%s/), %d to generate",
                    plan.name,
                    cached,
                    plan.n,
                    plan.cache_dir.as_posix(),
                    plan.n_todo,
                )
            else:
                log.info("%s: %d answers to generate", plan.name, plan.n)

    def phase(self, model: str, bench: str, what: str) -> None:
        self.bar.set_postfix_str(f"{model}:{bench} {what}", refresh=True)

    def advance(self, n: int) -> None:
        self.bar.update(n)

    def close(self) -> None:
        if self._open:
            self.bar.close()
            self._contexts.close()
            self._open = False

    def __enter__(self) -> EvalProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def evaluate_model(
    name: str,
    model_dir: Path,
    benchmarks: list[tuple[str, list[RootedRecord]]],
    cfg: EvaluateConfig,
    media: MediaConfig,
    style: PromptStyle,
    decoder,
    progress: bool | EvalProgress = True,
    plan: ModelPlan | None = None,
    reward_options: RewardConfig | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Evaluate one model on every benchmark; generation results are cached per model fingerprint (the files'
    contents) and answer settings. ``progress``: an :class:`EvalProgress` shared by several models, or
    whether to show one for this model alone. The summary records the fingerprint (``model_fingerprint``:
    what the registry checks before it registers a folder) and how many prompts were over
    ``max_prompt_length`` (``skipped_overlong_prompts``: not generated, scored 0)."""
    from onethinker.data.examples import prompt_example
    from onethinker.evaluation.masks import prediction_masks
    from onethinker.generation import make_engine
    from onethinker.generation.base import SamplingParams
    from onethinker.generation.heldout import generate_within
    from onethinker.modeling import load_model, load_processor
    from onethinker.training.model_utils import device

    plan = plan or plan_model(name, model_dir, benchmarks, cfg, media, style)
    own_bar = not isinstance(progress, EvalProgress)
    bar = EvalProgress([plan], enabled=bool(progress)) if own_bar else progress
    plan.cache_dir.mkdir(parents=True, exist_ok=True)
    model = processor = engine = None
    summaries: dict[str, Any] = {}
    all_rows: list[dict[str, Any]] = []
    skipped_total = 0
    try:
        for job in plan.jobs:
            t0 = time.perf_counter()
            bench, records, cached = job.bench, job.records, job.cached
            todo = job.todo
            job.cache_file.touch()
            if todo:
                if engine is None:
                    bar.phase(name, bench, "loading the model")
                    with _quiet_hf_progress():
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
                bar.phase(name, bench, "generating")
                with open(job.cache_file, "a") as out:
                    for i in range(0, len(todo), cfg.batch_size):
                        chunk = todo[i : i + cfg.batch_size]
                        examples = [prompt_example(x.record, x.root, media, style) for x in chunk]
                        completions, skipped = generate_within(
                            engine, processor, examples, sampling, cfg.max_prompt_length
                        )
                        for j, (x, c) in enumerate(zip(chunk, completions, strict=True)):
                            pid = x.record.local_id
                            cached[pid] = c[0].text
                            row = {"problem_id": pid, "response": c[0].text, "settings": plan.settings}
                            if j in skipped:
                                row["skipped"] = "prompt_too_long"
                                job.skipped.add(pid)
                            out.write(json.dumps(row) + "\n")
                        out.flush()
                        bar.advance(len(chunk))
            bar.phase(name, bench, "scoring")
            responses = [cached[x.record.local_id] for x in records]
            roots = {id(x.record): x.root for x in records}

            def masks(record, answer, roots=roots):  # noqa: ANN001, ANN202
                return prediction_masks(record, answer, roots[id(record)], decoder)

            summary, rows = score_benchmark([x.record for x in records], responses, masks, reward_options)
            bar.advance(len(records))
            summaries[bench] = summary
            skipped_total += sum(1 for x in records if x.record.local_id in job.skipped)
            all_rows.extend({"model": name, "benchmark": bench, **row} for row in rows)
            detail_log.info(
                "%s %s: %d samples (%d generated, %d from the cache), accuracy %.3f, format %.2f, %.1fs",
                name,
                bench,
                len(records),
                len(todo),
                len(records) - len(todo),
                summary.get("accuracy", float("nan")),
                summary.get("format_rate", float("nan")),
                time.perf_counter() - t0,
            )
    finally:
        if engine is not None and hasattr(engine, "close"):
            engine.close()  # frees vLLM's memory before the next model
        if own_bar:
            bar.close()
    result = model_summary(summaries)
    result["model_fingerprint"] = plan.fingerprint
    result["skipped_overlong_prompts"] = skipped_total
    return result, all_rows


def _evaluate(
    name: str,
    model_dir: Path,
    p: Params,
    benchmarks: list[tuple[str, list[RootedRecord]]],
    decoder,
    progress: bool | EvalProgress,
    plan: ModelPlan | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``evaluate_model`` with the stage's settings from the params."""
    return evaluate_model(
        name,
        model_dir,
        benchmarks,
        p.evaluate,
        p.media,
        p.prompt.style,
        decoder,
        progress,
        plan,
        p.reward,
    )


def write_plots(result: dict[str, Any], out_dir: Path) -> list[Path]:
    """``accuracy_by_task.csv`` (the DVC plot) and two PNGs comparing the models per task (value labels,
    the mean on top, see :func:`onethinker.plots.task_bars`)."""
    from onethinker.plots import task_bars

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
    n = {m: result["models"][m].get("n", 0) for m in models}
    note = "held-out samples: " + ", ".join(f"{m} {n[m]}" for m in models)
    for metric, title, mean_key, mean_label in (
        ("accuracy", "Held-out accuracy per task", "mean_accuracy", "mean over tasks"),
        (
            "format_rate",
            "Format rate per task (<think>...</think><answer>...</answer>)",
            "format_rate",
            "all samples",
        ),
    ):
        values = {m: {s: t.get(metric, 0.0) for s, t in result["models"][m]["tasks"].items()} for m in models}
        means = {m: result["models"][m].get(mean_key, float("nan")) for m in models}
        paths.append(
            task_bars(
                values,
                means,
                out_dir / f"{metric}_by_task.png",
                title,
                metric.replace("_", " "),
                mean_label=mean_label,
                note=note,
            )
        )
    return paths


def run_evaluate_stage(p: Params, progress: bool = True) -> dict[str, Any]:
    from onethinker import tracking
    from onethinker.evaluation.masks import make_decoder
    from onethinker.training.model_utils import pin_cpu_threads

    cfg: EvaluateConfig = p.evaluate
    check_engine(cfg.engine, "evaluate.engine")
    pin_cpu_threads(cfg.cpu_threads)
    benchmarks = _benchmarks(cfg, p)
    decoder = make_decoder(cfg.mask_decoder, cfg.sam2_config, cfg.sam2_checkpoint)
    reports = Path(cfg.reports_dir)
    reports.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    run_ctx = (
        tracking.stage_run("evaluate", {"evaluate": to_dict(cfg), "reward": to_dict(p.reward)})
        if cfg.log_mlflow
        else contextlib.nullcontext()
    )
    with run_ctx as run:
        if run is not None:
            from onethinker.tracking import lineage

            external = bool(cfg.benchmarks)  # released files named in params: their own digest
            files = sorted({x.record.where.file for _, recs in benchmarks for x in recs})
            lineage.log_dataset(
                p.data.root,
                files,
                "onethinker-eval",
                "evaluation",
                digest_of=files if external else None,
            )
        result: dict[str, Any] = {"models": {}}
        result["sample"] = sample_fingerprint(benchmarks, cfg, p.media, p.prompt.style, p.reward)
        model_dirs = {name: Path(cfg.model_dir(name)) for name in cfg.models}
        for name, model_dir in model_dirs.items():
            if not (model_dir / "config.json").exists():
                raise FileNotFoundError(f"evaluate.models: {name!r} has no model at {model_dir}")
        plans = [
            plan_model(name, model_dir, benchmarks, cfg, p.media, p.prompt.style)
            for name, model_dir in model_dirs.items()
        ]
        bar = EvalProgress(plans, enabled=progress, detail_log_file=reports / "evaluate.log")
        written: list[Path] = []
        for plan in plans:
            name = plan.name
            t_model = time.perf_counter()
            try:
                summary, rows = _evaluate(name, model_dirs[name], p, benchmarks, decoder, bar, plan)
            except BaseException:
                bar.close()
                raise
            summary["seconds"] = round(time.perf_counter() - t_model, 2)
            result["models"][name] = summary
            pred_dir = reports / "predictions"
            pred_dir.mkdir(parents=True, exist_ok=True)
            (pred_dir / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
            written.append(pred_dir / f"{name}.jsonl")
            if run is not None:
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
                tracking.log_table(cols, artifact_file=f"predictions/{name}.json")
        bar.close()
        result["eval_seconds"] = round(time.perf_counter() - t0, 2)
        pngs = write_plots(result, reports)
        written += [reports / "accuracy_by_task.csv", *pngs, reports / "evaluate.log"]
        if run is not None:
            for png in pngs:
                tracking.log_artifact(png, artifact_path="plots")
            result["mlflow_run_id"] = run.info.run_id
    written = [
        *write_with_headline(cfg.metrics_file, result, eval_headline(result), sort_keys=False),
        *written,
    ]
    log.info("evaluate wrote:\n%s", "\n".join(f"  {path.as_posix()}" for path in written))
    return result


def evaluate_logged_model(model_uri: str, p: Params, progress: bool = True) -> dict[str, Any]:
    """Evaluate a logged or registered MLflow model (``models:/name/3``) on the current evaluation sample.

    The Hugging Face folder logged as the pyfunc's artifact is downloaded and scored exactly as the
    ``evaluate`` stage scores ``models/*``. Returns ``metrics/eval.json``'s shape for that one model under
    the key ``"registered"``, with the sample's fingerprint (what the registry needs to re-score a champion).
    """
    import tempfile

    from onethinker.evaluation.masks import make_decoder
    from onethinker.registry.pyfunc import hf_folder
    from onethinker.training.model_utils import pin_cpu_threads

    cfg: EvaluateConfig = p.evaluate
    pin_cpu_threads(cfg.cpu_threads)
    benchmarks = _benchmarks(cfg, p)
    decoder = make_decoder(cfg.mask_decoder, cfg.sam2_config, cfg.sam2_checkpoint)
    with tempfile.TemporaryDirectory(prefix="onethinker-rescore-") as tmp:
        model_dir = hf_folder(model_uri, tmp)
        t0 = time.perf_counter()
        summary, _ = _evaluate("registered", model_dir, p, benchmarks, decoder, progress)
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    return {
        "models": {"registered": summary},
        "sample": sample_fingerprint(benchmarks, cfg, p.media, p.prompt.style, p.reward),
        "model_uri": model_uri,
    }
