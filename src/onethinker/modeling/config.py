"""The ``base_model`` section of ``params.yaml``: the tiny Qwen3-VL built from a config, or a checkpoint.

The defaults are the embedded tiny model (about 1.06M parameters with a 2048-token vocabulary, 0.4M of them
in the vision tower and its mergers): text hidden 128, 2 layers, FFN 384; vision depth 2, hidden 64; patch 16
(Qwen3-VL's) with merge 2, so a 64x64 image costs 4 visual tokens. ``params.yaml``'s embedded profile sets
patch 8: 16 visual tokens per 64x64 image, enough for the model to tell where things are. Setting
``name_or_path`` (a local folder or a hub id) skips building and loads that checkpoint instead; every size
field is then ignored.

Field names follow ``Qwen3VLTextConfig`` / ``Qwen3VLVisionConfig`` where one exists, so a value can be
checked against a real checkpoint's ``config.json``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from onethinker.config import require


@dataclass(frozen=True)
class TextConfig:
    """The language model (``Qwen3VLTextConfig``)."""

    hidden_size: int = 128
    """Width of the residual stream."""
    num_hidden_layers: int = 2
    """Decoder layers."""
    intermediate_size: int = 384
    """Width of the SwiGLU feed-forward block."""
    num_attention_heads: int = 4
    """Query heads."""
    num_key_value_heads: int = 2
    """Key/value heads (grouped-query attention); must divide ``num_attention_heads``."""
    head_dim: int = 32
    """Width of one attention head (even; M-RoPE splits half of it into time, height and width sections)."""
    max_position_embeddings: int = 4096
    """Longest sequence the rotary embedding is sized for."""
    rope_theta: float = 10000.0
    """Base of the rotary embedding frequencies (Qwen3-VL-8B uses 5,000,000 for a 256k context)."""
    rms_norm_eps: float = 1e-6
    """Epsilon of the RMS norms."""
    tie_word_embeddings: bool = True
    """Share the input embedding with the output head (as Qwen3-VL-2B/4B do; 8B does not)."""

    def validate(self, key: str) -> None:
        for name in (
            "hidden_size",
            "num_hidden_layers",
            "intermediate_size",
            "num_attention_heads",
            "num_key_value_heads",
            "head_dim",
            "max_position_embeddings",
        ):
            require(getattr(self, name) >= 1, f"{key}.{name}", "must be >= 1")
        require(
            self.num_attention_heads % self.num_key_value_heads == 0,
            f"{key}.num_key_value_heads",
            f"must divide num_attention_heads ({self.num_attention_heads})",
        )
        require(
            self.head_dim % 2 == 0 and self.head_dim >= 6,
            f"{key}.head_dim",
            "must be even and >= 6 (M-RoPE needs a time, a height and a width section)",
        )
        require(self.rope_theta > 0, f"{key}.rope_theta", "must be positive")
        require(0 < self.rms_norm_eps < 1, f"{key}.rms_norm_eps", "must be in (0, 1)")

    @property
    def mrope_section(self) -> list[int]:
        """M-RoPE split of ``head_dim / 2`` rotary pairs into (time, height, width), scaled from Qwen's 24/20/20."""
        half = self.head_dim // 2
        hw = max(1, round(half * 20 / 64))
        return [half - 2 * hw, hw, hw]


@dataclass(frozen=True)
class VisionConfig:
    """The vision tower and its merger (``Qwen3VLVisionConfig``)."""

    depth: int = 2
    """Vision transformer blocks."""
    hidden_size: int = 64
    """Width of the vision transformer."""
    intermediate_size: int = 256
    """Width of its feed-forward block."""
    num_heads: int = 4
    """Attention heads; must divide ``hidden_size``."""
    patch_size: int = 16
    """Side of a square patch, in pixels."""
    spatial_merge_size: int = 2
    """Patches merged per side into one language token (2: a 2x2 block of patches becomes one token)."""
    temporal_patch_size: int = 2
    """Video frames per temporal patch (images are repeated to fill it)."""
    num_position_embeddings: int = 64
    """Learned position embeddings, a square grid (64: 8x8), bilinearly interpolated to each image's grid."""
    deepstack_visual_indexes: list[int] = field(default_factory=lambda: [0])
    """Vision blocks whose features are added to the first language layers (DeepStack), one per index."""

    def validate(self, key: str) -> None:
        for name in (
            "depth",
            "hidden_size",
            "intermediate_size",
            "num_heads",
            "patch_size",
            "spatial_merge_size",
            "temporal_patch_size",
            "num_position_embeddings",
        ):
            require(getattr(self, name) >= 1, f"{key}.{name}", "must be >= 1")
        require(
            self.hidden_size % self.num_heads == 0,
            f"{key}.num_heads",
            f"must divide hidden_size ({self.hidden_size})",
        )
        head = self.hidden_size // self.num_heads
        require(
            head % 4 == 0,
            f"{key}.num_heads",
            f"hidden_size / num_heads = {head} must be a multiple of 4 (2-D rotary embedding)",
        )
        side = math.isqrt(self.num_position_embeddings)
        require(
            side * side == self.num_position_embeddings,
            f"{key}.num_position_embeddings",
            "must be a perfect square (a square grid of positions)",
        )
        require(
            len(set(self.deepstack_visual_indexes)) == len(self.deepstack_visual_indexes),
            f"{key}.deepstack_visual_indexes",
            "must not repeat an index",
        )
        for i, idx in enumerate(self.deepstack_visual_indexes):
            require(
                0 <= idx < self.depth,
                f"{key}.deepstack_visual_indexes[{i}]",
                f"{idx} is not a vision block (depth is {self.depth})",
            )


@dataclass(frozen=True)
class BaseModelConfig:
    """The ``base_model`` stage: build a tiny Qwen3-VL from this config, or load ``name_or_path``."""

    name_or_path: str | None = None
    """A local folder or a hub id (e.g. ``Qwen/Qwen3-VL-8B-Instruct``); when set, it is loaded and saved
    instead of building, and the size fields below are ignored."""
    trust_remote_code: bool = False
    """Allow code from the checkpoint's repository to run when loading it (never needed for Qwen3-VL)."""
    seed: int = 0
    """Seed of the tokenizer-independent weight initialisation."""
    vocab_size: int = 2048
    """Size of the byte-level BPE vocabulary trained on the corpus, special tokens included (an upper bound:
    a small corpus may learn fewer merges; the model's embedding matches the tokenizer)."""
    text: TextConfig = field(default_factory=TextConfig)
    vision: VisionConfig = field(default_factory=VisionConfig)
    image_min_pixels: int = 32 * 32
    """The image processor resizes each image to at least this many pixels (a multiple of patch * merge)."""
    image_max_pixels: int = 64 * 64
    """... and at most this many (64x64: 4 visual tokens with patch 16 and merge 2)."""
    video_min_pixels: int = 32 * 32
    """Per-frame lower pixel budget of the video processor."""
    video_max_pixels: int = 64 * 64
    """Per-frame upper pixel budget of the video processor, rounded down to whole visual tokens
    ((patch * merge)^2 pixels each)."""

    def validate(self, key: str) -> None:
        if self.name_or_path is not None:
            require(bool(self.name_or_path.strip()), f"{key}.name_or_path", "must not be empty (use null)")
        require(
            self.vocab_size >= 512,
            f"{key}.vocab_size",
            "must be >= 512 (256 byte tokens, the special tokens and some merges)",
        )
        self.text.validate(f"{key}.text")
        self.vision.validate(f"{key}.vision")
        require(
            len(self.vision.deepstack_visual_indexes) <= self.text.num_hidden_layers,
            f"{key}.vision.deepstack_visual_indexes",
            f"at most text.num_hidden_layers ({self.text.num_hidden_layers}) entries: each feeds one layer",
        )
        token = self.merge_factor**2
        require(
            0 < self.image_min_pixels <= self.image_max_pixels,
            f"{key}.image_min_pixels",
            "must be positive and <= image_max_pixels",
        )
        require(
            self.image_max_pixels >= token,
            f"{key}.image_max_pixels",
            f"must be >= one visual token ((patch_size * spatial_merge_size)^2 = {token} pixels)",
        )
        require(
            0 < self.video_min_pixels <= self.video_max_pixels,
            f"{key}.video_min_pixels",
            "must be positive and <= video_max_pixels",
        )
        require(
            self.video_max_pixels >= token,
            f"{key}.video_max_pixels",
            f"must be >= one visual token ((patch_size * spatial_merge_size)^2 = {token} pixels)",
        )

    @property
    def merge_factor(self) -> int:
        """Side in pixels of the square that becomes one language token (patch_size * spatial_merge_size)."""
        return self.vision.patch_size * self.vision.spatial_merge_size
