"""Settings of the vLLM engine (``grpo.vllm`` and ``evaluate.vllm`` in params.yaml). Light: no vLLM import."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from onethinker.config import require


@dataclass(frozen=True)
class VLLMConfig:
    """vLLM's offline ``LLM``, colocated in the trainer (or evaluation) process; read when ``engine: vllm``."""

    gpu_memory_utilization: float = 0.5
    """Share of GPU memory vLLM may take (weights + KV cache); the rest is the trainer's."""
    max_model_len: int = 16384
    """Longest prompt + response in tokens (sizes the KV cache; the released recipe needs ~8k + 4k)."""
    tensor_parallel_size: int = 1
    max_num_seqs: int | None = None
    """Sequences decoded at once (None: vLLM's default)."""
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    enforce_eager: bool = False
    """Skip CUDA graph capture (faster start, slower decoding)."""
    enable_prefix_caching: bool = True
    """The n completions of a prompt share its KV cache."""
    enable_sleep_mode: bool = True
    """Release the KV cache (and offload weights) while the policy trains, wake up for the next rollout.
    Ignored, with a warning, where the platform has no sleep mode (vLLM on CPU)."""
    sleep_level: Literal[1, 2] = 1
    """1: weights offloaded to CPU memory while asleep; 2: weights discarded (every sync pushes all weights)."""
    sync_chunk_mb: int = 512
    """Weights are pushed in chunks of at most this many MB (under ZeRO-3, gathered one chunk at a time)."""
    sync_check_every: int = 1
    """Every K-th weight push, check that it took effect: vLLM's log-probs of a probe sequence must match
    the policy's within ``sync_check_tol``. 0 = never."""
    sync_check_tol: float = 0.1
    """Largest |log-prob difference| (nats) allowed by the check (bf16 kernels differ by a few 0.01)."""
    limit_images: int = 1
    """Images per prompt (vLLM's ``limit_mm_per_prompt``)."""
    limit_videos: int = 1
    cpu_kv_cache_gb: int = 1
    """KV cache size in GB on a CPU-only machine (``VLLM_CPU_KVCACHE_SPACE``, whole GB); unused on GPUs."""

    def validate(self, key: str) -> None:
        require(0 < self.gpu_memory_utilization <= 1, f"{key}.gpu_memory_utilization", "must be in (0, 1]")
        require(self.max_model_len >= 16, f"{key}.max_model_len", "must be >= 16")
        require(self.tensor_parallel_size >= 1, f"{key}.tensor_parallel_size", "must be >= 1")
        require(
            self.max_num_seqs is None or self.max_num_seqs >= 1, f"{key}.max_num_seqs", "must be >= 1 or null"
        )
        require(self.sync_chunk_mb >= 1, f"{key}.sync_chunk_mb", "must be >= 1")
        require(self.sync_check_every >= 0, f"{key}.sync_check_every", "must be >= 0 (0 = never)")
        require(self.sync_check_tol > 0, f"{key}.sync_check_tol", "must be positive")
        require(self.limit_images >= 0, f"{key}.limit_images", "must be >= 0")
        require(self.limit_videos >= 0, f"{key}.limit_videos", "must be >= 0")
        require(self.cpu_kv_cache_gb >= 1, f"{key}.cpu_kv_cache_gb", "must be >= 1 (whole GB)")
