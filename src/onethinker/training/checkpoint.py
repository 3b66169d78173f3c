"""Atomic, resumable training checkpoints (shared by SFT and GRPO).

Layout under a checkpoint root (outside the stage's DVC outputs, so ``dvc repro`` does not delete it
before a resumed run)::

    <root>/step-00000040/   engine state (model, optimizer, scheduler), rng-<rank>.pt, trainer_state.json
    <root>/latest           the name of the newest complete checkpoint

A checkpoint is written into ``.tmp-step-…`` and renamed when complete, then ``latest`` is replaced
atomically, so an interruption at any moment leaves the previous checkpoint intact. ``trainer_state.json``
holds the step, the data position and any algorithm state (e.g. EMA-GRPO's statistics), plus a hash of the
config, of the starting model's files (``model_fingerprint``) and of the code (``code_fingerprint``): a
checkpoint written under other settings, from another starting model or by other code is never resumed (DVC
re-runs a stage whose code changed; resuming the old run's last checkpoint would re-export its model under the
new code's hash). It is moved aside to ``<root>.stale-<hash>`` (nothing is
deleted) and training starts from step 0.

Nothing in a checkpoint needs more than ``torch.load(weights_only=True)``: model, optimizer and scheduler
state are tensors and plain containers, and RNG states are stored as tensors and numbers (numpy's as an
int64 tensor), so a pickle planted in the folder is refused (:class:`UnsafeCheckpointError`) instead of run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)


def config_hash(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def model_fingerprint(model_dir: str | Path) -> str:
    """sha256 over the names and bytes of every file in a model folder (config, weights, tokenizer).

    Streams in 1 MiB chunks; for a multi-GB checkpoint this reads the weights once per stage start.
    """
    digest = hashlib.sha256()
    root = Path(model_dir)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def code_fingerprint(package: Path | None = None) -> str:
    """sha256 over the Python sources (names and bytes) of ``package`` (default: this ``onethinker``) and the
    torch and transformers versions: what computes a training run's numbers besides its settings and data."""
    import transformers

    digest = hashlib.sha256(f"torch {torch.__version__}\0transformers {transformers.__version__}\0".encode())
    root = Path(package) if package is not None else Path(__file__).resolve().parents[1]
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


class UnsafeCheckpointError(RuntimeError):
    """A checkpoint file holds more than tensors and plain containers: it is not unpickled."""


def safe_load(path: Path) -> Any:
    """``torch.load(path, weights_only=True)``: tensors, numbers, strings and containers only, so a file
    planted in a checkpoint folder cannot run code. Anything else raises UnsafeCheckpointError naming it."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeCheckpointError(
            f"refusing to load {path}: it holds objects beyond tensors and plain containers, which could run "
            f"code when unpickled ({str(exc).splitlines()[0]}). Checkpoints are written in safe formats; move "
            f"the checkpoint folder aside to start fresh."
        ) from None


def check_pickles(directory: Path, allowed: tuple[str, ...]) -> None:
    """Refuse a folder of checkpoint files that a foreign loader unpickles without ``weights_only`` (DeepSpeed's):
    every ``*.pt`` may only refer to globals under the ``allowed`` prefixes (read from the pickle's opcodes by
    ``torch.serialization.get_unsafe_globals_in_checkpoint``, nothing is executed)."""
    for path in sorted(Path(directory).rglob("*.pt")):
        try:
            names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
        except Exception as exc:  # noqa: BLE001 - not a torch file at all
            raise UnsafeCheckpointError(
                f"refusing to load {path}: not a torch checkpoint file ({exc})"
            ) from None
        bad = [n for n in names if not n.startswith(allowed)]
        if bad:
            raise UnsafeCheckpointError(
                f"refusing to load {path}: it refers to {', '.join(sorted(bad)[:5])}, which could run code when "
                f"unpickled; move the checkpoint folder aside to start fresh"
            )


def rng_state() -> dict[str, Any]:
    """Every RNG's state as tensors and plain numbers (loadable with ``weights_only=True``)."""
    version, internal, gauss_next = random.getstate()
    _, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
        "numpy": {
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py, npy = state["python"], state["numpy"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss_next"]))
    np.random.set_state(
        (
            "MT19937",
            npy["keys"].numpy().astype(np.uint32),
            npy["pos"],
            npy["has_gauss"],
            npy["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _is_main() -> bool:
    return not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0


def _barrier() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.barrier()


def save_checkpoint(root: Path, step: int, engine, state: dict[str, Any], keep: int = 2) -> Path:
    """Write checkpoint ``step`` atomically; keep the newest ``keep`` checkpoints."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:08d}"
    tmp = root / f".tmp-{name}"
    if _is_main() and tmp.exists():
        shutil.rmtree(tmp)
    _barrier()
    engine.save(tmp)
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    torch.save(rng_state(), tmp / f"rng-{rank}.pt")
    _barrier()
    if _is_main():
        (tmp / "trainer_state.json").write_text(json.dumps({"step": step, **state}, indent=2, default=str))
        final = root / name
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        latest_tmp = root / ".latest.tmp"
        latest_tmp.write_text(name)
        os.replace(latest_tmp, root / "latest")
        ckpts = sorted(p for p in root.glob("step-*") if p.is_dir() and p.name != name)
        for old in ckpts[: max(0, len(ckpts) - (max(1, keep) - 1))]:  # `latest` (this one) is always kept
            shutil.rmtree(old, ignore_errors=True)
    _barrier()
    return root / name


def latest_checkpoint(root: Path, expected_hash: str | None = None) -> tuple[Path, dict[str, Any]] | None:
    """The newest complete checkpoint and its trainer state, if its config hash matches.

    A checkpoint whose hash differs was written under other settings (or from another starting model):
    the whole root is moved aside to ``<root>.stale-<its hash>`` with a warning, so the new run's
    checkpoints never mix with it, and ``None`` is returned (start from step 0).
    """
    root = Path(root)
    pointer = root / "latest"
    if not pointer.exists():
        return None
    path = root / pointer.read_text().strip()
    state_file = path / "trainer_state.json"
    if not state_file.exists():
        return None
    state = json.loads(state_file.read_text())
    found = state.get("config_hash")
    if expected_hash is not None and found != expected_hash:
        _barrier()
        if _is_main():
            aside = root.with_name(f"{root.name}.stale-{found}")
            n = 1
            while aside.exists():
                aside, n = root.with_name(f"{root.name}.stale-{found}-{n}"), n + 1
            os.replace(root, aside)
            log.warning(
                "checkpoint %s (step %s) was written under other settings, from another starting model or by "
                "other code (config hash %s, this run %s); moved it to %s and starting from step 0",
                path,
                state.get("step"),
                found,
                expected_hash,
                aside,
            )
        _barrier()
        return None
    return path, state


def restore(path: Path, engine) -> None:
    """Load engine state and this rank's RNG state from a checkpoint folder."""
    engine.load(path)
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    rng_file = path / f"rng-{rank}.pt"
    if not rng_file.exists():
        rng_file = path / "rng-0.pt"
    set_rng_state(safe_load(rng_file))
