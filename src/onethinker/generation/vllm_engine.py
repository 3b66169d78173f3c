"""The vLLM engine: vLLM's offline ``LLM`` (V1 engine) colocated in the trainer (or evaluation) process.

How it departs from a plain ``LLM(model).generate``, and why:

- **in-process, colocated**: the engine core runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``);
  under a multi-process launcher (torchrun / deepspeed) each rank holds its own engine with
  ``distributed_executor_backend="external_launcher"`` and generates its own prompts, as TRL's colocate
  mode does. No server, no Ray.
- **weights after every optimizer step**: ``load_weights(model)`` walks the policy in chunks
  (``weight_sync``; ZeRO-3 shards gathered one chunk at a time) into the worker's ``reload_weights``
  through ``LLM.collective_rpc``: vLLM's supported in-place reload, which maps Hugging Face names onto
  vLLM's fused layout and redoes its post-load processing. Every ``sync_check_every``-th push is
  verified: vLLM's log-probs of a probe sequence must match the policy's within ``sync_check_tol``
  (``last_sync_gap`` holds the measured gap), otherwise it raises.
- **sleep / wake-up around the update**: with ``enable_sleep_mode``, ``sleep()`` (called by the trainer
  before the update) frees the KV cache and offloads (level 1) or drops (level 2) the weights; the weight
  push wakes the weights, the next ``generate`` the KV cache. vLLM's CPU backend has no sleep mode: there
  the setting is ignored with a warning and the KV cache stays allocated. On CPU the engine also runs
  eagerly: the CPU backend's compiled graph keeps the packed weights of the first load.
- **same prompts as training**: requests come from ``vllm_requests.build_request`` (the processor's chat
  template, the images and sampled video frames with their timing metadata as the trainer sees them); a
  text-only model gets the exact token ids the Hugging Face engine would feed.
- **n samples, seeds, log-probs**: ``SamplingParams(n=..., seed=...)`` per prompt (seed derived from the
  call's seed and the prompt's index), the sampled tokens' raw log-probs, and the finish reason. The vision
  placeholder tokens are banned (logit bias), stop tokens are the model's ``generation_config`` ones, and
  texts are decoded with the same tokenizer call as the Hugging Face engine, so greedy outputs of the two
  engines on the same weights are the same tokens.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from onethinker.data.examples import Example
from onethinker.generation.base import VLLM_INSTALL_HINT, Completion, SamplingParams, prompt_seed
from onethinker.generation.config import VLLMConfig
from onethinker.generation.hf import cut_at_stop, encode_prompt, is_text_only, suppressed_ids, tokenizer_of
from onethinker.generation.vllm_requests import build_request
from onethinker.generation.weight_sync import iter_weights

PROBE_TEXT = "Answer with <think>reasoning</think><answer>42</answer>: how many sides has a square?"


def configure_environment(cfg: VLLMConfig) -> None:
    """Environment vLLM reads at start: the engine core in this process; on CPU, the KV cache size."""
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    if not torch.cuda.is_available():
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(cfg.cpu_kv_cache_gb))


def sleep_mode_available() -> bool:
    from vllm.platforms import current_platform

    return bool(current_platform.is_sleep_mode_available())


def generation_stop_ids(model_dir: str | Path, tokenizer: Any) -> list[int]:
    """The model's stop tokens (``generation_config.json``'s ``eos_token_id``, else the tokenizer's eos)."""
    from transformers import GenerationConfig

    try:
        eos = GenerationConfig.from_pretrained(str(model_dir)).eos_token_id
    except OSError:
        eos = None
    if eos is None:
        eos = tokenizer.eos_token_id
    return sorted({int(e) for e in (eos if isinstance(eos, list) else [eos])})


def repack_tied_heads(worker: Any) -> int:
    """Run in vLLM's worker after a reload on CPU: re-pack output heads tied to the input embeddings.

    vLLM's CPU backend packs each embedding/head weight into its matmul when it is loaded. An in-place
    reload only re-processes the layers it loads, and a head tied to the input embeddings is never loaded
    under its own name, so its packed copy would keep the old embeddings. On GPUs processing is a no-op and
    the tied tensors share storage. Returns how many heads were re-packed.
    """
    model = worker.model_runner.get_model()
    owners: set[int] = set()
    repacked = 0
    for module in model.modules():
        weight, method = getattr(module, "weight", None), getattr(module, "quant_method", None)
        if not isinstance(weight, torch.nn.Parameter) or not hasattr(method, "process_weights_after_loading"):
            continue
        if id(weight) in owners:  # the same Parameter as an earlier module's: a tied head
            method.process_weights_after_loading(module)
            repacked += 1
        owners.add(id(weight))
    return repacked


class VLLMRolloutEngine:
    """vLLM colocated with the trainer (see the module docstring)."""

    name = "vllm"

    def __init__(
        self,
        model_dir: str | Path,
        processor: Any,
        cfg: VLLMConfig | None = None,
        seed: int = 0,
        policy_dtype: torch.dtype | None = None,
    ):
        """``model_dir``: the policy's folder (its weights are vLLM's starting weights); ``policy_dtype``: the
        trainer's dtype, which vLLM uses when ``cfg.dtype`` is ``auto`` (so both compute in one precision)."""
        cfg = cfg or VLLMConfig()
        configure_environment(cfg)
        try:
            from vllm import LLM
        except ImportError as exc:
            raise RuntimeError(f"the vllm engine needs vLLM: {VLLM_INSTALL_HINT}") from exc
        self.cfg = cfg
        self.model_dir = Path(model_dir)
        self.processor = processor
        self.tokenizer = tokenizer_of(processor)
        self.text_only = is_text_only(processor)
        self.sleep_enabled = cfg.enable_sleep_mode and sleep_mode_available()
        if cfg.enable_sleep_mode and not self.sleep_enabled:
            warnings.warn(
                "vLLM has no sleep mode on this platform (its CPU backend): the KV cache stays allocated "
                "while the policy trains",
                stacklevel=2,
            )
        kwargs: dict[str, Any] = {
            "model": str(self.model_dir),
            "tokenizer": str(self.model_dir),
            "seed": seed,
            "dtype": cfg.dtype
            if cfg.dtype != "auto" or policy_dtype is None
            else str(policy_dtype).split(".")[-1],
            "max_model_len": cfg.max_model_len,
            "tensor_parallel_size": cfg.tensor_parallel_size,
            "enforce_eager": cfg.enforce_eager,
            "enable_prefix_caching": cfg.enable_prefix_caching,
            "enable_sleep_mode": self.sleep_enabled,
        }
        if torch.cuda.is_available():
            kwargs["gpu_memory_utilization"] = cfg.gpu_memory_utilization
        else:
            # vLLM's CPU backend packs each linear weight into a closure after loading and, by default, traces
            # the model once with torch.compile, which keeps the closures of the first load: pushed weights
            # would never be used (the sync check sees it). Eager mode re-reads them (and starts faster).
            kwargs["enforce_eager"] = True
        if cfg.max_num_seqs is not None:
            kwargs["max_num_seqs"] = cfg.max_num_seqs
        if not self.text_only:
            kwargs["limit_mm_per_prompt"] = {"image": cfg.limit_images, "video": cfg.limit_videos}
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            kwargs["distributed_executor_backend"] = "external_launcher"
        self.llm = LLM(**kwargs)
        self.stop_ids = generation_stop_ids(self.model_dir, self.tokenizer)
        self.banned = suppressed_ids(self.tokenizer)
        self.asleep: set[str] = set()
        self.syncs = 0
        self.last_sync_gap: float | None = None
        self.pushed_tensors = 0

    # ------------------------------------------------------------------------------------ sleep / wake
    def sleep(self) -> None:
        """Free the KV cache (and offload or drop the weights) until the next push or rollout."""
        if self.sleep_enabled and not self.asleep:
            self.llm.sleep(level=self.cfg.sleep_level)
            self.asleep = {"weights", "kv_cache"}

    def wake_up(self, tags: Sequence[str] = ("weights", "kv_cache")) -> None:
        todo = [t for t in tags if t in self.asleep]
        if todo:
            self.llm.wake_up(tags=todo)
            self.asleep -= set(todo)

    # ------------------------------------------------------------------------------------ weights
    def load_weights(self, model: torch.nn.Module) -> None:
        """Push the policy's weights into vLLM (all of them the first time and after a level-2 sleep, the
        blocks holding trainable parameters after that), then check the push took effect when a check is due.

        The weights go through the worker's ``reload_weights`` (``LLM.collective_rpc``): vLLM's in-place
        reload, which takes checkpoint names, maps them onto its fused layers, and re-runs each layer's
        post-load processing (e.g. the CPU backend's repacked GEMM weights) once all its parts have arrived.
        The iterator is consumed inside the worker, which is in this process, so chunks are gathered one
        at a time and nothing is serialised.
        """
        full = self.syncs == 0 or (self.cfg.sleep_level == 2 and "weights" in self.asleep)
        self.wake_up(("weights",))
        count = [0]

        def weights():
            for pair in iter_weights(model, self.cfg.sync_chunk_mb << 20, trainable_only=not full):
                count[0] += 1
                yield pair

        self.llm.collective_rpc(
            "reload_weights", kwargs={"weights_iterator": weights(), "is_checkpoint_format": True}
        )
        if count[0] == 0:
            raise RuntimeError("no weights were pushed to vLLM (the policy has no trainable parameters?)")
        if not torch.cuda.is_available():
            self.llm.collective_rpc(repack_tied_heads)
        self.llm.reset_prefix_cache()  # cached prompt states belong to the old weights
        self.syncs += 1
        self.pushed_tensors = count[0]
        every = self.cfg.sync_check_every
        if every and self.syncs % every == 0:
            self.last_sync_gap = self.check_sync(model)
            if self.last_sync_gap > self.cfg.sync_check_tol:
                raise RuntimeError(
                    f"vLLM did not take the policy's weights: its log-probs of a probe sequence differ from the "
                    f"policy's by up to {self.last_sync_gap:.4f} nats (> vllm.sync_check_tol = "
                    f"{self.cfg.sync_check_tol})"
                )

    def probe_ids(self) -> list[int]:
        probe = Example(
            messages=[{"role": "user", "content": [{"type": "text", "text": PROBE_TEXT}]}],
            images=[],
            videos=[],
            problem_type="open-ended",
            data_type="image",
            problem_id="probe",
        )
        ids = encode_prompt(self.processor, probe)["input_ids"][0].tolist()
        return (
            ids
            + self.tokenizer("<think>four</think><answer>4</answer>", add_special_tokens=False)["input_ids"]
        )

    def prompt_logprobs(self, ids: Sequence[int]) -> list[float]:
        """vLLM's log-prob of each token of ``ids`` given the ones before it (len(ids) - 1 values)."""
        from vllm import SamplingParams as VSampling

        self.wake_up()
        params = VSampling(max_tokens=1, temperature=0.0, prompt_logprobs=0, detokenize=False)
        out = self.llm.generate([{"prompt_token_ids": list(ids)}], params, use_tqdm=False)[0]
        return [float(step[tok].logprob) for tok, step in zip(ids[1:], out.prompt_logprobs[1:], strict=True)]

    @torch.no_grad()
    def check_sync(self, model: torch.nn.Module) -> float:
        """Largest |log-prob difference| between vLLM and ``model`` over a probe sequence (nats)."""
        ids = self.probe_ids()
        engine_lp = torch.tensor(self.prompt_logprobs(ids))
        was_training = model.training
        model.eval()
        try:
            dev = next(model.parameters()).device
            inputs = {"input_ids": torch.tensor([ids], device=dev)}
            if hasattr(model.config, "vision_config"):
                inputs["mm_token_type_ids"] = torch.zeros_like(inputs["input_ids"])
            logits = model(**inputs).logits[0, :-1].float()  # (L-1, V)
            policy_lp = logits.log_softmax(-1).gather(-1, inputs["input_ids"][0, 1:, None]).squeeze(-1).cpu()
        finally:
            model.train(was_training)
        return float((policy_lp - engine_lp).abs().max())

    # ------------------------------------------------------------------------------------ generation
    def sampling_params(self, sampling: SamplingParams, index: int) -> Any:
        from vllm import SamplingParams as VSampling

        kwargs: dict[str, Any] = {
            "n": sampling.n,
            "max_tokens": sampling.max_new_tokens,
            "stop_token_ids": self.stop_ids,
            "logit_bias": {i: -100.0 for i in self.banned} or None,
            "detokenize": False,
            "skip_special_tokens": True,
        }
        if sampling.logprobs:
            kwargs["logprobs"] = 0
        if sampling.is_greedy:
            kwargs.update(temperature=0.0)
        else:
            kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=-1)
            if sampling.seed is not None:
                kwargs["seed"] = prompt_seed(sampling.seed, index)
        return VSampling(**kwargs)

    def generate(self, examples: Sequence[Example], sampling: SamplingParams) -> list[list[Completion]]:
        if not examples:
            return []
        self.wake_up()
        requests = [build_request(self.processor, ex) for ex in examples]
        params = [self.sampling_params(sampling, i) for i in range(len(examples))]
        outputs = self.llm.generate(requests, params, use_tqdm=False)
        stops = set(self.stop_ids)
        result = []
        for out in outputs:
            group = []
            for o in sorted(out.outputs, key=lambda o: o.index):
                ids, stopped = cut_at_stop(list(o.token_ids), stops)
                lp = None
                if sampling.logprobs and o.logprobs is not None:
                    lp = [float(step[t].logprob) for t, step in zip(ids, o.logprobs, strict=False)]
                group.append(
                    Completion(
                        text=self.tokenizer.decode(ids, skip_special_tokens=True),
                        token_ids=ids,
                        finished=stopped or o.finish_reason == "stop",
                        logprobs=lp,
                    )
                )
            result.append(group)
        return result

    def close(self) -> None:
        """Shut the engine down and free its memory (before building another one in this process)."""
        import gc

        engine = getattr(self.llm, "llm_engine", None)
        core = getattr(engine, "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()
        del self.llm
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
