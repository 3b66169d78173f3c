"""Benchmark: peak memory of ``decode_video`` on a long clip (frames sampled while decoding).

    python tests/benchmarks/bench_video.py [--seconds 120] [--fps 30] [--width 1280] [--height 720]
                                           [--sample-fps 2] [--max-frames 128] [--max-pixels 65536]

Writes a synthetic clip (a moving gradient, H.264 ``ultrafast``) of the given length and size, then decodes it
in a fresh process at the real recipe's budget (2 fps, up to 128 frames, 65,536 pixels per frame) and prints:
the size of all its frames as RGB (what decoding every frame before sampling held), the decoding process's
peak memory growth (``VmHWM`` minus the resident size before decoding), and the time taken. The default is a
2-minute 720p clip at 30 fps (3,600 frames, 9.3 GiB of RGB frames).

The file is named so that pytest does not collect it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHILD = """
import sys, time
from onethinker.data.media import decode_video, probe_video

def kib(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])

path, fps, max_frames, max_pixels = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
probe_video(path)
before = kib("VmRSS")
t0 = time.perf_counter()
clip = decode_video(path, fps=fps, max_frames=max_frames, max_pixels=max_pixels)
print(clip.frames.shape, (kib("VmHWM") - before) * 1024, time.perf_counter() - t0, clip.frames.nbytes)
"""


def write_clip(path: Path, seconds: float, fps: int, width: int, height: int) -> int:
    import av

    n = int(seconds * fps)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([(x * 255 // width), (y * 255 // height), ((x + y) % 256)], axis=-1).astype(np.uint8)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "28"}
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(np.roll(base, 4 * i, axis=1), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--sample-fps", type=float, default=2.0)
    ap.add_argument("--max-frames", type=int, default=128)
    ap.add_argument("--max-pixels", type=int, default=65536)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-video-") as tmp:
        path = Path(tmp) / "long.mp4"
        t0 = time.perf_counter()
        n = write_clip(path, args.seconds, args.fps, args.width, args.height)
        print(
            f"clip: {args.seconds:.0f} s at {args.fps} fps, {args.width}x{args.height}: {n} frames, "
            f"{path.stat().st_size / 2**20:.1f} MiB on disk, written in {time.perf_counter() - t0:.1f} s"
        )
        whole = n * args.width * args.height * 3
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                CHILD,
                str(path),
                str(args.sample_fps),
                str(args.max_frames),
                str(args.max_pixels),
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        shape, rest = out.rsplit(")", 1)
        growth, seconds, kept = rest.split()
        print(f"all frames as RGB (decode-everything-first held these): {whole / 2**30:.2f} GiB")
        print(
            f"sampled while decoding: {shape}) kept ({int(kept) / 2**20:.1f} MiB), peak memory growth "
            f"{int(growth) / 2**20:.1f} MiB, {float(seconds):.1f} s"
        )


if __name__ == "__main__":
    main()
