"""The vLLM engine's tests, run from the vLLM test environment (`make test-vllm`, which builds `.venv-vllm`).

vLLM's CPU build cannot run Qwen3-VL here (its Qwen3-VL code imports torchvision), so these tests use a tiny
text-only Qwen3 built from a config with the project's tokenizer builder: the same code paths (engine, weight
push, sampling, GRPO) as on a GPU worker, minus the vision tower. Every test module here sets the `vllm`
marker, which the default test run deselects; vLLM is imported only inside the tests, so collection works
anywhere.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# vLLM's engine core in this process (colocated, as in the trainer) and a small KV cache on CPU.
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")


from vllm_helpers import QUESTIONS


@pytest.fixture(scope="session")
def text_model(tmp_path_factory) -> Path:
    """A tiny text-only Qwen3 (2 layers, hidden 128, tied embeddings) with an offline BPE tokenizer;
    weights drawn with std 0.25 so its greedy answers differ from prompt to prompt."""
    from onethinker.contract.prompts import render_prompt
    from onethinker.modeling.builder import build_text_model
    from onethinker.modeling.config import TextConfig

    corpus = [render_prompt(q, "numerical", "image", "compact") for q in QUESTIONS] * 20
    corpus += ["<think>two shapes</think><answer>2</answer>", "<think>red</think><answer>A</answer>"] * 20
    return build_text_model(
        TextConfig(), corpus, 512, tmp_path_factory.mktemp("text") / "qwen3", init_std=0.25
    )


@pytest.fixture(scope="session")
def vllm_engine(text_model):
    """One colocated vLLM engine for the session (starting vLLM is the slow part), in float32 like the policy."""
    pytest.importorskip("vllm")
    from onethinker.generation.config import VLLMConfig
    from onethinker.generation.vllm_engine import VLLMRolloutEngine
    from onethinker.modeling import load_processor

    engine = VLLMRolloutEngine(
        text_model, load_processor(text_model), VLLMConfig(max_model_len=512, dtype="float32"), seed=0
    )
    yield engine
    engine.close()
