"""The ``prepare`` stage's core: write training and held-out evaluation files plus their media.

Two sources:
- ``synthetic`` (the embedded default): every (problem_type, data_type) pair of the task table gets
  ``train_per_task`` training samples and ``eval_per_task`` held-out samples. Each sample's scene is
  drawn from its own seed ``(seed, split, pair index, sample index)``; train and eval use different
  ``split`` values, so their scenes never share a seed. Deterministic: the same params write the same
  bytes.
- ``onethinker``: the released RL, SFT and evaluation JSON files, read through HF ``datasets`` and
  written in the same layout with media paths made absolute under the release's media root.

Layout written under ``data.root``:
``train/rl.json``, ``train/sft_image.json``, ``train/sft_video.json``, ``eval/<benchmark>.json`` and
``media/{images,videos}/{train,eval}/…``; ``manifest.json`` lists files and counts per task.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from onethinker.config import DataConfig, PrepareConfig
from onethinker.data import formats
from onethinker.data.generate import Sample, WorldSpec, make_sample
from onethinker.data.media import write_video
from onethinker.data.prompts import PromptStyle, build_prompt, format_response
from onethinker.tasks import TASK_PAIRS, TaskPair, task_slug

SPLITS = {"train": 0, "eval": 1}


@dataclass
class PrepareResult:
    """What ``prepare`` wrote: file paths and per-task counts."""

    train_files: list[Path] = field(default_factory=list)
    eval_files: list[Path] = field(default_factory=list)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> "pt/dt" -> n

    def as_dict(self) -> dict[str, Any]:
        return {
            "train_files": [str(p) for p in self.train_files],
            "eval_files": [str(p) for p in self.eval_files],
            "counts": self.counts,
        }


def benchmark_name(pair: TaskPair) -> str:
    return f"synthetic-{pair.name}"


def sample_seed(seed: int, split: str, pair_index: int, index: int) -> list[int]:
    return [seed, SPLITS[split], pair_index, index]


def _save_media(sample: Sample, media_root: Path, rel: str) -> None:
    path = media_root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if sample.image is not None:
        Image.fromarray(sample.image).save(path, format="PNG", optimize=False)
    else:
        write_video(path, sample.frames, sample.fps)


def _records(sample: Sample, pid: str, rel: str, split: str, style: PromptStyle) -> dict[str, dict]:
    pt, dt = sample.pair.problem_type, sample.pair.data_type
    media_key = "images" if dt == "image" else "videos"
    answer = formats.wrap_answer(sample.answer)
    extra: dict[str, Any] = {}
    if sample.masks is not None:
        extra["masks"] = sample.masks
        if dt == "video":
            extra["mask_fps"] = float(sample.fps)
    common = {"problem_id": pid, "problem": sample.problem}
    if sample.options:
        common["options"] = sample.options
    if split == "eval":
        return {
            "eval": {**common, "solution": answer, "problem_type": pt, "data_type": dt, "path": rel, **extra}
        }
    rl = {**common, "answer": answer, "problem_type": pt, "data_type": dt, media_key: [rel], **extra}
    prompt = build_prompt(sample.problem, pt, dt, sample.options, style)
    sft = {
        "messages": [
            {"role": "user", "content": f"<{dt}>{prompt}"},
            {"role": "assistant", "content": format_response(sample.think, sample.answer)},
        ],
        media_key: [rel],
        "problem_id": pid,
        "problem_type": pt,
        "data_type": dt,
        "answer": answer,
    }
    return {"rl": rl, "sft": sft}


def _pixels_digest(sample: Sample) -> str:
    pixels = sample.image if sample.image is not None else sample.frames
    return hashlib.sha1(np.ascontiguousarray(pixels).tobytes()).hexdigest()


def _draw(
    pair: TaskPair, ws: WorldSpec, seed: int, split: str, pi: int, i: int, train_digests: set[str]
) -> Sample:
    """Sample ``i`` of a pair. A held-out sample whose pixels equal a training sample's (a small world can
    repeat itself, e.g. the same word rendered alike) is redrawn from the next sub-seed, so train and eval
    never share media content."""
    for attempt in range(100):
        rng = np.random.default_rng(
            [*sample_seed(seed, split, pi, i), attempt] if attempt else sample_seed(seed, split, pi, i)
        )
        sample = make_sample(pair, rng, ws)
        digest = _pixels_digest(sample)
        if split == "train":
            train_digests.add(digest)
            return sample
        if digest not in train_digests:
            return sample
    raise RuntimeError(f"could not draw a held-out {pair.name} sample unlike every training sample")


def prepare_synthetic(
    cfg: PrepareConfig,
    data: DataConfig,
    prompt_style: PromptStyle = "full",
    progress: Callable[[str, int], None] | None = None,
) -> PrepareResult:
    """Render the synthetic world and write every file. ``progress(label, n)`` is called per sample."""
    root = Path(data.root)
    for sub in ("train", "eval", "media"):
        shutil.rmtree(root / sub, ignore_errors=True)
    media_root = data.media_root
    ws = WorldSpec(
        cfg.image_size, cfg.max_objects, cfg.video.duration_s, cfg.video.fps, cfg.video.event_step_s
    )
    rl: list[dict] = []
    sft: dict[str, list[dict]] = {"image": [], "video": []}
    evals: dict[str, list[dict]] = {}
    counts: dict[str, Counter] = {"train": Counter(), "eval": Counter(), "sft": Counter()}
    n_sft = max(1, round(cfg.train_per_task * cfg.sft_fraction))
    train_digests: set[str] = set()
    for split, n in (("train", cfg.train_per_task), ("eval", cfg.eval_per_task)):
        for pi, pair in enumerate(TASK_PAIRS):
            for i in range(n):
                sample = _draw(pair, ws, cfg.seed, split, pi, i, train_digests)
                ext = "png" if pair.data_type == "image" else "mp4"
                rel = f"{pair.data_type}s/{split}/{pair.name}-{i:05d}.{ext}"
                _save_media(sample, media_root, rel)
                pid = f"{split}-{pair.name}-{i:05d}"
                recs = _records(sample, pid, rel, split, prompt_style)
                key = f"{pair.problem_type}/{pair.data_type}"
                counts[split][key] += 1
                if split == "eval":
                    evals.setdefault(benchmark_name(pair), []).append(recs["eval"])
                else:
                    rl.append(recs["rl"])
                    if i < n_sft:
                        sft[pair.data_type].append(recs["sft"])
                        counts["sft"][key] += 1
                if progress:
                    progress(f"{split} {pair.name}", 1)
    result = PrepareResult()
    formats.write_records(root / "train" / "rl.json", rl)
    result.train_files.append(root / "train" / "rl.json")
    for dt, recs in sft.items():
        path = root / "train" / f"sft_{dt}.json"
        formats.write_records(path, recs)
        result.train_files.append(path)
    for name, recs in sorted(evals.items()):
        path = root / "eval" / f"{name}.json"
        formats.write_records(path, recs)
        result.eval_files.append(path)
    result.counts = {k: dict(sorted(v.items())) for k, v in counts.items()}
    _write_manifest(root, result, source="synthetic", media_root=media_root)
    return result


def prepare_onethinker(
    cfg: PrepareConfig, data: DataConfig, cache_dir: str | Path | None = None
) -> PrepareResult:
    """Read the released files through HF ``datasets`` and write them in our layout (absolute media paths)."""
    src = cfg.onethinker
    root = Path(data.root)
    for sub in ("train", "eval"):
        shutil.rmtree(root / sub, ignore_errors=True)
    media_root = Path(src.media_root or ".")
    result = PrepareResult()
    counts: dict[str, Counter] = {"train": Counter(), "eval": Counter(), "sft": Counter()}
    rl = [formats.absolutise_media(r, media_root) for r in formats.load_release(src.rl, cache_dir)]
    for r in rl:
        counts["train"][f"{r.get('problem_type')}/{r.get('data_type')}"] += 1
    formats.write_records(root / "train" / "rl.json", rl)
    result.train_files.append(root / "train" / "rl.json")
    for path in src.sft:
        recs = [formats.absolutise_media(r, media_root) for r in formats.load_release(path, cache_dir)]
        for r in recs:
            counts["sft"][f"{r.get('problem_type', '?')}/{'video' if r.get('videos') else 'image'}"] += 1
        out = root / "train" / f"sft_{Path(path).stem}.json"
        formats.write_records(out, recs)
        result.train_files.append(out)
    for path in src.eval:
        recs = [formats.absolutise_media(r, media_root) for r in formats.load_release(path, cache_dir)]
        for r in recs:
            counts["eval"][f"{r.get('problem_type')}/{r.get('data_type')}"] += 1
        out = root / "eval" / f"{Path(path).stem}.json"
        formats.write_records(out, recs)
        result.eval_files.append(out)
    result.counts = {k: dict(sorted(v.items())) for k, v in counts.items()}
    _write_manifest(root, result, source="onethinker", media_root=media_root.resolve())
    return result


def _write_manifest(root: Path, result: PrepareResult, source: str, media_root: Path) -> None:
    manifest = {"source": source, "media_root": str(media_root), **result.as_dict()}
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def read_manifest(data: DataConfig) -> dict[str, Any]:
    path = Path(data.root) / "manifest.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `onethinker prepare` (or `dvc repro prepare`) first")
    return json.loads(path.read_text())


def counts_per_task(result: PrepareResult) -> dict[str, dict[str, int]]:
    """Counts keyed by task slug (the metric names used across the pipeline)."""
    out: dict[str, dict[str, int]] = {}
    for split, by_pair in result.counts.items():
        per: Counter = Counter()
        for key, n in by_pair.items():
            pt, _, dt = key.partition("/")
            try:
                per[task_slug(pt, dt)] += n
            except KeyError:
                per[key] += n
        out[split] = dict(sorted(per.items()))
    return out
