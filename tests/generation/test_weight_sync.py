"""Pushing weights in chunks: plain models yield their own tensors; under DeepSpeed ZeRO-3 (2 gloo ranks,
every parameter sharded) each chunk is gathered whole, equals the unsharded weights, and is released again."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch
from transformers import Qwen3Config, Qwen3ForCausalLM

from gloo_ranks import torchrun
from onethinker.generation.weight_sync import plan_chunks, weight_chunks, weight_units

REPO = Path(__file__).resolve().parents[2]


def _tiny(tie: bool = True) -> Qwen3ForCausalLM:
    torch.manual_seed(0)
    cfg = Qwen3Config(
        vocab_size=300,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        tie_word_embeddings=tie,
    )
    return Qwen3ForCausalLM(cfg)


def test_chunks_cover_every_parameter_once_within_the_budget() -> None:
    model = _tiny(tie=True)
    units = [[n for n, _ in unit] for unit in weight_units(model)]
    # embeddings 76.8 kB, each decoder block 148.1 kB (one unit: vLLM fuses q/k/v and gate/up), norm 256 B
    assert [len(u) for u in units] == [1, 11, 11, 1]
    for budget, expected in ((100_000, [[0], [1], [2], [3]]), (200_000, [[0], [1], [2, 3]])):
        chunks = plan_chunks(model, budget)
        names = [n for c in chunks for n, _ in c]
        assert names == [n for n, _ in model.named_parameters()]  # registration order, tied weight once
        assert "lm_head.weight" not in names  # tied to model.embed_tokens.weight
        assert [[n for n, _ in c] for c in chunks] == [sum((units[i] for i in e), []) for e in expected]
        for chunk in chunks:  # only a single unit larger than the budget may exceed it
            size = sum(p.numel() * p.element_size() for _, p in chunk)
            assert size <= budget or [n for n, _ in chunk] in units, size
    # the tensors are the parameters' own storage: nothing is copied for a plain model
    first = next(weight_chunks(model, 100_000))
    assert first[0][1].data_ptr() == model.model.embed_tokens.weight.data_ptr()


def test_trainable_only_skips_frozen_parameters() -> None:
    model = _tiny(tie=False)
    model.model.embed_tokens.requires_grad_(False)
    names = [n for c in weight_chunks(model, 1 << 20, trainable_only=True) for n, _ in c]
    assert "model.embed_tokens.weight" not in names and "lm_head.weight" in names
    assert len(names) == sum(1 for p in model.parameters() if p.requires_grad)


SCRIPT = textwrap.dedent("""
    import hashlib, json, sys
    from pathlib import Path
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM
    from onethinker.generation.weight_sync import is_zero3_partitioned, weight_chunks
    from onethinker.training.engine import OptimConfig, build_engine

    ds_config, out_dir = sys.argv[1:3]
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(Qwen3Config(vocab_size=300, hidden_size=64, intermediate_size=128,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16, tie_word_embeddings=True))
    digest = lambda t: hashlib.sha256(t.detach().float().contiguous().numpy().tobytes()).hexdigest()
    reference = {n: digest(p) for n, p in model.named_parameters()}
    engine = build_engine(model, OptimConfig(lr=1e-3, weight_decay=0.0, warmup_ratio=0.0, total_steps=1,
                                             grad_accum=1, max_grad_norm=1.0), ds_config, 1)
    module = engine.unwrapped()
    sharded = all(is_zero3_partitioned(p) and p.numel() == 0 for p in module.parameters())
    pushed, sizes = {}, []
    for chunk in weight_chunks(module, 40_000):
        sizes.append(sum(t.numel() * t.element_size() for _, t in chunk))
        for name, tensor in chunk:
            pushed[name] = digest(tensor)
    released = all(p.numel() == 0 for p in module.parameters())
    rank = torch.distributed.get_rank()
    (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps({"reference": reference, "pushed": pushed,
        "sizes": sizes, "sharded": sharded, "released": released}))
""")


@pytest.mark.slow  # two DeepSpeed ranks over gloo: minutes on 2 cores (`make test-slow`)
def test_zero3_shards_are_gathered_chunk_by_chunk(tmp_path) -> None:
    """Two gloo ranks, ZeRO-3 with every parameter partitioned (persistence threshold 0): the chunks hold the
    full weights (equal to the model before sharding) on both ranks, and the shards are released after."""
    config = json.loads((REPO / "infra" / "deepspeed" / "zero3.json").read_text())
    config["zero_optimization"]["stage3_param_persistence_threshold"] = 0
    ds_config = tmp_path / "zero3.json"
    ds_config.write_text(json.dumps(config))
    script = tmp_path / "gather.py"
    script.write_text(SCRIPT)
    proc = torchrun(script, [str(ds_config), str(tmp_path)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for out in ranks:
        assert out["sharded"], "ZeRO-3 did not partition the parameters: the test would prove nothing"
        assert out["pushed"] == out["reference"]
        assert out["released"]
        assert len(out["sizes"]) > 1
    assert ranks[0]["pushed"] == ranks[1]["pushed"]
