"""SFT: loss only on assistant tokens, every trainable parameter moves (frozen ones don't), DeepSpeed on CPU,
and resume after an interruption equals an uninterrupted run."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from onethinker.config import MediaConfig
from onethinker.sft.config import SFTConfig
from onethinker.sft.trainer import per_sample_loss, train_sft

REPO = Path(__file__).resolve().parents[2]


def _cfg(tiny_base: Path, tmp: Path, **kw) -> SFTConfig:
    base = dict(
        base_model_dir=str(tiny_base),
        output_dir=str(tmp / "sft"),
        checkpoint_dir=str(tmp / "ckpt"),
        max_steps=3,
        batch_size=4,
        lr=1e-3,
        warmup_ratio=0.0,
        cutoff_len=512,
        log_every=1,
        save_every=1,
        heldout_per_task=0,
        log_mlflow=False,
        seed=0,
    )
    base.update(kw)
    return SFTConfig(**base)


def test_loss_ignores_everything_but_labels() -> None:
    # 1 sample, 4 positions, vocab 3; labels only at position 2 and 3 (predicted from 1 and 2).
    logits = torch.zeros(1, 4, 3)
    labels = torch.tensor([[-100, -100, 2, 1]])
    loss_sum, n = per_sample_loss(logits, labels)
    # uniform logits: each labelled token costs ln 3
    assert n.tolist() == [2] and loss_sum.item() == pytest.approx(2 * torch.log(torch.tensor(3.0)).item())
    poked = logits.clone()
    poked[0, 0] = torch.tensor([5.0, -5.0, 0.0])  # position 0 predicts an unlabelled token
    poked[0, 3] = torch.tensor([9.0, 9.0, 9.0])  # the last position predicts nothing
    assert per_sample_loss(poked, labels)[0].item() == pytest.approx(loss_sum.item())


def test_labels_cover_only_the_assistant_reply(tiny_base: Path, tiny_data: dict) -> None:
    from onethinker.data.examples import sft_example
    from onethinker.modeling import encode_chat, load_processor

    proc = load_processor(tiny_base)
    item = tiny_data["sft"][0]  # sft_image.json
    rec = item.record
    ex = sft_example(rec, item.root, MediaConfig(), "compact")
    enc = encode_chat(proc, ex.messages, ex.images, ex.videos, return_assistant_mask=True)
    labelled = enc["labels"][0][enc["labels"][0] != -100]
    text = proc.tokenizer.decode(labelled)
    assert text.startswith("<think>") and rec.response in text
    assert "<|im_start|>" not in text and rec.user_text[8:30] not in text


def test_training_moves_every_trainable_parameter_and_no_frozen_one(tiny_base, tiny_data, tmp_path) -> None:
    from onethinker.modeling import load_model

    before = {k: v.clone() for k, v in load_model(tiny_base).state_dict().items()}
    cfg = _cfg(tiny_base, tmp_path, freeze_vision_tower=True, freeze_projector=True, batch_size=8)
    model, _, result = train_sft(cfg, tiny_data["sft"], MediaConfig(), "compact", progress=False)
    assert result.parameters["frozen"] > 0 and result.steps == 3
    after = model.state_dict()
    names = dict(model.named_parameters())
    unchanged_trainable, changed_frozen = [], []
    for k, v in after.items():
        p = names.get(k)
        if p is None:
            continue
        moved = not torch.equal(before[k], v)
        if p.requires_grad and not moved:
            unchanged_trainable.append(k)
        if not p.requires_grad and moved:
            changed_frozen.append(k)
    assert not unchanged_trainable, unchanged_trainable
    assert not changed_frozen, changed_frozen
    assert any(k.startswith("model.visual") for k, p in names.items() if not p.requires_grad)


def test_resume_after_interruption_equals_uninterrupted(tiny_base, tiny_data, tmp_path) -> None:
    media = MediaConfig()
    full_cfg = _cfg(tiny_base, tmp_path / "full", max_steps=4, save_every=2)
    full, _, _ = train_sft(full_cfg, tiny_data["sft"], media, "compact", progress=False)
    cut_cfg = _cfg(tiny_base, tmp_path / "cut", max_steps=4, save_every=2)
    _, _, first = train_sft(cut_cfg, tiny_data["sft"], media, "compact", stop_after_steps=2, progress=False)
    assert first.steps == 2
    resumed, _, second = train_sft(cut_cfg, tiny_data["sft"], media, "compact", progress=False)
    assert second.resumed_from == 2 and second.steps == 4
    for (k, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), k


def test_a_checkpoint_from_other_settings_is_not_resumed(tiny_base, tiny_data, tmp_path) -> None:
    media = MediaConfig()
    cfg = _cfg(tiny_base, tmp_path, max_steps=2, save_every=1)
    train_sft(cfg, tiny_data["sft"], media, "compact", progress=False)
    other = dataclasses.replace(cfg, lr=5e-4)
    _, _, result = train_sft(other, tiny_data["sft"], media, "compact", progress=False)
    assert result.resumed_from == 0
    # the old checkpoints were moved aside whole, not mixed with the new run's or deleted
    stale = [p for p in tmp_path.iterdir() if p.name.startswith("ckpt.stale-")]
    assert len(stale) == 1 and (stale[0] / "step-00000002" / "trainer_state.json").exists()
    assert (tmp_path / "ckpt" / "latest").read_text() == "step-00000002"


def test_a_checkpoint_written_by_other_code_is_not_resumed(
    tiny_base, tiny_data, tmp_path, monkeypatch
) -> None:
    """DVC re-runs a stage whose code changed; resuming the old run's last checkpoint would re-export the old
    model under the new code's hash (issue 16)."""
    from onethinker.training import checkpoint as ckpt

    media = MediaConfig()
    cfg = _cfg(tiny_base, tmp_path, max_steps=2, save_every=1)
    train_sft(cfg, tiny_data["sft"], media, "compact", progress=False)
    _, _, again = train_sft(cfg, tiny_data["sft"], media, "compact", progress=False)
    assert again.resumed_from == 2  # same code: resumed
    real = ckpt.code_fingerprint()
    monkeypatch.setattr(ckpt, "code_fingerprint", lambda: "0" * 16 if real != "0" * 16 else "1" * 16)
    _, _, result = train_sft(cfg, tiny_data["sft"], media, "compact", progress=False)
    assert result.resumed_from == 0 and result.steps == 2
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("ckpt.stale-")]


def test_code_fingerprint_follows_the_sources_only(tmp_path) -> None:
    from onethinker.training.checkpoint import code_fingerprint

    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "a.py").write_text("x = 1\n")
    (pkg / "sub" / "b.py").write_text("y = 2\n")
    first = code_fingerprint(pkg)
    (pkg / "sub" / "__pycache__").mkdir()
    (pkg / "sub" / "__pycache__" / "b.cpython-311.pyc").write_bytes(b"\0" * 8)
    (pkg / "notes.txt").write_text("not code")
    assert code_fingerprint(pkg) == first  # caches and other files do not count
    (pkg / "sub" / "b.py").write_text("y = 3\n")
    assert code_fingerprint(pkg) != first
    assert len(first) == 16 and code_fingerprint() == code_fingerprint()


def test_a_checkpoint_from_another_starting_model_is_not_resumed(tiny_base, tiny_data, tmp_path) -> None:
    import shutil

    from safetensors.torch import load_file, save_file

    media = MediaConfig()
    base = tmp_path / "base"
    shutil.copytree(tiny_base, base)
    cfg = _cfg(base, tmp_path, max_steps=2, save_every=1)
    train_sft(cfg, tiny_data["sft"], media, "compact", progress=False)
    _, _, again = train_sft(cfg, tiny_data["sft"], media, "compact", progress=False)
    assert again.resumed_from == 2  # same settings, same model: resumed
    # same settings, but the base model was rebuilt (here: one weight changed)
    weights = next(base.glob("*.safetensors"))
    tensors = load_file(weights)
    name = next(iter(tensors))
    tensors[name] = tensors[name] + 0.5
    save_file(tensors, weights, metadata={"format": "pt"})
    _, _, result = train_sft(cfg, tiny_data["sft"], media, "compact", progress=False)
    assert result.resumed_from == 0


def test_deepspeed_zero2_on_cpu_trains(tiny_base, tiny_data, tmp_path) -> None:
    """ZeRO-2 with the gloo backend in a fresh process (DeepSpeed initialises torch.distributed)."""
    script = textwrap.dedent(f"""
        import json, torch
        from pathlib import Path
        from onethinker.config import MediaConfig
        from onethinker.sft.config import SFTConfig
        from onethinker.sft.trainer import train_sft
        from onethinker.modeling import load_model
        cfg = SFTConfig(base_model_dir={str(tiny_base)!r}, output_dir={str(tmp_path / "out")!r},
                        checkpoint_dir={str(tmp_path / "ckpt")!r}, max_steps=3, batch_size=4, lr=1e-3,
                        warmup_ratio=0.0, log_every=1, save_every=3, heldout_per_task=0, log_mlflow=False,
                        deepspeed={str(REPO / "infra" / "deepspeed" / "zero2.json")!r})
        before = load_model(cfg.base_model_dir).state_dict()
        from onethinker.contract import PreparedData
        records = PreparedData.load({str(tiny_data["root"])!r}).rooted("sft")
        model, _, res = train_sft(cfg, records, MediaConfig(), "compact", progress=False)
        after = model.state_dict()
        moved = sum(not torch.equal(before[k], after[k]) for k in after if k in before)
        print(json.dumps({{"steps": res.steps, "moved": moved, "losses": [h["train/loss"] for h in res.history],
                          "world": torch.distributed.get_world_size()}}))
    """)
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["steps"] == 3 and out["world"] == 1 and out["moved"] > 10
    assert all(x == x for x in out["losses"])  # finite
    assert (tmp_path / "ckpt" / "latest").exists()
