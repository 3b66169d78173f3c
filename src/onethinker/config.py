"""Typed per-stage configs, loaded from ``params.yaml``.

Each pipeline stage reads one section of ``params.yaml`` into a frozen dataclass. Loading is strict:
an unknown key, a missing required key or a value of the wrong type fails at load time with a
``ConfigError`` naming the key (``prepare.image_size: expected int, got 'big'``). Cross-field checks
live in each dataclass's ``validate()`` and also name the key.

Sections: ``data`` (where data lives), ``prepare`` (the synthetic world), ``media`` (decoding
budgets shared by training and evaluation), ``prompt``, ``validate``, ``reward`` (how answers are graded);
later stages add their own sections via ``register_section``.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml

if TYPE_CHECKING:
    from onethinker.contract.checks import LengthLimits

Switch = Literal["auto", "on", "off"]
"""A hardware-dependent setting: ``auto`` decides from the machine (e.g. bf16 only on a capable GPU)."""


class ConfigError(ValueError):
    """A params file is malformed: the message names the file (or ``--set``) and the key."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key
        """The dotted key at fault (``grpo.n``), when known."""


# --------------------------------------------------------------------------------------------------
# Generic strict loader


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it (nested dataclasses are built)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(
            errors[0] if len(errors) == 1 else f"{key}: {value!r} matches none of {tp}", key=key
        )
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: must be one of {list(args)}, got {value!r}", key=key)
        return value
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}", key=key)
        item_tp = args[0] if args else Any
        items = [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}", key=key)
        vtp = args[1] if len(args) == 2 else Any
        return {str(k): _coerce(v, vtp, f"{key}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}", key=key)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected int, got {value!r}", key=key)
        return value
    if tp is float:
        if isinstance(value, str) and _EXPONENT_FLOAT.fullmatch(value.strip()):
            # YAML 1.1 (PyYAML) reads 3e-5 as a string: it wants 3.0e-5. Users write 3e-5.
            return float(value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}", key=key)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}", key=key)
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}", key=key)
    return value


_EXPONENT_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def from_dict(cls: type, data: Any, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, strictly; keys are reported as ``prefix.key``."""
    where = prefix or cls.__name__
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {data!r}", key=prefix or None)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        name = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise ConfigError(f"unknown key '{name}' (known keys: {', '.join(sorted(fields))})", key=name)
    kwargs = {}
    for name, f in fields.items():
        key = f"{prefix}.{name}" if prefix else name
        if name in data:
            kwargs[name] = _coerce(data[name], hints[name], key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing required key '{key}'", key=key)
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    if callable(check):
        check(prefix or cls.__name__.lower())
    return obj


def to_dict(obj: Any) -> Any:
    """A config as plain data (for logging to MLflow and writing back to YAML)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def require(cond: bool, key: str, message: str) -> None:
    """Raise ConfigError naming ``key`` unless ``cond`` holds (the check every stage config uses)."""
    if not cond:
        raise ConfigError(f"{key}: {message}", key=key)


# --------------------------------------------------------------------------------------------------
# Stage configs


@dataclass(frozen=True)
class DataConfig:
    """Where prepared data lives (outputs of ``prepare``; inputs of every later stage)."""

    root: str = "data"
    """Folder holding ``train/``, ``eval/`` and ``media/``."""

    def validate(self, key: str) -> None:
        require(bool(self.root), f"{key}.root", "must not be empty")

    @property
    def media_root(self) -> Path:
        return Path(self.root) / "media"

    @property
    def train_dir(self) -> Path:
        return Path(self.root) / "train"

    @property
    def eval_dir(self) -> Path:
        return Path(self.root) / "eval"


@dataclass(frozen=True)
class VideoWorldConfig:
    """Synthetic video clips."""

    duration_s: float = 4.0
    """Clip length in seconds."""
    fps: int = 4
    """Frames per second written to the MP4."""
    event_step_s: float = 0.5
    """Objects appear/disappear on this time grid (keep it a multiple of 1/media.video_fps)."""

    def validate(self, key: str) -> None:
        require(self.duration_s >= 2.0, f"{key}.duration_s", "must be at least 2 seconds")
        require(1 <= self.fps <= 60, f"{key}.fps", "must be in 1..60")
        require(self.event_step_s > 0, f"{key}.event_step_s", "must be positive")
        require(
            abs(round(self.event_step_s * self.fps) - self.event_step_s * self.fps) < 1e-9,
            f"{key}.event_step_s",
            "must be a whole number of frames (event_step_s * fps an integer)",
        )


@dataclass(frozen=True)
class OneThinkerSourceConfig:
    """The released OneThinker data on disk (``prepare.source: onethinker``).

    The release keeps training media under the training data's folder and evaluation media under the
    evaluation data's folder: two roots. Prepared files keep the release's relative paths; the manifest
    names these two keys, so the roots may move without changing the prepared data's hash.
    """

    rl: str | None = None
    """RL training JSON (``onethinker_rl_train.json``: problem, answer, problem_type, data_type, images/videos,
    options, problem_id)."""
    sft: list[str] = field(default_factory=list)
    """SFT sharegpt JSON files (``onethinker_sft_image.json``, ``onethinker_sft_video.json``)."""
    eval: list[str] = field(default_factory=list)
    """Evaluation JSON files, one per benchmark (OneThinker-eval: problem, solution, problem_type, data_type,
    path, options; segmentation_output, resolution, fps for segmentation)."""
    train_media_root: str | None = None
    """Folder the RL and SFT files' ``images``/``videos`` are relative to (EasyR1's ``data.image_dir``)."""
    eval_media_root: str | None = None
    """Folder the evaluation files' ``path``/``additional_path`` are relative to (``eval_bench.py``'s
    ``--base_prefix``)."""


@dataclass(frozen=True)
class PrepareConfig:
    """The ``prepare`` stage: the synthetic world, or the released OneThinker files."""

    source: Literal["synthetic", "onethinker"] = "synthetic"
    seed: int = 1234
    """Seed of the synthetic world; train and eval scenes use disjoint seed streams derived from it."""
    train_per_task: int = 200
    """Training samples per (problem_type, data_type) pair."""
    eval_per_task: int = 25
    """Held-out evaluation samples per pair (one benchmark file per pair)."""
    sft_fraction: float = 1.0
    """Fraction of training samples that also get a chain-of-thought SFT record."""
    image_size: int = 64
    """Side of the square synthetic images and video frames, in pixels."""
    max_objects: int = 3
    """Objects per scene (at least 1)."""
    video: VideoWorldConfig = field(default_factory=VideoWorldConfig)
    onethinker: OneThinkerSourceConfig = field(default_factory=OneThinkerSourceConfig)

    def validate(self, key: str) -> None:
        require(self.train_per_task >= 1, f"{key}.train_per_task", "must be >= 1")
        require(self.eval_per_task >= 1, f"{key}.eval_per_task", "must be >= 1")
        require(0.0 < self.sft_fraction <= 1.0, f"{key}.sft_fraction", "must be in (0, 1]")
        require(32 <= self.image_size <= 1024, f"{key}.image_size", "must be in 32..1024")
        require(1 <= self.max_objects <= 6, f"{key}.max_objects", "must be in 1..6")
        if self.source == "onethinker":
            require(
                self.onethinker.rl is not None, f"{key}.onethinker.rl", "required when source is onethinker"
            )
            require(
                self.onethinker.train_media_root is not None,
                f"{key}.onethinker.train_media_root",
                "required when source is onethinker (the folder the training files' media paths are relative to)",
            )
            require(
                not self.onethinker.eval or self.onethinker.eval_media_root is not None,
                f"{key}.onethinker.eval_media_root",
                "required when prepare.onethinker.eval lists files (the evaluation media's folder)",
            )


@dataclass(frozen=True)
class MediaConfig:
    """Decoding budgets, identical at training and evaluation time."""

    image_min_pixels: int = 32 * 32
    image_max_pixels: int = 64 * 64
    video_min_pixels: int = 32 * 32
    video_max_pixels: int = 64 * 64
    """Per-frame pixel budget."""
    video_fps: float = 2.0
    video_max_frames: int = 128

    def validate(self, key: str) -> None:
        require(
            0 < self.image_min_pixels <= self.image_max_pixels,
            f"{key}.image_min_pixels",
            "must be positive and <= image_max_pixels",
        )
        require(
            0 < self.video_min_pixels <= self.video_max_pixels,
            f"{key}.video_min_pixels",
            "must be positive and <= video_max_pixels",
        )
        require(self.video_fps > 0, f"{key}.video_fps", "must be positive")
        require(self.video_max_frames >= 2, f"{key}.video_max_frames", "must be >= 2")


@dataclass(frozen=True)
class PromptConfig:
    """The prompt rule (``onethinker.contract.prompts``), identical at SFT, RL and evaluation time."""

    style: Literal["full", "compact"] = "full"
    """``full``: the release's text, byte for byte; ``compact``: one short instruction line (tiny models)."""


@dataclass(frozen=True)
class ValidateConfig:
    """The ``validate`` stage."""

    report_dir: str = "reports/validation"
    check_media: bool = True
    """Open and decode every media file (slower on the real release; turn off for a quick schema pass)."""
    max_failures_shown: int = 50
    """Failures printed to the terminal (all of them go to the JSON summary and HTML report)."""
    max_prompt_chars: int = 16384
    """A record's prompt text (RL/evaluation: ``problem`` plus its options; SFT: the user turns) holds at most
    this many characters: validation refuses a longer one (rule ``prompt_length``) and so does every stage
    that reads it (sft, grpo, evaluate), with a one-line error naming the record. The default is the release's
    RL prompt budget (``max_prompt_length: 16384`` tokens in ``config_ema_grpo_64.yaml``); its records hold
    a few hundred characters."""
    max_response_chars: int = 16384
    """An SFT record's assistant turn (the training target) holds at most this many characters (rule
    ``response_length``): about the release's 4096-token response budget at 4 characters a token. Generated
    responses are bounded by ``grpo.max_response_length`` and ``evaluate.max_new_tokens``."""

    def validate(self, key: str) -> None:
        require(self.max_failures_shown >= 1, f"{key}.max_failures_shown", "must be >= 1")
        require(self.max_prompt_chars >= 1, f"{key}.max_prompt_chars", "must be >= 1")
        require(self.max_response_chars >= 1, f"{key}.max_response_chars", "must be >= 1")

    @property
    def limits(self) -> LengthLimits:
        """The length limits as the data contract takes them (``contract.checks.LengthLimits``)."""
        from onethinker.contract.checks import LengthLimits

        return LengthLimits(self.max_prompt_chars, self.max_response_chars)


@dataclass(frozen=True)
class RewardConfig:
    """How answers are graded (read by sft's and grpo's held-out checks, grpo's rewards and evaluate)."""

    math_strict: bool = True
    """Math answers must be the final expression and nothing more: ``\\frac{1}{2}+1``, ``2*\\frac{1}{2}`` or
    ``not \\frac{1}{2}`` do not equal ``\\frac{1}{2}`` (the published reward, math-verify, accepts them).
    ``false`` restores the published behaviour (parity mode)."""
    timeout_s: float = 10.0
    """Budget per symbolic comparison (multiple choice through mathruler/sympy, math through math-verify), in
    seconds of wall time. It runs in a worker process that is killed at the deadline, so the budget holds in
    any thread or process; an answer over it scores 0 and is counted as ``timeout``. The default leaves room
    for math-verify's own limits (5 s to parse, 5 s to verify), so a comparison the published reward finishes
    is not cut short; the answers that would stall it are turned away by the pre-screen in microseconds."""
    max_answer_chars: int = 2000
    """Longer answers (and ones whose symbolic evaluation is known to explode: power towers, huge exponents,
    deep nesting) are not compared symbolically: accuracy 0, counted as ``timeout``."""

    max_text_chars: int = 20000
    """OCR and open-ended answers longer than this are not compared (edit distance and ROUGE grow with the
    answer's length: a 1e6-character answer takes tens of seconds): accuracy 0, counted as ``timeout``."""

    def validate(self, key: str) -> None:
        require(
            math.isfinite(self.timeout_s) and 0 < self.timeout_s <= 600,
            f"{key}.timeout_s",
            "must be in (0, 600]",
        )
        require(self.max_answer_chars >= 1, f"{key}.max_answer_chars", "must be >= 1")
        require(self.max_text_chars >= 1, f"{key}.max_text_chars", "must be >= 1")

    def parity(self) -> RewardConfig:
        """These options with the published reward's grading (``math_strict`` off)."""
        return dataclasses.replace(self, math_strict=False)


# section name -> dataclass; later stages register theirs.
SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "prepare": PrepareConfig,
    "media": MediaConfig,
    "prompt": PromptConfig,
    "validate": ValidateConfig,
    "reward": RewardConfig,
}


def register_section(name: str, cls: type) -> None:
    SECTIONS[name] = cls


def _register_optional_sections() -> None:
    """Sections owned by later stages' packages, imported lazily so config stays light."""
    import importlib

    for module, attr, name in (
        ("onethinker.modeling.config", "BaseModelConfig", "base_model"),
        ("onethinker.sft.config", "SFTConfig", "sft"),
        ("onethinker.rl.config", "GRPOConfig", "grpo"),
        ("onethinker.evaluation.config", "EvaluateConfig", "evaluate"),
        ("onethinker.registry.config", "RegistryConfig", "register"),
        ("onethinker.annotate.config", "AnnotateConfig", "annotate"),
    ):
        if name in SECTIONS:
            continue
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name and module.startswith(exc.name):
                continue
            raise
        SECTIONS[name] = getattr(mod, attr)


@dataclass(frozen=True)
class Params:
    """All sections of a params file; sections not present in the file get their defaults."""

    sections: dict[str, Any]
    path: Path | None = None

    def __getattr__(self, name: str) -> Any:
        try:
            return self.sections[name]
        except KeyError:
            raise AttributeError(name) from None

    def as_dict(self) -> dict[str, Any]:
        return {name: to_dict(cfg) for name, cfg in self.sections.items()}


def load_params(path: str | Path | None = "params.yaml", overrides: dict[str, Any] | None = None) -> Params:
    """Load and check a params file. ``overrides`` maps dotted keys to values (``prepare.seed``).

    ``path=None`` gives every section its defaults; a path that does not exist is an error (a mistyped
    ``--params`` must not train with the defaults). An error names its source: the file, or ``--set KEY=VALUE``
    when the key at fault was overridden.
    """
    _register_optional_sections()
    raw: Any = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"params file not found: {path}")
        try:
            raw = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    raw = raw or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    overrides = dict(overrides or {})
    for dotted, value in overrides.items():
        node = raw
        *parents, leaf = dotted.split(".")
        for i, p in enumerate(parents):
            child = node.setdefault(p, {})
            if not isinstance(child, dict):
                raise ConfigError(
                    f"--set {dotted}={value!r}: {'.'.join(parents[: i + 1])} is not a section", key=dotted
                )
            node = child
        node[leaf] = value
    source = str(path) if path is not None else "defaults"
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        exc = ConfigError(
            f"unknown section '{unknown[0]}' (known: {', '.join(sorted(SECTIONS))})", key=unknown[0]
        )
        raise _sourced(exc, source, overrides) from None
    sections = {}
    for name, cls in SECTIONS.items():
        try:
            sections[name] = from_dict(cls, raw.get(name), name)
        except ConfigError as exc:
            raise _sourced(exc, source, overrides) from None
    params = Params(sections=sections, path=Path(path) if path is not None else None)
    try:
        _cross_checks(params)
    except ConfigError as exc:
        raise _sourced(exc, source, overrides) from None
    return params


_KEY_IN_MESSAGE = re.compile(r"(?:unknown key ')?([A-Za-z_][\w.]*)")


def _sourced(exc: ConfigError, source: str, overrides: dict[str, Any]) -> ConfigError:
    """``exc`` prefixed with where the bad value came from: ``--set key=value`` or the params file."""
    key = exc.key
    if key is None:
        m = _KEY_IN_MESSAGE.match(str(exc))
        key = m.group(1) if m else None
    for dotted, value in overrides.items():
        if key is not None and (
            key == dotted or key.startswith(dotted + ".") or dotted.startswith(key + ".")
        ):
            return ConfigError(f"--set {dotted}={value!r}: {exc}", key=key)
    return ConfigError(f"{source}: {exc}", key=key)


def _cross_checks(params: Params) -> None:
    prep, media = params.sections["prepare"], params.sections["media"]
    if prep.source == "synthetic":
        step_frames = prep.video.event_step_s * media.video_fps
        if abs(step_frames - round(step_frames)) > 1e-9:
            raise ConfigError(
                f"prepare.video.event_step_s: {prep.video.event_step_s} s is not a whole number of "
                f"sampled frames at media.video_fps={media.video_fps}; events would fall between frames",
                key="prepare.video.event_step_s",
            )
