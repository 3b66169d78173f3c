"""Qwen3-VL's video processor without torchvision.

transformers' ``Qwen3VLVideoProcessor`` does its pixel work through ``torchvision.transforms.v2``, and the
registry's torchvision build does not import next to the CPU torch used here. The ``Qwen3VLVideoProcessor``
here subclasses it and replaces only the four torchvision calls (``convert_to_rgb``, the backend ``resize``,
``rescale``, ``normalize``) with plain torch; frame sampling, smart resizing, patchifying and the grid layout
are the parent's, so the model sees the same patches either way (up to bicubic resampling differences).

Videos are passed as decoded frames plus metadata (``transformers.video_utils.VideoMetadata``), never as
file paths: decoding a path would need torchcodec. See ``onethinker.modeling.inputs.video_inputs``.

Importing this module registers the class for ``Qwen3VLConfig`` with ``AutoVideoProcessor`` (its one side
effect), so ``AutoProcessor.from_pretrained(folder)`` finds it by the ``video_processor_type`` saved there.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

import torch
import torch.nn.functional as F
import transformers
from transformers import Qwen3VLConfig, processing_utils
from transformers.image_processing_backends import TorchvisionBackend
from transformers.image_utils import PILImageResampling, SizeDict

# ``transformers.AutoVideoProcessor`` is a stub that raises without torchvision; the class in its module works.
from transformers.models.auto.video_processing_auto import AutoVideoProcessor
from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor as _UpstreamProcessor
from transformers.video_processing_utils import VideoProcessorMixin

_MODES = {
    PILImageResampling.NEAREST: "nearest",
    PILImageResampling.BILINEAR: "bilinear",
    PILImageResampling.BICUBIC: "bicubic",
    PILImageResampling.LANCZOS: "bicubic",  # torch has no Lanczos; bicubic is its usual stand-in
    PILImageResampling.BOX: "area",
    PILImageResampling.HAMMING: "bilinear",
}


def resize_frames(frames: torch.Tensor, height: int, width: int, mode: str = "bicubic") -> torch.Tensor:
    """Resize (..., C, H, W) frames to (height, width) with antialiasing; uint8 in, uint8 out (rounded)."""
    lead, (c, h, w) = frames.shape[:-3], frames.shape[-3:]
    if (h, w) == (height, width):
        return frames
    x = frames.reshape(-1, c, h, w)
    x = x.float() if not x.is_floating_point() else x
    kwargs = {"align_corners": False, "antialias": True} if mode in ("bilinear", "bicubic") else {}
    y = F.interpolate(x, size=(height, width), mode=mode, **kwargs)
    if not frames.is_floating_point():
        y = y.round().clamp(0, 255).to(frames.dtype)
    return y.reshape(*lead, c, height, width)


class _TorchBackend(TorchvisionBackend):
    """``TorchvisionBackend``'s pixel operations in plain torch (the ones Qwen3-VL's video path calls)."""

    def resize(
        self,
        image: torch.Tensor,
        size: SizeDict,
        resample: PILImageResampling | int | None = None,
        antialias: bool = True,
        **kwargs,
    ) -> torch.Tensor:
        """Resize (..., C, H, W) to ``size.height`` x ``size.width``."""
        if not (size.height and size.width):
            raise ValueError(f"plain-torch resize needs an explicit height and width, got {size}")
        mode = _MODES.get(PILImageResampling(resample), "bilinear") if resample is not None else "bilinear"
        return resize_frames(image, size.height, size.width, mode)

    def rescale(self, image: torch.Tensor, scale: float, **kwargs) -> torch.Tensor:
        return image * scale

    def normalize(
        self,
        image: torch.Tensor,
        mean: float | Iterable[float] | torch.Tensor,
        std: float | Iterable[float] | torch.Tensor,
        inplace: bool = False,
        **kwargs,
    ) -> torch.Tensor:
        """(x - mean) / std per channel on (..., C, H, W)."""
        mean_t, std_t = _per_channel(mean, image), _per_channel(std, image)
        if inplace:
            return image.sub_(mean_t).div_(std_t)
        return (image - mean_t) / std_t

    def convert_to_rgb(self, image: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        """(..., C, H, W) with C in {1, 3, 4} -> (..., 3, H, W); alpha is composited onto white."""
        return _to_rgb(image)


class Qwen3VLVideoProcessor(_UpstreamProcessor, _TorchBackend):
    """transformers' ``Qwen3VLVideoProcessor`` with its torchvision calls replaced by plain torch.

    The method resolution order puts ``_TorchBackend`` between the upstream class and ``TorchvisionBackend``,
    so the parent's smart ``resize`` (budget, sides multiples of patch * merge) ends in the plain-torch
    resampling, and ``rescale_and_normalize`` in the plain-torch ``normalize``.

    It deliberately keeps the upstream class name: saved folders say ``"video_processor_type":
    "Qwen3VLVideoProcessor"`` as every Qwen3-VL checkpoint does (stock transformers and vLLM load them with
    the upstream class), and once this class is registered with ``AutoVideoProcessor``, transformers'
    name lookup finds the registered class first, so the same folders, and real checkpoints, load here
    without torchvision.
    """

    def convert_to_rgb(self, video: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        # BaseVideoProcessor's version (ahead of _TorchBackend in the MRO) calls torchvision.
        return _to_rgb(video)


def _to_rgb(x: torch.Tensor) -> torch.Tensor:
    channels = x.shape[-3]
    if channels == 1:
        return x.expand(*x.shape[:-3], 3, *x.shape[-2:]).contiguous()
    if channels == 4:
        f = x if x.is_floating_point() else x.float() / 255.0
        rgb, alpha = f[..., :3, :, :], f[..., 3:, :, :]
        out = rgb * alpha + (1 - alpha)
        return out if x.is_floating_point() else (out * 255.0).round().clamp(0, 255).to(x.dtype)
    return x


def _per_channel(value: float | Iterable[float] | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    if isinstance(value, int | float):
        value = [float(value)] * like.shape[-3]
    t = value if isinstance(value, torch.Tensor) else torch.tensor(list(value), dtype=torch.float32)
    return t.to(device=like.device, dtype=like.dtype).reshape(-1, 1, 1)


def register_video_processor() -> None:
    """Make ``AutoVideoProcessor`` / ``AutoProcessor`` use ``Qwen3VLVideoProcessor`` above for Qwen3-VL.

    Idempotent. Without torchvision, transformers 5.23 also leaves ``transformers.VideoProcessorMixin``
    undefined (it is exported only with torchvision), and every processor's ``__init__`` looks it up by that
    name to type-check its ``video_processor`` argument; the class is set there so that check passes. The
    lookup goes through ``processing_utils.transformers_module``, which need not be the ``transformers`` in
    ``sys.modules`` (transformers re-executes its ``__init__`` in ``direct_transformers_import``), so both
    get it.
    """
    for module in (processing_utils.transformers_module, sys.modules.get("transformers"), transformers):
        if module is not None and getattr(module, "VideoProcessorMixin", None) is not VideoProcessorMixin:
            module.VideoProcessorMixin = VideoProcessorMixin
    AutoVideoProcessor.register(Qwen3VLConfig, Qwen3VLVideoProcessor, exist_ok=True)


register_video_processor()
