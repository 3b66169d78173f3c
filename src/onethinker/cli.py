"""``onethinker``: one command per pipeline stage.

Each command is a thin ``main()``: read ``params.yaml`` (plus ``--set key=value`` overrides), call the
stage's pure core, write outputs and metrics. DVC (``dvc.yaml``) and Prefect (``flows/``) run these same
commands.

Heavy libraries (torch, transformers, mlflow) are imported inside the commands, after the params were
loaded and checked, so ``--help`` and a bad ``--set`` answer at once. Each command's help names the params
section it reads, its inputs and outputs, and an example (:data:`STAGE_DOCS`; a test checks them against
``dvc.yaml``).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
import yaml
from typer.core import TyperCommand, TyperGroup

from onethinker.metrics_files import write_json


class _PlainFlags:
    """No type label (``<bool>``) after ``--help``: flags take no value."""

    def get_help_option(self, ctx):  # type: ignore[no-untyped-def]
        opt = super().get_help_option(ctx)  # type: ignore[misc]
        if opt is not None:
            opt.metavar = ""
        return opt


class _Command(_PlainFlags, TyperCommand):
    """An argument with a metavar (``FILE``, ``VERSION``) shows that name only, not also ``<path>``."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        for param in self.params:
            if param.param_type_name == "argument" and param.metavar:
                param.display_type_rich = lambda ctx: None  # type: ignore[method-assign]


class _Group(_PlainFlags, TyperGroup):
    pass


@dataclass(frozen=True)
class StageDoc:
    """What a command's ``--help`` says beyond its summary."""

    params: str
    """The params.yaml sections (or keys) the command reads."""
    reads: str
    writes: str
    example: str
    """One command line, with ``-S`` overrides of this stage's own section."""


STAGE_DOCS: dict[str, StageDoc] = {
    "prepare": StageDoc(
        "prepare (+ data.root, prompt.style)",
        "nothing for the synthetic world; the release files named in prepare.onethinker when "
        "prepare.source is onethinker",
        "data/train/{rl,sft_image,sft_video}.json, data/eval/<benchmark>.json, data/media/, "
        "data/manifest.json, metrics/prepare.json",
        "onethinker prepare -S prepare.train_per_task=50 -S prepare.eval_per_task=10",
    ),
    "validate": StageDoc(
        "validate (+ data.root; the media roots "
        "prepare.onethinker.train_media_root, prepare.onethinker.eval_media_root)",
        "data/ (the files in data/manifest.json and their media), or the one FILE given",
        "reports/validation/summary.json, reports/validation/index.html; exit 1 on any failure",
        "onethinker validate data/eval/synthetic-ocr-image.json --media-root data/media",
    ),
    "base-model": StageDoc(
        "base_model (+ data.root, prompt.style and the training media root "
        "prepare.onethinker.train_media_root: the corpus)",
        "data/train (the tokenizer's corpus), or base_model.name_or_path",
        "models/base/ (a Hugging Face folder), metrics/base_model.json",
        "onethinker base-model -S base_model.text.num_hidden_layers=4 -S base_model.vocab_size=4096",
    ),
    "annotate": StageDoc(
        "annotate (+ data.root, prompt.style, reward, validate.check_media; the record limits "
        "validate.max_prompt_chars, validate.max_response_chars; the media roots "
        "prepare.onethinker.train_media_root, prepare.onethinker.eval_media_root)",
        "data/train/rl.json and data/train/sft_*.json (RL records without an SFT record), an OpenAI-compatible "
        "server at annotate.base_url (key from the env var named by annotate.api_key_env)",
        "annotated/manifest.json, annotated/sft_annotated_{image,video}.json, metrics/annotate.json, "
        "the response cache cache/annotate/, an MLflow run; exit 3 when the budget stopped it",
        "onethinker annotate -S annotate.enabled=true -S annotate.k=4 -S annotate.token_budget=200000",
    ),
    "sft": StageDoc(
        "sft (+ data.root, media, prompt.style, reward, annotate.enabled, annotate.out_dir, "
        "validate.max_prompt_chars, validate.max_response_chars; media roots "
        "prepare.onethinker.train_media_root, prepare.onethinker.eval_media_root)",
        "data/train/sft_*.json plus the files in annotated/manifest.json, data/eval (held-out check), "
        "models/base/",
        "models/sft/, checkpoints/sft/, metrics/sft.json (per task), metrics/headline/sft.json, "
        "reports/sft/heldout_predictions.jsonl, an MLflow run",
        "onethinker sft -S sft.max_steps=50 -S sft.lr=3e-4",
    ),
    "grpo": StageDoc(
        "grpo (+ data.root, media, prompt.style, reward; the record limits validate.max_prompt_chars, "
        "validate.max_response_chars; the media roots "
        "prepare.onethinker.train_media_root, prepare.onethinker.eval_media_root)",
        "data/train/rl.json, data/eval (held-out check), models/sft/",
        "models/grpo/, checkpoints/grpo/, metrics/grpo.json (per task), metrics/headline/grpo.json, "
        "reports/grpo/{reward_curves.csv,reward_overall.png,reward_accuracy.png}, an MLflow run",
        "onethinker grpo -S grpo.advantage.estimator=dr_grpo -S grpo.steps=30",
    ),
    "evaluate": StageDoc(
        "evaluate (+ data.root, media, prompt.style, reward; the record limits validate.max_prompt_chars, "
        "validate.max_response_chars; the evaluation media root "
        "prepare.onethinker.eval_media_root)",
        "data/eval/*.json, the models in evaluate.models (models/base, models/sft, models/grpo)",
        "metrics/eval.json (per task and benchmark), metrics/headline/eval.json, "
        "reports/eval/predictions/<model>.jsonl, reports/eval/{accuracy,format_rate}_by_task.png, "
        "reports/eval/accuracy_by_task.csv, reports/eval/evaluate.log (per benchmark), answer cache "
        "checkpoints/eval/, an MLflow run",
        "onethinker evaluate -S 'evaluate.models=[sft,grpo]' -S evaluate.max_per_benchmark=20",
    ),
    "register": StageDoc(
        "register (+ evaluate, media, prompt.style, reward, data.root, validate.max_prompt_chars and "
        "validate.max_response_chars to re-score a champion)",
        "models/grpo/, metrics/eval.json, metrics/grpo.json, the MLflow registry",
        "a registered model version (alias challenger; champion if the gate passes), "
        "metrics/registry.json, metrics/headline/registry.json",
        "onethinker register -S register.gate.margin=0.02",
    ),
    "promote": StageDoc(
        "register (the model name and the gate)",
        "the MLflow registry",
        "the champion alias, tags on the version, metrics/registry.json, metrics/headline/registry.json",
        "onethinker promote 7 --force",
    ),
    "rollback": StageDoc(
        "register (the model name)",
        "the MLflow registry (the champion history)",
        "the champion alias, metrics/registry.json, metrics/headline/registry.json",
        "onethinker rollback",
    ),
    "report": StageDoc(
        "none",
        "metrics/*.json (the per-task detail files)",
        "nothing (prints tables)",
        "onethinker report --metrics-dir metrics",
    ),
}


def _escape(text: str) -> str:
    return text.replace("[", "\\[")  # rich markup: "[sft,grpo]" is text, not a style


def stage_help(name: str, summary: str) -> str:
    """The ``--help`` text of command ``name``: its summary, then params, inputs, outputs and an example."""
    doc = STAGE_DOCS[name]
    return _escape(
        f"{summary}\n\n"
        f"params:  {doc.params}\n"
        f"reads:   {doc.reads}\n"
        f"writes:  {doc.writes}\n\n"
        f"example: {doc.example}"
    )


def _command(name: str, summary: str):  # type: ignore[no-untyped-def]
    """Register a command with its help; a user error it raises is one line (:func:`clean_errors`)."""
    register = app.command(name, cls=_Command, help=stage_help(name, summary))
    return lambda fn: register(clean_errors(fn))


app = typer.Typer(
    cls=_Group,
    help="OneThinker pipeline: prepare -> validate -> annotate -> base-model -> sft -> grpo -> evaluate -> "
    "register. `onethinker report` prints the results, `onethinker serve` serves a model over the OpenAI API; "
    "`onethinker COMMAND --help` says what a command reads and writes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _main() -> None:
    """Progress lines of the stages (the ``onethinker`` loggers, INFO) go to stderr."""
    logger = logging.getLogger("onethinker")
    if not any(getattr(h, "_onethinker", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._onethinker = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


ParamsOpt = Annotated[
    Path | None,
    typer.Option(
        "--params",
        "-p",
        metavar="FILE",
        help="Params file (YAML); must exist. Default: params.yaml when present, else the defaults.",
    ),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        "-S",
        metavar="KEY=VALUE",
        help="Override a param (dotted key, YAML value); repeatable. See the example below.",
    ),
]


def _overrides(items: list[str] | None) -> dict:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise typer.BadParameter(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


def _load(params: Path | None, sets: list[str] | None):
    """Load and check the params (``params=None``: ``params.yaml`` when there is one, else the defaults); a bad
    one is one line naming the key and its source, exit code 2."""
    from onethinker.config import ConfigError, load_params

    if params is None:  # the default: params.yaml when there is one
        params = Path("params.yaml") if Path("params.yaml").is_file() else None
    try:
        return load_params(params, _overrides(sets))
    except ConfigError as exc:
        _config_error(exc)


@contextlib.contextmanager
def _data_errors():
    """A record, record file, manifest or media problem ends the command with its one-line message (it names
    the file, the record, the field and the rule), not a traceback."""
    from onethinker.contract import ManifestError, RecordError, RecordFileError
    from onethinker.data.media import MediaError

    try:
        yield
    except (RecordError, RecordFileError, ManifestError, MediaError) as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None


def _config_error(exc: Exception) -> NoReturn:
    typer.secho(f"error: {exc}", fg="red", err=True)
    raise typer.Exit(2) from None


def _engine_installed(p, stage: str) -> None:
    """Fail early (exit code 2) when ``<stage>.engine`` cannot run here (vLLM not installed). Only the stages
    that generate call it, so the others do not depend on the generation layer (``dvc.yaml``)."""
    from onethinker.config import ConfigError
    from onethinker.generation.base import check_engine

    try:
        check_engine(getattr(p, stage).engine, f"{stage}.engine")
    except ConfigError as exc:
        _config_error(exc)


USER_ERRORS = frozenset(
    {
        "onethinker.config.ConfigError",
        "onethinker.data.media.MediaError",
        "onethinker.registry.core.RegistryError",
        "onethinker.registry.gate.ScoresError",
        "onethinker.training.checkpoint.UnsafeCheckpointError",
        "mlflow.exceptions.MlflowException",
        "builtins.FileNotFoundError",
        "builtins.NotADirectoryError",
    }
)
"""Errors that mean bad input (a missing file, an unknown version or model, bad media): one line, no
traceback. Anything else is a bug and keeps its traceback. Named, not imported: telling an error apart
must not import torch or MLflow (a bad param fails before any heavy import)."""


def is_user_error(exc: BaseException) -> bool:
    return any(f"{c.__module__}.{c.__qualname__}" in USER_ERRORS for c in type(exc).__mro__)


def clean_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Report a user error as ``error: <message>`` on stderr with exit code 1 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if not is_user_error(exc):
                raise
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if isinstance(exc, FileNotFoundError) and exc.filename and str(exc.filename) not in message:
                message = f"{message}: {exc.filename}"
            typer.secho(f"error: {message}", fg="red", err=True)
            raise typer.Exit(1) from None

    return wrapper


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@_command(
    "prepare",
    "Write training, SFT and held-out evaluation files plus media (synthetic world or the release).",
)
def prepare(params: ParamsOpt = None, set_: SetOpt = None) -> None:
    from tqdm import tqdm

    from onethinker.contract.tasks import TASK_PAIRS
    from onethinker.data.prepare import counts_per_task, prepare_onethinker, prepare_synthetic

    p = _load(params, set_)
    t0 = time.perf_counter()
    if p.prepare.source == "synthetic":
        total = (p.prepare.train_per_task + p.prepare.eval_per_task) * len(TASK_PAIRS)
        with tqdm(total=total, desc="prepare", unit="sample", disable=None) as bar:
            result = prepare_synthetic(
                p.prepare, p.data, p.prompt.style, progress=lambda _l, n: bar.update(n)
            )
    else:
        with _data_errors():
            result = prepare_onethinker(p.prepare, p.data)
    seconds = time.perf_counter() - t0
    counts = counts_per_task(result)
    write_json(
        Path("metrics/prepare.json"),
        {
            "seconds": round(seconds, 2),
            "peak_rss_mb": round(_peak_rss_mb(), 1),
            "counts": counts,
            "totals": {k: sum(v.values()) for k, v in counts.items()},
        },
    )
    typer.echo(
        f"prepared {sum(counts['train'].values())} train / {sum(counts['eval'].values())} eval samples "
        f"in {seconds:.1f}s under {p.data.root}/"
    )


@_command(
    "validate", "Check prepared data (or one file) against the OneThinker formats; exit 1 on any failure."
)
def validate(
    path: Annotated[
        Path | None,
        typer.Argument(metavar="FILE", help="Validate one OneThinker-format file instead of the dataset."),
    ] = None,
    media_root: Annotated[
        Path | None, typer.Option(metavar="DIR", help="Media root for FILE's relative media paths.")
    ] = None,
    kind: Annotated[
        str | None, typer.Option(metavar="rl|sft|eval", help="The file's layout (inferred when omitted).")
    ] = None,
    params: ParamsOpt = None,
    set_: SetOpt = None,
) -> None:
    from onethinker.contract import ManifestError, PreparedData
    from onethinker.validation import validate_file, validate_prepared, write_reports

    p = _load(params, set_)
    cfg = p.validate
    t0 = time.perf_counter()
    if path is not None:
        report = validate_file(
            path,
            kind=kind,
            media_root=media_root or path.parent,
            check_media=cfg.check_media,
            limits=cfg.limits,
        )
    else:
        try:
            data = PreparedData.load(p.data.root, p)
        except (FileNotFoundError, ManifestError) as exc:
            typer.secho(f"error: {exc}", fg="red", err=True)
            raise typer.Exit(2) from None
        report = validate_prepared(data, cfg, cfg.limits)
    out_dir = Path(cfg.report_dir)
    write_reports(report, out_dir)
    seconds = time.perf_counter() - t0
    failures = list(report.failures)
    for failure in failures[: cfg.max_failures_shown]:
        typer.secho(str(failure), fg="red", err=True)
    if len(failures) > cfg.max_failures_shown:
        typer.secho(
            f"... and {len(failures) - cfg.max_failures_shown} more (see {out_dir}/summary.json)",
            fg="red",
            err=True,
        )
    status = "FAILED" if failures else "passed"
    typer.echo(
        f"validation {status}: {len(failures)} failure(s) in {seconds:.1f}s; report: {out_dir}/index.html"
    )
    if failures:
        raise typer.Exit(1)


def _training_corpus(p) -> list[str]:
    """Text the tokenizer is trained on: every training prompt (as the prompt rule renders it), option and
    chain of thought."""
    from onethinker.contract import PreparedData
    from onethinker.contract.prompts import (
        COMPACT_INSTRUCTIONS,
        QUESTION_TEMPLATE,
        TYPE_TEMPLATE,
        strip_media_tokens,
    )
    from onethinker.contract.records import RLRecord, SFTRecord

    texts = [QUESTION_TEMPLATE, *TYPE_TEMPLATE.values(), *COMPACT_INSTRUCTIONS.values()]
    data = PreparedData.load(p.data.root, p)
    for r in data.rl_records() + data.sft_records():
        if isinstance(r, SFTRecord):
            texts.extend([r.prompt(p.prompt.style), r.response])
        elif isinstance(r, RLRecord):
            texts.append(strip_media_tokens(r.problem))
            texts.extend(r.options)
            texts.append(r.ground_truth)
    return texts


@_command(
    "base-model", "Build the tiny Qwen3-VL (tokenizer trained offline on the corpus) or load a checkpoint."
)
def base_model(
    params: ParamsOpt = None,
    set_: SetOpt = None,
    out: Annotated[Path, typer.Option(metavar="DIR", help="Output folder.")] = Path("models/base"),
) -> None:
    from onethinker.modeling import build_base_model, count_parameters, load_model

    p = _load(params, set_)
    t0 = time.perf_counter()
    with _data_errors():
        corpus = [] if p.base_model.name_or_path else _training_corpus(p)
    build_base_model(p.base_model, corpus, out)
    n = count_parameters(load_model(out))
    seconds = time.perf_counter() - t0
    write_json(
        Path("metrics/base_model.json"),
        {"parameters": n, "seconds": round(seconds, 2), "source": p.base_model.name_or_path or "built"},
    )
    typer.echo(f"base model with {n:,} parameters written to {out}/ in {seconds:.1f}s")


@_command(
    "annotate",
    "Rejection-sample chain-of-thought SFT records from an OpenAI-compatible server, scored by the rewards "
    "(off by default: writes an empty result).",
)
def annotate(params: ParamsOpt = None, set_: SetOpt = None) -> None:
    from onethinker.annotate.stage import AnnotateFailed, BudgetStop, run_annotate_stage

    p = _load(params, set_)
    try:
        with _data_errors():
            summary = run_annotate_stage(p)
    except BudgetStop as exc:
        typer.secho(f"stopped: {exc}", fg="yellow", err=True)
        raise typer.Exit(3) from None
    except AnnotateFailed as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(1) from None
    except FileNotFoundError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None
    if not summary["enabled"]:
        typer.echo("annotate: disabled (annotate.enabled: false); no SFT records added")
        return
    typer.echo(
        f"annotate: {summary['accepted']} accepted / {summary['rejected']} rejected / {summary['failed']} failed "
        f"of {summary['records']} records; {summary['requests']} requests ({summary['retries']} retries, "
        f"{summary['cache_hits']} cached), {summary['tokens']} tokens in {summary['seconds']:.1f}s; "
        f"files: {', '.join(f['path'] for f in summary['files']) or 'none'}"
    )


@_command("sft", "Supervised cold start on the chain-of-thought data (resumes from the newest checkpoint).")
def sft(params: ParamsOpt = None, set_: SetOpt = None) -> None:
    from onethinker.sft.stage import run_sft_stage

    p = _load(params, set_)
    with _data_errors():
        summary = run_sft_stage(p)
    held = summary.get("heldout", {})
    typer.echo(
        f"sft: {summary['steps']} steps in {summary['seconds']:.0f}s, {summary['tokens_per_s']:.0f} tokens/s; "
        f"held-out format {held.get('format_rate', float('nan')):.2f}, "
        f"mean accuracy {held.get('mean_accuracy', float('nan')):.3f}"
    )


@_command(
    "grpo", "Multi-task RL with EMA-GRPO (or grpo / dr_grpo) from the SFT model (resumes from checkpoints)."
)
def grpo(params: ParamsOpt = None, set_: SetOpt = None) -> None:
    from onethinker.rl.stage import run_grpo_stage

    p = _load(params, set_)
    _engine_installed(p, "grpo")
    with _data_errors():
        summary = run_grpo_stage(p)
    held = summary.get("heldout", {})
    if held:
        typer.echo(
            f"grpo: {summary['steps']} steps in {summary.get('seconds', 0):.0f}s; held-out format "
            f"{held.get('format_rate', float('nan')):.2f}, mean accuracy {held.get('mean_accuracy', float('nan')):.3f}"
        )


@_command(
    "evaluate", "Evaluate the listed models on every benchmark (greedy, resumable) with the official metrics."
)
def evaluate(params: ParamsOpt = None, set_: SetOpt = None) -> None:
    from onethinker.evaluation.stage import run_evaluate_stage

    p = _load(params, set_)
    _engine_installed(p, "evaluate")
    with _data_errors():
        result = run_evaluate_stage(p)
    for name, m in result["models"].items():
        typer.echo(
            f"{name:>6}: mean accuracy {m['mean_accuracy']:.3f}, format rate {m['format_rate']:.2f} "
            f"({m['n']} samples, {m['seconds']:.0f}s)"
        )


@_command(
    "register",
    "Log the checkpoint as an MLflow pyfunc model, register a version (alias challenger), apply the gate. "
    "A champion scored on another evaluation sample is first re-scored on the current one.",
)
def register(params: ParamsOpt = None, set_: SetOpt = None) -> None:
    from onethinker.evaluation.stage import evaluate_logged_model
    from onethinker.registry import format_result, register_model
    from onethinker.registry.gate import scores_from_eval

    p = _load(params, set_)

    def rescore(model_uri: str):
        typer.echo(f"re-scoring {model_uri} on the current evaluation sample (it was scored on another)")
        return scores_from_eval(evaluate_logged_model(model_uri, p), "registered")

    result = register_model(p.register, media=p.media, prompt_style=p.prompt.style, rescore=rescore)
    typer.echo(format_result(result))


@_command("promote", "Promote a version to champion by hand; refused when it fails the gate unless --force.")
def promote(
    version: Annotated[
        str, typer.Argument(metavar="VERSION", help="Registered model version to make champion.")
    ],
    force: Annotated[
        bool, typer.Option("--force", metavar="", help="Override a failing gate (recorded on the version).")
    ] = False,
    params: ParamsOpt = None,
    set_: SetOpt = None,
) -> None:
    from onethinker.registry import format_result
    from onethinker.registry import promote as promote_version

    p = _load(params, set_)
    result = promote_version(p.register, version, force=force)
    typer.echo(format_result(result))
    if result.decision == "refused":
        raise typer.Exit(1)


@_command("rollback", "Give the champion alias back to the previous champion.")
def rollback(params: ParamsOpt = None, set_: SetOpt = None) -> None:
    from onethinker.registry import RegistryError, format_result
    from onethinker.registry import rollback as rollback_champion

    p = _load(params, set_)
    try:
        typer.echo(format_result(rollback_champion(p.register)))
    except RegistryError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(1) from None


@app.command("serve", cls=_Command)
def serve(
    model: Annotated[
        str,
        typer.Argument(
            metavar="MODEL",
            help="A model folder (models/sft) or a registry URI (models:/onethinker@champion).",
        ),
    ],
    host: Annotated[str, typer.Option(metavar="HOST", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(metavar="PORT", help="Port (0: any free one, printed).")] = 8000,
    media_root: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR", help="Local media references must lie under this folder (else HTTP 400)."
        ),
    ] = None,
    served_model_name: Annotated[
        str | None, typer.Option(metavar="NAME", help="The model id clients send (default: the folder name).")
    ] = None,
    device: Annotated[
        str | None, typer.Option(metavar="DEVICE", help="cpu or cuda (default: cuda if any).")
    ] = None,
    params: ParamsOpt = None,
    set_: SetOpt = None,
) -> None:
    """Serve a model over the OpenAI chat-completions API (/v1/chat/completions, /v1/models, /health,
    /metrics), with images and video as local references confined to --media-root.

    params:  media (decoding budgets)

    example: onethinker serve models/sft --media-root data/media --port 8000
    """
    import tempfile

    from onethinker.serve import ChatModel, make_server, resolve_model

    p = _load(params, set_)
    with tempfile.TemporaryDirectory(prefix="onethinker-serve-") as tmp:
        try:
            folder = resolve_model(model, Path(tmp))
        except Exception as exc:  # noqa: BLE001 - one line, not a traceback
            typer.secho(
                f"error: {model}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                fg="red",
                err=True,
            )
            raise typer.Exit(2) from None
        if media_root is not None and not media_root.is_dir():
            typer.secho(f"error: --media-root {media_root}: not a folder", fg="red", err=True)
            raise typer.Exit(2)
        name = served_model_name or (model if model.startswith("models:/") else Path(model).resolve().name)
        chat = ChatModel(folder, name, p.media, device)
        server, _ = make_server(chat, host, port, media_root)
        typer.echo(f"serving {name} on http://{host}:{server.server_address[1]}/v1 (Ctrl-C stops)", err=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()


@_command(
    "report",
    "Print the pipeline's results as tables: stage headlines, then held-out accuracy per task and model.",
)
def report(
    metrics_dir: Annotated[
        Path, typer.Option(metavar="DIR", help="Folder of the stages' metrics files.")
    ] = Path("metrics"),
) -> None:
    from rich.console import Console
    from rich.table import Table

    def load(name: str) -> dict:
        path = metrics_dir / f"{name}.json"
        return json.loads(path.read_text()) if path.exists() else {}

    console = Console()
    head = Table(title="Stages")
    for col in ("stage", "steps", "seconds", "tokens/s", "held-out format", "held-out mean accuracy"):
        head.add_column(col, justify="right" if col != "stage" else "left")
    for name in ("sft", "grpo"):
        m = load(name)
        if m:
            h = m.get("heldout", {})
            head.add_row(
                name,
                str(m.get("steps", "")),
                f"{m.get('seconds', 0):.0f}",
                f"{m.get('tokens_per_s', 0):.0f}",
                f"{h.get('format_rate', float('nan')):.2f}",
                f"{h.get('mean_accuracy', float('nan')):.3f}",
            )
    console.print(head)
    held = {name: load(name).get("heldout", {}).get("tasks", {}) for name in ("sft", "grpo")}
    held = {name: t for name, t in held.items() if t}
    if held:
        check = Table(title="Held-out check: accuracy (distinct answers / n) per task")
        check.add_column("task")
        for name in held:
            check.add_column(name, justify="right")
        for slug in sorted({s for t in held.values() for s in t}):
            cells = []
            for t in held.values():
                row = t.get(slug, {})
                acc = row.get("accuracy", float("nan"))
                distinct = (
                    f" ({row['distinct_answers']}/{row.get('n', '?')})" if "distinct_answers" in row else ""
                )
                cells.append(f"{acc:.3f}{distinct}")
            check.add_row(slug, *cells)
        console.print(check)
    models = load("eval").get("models", {})
    order = ["base", "sft", "grpo"]
    ev = {
        m: models[m] for m in sorted(models, key=lambda m: (order.index(m) if m in order else len(order), m))
    }
    if ev:
        tasks = Table(title="Evaluation: accuracy per task (official metrics of the last model)")
        tasks.add_column("task")
        for model in ev:
            tasks.add_column(model, justify="right")
        tasks.add_column(f"{list(ev)[-1]} metrics")
        last = ev[list(ev)[-1]]["tasks"]
        for slug in sorted({s for m in ev.values() for s in m["tasks"]}):
            extra = {
                k: v
                for k, v in last.get(slug, {}).items()
                if k not in ("n", "accuracy", "format_rate", "structure", "overall")
            }
            tasks.add_row(
                slug,
                *[f"{m['tasks'].get(slug, {}).get('accuracy', float('nan')):.3f}" for m in ev.values()],
                ", ".join(f"{k} {v:.3f}" for k, v in extra.items()),
            )
        tasks.add_row("[b]mean[/b]", *[f"[b]{m['mean_accuracy']:.3f}[/b]" for m in ev.values()], "")
        tasks.add_row("format rate", *[f"{m['format_rate']:.2f}" for m in ev.values()], "")
        console.print(tasks)
    reg = load("registry")
    if reg:
        latest = reg.get("latest", {})
        console.print(
            f"registry: {reg.get('registered_model')} champion v{reg.get('champion_version')}; latest "
            f"{latest.get('action')} v{latest.get('version')}: {latest.get('decision')}"
        )
        for reason in latest.get("reasons", []):
            console.print(f"  - {reason}")


@app.command("check-lock")
def check_lock(
    stages: Annotated[
        list[str] | None,
        typer.Argument(help="Stages to run in the clone (default: prepare validate annotate base_model)."),
    ] = None,
    rev: Annotated[str, typer.Option(help="The commit to check.")] = "HEAD",
) -> None:
    """Clone the commit, `dvc repro` the stages there and compare with its committed dvc.lock.

    Exits 1 and lists each difference (stage, path, both hashes) when a fresh clone does not compute the
    committed lock; metrics files are compared by content, without wall time, memory and MLflow ids.
    """
    from onethinker.lockcheck import DEFAULT_STAGES
    from onethinker.lockcheck import check_lock as run_check
    from onethinker.tracking import repo_root

    chosen = list(stages or DEFAULT_STAGES)
    t0 = time.perf_counter()
    try:
        diffs = run_check(repo_root(), chosen, rev)
    except RuntimeError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None
    seconds = time.perf_counter() - t0
    if diffs:
        for line in diffs:
            typer.secho(line, fg="red", err=True)
        typer.secho(
            f"dvc.lock at {rev} is not what a fresh clone computes for {', '.join(chosen)} "
            f"({len(diffs)} difference(s), {seconds:.0f}s); rerun `dvc repro` and commit dvc.lock",
            fg="red",
            err=True,
        )
        raise typer.Exit(1)
    typer.echo(f"dvc.lock at {rev} reproduced by a fresh clone for {', '.join(chosen)} in {seconds:.0f}s")


def main() -> None:  # pragma: no cover - console entry point
    sys.exit(app())


if __name__ == "__main__":  # pragma: no cover
    main()
