"""What a media file is: exists, decodes as an image or a video, its size, duration and content hash.

``probe_media`` is the single place validation opens media. It is cached on (path, mtime, size), so the
table builder (which needs video durations for the span rules) and the media expectations (which need
the verdicts) open each file once, and a file changed on disk is probed again.

Detection does not trust the extension: PIL is tried first (it refuses video containers), then PyAV
(a video stream whose first frame decodes). The media rules compare the result with the declared
``data_type`` and with the extension.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
VIDEO_EXTS = frozenset(
    {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpeg", ".mpg", ".flv", ".wmv", ".3gp"}
)


@dataclass(frozen=True)
class MediaProbe:
    """The verdict on one media file. ``kind`` is None when the file is missing or does not decode."""

    path: str
    exists: bool
    kind: str | None = None  # "image" | "video"
    error: str | None = None
    width: int | None = None
    height: int | None = None
    duration: float | None = None  # seconds (videos)
    fps: float | None = None
    num_frames: int | None = None
    sha256: str | None = None

    @property
    def ext_kind(self) -> str | None:
        """The kind the file's extension suggests (None for an unknown extension)."""
        ext = os.path.splitext(self.path)[1].lower()
        return "image" if ext in IMAGE_EXTS else "video" if ext in VIDEO_EXTS else None


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _decode(path: str) -> MediaProbe:
    from onethinker.data.media import MediaError, load_image, probe_video

    try:
        image = load_image(path)
        return MediaProbe(path, True, "image", width=image.width, height=image.height)
    except MediaError:
        pass
    try:
        import av

        info = probe_video(path)
        with av.open(path) as container:
            next(container.decode(container.streams.video[0]))
        return MediaProbe(
            path,
            True,
            "video",
            width=info.width,
            height=info.height,
            duration=info.duration,
            fps=info.fps,
            num_frames=info.num_frames,
        )
    except Exception as exc:  # PyAV raises many types on a bad file
        cause = exc.__cause__ or exc  # probe_video wraps PyAV's error with the path; keep PyAV's words
        video_error = getattr(cause, "strerror", None) or str(cause) or type(cause).__name__
    return MediaProbe(
        path, True, None, error=f"decodes neither as an image (PIL) nor as a video (PyAV: {video_error})"
    )


@lru_cache(maxsize=1 << 17)
def _probe_cached(path: str, mtime_ns: int, size: int, decode: bool) -> MediaProbe:
    if not decode:
        return MediaProbe(path, True)
    probe = _decode(path)
    try:
        digest = _sha256(path)
    except OSError as exc:
        return MediaProbe(path, True, None, error=f"cannot read: {exc}")
    return MediaProbe(**{**probe.__dict__, "sha256": digest})


def probe_media(path: str | Path, decode: bool = True) -> MediaProbe:
    """Probe one file (``decode=False``: existence only). Never raises."""
    path = str(path)
    try:
        st = os.stat(path)
    except OSError:
        return MediaProbe(path, False, error="file not found")
    if not os.path.isfile(path):
        return MediaProbe(path, False, error="not a regular file")
    return _probe_cached(path, st.st_mtime_ns, st.st_size, decode)
