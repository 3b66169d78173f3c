"""Rollout engines: n completions per prompt, behind one interface (HF ``generate``; vLLM on GPU workers).

``RolloutEngine.generate(examples, sampling) -> list[list[Completion]]`` (one list of n completions per
example) and ``load_weights(model)`` (pick up the policy's new weights after an update).

- ``HFRolloutEngine``: batched ``model.generate`` with the KV cache, prompts left-padded; each prompt is
  repeated n times in the batch. Works on CPU and GPU.
- ``VLLMRolloutEngine``: vLLM's offline ``LLM`` colocated with the trainer; imported lazily, so this module
  imports without vLLM. It cannot run on CPU-only machines (vLLM needs a CUDA build of torch).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from onethinker.data.examples import Example


@dataclass(frozen=True)
class SamplingParams:
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 128
    greedy: bool = False


@dataclass
class Completion:
    text: str
    token_ids: list[int] = field(default_factory=list)
    finished: bool = True  # stopped at an end-of-turn token rather than the length limit


class RolloutEngine(Protocol):
    def generate(self, examples: Sequence[Example], sampling: SamplingParams) -> list[list[Completion]]: ...

    def load_weights(self, model: torch.nn.Module) -> None: ...


class HFRolloutEngine:
    """Hugging Face ``generate`` on the policy model itself (so new weights are always in use)."""

    def __init__(
        self, model: torch.nn.Module, processor: Any, batch_size: int = 32, device: str | None = None
    ):
        self.model = model
        self.processor = processor
        self.batch_size = batch_size
        self.device = device or next(model.parameters()).device
        tok = processor.tokenizer
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        eos = model.generation_config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos])
        # A completion must never contain vision placeholders: the model would expect media features for them.
        vision = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>", "<|im_start|>")
        self.suppress = [
            i for i in tok.convert_tokens_to_ids(list(vision)) if i is not None and i != tok.unk_token_id
        ]

    def load_weights(self, model: torch.nn.Module) -> None:
        self.model = model

    def encode(self, example: Example) -> dict[str, torch.Tensor]:
        from onethinker.modeling.inputs import encode_chat

        return encode_chat(
            self.processor, example.messages, example.images, example.videos, add_generation_prompt=True
        )

    @torch.no_grad()
    def generate(
        self,
        examples: Sequence[Example],
        sampling: SamplingParams,
        encoded: Sequence[dict[str, torch.Tensor]] | None = None,
    ) -> list[list[Completion]]:
        from onethinker.modeling.inputs import collate, model_inputs

        encoded = list(encoded) if encoded is not None else [self.encode(ex) for ex in examples]
        flat = [e for e in encoded for _ in range(sampling.n)]
        texts: list[Completion] = []
        was_training = self.model.training
        self.model.eval()
        gen_kwargs: dict[str, Any] = {
            "max_new_tokens": sampling.max_new_tokens,
            "pad_token_id": self.pad_id,
            "use_cache": True,
            "suppress_tokens": self.suppress,
        }
        if sampling.greedy or sampling.temperature <= 0:
            gen_kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            gen_kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
        try:
            for i in range(0, len(flat), self.batch_size):
                batch = collate(flat[i : i + self.batch_size], self.pad_id, padding_side="left")
                inputs = {k: v.to(self.device) for k, v in model_inputs(batch).items()}
                out = self.model.generate(**inputs, **gen_kwargs)
                new = out[:, inputs["input_ids"].shape[1] :].tolist()
                for row in new:
                    ids, finished = [], False
                    for t in row:
                        if t in self.eos_ids:
                            finished = True
                            break
                        ids.append(t)
                    text = self.processor.tokenizer.decode(ids, skip_special_tokens=True)
                    texts.append(Completion(text=text, token_ids=ids, finished=finished))
        finally:
            self.model.train(was_training)
        return [texts[j * sampling.n : (j + 1) * sampling.n] for j in range(len(encoded))]


class VLLMRolloutEngine:
    """vLLM, colocated with the trainer (GPU workers only). Imported lazily."""

    def __init__(
        self,
        model_path: str,
        gpu_memory_utilization: float = 0.5,
        max_model_len: int = 16384,
        limit_mm_per_prompt: dict[str, int] | None = None,
    ):
        try:
            from vllm import LLM
        except ImportError as exc:  # pragma: no cover - needs a GPU worker
            raise RuntimeError(
                "the vllm engine needs `pip install onethinker[gpu]` on a CUDA machine"
            ) from exc
        self.llm = LLM(
            model=model_path,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
            enable_sleep_mode=True,
            limit_mm_per_prompt=limit_mm_per_prompt or {"image": 1, "video": 1},
        )
        from transformers import AutoProcessor

        self.processor = AutoProcessor.from_pretrained(model_path)

    def load_weights(self, model: torch.nn.Module) -> None:  # pragma: no cover - needs a GPU worker
        state = model.state_dict()
        runner = self.llm.llm_engine.model_executor.driver_worker.worker.model_runner.model
        runner.load_weights(state.items())

    def generate(
        self, examples: Sequence[Example], sampling: SamplingParams
    ) -> list[list[Completion]]:  # pragma: no cover - needs a GPU worker
        from vllm import SamplingParams as VSampling

        params = VSampling(
            n=sampling.n,
            temperature=0.0 if sampling.greedy else sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=sampling.max_new_tokens,
        )
        requests = []
        for ex in examples:
            prompt = self.processor.apply_chat_template(
                ex.messages, add_generation_prompt=True, tokenize=False
            )
            mm: dict[str, Any] = {}
            if ex.images:
                mm["image"] = ex.images[0]
            if ex.videos:
                mm["video"] = ex.videos[0].frames
            requests.append({"prompt": prompt, "multi_modal_data": mm})
        outputs = self.llm.generate(requests, params)
        return [
            [Completion(o.text, list(o.token_ids), o.finish_reason == "stop") for o in out.outputs]
            for out in outputs
        ]


def make_engine(
    name: str, model: torch.nn.Module, processor: Any, batch_size: int = 32, model_path: str | None = None
) -> RolloutEngine:
    if name == "hf":
        return HFRolloutEngine(model, processor, batch_size)
    if name == "vllm":
        return VLLMRolloutEngine(model_path or "")
    raise ValueError(f"unknown rollout engine {name!r} (hf or vllm)")
