"""The ``annotate`` stage: rejection-sample chain-of-thought SFT records from an OpenAI-compatible server.

Outputs (``annotate.out_dir``, default ``annotated/``): ``sft_annotated_image.json``,
``sft_annotated_video.json`` (release layout, record order = RL file order, media relative to the media
root) and ``manifest.json`` (``files``: the SFT files the ``sft`` stage adds, each with its media root name;
empty when disabled).

Budget stop: when the token or cost budget is spent no new request is sent; cached replies are still used,
every record already answered is scored and written, the metrics say ``complete: false`` and
``stopped: <why>``, and the stage raises :class:`BudgetStop` (the CLI exits 3 with that one line). The
partial files are therefore on disk but DVC does not commit them; raising the budget and rerunning pays only
for what is missing (the cache).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from onethinker.annotate import core, hooks
from onethinker.annotate.client import (
    Budget,
    BudgetExceeded,
    ChatClient,
    RequestFailed,
    ResponseCache,
    Stats,
    request_key,
)
from onethinker.annotate.config import AnnotateConfig
from onethinker.annotate.files import MANIFEST, OUT_FILES
from onethinker.config import Params, to_dict
from onethinker.contract.io import write_records
from onethinker.metrics_files import write_json


class BudgetStop(RuntimeError):
    """The budget stopped the stage; what was done is written (one-line message)."""


class AnnotateFailed(RuntimeError):
    """The written files fail validation (one-line message; the details are in the report)."""


def _write_manifest(out_dir: Path, enabled: bool, files: list[dict[str, str]]) -> None:
    write_json(out_dir / MANIFEST, {"enabled": enabled, "files": files})


def _annotate_one(
    item: Any, cfg: AnnotateConfig, client: ChatClient, style: str, digests: dict, reward: Any = None
) -> dict[str, Any]:
    record = item.record
    prompt = hooks.prompt_text(record, style)  # type: ignore[arg-type]
    refs = core.media_refs(record, item.root, cfg.media, digests)
    sampling = dict(
        model=cfg.model,
        n=cfg.k,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        max_tokens=cfg.max_tokens,
        seed=core.record_seed(cfg.seed, record),
    )
    key = request_key(core.chat_body(prompt, refs, for_key=True, **sampling))  # type: ignore[arg-type]
    reply, cached = client.complete(core.chat_body(prompt, refs, **sampling), key)  # type: ignore[arg-type]
    texts = core.response_texts(reply, cfg.k)
    scores = hooks.score(record, texts, reward)
    best = core.choose(scores, cfg.min_accuracy)
    usage = reply.get("usage") or {}
    return {
        "prompt": prompt,
        "texts": texts,
        "scores": scores,
        "best": best,
        "cached": cached,
        "tokens": int(usage.get("total_tokens") or 0),
    }


def run_annotate(cfg: AnnotateConfig, p: Params, progress: bool = True) -> dict[str, Any]:
    """Annotate, write the files and return the summary (``metrics/annotate.json``'s content)."""
    from tqdm import tqdm

    from onethinker.validation.stage_checks import stage_data

    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in OUT_FILES.values():
        (out_dir / name).unlink(missing_ok=True)
    if not cfg.enabled:
        _write_manifest(out_dir, False, [])
        return {"enabled": False, "complete": True}

    data = stage_data(p)  # every record checked by validation's rules as it is read, as sft reads them
    todo = core.records_to_annotate(data.rooted("rl"), data.sft_records())
    if cfg.max_records is not None:
        todo = todo[: cfg.max_records]
    api_key = os.environ.get(cfg.api_key_env) if cfg.api_key_env else None
    budget = Budget(cfg.token_budget, cfg.cost_per_1k_tokens, cfg.cost_budget)
    stats = Stats()
    client = ChatClient(
        cfg.base_url,
        api_key or None,
        timeout_s=cfg.request_timeout_s,
        max_retries=cfg.max_retries,
        backoff_s=cfg.backoff_s,
        max_backoff_s=cfg.max_backoff_s,
        seed=cfg.seed,
        cache=ResponseCache(cfg.cache_dir),
        budget=budget,
        stats=stats,
    )
    digests: dict[str, str] = {}
    results: dict[int, dict[str, Any]] = {}
    failures: dict[int, str] = {}
    stopped: str | None = None
    lock = threading.Lock()
    t0 = time.perf_counter()
    with (
        ThreadPoolExecutor(max_workers=cfg.concurrency, thread_name_prefix="annotate") as pool,
        tqdm(total=len(todo), desc="annotate", unit="record", disable=None if progress else True) as bar,
    ):
        futures = {
            pool.submit(_annotate_one, r, cfg, client, p.prompt.style, digests, p.reward): i
            for i, r in enumerate(todo)
        }
        for fut in as_completed(futures):
            i = futures[fut]
            try:
                results[i] = fut.result()
            except BudgetExceeded as exc:
                with lock:
                    stopped = stopped or str(exc)
            except Exception as exc:  # noqa: BLE001 - a bad record or reply fails that record, not the stage
                text = str(exc).splitlines()[0] if str(exc) else ""
                failures[i] = text if isinstance(exc, RequestFailed) else f"{type(exc).__name__}: {text}"
            bar.update(1)
            bar.set_postfix(
                accepted=sum(r["best"] is not None for r in results.values()), tokens=budget.tokens
            )
    seconds = time.perf_counter() - t0

    per_task: dict[str, core.TaskStats] = {}
    written: dict[str, list[dict]] = {"image": [], "video": []}
    samples: list[dict[str, Any]] = []
    roots: dict[str, str] = {}
    for i, item in enumerate(todo):
        record = item.record
        slug = hooks.slug_of(record)
        ts = per_task.setdefault(slug, core.TaskStats())
        if i in failures:
            ts.n += 1
            ts.failed += 1
            continue
        if i not in results:
            continue  # not asked: the budget stopped the run first
        res = results[i]
        ts.n += 1
        ts.tokens += res["tokens"]
        ts.rewards.extend(float(s.get("overall", 0.0)) for s in res["scores"])
        best = res["best"]
        if best is None:
            ts.rejected += 1
        else:
            ts.accepted += 1
            rec = core.sft_record(record, res["prompt"], res["texts"][best], res["scores"][best])
            dt = "video" if rec["data_type"] == "video" else "image"
            written[dt].append(rec)
            roots.setdefault(dt, item.root.name)
        for j, (text, s) in enumerate(zip(res["texts"], res["scores"], strict=True)):
            samples.append(
                {
                    "problem_id": record.uid,
                    "task": slug,
                    "accepted": j == best,
                    "accuracy": round(float(s.get("accuracy", 0.0)), 4),
                    "overall": round(float(s.get("overall", 0.0)), 4),
                    "response": text[:2000],
                }
            )
    files = []
    for dt, name in OUT_FILES.items():
        if written[dt]:
            write_records(out_dir / name, written[dt])
            files.append({"path": (out_dir / name).as_posix(), "media_root": roots[dt]})
    _write_manifest(out_dir, True, files)
    asked = len(results) + len(failures)
    summary: dict[str, Any] = {
        "enabled": True,
        "complete": stopped is None,
        "stopped": stopped,
        "model": cfg.model,
        "records": len(todo),
        "asked": asked,
        "accepted": sum(t.accepted for t in per_task.values()),
        "rejected": sum(t.rejected for t in per_task.values()),
        "failed": len(failures),
        "requests": stats.requests,
        "retries": stats.retries,
        "cache_hits": stats.cache_hits,
        "tokens": budget.tokens,
        "cost": round(budget.cost, 6),
        "seconds": round(seconds, 2),
        "requests_per_s": round(stats.requests / seconds, 3) if seconds > 0 else 0.0,
        "acceptance_rate": 0.0,
        "tasks": {slug: t.as_dict() for slug, t in sorted(per_task.items())},
        "files": files,
        "failures": [f"record {todo[i].record.problem_id}: {msg}" for i, msg in sorted(failures.items())][
            :20
        ],
    }
    scored = summary["accepted"] + summary["rejected"]
    summary["acceptance_rate"] = round(summary["accepted"] / scored, 4) if scored else 0.0
    summary["_samples"] = samples
    return summary


def _validate_files(files: list[dict[str, str]], data: Any, check_media: bool, limits: Any) -> list[str]:
    from onethinker.validation import validate_file

    problems = []
    for f in files:
        root = data.roots[f["media_root"]].path
        report = validate_file(f["path"], kind="sft", media_root=root, check_media=check_media, limits=limits)
        problems.extend(str(x) for x in report.failures)
    return problems


def _sample_table(samples: list[dict[str, Any]], size: int) -> dict[str, list]:
    """Up to ``size`` accepted and ``size`` rejected responses, in record order (a column-wise table)."""
    acc = [s for s in samples if s["accepted"]][:size]
    rej = [s for s in samples if not s["accepted"]][:size]
    rows = acc + rej
    cols = ["problem_id", "task", "accepted", "accuracy", "overall", "response"]
    return {c: [r[c] for r in rows] for c in cols}


def run_annotate_stage(p: Params, progress: bool = True) -> dict[str, Any]:
    """Run the stage: annotate, validate the written files, write the metrics, log to MLflow."""
    from onethinker import tracking
    from onethinker.contract import PreparedData
    from onethinker.validation.stage_checks import record_checks

    cfg: AnnotateConfig = p.annotate
    run_ctx = (
        tracking.stage_run(
            "annotate", {"annotate": to_dict(cfg), "prompt": to_dict(p.prompt), "reward": to_dict(p.reward)}
        )
        if cfg.enabled and cfg.log_mlflow
        else contextlib.nullcontext()
    )
    with run_ctx as run:
        summary = run_annotate(cfg, p, progress)
        samples = summary.pop("_samples", [])
        if summary["enabled"] and summary["files"]:
            problems = _validate_files(
                summary["files"],
                PreparedData.load(p.data.root, p),
                p.validate.check_media,
                record_checks(p).limits,
            )
            summary["validation_failures"] = len(problems)
        if run is not None:
            summary["mlflow_run_id"] = run.info.run_id
        write_json(Path(cfg.metrics_file), summary)
        if run is not None:
            flat = {
                k: float(summary[k])
                for k in (
                    "accepted",
                    "rejected",
                    "failed",
                    "requests",
                    "retries",
                    "cache_hits",
                    "tokens",
                    "cost",
                    "acceptance_rate",
                    "requests_per_s",
                )
            }
            for slug, t in summary["tasks"].items():
                for k in ("acceptance_rate", "mean_reward", "tokens", "accepted", "rejected", "failed"):
                    flat[f"{k}/{slug}"] = float(t[k])
            tracking.log_metrics(flat)
            if cfg.sample_table_size and samples:
                tracking.log_table(
                    _sample_table(samples, cfg.sample_table_size), artifact_file="annotate_samples.json"
                )
            tracking.log_artifact(cfg.metrics_file)
    if summary.get("validation_failures"):
        raise AnnotateFailed(
            f"{summary['validation_failures']} validation failure(s) in "
            f"{', '.join(f['path'] for f in summary['files'])}: "
            f"first: {problems[0]}"
        )
    if summary.get("stopped"):
        raise BudgetStop(
            f"{summary['stopped']}; wrote {summary['accepted']} accepted of {summary['asked']} asked "
            f"({summary['records']} to do); rerun with a larger budget pays only for the rest (cache {cfg.cache_dir})"
        )
    return summary
