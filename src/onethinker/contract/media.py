"""Media paths and the named roots they resolve against.

The release keeps training media under the training data's root (``data.image_dir`` of
``run_onethinker_rl.sh``; LLaMA-Factory's media folder for SFT) and evaluation media under the evaluation
data's root (``--base_prefix`` of ``eval_bench.py``, ``DATA_ROOT`` of ``seg_post_sam2.py``): two roots, one per
split, each named. A record's paths resolve as the release's code resolves them:

- RL and SFT (``images`` / ``videos``): ``os.path.join(root, path)`` (an absolute path stays as it is);
- evaluation (``path``, ``additional_path``): ``os.path.join(root, path.lstrip("./").lstrip("/"))``.

``MediaRoot.resolve`` is that rule; ``MediaRoot.contains`` says whether a resolved path stays inside the root.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from pathlib import Path

TRAIN_ROOT, EVAL_ROOT = "train", "eval"


def release_relpath(path: str, kind: str) -> str:
    """The path as the release joins it to its root (evaluation paths lose leading ``.`` and ``/``)."""
    return path.lstrip("./").lstrip("/") if kind == "eval" else path


def resolve_media(root: str | Path, path: str, kind: str) -> Path:
    """A record's media path under its root, by the release's rule for records of ``kind``."""
    return Path(os.path.join(str(root), release_relpath(path, kind)))


def media_key(path: str, kind: str) -> str:
    """A media path as compared across records of one root (posix, normalised, no leading ``./``)."""
    return posixpath.normpath(release_relpath(path, kind).replace("\\", "/"))


@dataclass(frozen=True)
class MediaRoot:
    """A named folder that records' media paths are relative to."""

    name: str
    path: Path

    def resolve(self, path: str, kind: str) -> Path:
        return resolve_media(self.path, path, kind)

    def contains(self, resolved: str | Path) -> bool:
        """Whether a resolved path lies inside this root (after normalising ``..`` and links)."""
        root = os.path.realpath(self.path)
        target = os.path.realpath(resolved)
        return os.path.commonpath([root, target]) == root
