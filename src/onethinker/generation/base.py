"""What every rollout engine shares: sampling settings, completions, the engine interface, engine checks.

``RolloutEngine.generate(examples, sampling) -> list[list[Completion]]`` returns ``sampling.n`` completions
per example; ``load_weights(model)`` makes the engine generate with the policy's current weights (the HF
engine generates with the policy itself; the vLLM engine copies them into its own model).

Light: no torch or vLLM import, so configs and the CLI can check an engine name without loading either.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from onethinker.data.examples import Example

EngineName = Literal["hf", "vllm"]
ENGINES: tuple[str, ...] = ("hf", "vllm")

VLLM_INSTALL_HINT = (
    "install it on a CUDA worker with `pip install -e '.[gpu]'`, or build the CPU test environment with "
    "`make vllm-venv` and run from `.venv-vllm`"
)


@dataclass(frozen=True)
class SamplingParams:
    """How to sample. ``greedy`` (or ``temperature <= 0``) decodes greedily; ``seed`` makes sampling
    reproducible (vLLM derives one seed per prompt from it, HF seeds the call); ``logprobs`` asks for the log-prob of
    each generated token under the model's raw (untempered) distribution."""

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 128
    greedy: bool = False
    seed: int | None = None
    logprobs: bool = False

    @property
    def is_greedy(self) -> bool:
        return self.greedy or self.temperature <= 0


@dataclass
class Completion:
    """One generated continuation of a prompt.

    token_ids: the generated tokens without the stop token; finished: it stopped on an end-of-turn token
    (``finish_reason == "stop"``) rather than at the length limit (``"length"``); logprobs: one per token in
    ``token_ids`` when asked for, else None.
    """

    text: str
    token_ids: list[int] = field(default_factory=list)
    finished: bool = True
    logprobs: list[float] | None = None

    @property
    def finish_reason(self) -> str:
        return "stop" if self.finished else "length"


class RolloutEngine(Protocol):
    def generate(self, examples: Sequence[Example], sampling: SamplingParams) -> list[list[Completion]]: ...

    def load_weights(self, model: Any) -> None: ...


def prompt_seed(seed: int, index: int) -> int:
    """The seed of the ``index``-th prompt of a call seeded with ``seed`` (a 31-bit int, as vLLM accepts).

    vLLM seeds a prompt's k-th sample with ``seed + k``: prompts are 1000 apart, so the samples of different
    prompts never share a seed while n < 1000."""
    return (seed * 1_000_003 + index * 1000) % (2**31 - 1)


def text_only(example: Example) -> Example:
    """``example`` without its media: image and video blocks dropped from the messages (for a text-only
    causal LM, which has no vision tower; the question text is kept)."""
    messages = []
    for message in example.messages:
        content = message.get("content")
        if isinstance(content, list):
            content = [b for b in content if b.get("type") not in ("image", "video")]
        messages.append({**message, "content": content})
    return dataclasses.replace(example, messages=messages, images=[], videos=[])


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def check_engine(name: str, key: str) -> None:
    """Fail early, naming ``key``, when engine ``name`` is unknown or cannot run in this environment."""
    from onethinker.config import ConfigError

    if name not in ENGINES:
        raise ConfigError(f"{key}: unknown engine {name!r} (known: {', '.join(ENGINES)})")
    if name == "vllm" and not vllm_available():
        raise ConfigError(
            f"{key}: vllm is not installed in this environment; {VLLM_INSTALL_HINT}, or set {key}: hf"
        )
