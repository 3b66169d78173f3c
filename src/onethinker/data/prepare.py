"""The ``prepare`` stage's core: write training and held-out evaluation files plus their media.

Two sources, one layout (the release's, ``onethinker.contract.records``):
- ``synthetic`` (the embedded default): every (problem_type, data_type) pair of the task table gets
  ``train_per_task`` training samples and ``eval_per_task`` held-out samples. Each sample's scene is
  drawn from its own seed ``(seed, split, pair index, sample index)``; train and eval use different
  ``split`` values, so their scenes never share a seed. Deterministic: the same params write the same
  bytes. Records are written exactly as the release lays them out: RL records with ``<image>``/``<video>``
  placeholders in ``problem``, SFT records with only ``messages`` and media, evaluation records with
  segmentation ground truth in ``segmentation_output`` (plus ``resolution`` and ``fps``).
- ``onethinker``: the released RL, SFT and evaluation JSON files, copied record for record (every field
  kept, media paths as written). Their media stay where they are: the manifest names the training and
  evaluation media roots by their params keys.

Layout written under ``data.root``:
``train/rl.json``, ``train/sft_*.json``, ``eval/<benchmark>.json``, ``media/`` (synthetic only) and
``manifest.json`` (``onethinker.contract.manifest``: files, kinds, named media roots, counts per task; no
absolute path, so the data's hash does not depend on where the checkout lives).
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from onethinker.config import DataConfig, PrepareConfig
from onethinker.contract import prompts as Pr
from onethinker.contract.answers import format_response, wrap_answer
from onethinker.contract.io import read_records, write_records
from onethinker.contract.manifest import Manifest, ManifestFile, RootRef, write_manifest
from onethinker.contract.media import EVAL_ROOT, TRAIN_ROOT
from onethinker.contract.records import TaskIndex, Where, check_fields, derive_sft_task, parse_record
from onethinker.contract.tasks import TASK_PAIRS, TaskPair, canonical_problem_type, modality, task_slug
from onethinker.data.generate import Sample, WorldSpec, make_sample
from onethinker.data.media import write_video

SPLITS = {"train": 0, "eval": 1}


@dataclass
class PrepareResult:
    """What ``prepare`` wrote: the manifest's files (with paths under the data root) and counts per task."""

    root: Path
    files: list[ManifestFile] = field(default_factory=list)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> "pt/dt" -> n

    @property
    def train_files(self) -> list[Path]:
        return [self.root / f.path for f in self.files if f.kind != "eval"]

    @property
    def eval_files(self) -> list[Path]:
        return [self.root / f.path for f in self.files if f.kind == "eval"]


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


def _segmentation_output(sample: Sample) -> dict[str, Any]:
    """The release's segmentation ground truth (``seg_post_sam2.py``): an RLE for an image; frame keys, an RLE
    per key and ``fps`` for a video (frame i at i / fps s), with the ``resolution`` masks are scored at."""
    assert sample.masks is not None
    h, w = sample.masks[0]["size"]
    out: dict[str, Any] = {"resolution": {"width": int(w), "height": int(h)}}
    if sample.pair.data_type == "image":
        out["segmentation_output"] = {"segmentation_rle": sample.masks[0]}
    else:
        keys = [f"{i:05d}" for i in range(len(sample.masks))]
        out["segmentation_output"] = {
            "frames": keys,
            "segmentation_rle": dict(zip(keys, sample.masks, strict=True)),
        }
        out["fps"] = float(sample.fps)
    return out


def _records(sample: Sample, pid: str, rel: str, split: str, style: Pr.PromptStyle) -> dict[str, dict]:
    """The sample in the release's layouts: an evaluation record, or an RL record and an SFT record."""
    pt, dt = sample.pair.problem_type, sample.pair.data_type
    media_key = "images" if dt == "image" else "videos"
    answer = wrap_answer(sample.answer)
    if split == "eval":
        rec: dict[str, Any] = {"problem_id": pid, "problem": sample.problem}
        if sample.options:
            rec["options"] = sample.options
        rec.update(solution=answer, problem_type=pt, data_type=dt, path=rel)
        if sample.masks is not None:
            rec.update(_segmentation_output(sample))
        return {"eval": rec}
    problem = f"<{dt}>{sample.problem}"  # the placeholder marks where the media go (EasyR1's dataset)
    rl: dict[str, Any] = {"problem_id": pid, "problem": problem}
    if sample.options:
        rl["options"] = sample.options
    rl.update(
        answer=answer,
        problem_type=pt,
        data_type=dt,
        **{media_key: [rel]},
        problem_reserved_text=sample.problem,
    )
    prompt = Pr.render_prompt(problem, pt, dt, style, sample.options)
    sft = {
        "messages": [
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": format_response(sample.think, sample.answer)},
        ],
        media_key: [rel],
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
    prompt_style: Pr.PromptStyle = "full",
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
    result = PrepareResult(root)
    write_records(root / "train" / "rl.json", rl)
    result.files.append(ManifestFile("train/rl.json", "rl", TRAIN_ROOT))
    for dt, recs in sft.items():
        write_records(root / "train" / f"sft_{dt}.json", recs)
        result.files.append(ManifestFile(f"train/sft_{dt}.json", "sft", TRAIN_ROOT))
    for name, recs in sorted(evals.items()):
        write_records(root / "eval" / f"{name}.json", recs)
        result.files.append(ManifestFile(f"eval/{name}.json", "eval", EVAL_ROOT))
    result.counts = {k: dict(sorted(v.items())) for k, v in counts.items()}
    roots = {TRAIN_ROOT: RootRef(data="media"), EVAL_ROOT: RootRef(data="media")}
    write_manifest(root, Manifest("synthetic", tuple(result.files), roots, result.counts))
    return result


TRAIN_ROOT_PARAM = "prepare.onethinker.train_media_root"
EVAL_ROOT_PARAM = "prepare.onethinker.eval_media_root"


def _pair_key(record: Any, kind: str, index: TaskIndex) -> str:
    """ "problem_type/modality" of a release record for the counts ("?/?" when it cannot be read)."""
    if not isinstance(record, dict) or check_fields(record, kind):
        return "?/?"
    if kind == "sft":
        task = derive_sft_task(record, index)
        return f"{task.problem_type}/{modality(task.data_type)}"
    return f"{canonical_problem_type(record['problem_type'])}/{modality(record['data_type'])}"


def _unique_name(name: str, taken: set[str], what: str) -> str:
    if name in taken:
        raise ValueError(
            f"prepare.onethinker.{what}: two files would both be prepared as {name!r}: rename one"
        )
    taken.add(name)
    return name


def prepare_onethinker(cfg: PrepareConfig, data: DataConfig) -> PrepareResult:
    """Copy the released files record for record and write the manifest (media stay under their roots)."""
    src = cfg.onethinker
    root = Path(data.root)
    for sub in ("train", "eval", "media"):
        shutil.rmtree(root / sub, ignore_errors=True)
    result = PrepareResult(root)
    counts: dict[str, Counter] = {"train": Counter(), "eval": Counter(), "sft": Counter()}
    rl = read_records(src.rl) if src.rl else []
    index = TaskIndex()
    for i, r in enumerate(rl):
        counts["train"][_pair_key(r, "rl", index)] += 1
        with contextlib.suppress(ValueError):  # a bad record: validation reports it
            index.add(parse_record(r, "rl", Where(str(src.rl), i)))
    if src.rl:
        write_records(root / "train" / "rl.json", rl)
        result.files.append(ManifestFile("train/rl.json", "rl", TRAIN_ROOT, Path(src.rl).name))
    taken: set[str] = {"rl"}
    for path in src.sft:
        recs = read_records(path)
        for r in recs:
            counts["sft"][_pair_key(r, "sft", index)] += 1
        name = _unique_name(f"sft_{Path(path).stem}", taken, "sft")
        write_records(root / "train" / f"{name}.json", recs)
        result.files.append(ManifestFile(f"train/{name}.json", "sft", TRAIN_ROOT, Path(path).name))
    for path in src.eval:
        recs = read_records(path)
        for r in recs:
            counts["eval"][_pair_key(r, "eval", index)] += 1
        name = _unique_name(Path(path).stem, taken, "eval")
        write_records(root / "eval" / f"{name}.json", recs)
        result.files.append(ManifestFile(f"eval/{name}.json", "eval", EVAL_ROOT, Path(path).name))
    result.counts = {k: dict(sorted(v.items())) for k, v in counts.items()}
    roots = {TRAIN_ROOT: RootRef(param=TRAIN_ROOT_PARAM), EVAL_ROOT: RootRef(param=EVAL_ROOT_PARAM)}
    write_manifest(root, Manifest("onethinker", tuple(result.files), roots, result.counts))
    return result


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
