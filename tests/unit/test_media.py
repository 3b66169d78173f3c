"""Media decoding: pixel budgets, fps sampling with a frame cap, timestamps, clear errors."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
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
    rgb_to_yuv444,
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


def test_rgb_to_yuv444_hand_worked() -> None:
    # BT.601 limited range, integers: white -> (16 + (220*255+128)>>8, 128, 128) = (235, 128, 128);
    # black -> (16, 128, 128); red -> Y 16 + (66*255+128)>>8 = 82, Cb 128 + (-38*255+128)>>8 = 90,
    # Cr 128 + (112*255+128)>>8 = 240
    rgb = np.array([[[[255, 255, 255], [0, 0, 0], [255, 0, 0]]]], dtype=np.uint8)  # (T=1, H=1, W=3, 3)
    yuv = rgb_to_yuv444(rgb)  # (1, 3, 1, 3)
    assert yuv.shape == (1, 3, 1, 3)
    assert yuv[0, :, 0, 0].tolist() == [235, 128, 128]
    assert yuv[0, :, 0, 1].tolist() == [16, 128, 128]
    assert yuv[0, :, 0, 2].tolist() == [82, 90, 240]


_ENCODE = """
import ctypes, glob, hashlib, json, sys
from pathlib import Path
import av
import numpy as np
if sys.argv[2] == "no-simd":  # FFmpeg's C paths only, as on a CPU without SIMD extensions
    lib = glob.glob(str(Path(av.__file__).parent.parent / "av.libs" / "libavutil*"))
    if lib:
        ctypes.CDLL(lib[0]).av_force_cpu_flags(0)
from onethinker.data.media import decode_video, write_video
rng = np.random.default_rng(7)
frames = rng.integers(0, 256, (12, 48, 64, 3)).astype(np.uint8)
frames[:, 8:30, 10:40] = [200, 30, 90]
write_video(sys.argv[1], frames, fps=4)
clip = decode_video(sys.argv[1], fps=4, max_frames=100)
print(json.dumps({"file": hashlib.sha256(Path(sys.argv[1]).read_bytes()).hexdigest(),
                  "frames": hashlib.sha256(clip.frames.tobytes()).hexdigest()}))
"""


def test_video_encoding_is_deterministic_across_processes(tmp_path: Path) -> None:
    """The same frames give the same MP4 bytes and the same decoded pixels in separate processes, also with
    FFmpeg's SIMD paths switched off (what another CPU would take); no encoder version or time is written."""
    runs = []
    for i, mode in enumerate(("default", "default", "no-simd")):
        out = tmp_path / f"v{i}.mp4"
        proc = subprocess.run(
            [sys.executable, "-c", _ENCODE, str(out), mode], capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        data = out.read_bytes()
        assert b"Lavf" not in data  # bitexact muxer: no library version string
    assert runs[0] == runs[1] == runs[2]
    assert hashlib.sha256((tmp_path / "v0.mp4").read_bytes()).hexdigest() == runs[0]["file"]
