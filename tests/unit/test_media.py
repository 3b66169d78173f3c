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
    rgb_conversion,
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


# --------------------------------------------------------------------------------------------------
# Sampling while decoding (issue 17): same frames as decoding everything first, bounded memory


def _decode_all_then_sample(path, fps, max_frames, min_pixels=None, max_pixels=None):
    """The previous decode_video: every frame decoded and kept, then sampled and resized (the reference)."""
    import av

    info = probe_video(path)
    with av.open(str(path)) as container:
        decoded = [f.to_ndarray(**rgb_conversion()) for f in container.decode(container.streams.video[0])]
    native = info.fps if info.fps > 0 else fps
    idx = sample_indices(len(decoded), native, fps, max_frames)
    frames = np.stack([decoded[i] for i in idx])
    h, w = frames.shape[1:3]
    nw, nh = fit_pixel_budget(w, h, min_pixels, max_pixels)
    if (nw, nh) != (w, h):
        frames = np.stack([np.asarray(Image.fromarray(f).resize((nw, nh), Image.BICUBIC)) for f in frames])
    return frames, idx.astype(np.float64) / native


def _videos(fixtures_dir: Path, clip_path: Path) -> list[Path]:
    return [clip_path, *sorted((fixtures_dir / "onethinker_release").rglob("*.mp4"))]


@pytest.mark.parametrize(
    ("fps", "max_frames", "max_pixels"),
    [(2.0, 128, None), (1.0, 3, None), (3.0, 7, 24 * 32), (1e6, 100000, None), (0.5, 2, 16 * 16)],
)
def test_sampling_while_decoding_selects_the_same_frames(
    fixtures_dir: Path, clip_path: Path, fps: float, max_frames: int, max_pixels: int | None
) -> None:
    videos = _videos(fixtures_dir, clip_path)
    assert len(videos) >= 2
    for path in videos:
        clip = decode_video(path, fps=fps, max_frames=max_frames, max_pixels=max_pixels)
        frames, stamps = _decode_all_then_sample(path, fps, max_frames, max_pixels=max_pixels)
        assert np.array_equal(clip.frames, frames), path
        assert np.array_equal(clip.timestamps, stamps), path


_PEAK_SCRIPT = """
import sys
from onethinker.data.media import decode_video, probe_video

def kib(field):  # this process's own figures (ru_maxrss would carry the parent's peak across fork and exec)
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])

probe_video(sys.argv[1])  # imports and opens everything once
before = kib("VmRSS")
clip = decode_video(sys.argv[1], fps=0.5, max_frames=8)
print(clip.frames.shape[0], (kib("VmHWM") - before) * 1024)
"""


def test_decoding_a_long_clip_keeps_only_the_sampled_frames(tmp_path: Path) -> None:
    """A 600-frame 320x240 clip (138 MB of RGB frames) sampled to 8 frames: the decoding process's peak memory
    grows by far less than the clip (measured in a fresh process). Decoding every frame first held them all."""
    import subprocess
    import sys

    path = tmp_path / "long.mp4"
    y, x = np.mgrid[0:240, 0:320]
    base = np.stack([(x * 255 // 320), (y * 255 // 240), ((x + y) % 256)], axis=-1).astype(np.uint8)
    write_video(path, np.stack([np.roll(base, 3 * i, axis=1) for i in range(600)]), fps=25)
    whole_clip = 600 * 240 * 320 * 3
    out = subprocess.run(
        [sys.executable, "-c", _PEAK_SCRIPT, str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout.split()
    frames, growth = int(out[0]), int(out[1])
    assert frames == 8
    assert growth < whole_clip / 4, (
        f"peak grew {growth / 2**20:.0f} MiB for a {whole_clip / 2**20:.0f} MiB clip"
    )


def test_resolve_under_refuses_escapes(tmp_path: Path) -> None:
    from onethinker.data.media import resolve_under

    root = tmp_path / "media"
    (root / "images").mkdir(parents=True)
    (root / "images" / "a.png").write_bytes(b"x")
    outside = tmp_path / "secret.png"
    outside.write_bytes(b"x")
    (root / "link.png").symlink_to(outside)
    assert resolve_under(root, "images/a.png") == (root / "images" / "a.png").resolve()
    assert resolve_under(root, root / "images" / "a.png") == (root / "images" / "a.png").resolve()
    assert resolve_under(root, "images/../images/a.png") == (root / "images" / "a.png").resolve()
    for bad in ("../secret.png", "images/../../secret.png", str(outside), "/etc/passwd", "link.png"):
        with pytest.raises(MediaError, match="outside the media root"):
            resolve_under(root, bad)
    # the same words whether or not the file exists: nothing is revealed about the outside
    with pytest.raises(MediaError) as a:
        resolve_under(root, "../secret.png")
    with pytest.raises(MediaError) as b:
        resolve_under(root, "../nothing.png")
    assert str(a.value).replace("secret", "X") == str(b.value).replace("nothing", "X")


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
