"""Checkpoints hold nothing beyond what ``torch.load(weights_only=True)`` loads, so a pickle planted in the
checkpoint folder is refused on resume instead of run; RNG, optimizer and scheduler state still round-trip."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from onethinker.training import checkpoint as ckpt
from onethinker.training.engine import OptimConfig, TorchEngine


class Planted:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (open, (str(self.marker), "w"))


def _engine(seed: int = 0) -> TorchEngine:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 2))
    cfg = OptimConfig(
        lr=1e-2, weight_decay=0.01, warmup_ratio=0.1, total_steps=20, grad_accum=1, max_grad_norm=1.0
    )
    return TorchEngine(model, cfg)


def _train_step(engine: TorchEngine) -> None:
    x = torch.randn(3, 4)
    engine.backward(engine.module(x).pow(2).mean())
    engine.step()


def _saved(tmp_path: Path) -> tuple[TorchEngine, Path]:
    engine = _engine()
    _train_step(engine)
    path = ckpt.save_checkpoint(tmp_path / "ckpt", 1, engine, {"position": 3, "config_hash": "h"})
    return engine, path


@pytest.mark.parametrize("victim", ["optim.pt", "rng-0.pt", "model.pt"])
def test_a_planted_pickle_is_refused_not_run(tmp_path: Path, victim: str) -> None:
    _, path = _saved(tmp_path)
    marker = tmp_path / "code-ran"
    torch.save({"state": Planted(marker)}, path / victim)
    with pytest.raises(ckpt.UnsafeCheckpointError, match=victim):
        ckpt.restore(path, _engine())
    assert not marker.exists(), "unpickling the planted file ran code"


def test_every_checkpoint_file_loads_with_weights_only(tmp_path: Path) -> None:
    _, path = _saved(tmp_path)
    files = sorted(path.glob("*.pt"))
    assert {f.name for f in files} == {"model.pt", "optim.pt", "rng-0.pt"}
    for f in files:
        torch.load(f, weights_only=True)
        assert torch.serialization.get_unsafe_globals_in_checkpoint(str(f)) == []


def test_resume_restores_every_rng_and_the_optimizer(tmp_path: Path) -> None:
    """After a restore, the next draws of python, numpy and torch and the next training step are the ones an
    uninterrupted run makes."""
    engine, path = _saved(tmp_path)
    draws = (random.random(), np.random.rand(), torch.rand(1).item())
    _train_step(engine)
    expected = [p.detach().clone() for p in engine.module.parameters()]

    random.seed(123)
    np.random.seed(123)
    torch.manual_seed(123)
    resumed = _engine(seed=7)
    ckpt.restore(path, resumed)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == draws
    _train_step(resumed)
    for a, b in zip(expected, resumed.module.parameters(), strict=True):
        assert torch.equal(a, b)
    assert resumed.scheduler.state_dict()["last_epoch"] == engine.scheduler.state_dict()["last_epoch"]


def test_keep_checkpoints_never_deletes_latest(tmp_path: Path) -> None:
    engine = _engine()
    root = tmp_path / "ckpt"
    for step in (1, 2, 3):
        ckpt.save_checkpoint(root, step, engine, {"config_hash": "h"}, keep=-1)
    latest = (root / "latest").read_text()
    assert latest == "step-00000003" and (root / latest).is_dir()
    assert sorted(p.name for p in root.glob("step-*")) == ["step-00000003"]
