"""The typed manifest of a prepared data folder (``<data.root>/manifest.json``), and loading its records.

``prepare`` writes it; every later stage reads the prepared files through it. It holds no absolute path (it
is part of DVC's ``data`` output, whose hash must not depend on where the checkout lives):

- ``files``: each prepared file's path relative to the data root, its kind (``rl``, ``sft``, ``eval``), the
  name of its media root and the file it was prepared from;
- ``media_roots``: each named root either as a folder inside the data root (``{"data": "media"}``: the
  synthetic world's media) or as the params key that holds the folder (``{"param":
  "prepare.onethinker.train_media_root"}``: the release's media stay where they are);
- ``counts``: samples per split and task pair.

``PreparedData.load(data_root, params, check)`` resolves the roots and gives typed records (SFT records joined
with the RL file for their task). ``check``, when given, sees every file's records as they are read and raises
``RecordError`` on a record it refuses: the stages pass validation's record rules
(``onethinker.validation.stage_checks``), so a record validation refuses never trains when ``validate`` was
skipped.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from onethinker.contract.io import read_records
from onethinker.contract.media import MediaRoot
from onethinker.contract.records import KINDS, Record, TaskIndex, parse_records

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 2


class ManifestError(ValueError):
    """The manifest is missing or malformed (the message names the file and the key)."""


@dataclass(frozen=True)
class ManifestFile:
    """One prepared file."""

    path: str  # relative to the data root, posix
    kind: str  # rl | sft | eval
    media_root: str  # the name of the root its media paths are relative to
    source: str = ""  # the file it was prepared from, as named in params ("" for the synthetic world)

    @property
    def split(self) -> str:
        return "eval" if self.kind == "eval" else "train"

    @property
    def name(self) -> str:
        return PurePosixPath(self.path).stem


@dataclass(frozen=True)
class RootRef:
    """Where a named media root is: a folder inside the data root, or the params key holding the folder."""

    data: str | None = None
    param: str | None = None

    def __post_init__(self) -> None:
        if (self.data is None) == (self.param is None):
            raise ManifestError(f"a media root is either 'data' or 'param', got {self}")


@dataclass(frozen=True)
class Manifest:
    source: str
    files: tuple[ManifestFile, ...]
    media_roots: Mapping[str, RootRef]
    counts: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    version: int = MANIFEST_VERSION

    def of_kind(self, *kinds: str) -> list[ManifestFile]:
        return [f for f in self.files if f.kind in kinds]

    @property
    def train_files(self) -> list[ManifestFile]:
        return self.of_kind("rl", "sft")

    @property
    def eval_files(self) -> list[ManifestFile]:
        return self.of_kind("eval")

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "source": self.source,
            "media_roots": {
                name: {k: v for k, v in (("data", r.data), ("param", r.param)) if v is not None}
                for name, r in sorted(self.media_roots.items())
            },
            "files": [
                {"path": f.path, "kind": f.kind, "media_root": f.media_root, "source": f.source}
                for f in self.files
            ],
            "counts": {k: dict(sorted(v.items())) for k, v in sorted(self.counts.items())},
        }

    @classmethod
    def from_json(cls, data: Any, where: str = MANIFEST_NAME) -> Manifest:
        def need(obj: Any, key: str, tp: type, at: str) -> Any:
            if not isinstance(obj, dict) or key not in obj:
                raise ManifestError(f"{where}: missing key '{at}{key}'")
            if not isinstance(obj[key], tp):
                raise ManifestError(f"{where}: '{at}{key}' must be a {tp.__name__}, got {obj[key]!r}")
            return obj[key]

        version = data.get("version") if isinstance(data, dict) else None
        if version != MANIFEST_VERSION:
            raise ManifestError(
                f"{where}: manifest version {version!r}, expected {MANIFEST_VERSION}: run `onethinker prepare` again"
            )
        roots = {}
        for name, ref in need(data, "media_roots", dict, "").items():
            if not isinstance(ref, dict) or set(ref) - {"data", "param"}:
                raise ManifestError(
                    f"{where}: 'media_roots.{name}' must be {{'data': dir}} or {{'param': key}}"
                )
            roots[name] = RootRef(**ref)
        files = []
        for i, f in enumerate(need(data, "files", list, "")):
            at = f"files[{i}]."
            kind = need(f, "kind", str, at)
            if kind not in KINDS:
                raise ManifestError(f"{where}: '{at}kind' must be one of {', '.join(KINDS)}, got {kind!r}")
            root = need(f, "media_root", str, at)
            if root not in roots:
                raise ManifestError(f"{where}: '{at}media_root' names no media root: {root!r}")
            files.append(ManifestFile(need(f, "path", str, at), kind, root, str(f.get("source", ""))))
        return cls(need(data, "source", str, ""), tuple(files), roots, dict(data.get("counts") or {}))


def read_manifest(data_root: str | Path) -> Manifest:
    path = Path(data_root) / MANIFEST_NAME
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `onethinker prepare` (or `dvc repro prepare`) first")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path}: not valid JSON: {exc}") from None
    return Manifest.from_json(data, str(path))


def write_manifest(data_root: str | Path, manifest: Manifest) -> Path:
    path = Path(data_root) / MANIFEST_NAME
    path.write_text(json.dumps(manifest.to_json(), indent=2) + "\n")
    return path


def _param(params: Any, key: str) -> Any:
    try:
        return functools.reduce(getattr, key.split("."), params)
    except AttributeError:
        return None


@dataclass(frozen=True)
class RootedRecord:
    """A record with the media root its paths resolve against."""

    record: Record
    root: MediaRoot


RecordCheck = Callable[[str, list[Record], MediaRoot, "TaskIndex | None"], None]
"""``check(file, records, root, task_index)``: raises ``RecordError`` on the first record it refuses."""


@dataclass(frozen=True)
class PreparedData:
    """A prepared data folder: its manifest and resolved media roots, and typed records on demand (each
    file's records through ``check`` when one is given)."""

    root: Path
    manifest: Manifest
    roots: Mapping[str, MediaRoot]
    check: RecordCheck | None = None

    @classmethod
    def load(
        cls, data_root: str | Path, params: Any = None, check: RecordCheck | None = None
    ) -> PreparedData:
        """Read ``data_root``'s manifest; roots named by a params key are looked up in ``params`` (a
        ``config.Params``: ``prepare.onethinker.train_media_root`` is ``params.prepare.onethinker...``).
        ``check`` sees each file's typed records as they are read (``RecordCheck``)."""
        root = Path(data_root)
        manifest = read_manifest(root)
        roots = {}
        for name, ref in manifest.media_roots.items():
            if ref.data is not None:
                roots[name] = MediaRoot(name, root / ref.data)
                continue
            value = _param(params, ref.param) if params is not None else None  # type: ignore[arg-type]
            if not value:
                raise ManifestError(
                    f"{root / MANIFEST_NAME}: media root {name!r} is the params key '{ref.param}', which is not set"
                )
            roots[name] = MediaRoot(name, Path(value))
        return cls(root, manifest, roots, check)

    def path(self, f: ManifestFile) -> Path:
        return self.root / f.path

    def root_of(self, f: ManifestFile) -> MediaRoot:
        return self.roots[f.media_root]

    def files(self, *kinds: str) -> list[ManifestFile]:
        return self.manifest.of_kind(*kinds)

    def records(self, f: ManifestFile, index: TaskIndex | None = None) -> list[Record]:
        """The typed records of one file (raises ``RecordFileError`` / ``RecordError`` naming what is wrong;
        ``check`` runs on them when set)."""
        records = parse_records(read_records(self.path(f)), self.path(f), f.kind, index)
        if self.check is not None:
            self.check(str(self.path(f)), records, self.root_of(f), index)
        return records

    def task_index(self) -> TaskIndex:
        """The RL records by content, for the SFT task rule."""
        index = TaskIndex()
        for f in self.files("rl"):
            for r in self.records(f):
                index.add(r)
        return index

    def rooted(self, kind: str) -> list[RootedRecord]:
        """Every record of the files of ``kind``, typed, with its media root (SFT records joined with the RL
        file for their task)."""
        index = self.task_index() if kind == "sft" else None
        return [RootedRecord(r, self.root_of(f)) for f in self.files(kind) for r in self.records(f, index)]

    def rl_records(self) -> list[Record]:
        return [x.record for x in self.rooted("rl")]

    def sft_records(self) -> list[Record]:
        return [x.record for x in self.rooted("sft")]

    def eval_sets(self) -> list[tuple[ManifestFile, list[RootedRecord]]]:
        """The evaluation files (one per benchmark) with their records."""
        return [(f, [RootedRecord(r, self.root_of(f)) for r in self.records(f)]) for f in self.files("eval")]
