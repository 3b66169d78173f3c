"""Media decoding: pixel budgets, fps sampling with a frame cap, timestamps, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from onethinker.data.media import (
    MediaError,
    decode_video,
    fit_pixel_budget,
    load_image,
    probe_video,
    sample_indices,
    write_video,
)


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("media") / "clip.mp4"
    frames = np.zeros((40, 48, 64, 3), dtype=np.uint8)  # 10 s at 4 fps
    for i in range(40):
        frames[i, :, : (i + 1)] = 200
    write_video(path, frames, fps=4)
    return path


def test_probe(clip_path: Path) -> None:
    info = probe_video(clip_path)
    assert info.num_frames == 40 and info.fps == pytest.approx(4.0)
    assert info.duration == pytest.approx(10.0, abs=0.05) and (info.width, info.height) == (64, 48)


def test_decode_at_target_fps_with_timestamps(clip_path: Path) -> None:
    clip = decode_video(clip_path, fps=2.0, max_frames=128)
    assert clip.frames.shape == (20, 48, 64, 3)
    assert np.allclose(clip.timestamps, np.arange(20) * 0.5)
    # frame i of the sample is source frame 2i: its bright band is 2i+1 pixels wide
    widths = (clip.frames[:, 0, :, 0] > 100).sum(axis=1)
    assert np.array_equal(widths, np.arange(20) * 2 + 1)


def test_frame_cap_and_pixel_budget(clip_path: Path) -> None:
    clip = decode_video(clip_path, fps=2.0, max_frames=8, max_pixels=24 * 32)
    assert clip.frames.shape[0] == 8
    assert clip.frames.shape[1] * clip.frames.shape[2] <= 24 * 32
    assert clip.timestamps[0] == 0.0 and np.all(np.diff(clip.timestamps) > 0)


def test_sample_indices_never_above_native_rate() -> None:
    assert list(sample_indices(8, native_fps=4, target_fps=10, max_frames=128)) == list(range(8))
    assert len(sample_indices(1, native_fps=4, target_fps=2, max_frames=128)) == 1


def test_image_budget(tmp_path: Path) -> None:
    p = tmp_path / "big.png"
    Image.new("RGB", (200, 100), (255, 0, 0)).save(p)
    im = load_image(p, max_pixels=50 * 25)
    assert im.width * im.height <= 50 * 25 and im.mode == "RGB"
    assert fit_pixel_budget(10, 10, 400, None) == (20, 20)


def test_bad_media_raise_media_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video")
    with pytest.raises(MediaError, match="junk.mp4"):
        probe_video(junk)
    with pytest.raises(MediaError, match="not found"):
        load_image(tmp_path / "missing.png")
    bad_png = tmp_path / "bad.png"
    bad_png.write_bytes(b"\x89PNG garbage")
    with pytest.raises(MediaError, match="cannot decode"):
        load_image(bad_png)
