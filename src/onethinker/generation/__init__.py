"""Rollout engines: n completions per prompt from the policy, behind one interface, for rl, evaluation and serve.

- ``base``: ``SamplingParams``, ``Completion``, the ``RolloutEngine`` protocol, ``check_engine`` (an unknown
  engine or a missing vLLM install fails early, with the fix in the message).
- ``hf``: ``HFRolloutEngine``, Hugging Face ``generate`` on the policy itself (CPU and GPU), and
  ``encode_prompt``, the one place a prompt becomes model inputs for every engine and the trainer.
- ``vllm_engine``: ``VLLMRolloutEngine``, vLLM's offline ``LLM`` colocated in the trainer process; weights pushed
  after each optimizer step (``weight_sync``: chunked, ZeRO-3 shards gathered), sleep / wake-up around
  updates. ``vllm_requests`` builds its Qwen3-VL requests (prompt, images, video frames and their timing
  metadata) with no vLLM import, so they are tested against the Hugging Face processor anywhere.
- ``heldout``: the end-of-stage check of SFT and GRPO (greedy answers on a fixed held-out sample, scored).
- ``config``: ``VLLMConfig``, the ``grpo.vllm`` / ``evaluate.vllm`` sections.

This layer sits below the stages (sft, rl, evaluation, registry) and above rewards, modeling and the data
contract; nothing here imports a stage. vLLM is imported only when a vLLM engine is built.
"""

from __future__ import annotations

from onethinker.generation.base import (
    ENGINES,
    Completion,
    RolloutEngine,
    SamplingParams,
    check_engine,
)

__all__ = ["ENGINES", "Completion", "RolloutEngine", "SamplingParams", "check_engine", "make_engine"]


def make_engine(
    name: str, model, processor, *, model_dir=None, batch_size: int = 32, vllm=None, seed: int = 0
):
    """The rollout engine ``name`` for ``model`` (``hf``) or for the model folder ``model_dir`` (``vllm``,
    whose weights must equal ``model``'s; push new ones with ``load_weights``; vLLM computes in ``model``'s
    dtype unless ``vllm.dtype`` says otherwise)."""
    if name == "hf":
        from onethinker.generation.hf import HFRolloutEngine

        return HFRolloutEngine(model, processor, batch_size)
    if name == "vllm":
        from onethinker.generation.config import VLLMConfig
        from onethinker.generation.vllm_engine import VLLMRolloutEngine

        if model_dir is None:
            raise ValueError("the vllm engine needs the model's folder (model_dir)")
        dtype = next(model.parameters()).dtype if model is not None else None
        return VLLMRolloutEngine(model_dir, processor, vllm or VLLMConfig(), seed=seed, policy_dtype=dtype)
    check_engine(name, "engine")
    raise AssertionError("unreachable")
