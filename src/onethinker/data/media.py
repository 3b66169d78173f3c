"""Media decoding shared by data preparation, validation, SFT, RL and evaluation.

- Images are loaded as RGB and resized to fit a pixel budget (``min_pixels`` <= w*h <= ``max_pixels``),
  keeping the aspect ratio, as Qwen-VL's data pipelines do.
- Videos are decoded with PyAV (no torchvision, no torchcodec) and sampled at a target fps with a frame
  cap: ``decode_video`` returns the frames and their timestamps in seconds. The same code path runs at
  training and at evaluation time, so a model never sees frames sampled differently between the two.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


class MediaError(ValueError):
    """A media file is missing, unreadable or not of the declared type."""


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video stream."""

    duration: float  # seconds
    fps: float  # native frames per second
    num_frames: int
    width: int
    height: int


@dataclass(frozen=True)
class VideoClip:
    """Frames sampled from a video.

    frames: uint8 array (T, H, W, 3); timestamps: float array (T,) in seconds from the start;
    sample_fps: the rate the frames were sampled at; info: the source stream's properties.
    """

    frames: np.ndarray
    timestamps: np.ndarray
    sample_fps: float
    info: VideoInfo


def fit_pixel_budget(
    width: int, height: int, min_pixels: int | None, max_pixels: int | None
) -> tuple[int, int]:
    """Size (w, h) with the same aspect ratio whose area lies within [min_pixels, max_pixels]."""
    area = width * height
    scale = 1.0
    if max_pixels is not None and area > max_pixels:
        scale = math.sqrt(max_pixels / area)
    elif min_pixels is not None and area < min_pixels:
        scale = math.sqrt(min_pixels / area)
    if scale == 1.0:
        return width, height
    return max(1, int(width * scale)), max(1, int(height * scale))


def load_image(path: str | Path, min_pixels: int | None = None, max_pixels: int | None = None) -> Image.Image:
    """Load an image as RGB, resized into the pixel budget. Raises MediaError on a bad file."""
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"image file not found: {path}")
    try:
        with Image.open(path) as im:
            im.load()
            image = im.convert("RGB")
    except Exception as exc:  # PIL raises many types
        raise MediaError(f"cannot decode image {path}: {exc}") from exc
    w, h = fit_pixel_budget(image.width, image.height, min_pixels, max_pixels)
    if (w, h) != image.size:
        image = image.resize((w, h), Image.BICUBIC)
    return image


def rgb_conversion() -> dict[str, Any]:
    """``to_ndarray`` arguments: FFmpeg's conversion of decoded frames to RGB pinned to its bit-exact C path,
    with accurate rounding and one thread, so a file decodes to the same pixels on every CPU (SIMD paths
    may round differently)."""
    from av.video.reformatter import Interpolation

    flags = Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.BITEXACT
    return {"format": "rgb24", "interpolation": flags, "threads": 1}


def probe_video(path: str | Path) -> VideoInfo:
    """Read a video's duration, fps, frame count and size. Raises MediaError on a bad file."""
    import av

    path = Path(path)
    if not path.is_file():
        raise MediaError(f"video file not found: {path}")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError(f"no video stream in {path}")
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 0.0)
            frames = int(stream.frames or 0)
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / 1_000_000
            else:
                duration = 0.0
            if frames == 0:  # some containers do not store a count: decode to count
                frames = sum(1 for _ in container.decode(stream))
            if duration <= 0 and fps > 0:
                duration = frames / fps
            if fps <= 0 and duration > 0:
                fps = frames / duration
            return VideoInfo(
                duration=duration, fps=fps, num_frames=frames, width=stream.width, height=stream.height
            )
    except MediaError:
        raise
    except Exception as exc:
        raise MediaError(f"cannot decode video {path}: {exc}") from exc


def sample_indices(num_frames: int, native_fps: float, target_fps: float, max_frames: int) -> np.ndarray:
    """Frame indices sampled at ``target_fps`` (never above the native rate), at most ``max_frames``.

    At least 2 frames are returned when the video has 2 or more (Qwen-VL merges frames in pairs).
    """
    if num_frames <= 0:
        return np.zeros(0, dtype=np.int64)
    duration = num_frames / native_fps if native_fps > 0 else float(num_frames)
    fps = min(target_fps, native_fps) if native_fps > 0 else target_fps
    n = max(1, int(math.floor(duration * fps + 1e-6)))
    n = min(n, max_frames, num_frames)
    n = max(n, min(2, num_frames))
    if n >= num_frames:
        return np.arange(num_frames, dtype=np.int64)
    step = num_frames / n
    # sample at the start of each interval, so timestamps fall on k / fps
    return np.minimum((np.arange(n) * step + 1e-6).astype(np.int64), num_frames - 1)


def decode_video(
    path: str | Path,
    fps: float = 2.0,
    max_frames: int = 128,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
) -> VideoClip:
    """Decode a video with PyAV, sampled at ``fps`` with at most ``max_frames`` frames.

    Returns frames (T, H, W, 3) uint8 resized into the per-frame pixel budget, and timestamps in seconds.
    Frames are sampled while decoding: only the selected frames are converted, resized and kept, so memory
    is bounded by ``max_frames`` resized frames whatever the clip's length. The selection is computed from
    the frame count the container reports (counted by decoding when it reports none); should the decoded
    count differ, the clip is decoded once more with the true count, so the frames are always those that
    :func:`sample_indices` picks from every decoded frame.
    """
    info = probe_video(path)
    native_fps = info.fps if info.fps > 0 else fps
    expected = info.num_frames
    frames, total = _decode_selected(path, expected, native_fps, fps, max_frames, min_pixels, max_pixels)
    if total != expected:  # the container's count was wrong: select again from the true count
        frames, total = _decode_selected(path, total, native_fps, fps, max_frames, min_pixels, max_pixels)
    if total == 0:
        raise MediaError(f"video has no frames: {path}")
    idx = sample_indices(total, native_fps, fps, max_frames)
    timestamps = idx.astype(np.float64) / native_fps
    sample_fps = len(idx) / info.duration if info.duration > 0 else fps
    return VideoClip(frames=np.stack(frames), timestamps=timestamps, sample_fps=float(sample_fps), info=info)


def _decode_selected(
    path: str | Path,
    num_frames: int,
    native_fps: float,
    fps: float,
    max_frames: int,
    min_pixels: int | None,
    max_pixels: int | None,
) -> tuple[list[np.ndarray], int]:
    """One decoding pass keeping the frames ``sample_indices(num_frames, ...)`` selects, each resized into the
    pixel budget as it arrives. Returns (kept frames, number of frames decoded)."""
    import av

    wanted = sample_indices(num_frames, native_fps, fps, max_frames)
    keep: dict[int, int] = {}  # frame index -> how many times it is selected (1 unless frames repeat)
    for i in wanted.tolist():
        keep[i] = keep.get(i, 0) + 1
    kept: list[np.ndarray] = []
    total = 0
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            for frame in container.decode(stream):
                copies = keep.get(total, 0)
                total += 1
                if not copies:
                    continue
                array = frame.to_ndarray(**rgb_conversion())
                h, w = array.shape[:2]
                nw, nh = fit_pixel_budget(w, h, min_pixels, max_pixels)
                if (nw, nh) != (w, h):
                    array = np.asarray(Image.fromarray(array).resize((nw, nh), Image.BICUBIC))
                kept.extend([array] * copies)
    except Exception as exc:
        raise MediaError(f"cannot decode video {path}: {exc}") from exc
    return kept, total


def resolve_under(root: str | Path, rel: str | Path) -> Path:
    """``rel`` resolved against ``root``, refused unless it stays inside ``root``.

    A relative path is taken from the root; an absolute path is accepted only when it lies under the root.
    Symbolic links are resolved first, so a link inside the root that points outside is refused too, and so
    is any ``..`` that climbs out. Raises :class:`MediaError` naming the path and the root (the message is
    the same whether or not the file exists, so a caller learns nothing about files outside the root).
    """
    base = Path(root).resolve()
    target = (base / Path(rel)).resolve()
    if target != base and not target.is_relative_to(base):
        raise MediaError(f"media path {str(rel)!r} is outside the media root {str(base)!r}")
    return target


# x264 settings written into every MP4 we encode: everything that shapes the bitstream is fixed here (one
# thread, no lookahead threads, a fixed preset, quality and GOP), so the same frames give the same bytes.
X264_OPTIONS: dict[str, str] = {
    "preset": "veryfast",
    "crf": "12",
    "threads": "1",
    "x264-params": "threads=1:lookahead-threads=1:sliced-threads=0:keyint=250:min-keyint=4:scenecut=40",
}


def rgb_to_yuv444(frames: np.ndarray) -> np.ndarray:
    """uint8 RGB (T, H, W, 3) -> uint8 planar Y'CbCr 4:4:4 (T, 3, H, W): BT.601, limited range, integers.

    Y = 16 + (66 R + 129 G + 25 B + 128) >> 8, Cb = 128 + (-38 R - 74 G + 112 B + 128) >> 8,
    Cr = 128 + (112 R - 94 G - 18 B + 128) >> 8 (the ITU-R BT.601 8-bit integer form). Done here rather than
    by FFmpeg's swscale, whose conversion is not promised to round the same way on every CPU or version.
    """
    rgb = frames.astype(np.int32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]  # (T, H, W) each
    y = 16 + ((66 * r + 129 * g + 25 * b + 128) >> 8)
    cb = 128 + ((-38 * r - 74 * g + 112 * b + 128) >> 8)
    cr = 128 + ((112 * r - 94 * g - 18 * b + 128) >> 8)
    return np.stack([y, cb, cr], axis=1).clip(0, 255).astype(np.uint8)  # (T, 3, H, W)


def write_video(path: str | Path, frames: Sequence[np.ndarray] | np.ndarray, fps: int) -> None:
    """Write uint8 RGB frames (T, H, W, 3) to an MP4 file (H.264 4:4:4 via PyAV's bundled FFmpeg).

    Deterministic: the same frames and fps give the same bytes. The colour conversion is ours
    (``rgb_to_yuv444``), x264 runs single-threaded with fixed options (``X264_OPTIONS``), frame timestamps
    are explicit, and codec and muxer run in FFmpeg's ``bitexact`` mode (no encoder version string, no
    creation time). Written to a temporary file and renamed, so a reader never sees half a video.
    """
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = np.asarray(frames, dtype=np.uint8)
    h, w = frames.shape[1:3]
    yuv = rgb_to_yuv444(frames)
    tmp = path.with_name(path.name + ".tmp.mp4")
    with av.open(str(tmp), mode="w", format="mp4", container_options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream("libx264", rate=int(fps), options=dict(X264_OPTIONS))
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuv444p"  # keep colours exact enough for thin shapes and text
        stream.codec_context.thread_count = 1
        stream.codec_context.colorspace = 6  # AVCOL_SPC_SMPTE170M: BT.601, what rgb_to_yuv444 computes
        stream.codec_context.color_range = 1  # AVCOL_RANGE_MPEG: limited range (16-235)
        stream.codec_context.flags |= int(av.codec.context.Flags.bitexact)
        stream.codec_context.time_base = Fraction(1, int(fps))
        for i, planes in enumerate(yuv):
            frame = av.VideoFrame.from_ndarray(planes, format="yuv444p")
            frame.pts = i
            frame.time_base = Fraction(1, int(fps))
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    tmp.replace(path)
