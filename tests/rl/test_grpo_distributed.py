"""GRPO under DeepSpeed ZeRO-2 in 2 CPU processes (gloo), launched with torchrun: both ranks end with the
same EMA state and the same weights, although each rank rolls out different prompts."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from gloo_ranks import torchrun

REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""
    import hashlib, json, os, sys
    from pathlib import Path
    import torch
    from onethinker.config import MediaConfig
    from onethinker.rl.config import GRPOConfig
    from onethinker.contract import PreparedData
    from onethinker.rl.trainer import GRPOTrainer

    model_dir, data_root, out_dir, ds_config = sys.argv[1:5]
    cfg = GRPOConfig(sft_model_dir=model_dir, checkpoint_dir=str(Path(out_dir) / "ckpt"), steps=2,
                     rollout_batch_size=2, n=2, max_response_length=12, global_batch_size=2, micro_batch_size=4,
                     lr=1e-3, online_filter=False, freeze_vision_tower=False, freeze_projector=False,
                     log_mlflow=False, deepspeed=ds_config, seed=0)
    records = PreparedData.load(data_root).rooted("rl")
    tr = GRPOTrainer(cfg, records, MediaConfig(), "compact", progress=False)
    prompts = []
    for _ in range(cfg.steps):
        stats = tr.step()
        prompts.extend(r["problem_id"] for r in stats.table_rows)
    tr.save()
    digest = hashlib.sha256()
    for k, v in sorted(tr.engine.unwrapped().state_dict().items()):
        digest.update(k.encode())
        digest.update(v.detach().float().numpy().tobytes())
    rank = torch.distributed.get_rank()
    (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps({
        "world": torch.distributed.get_world_size(), "ema": tr.ema.to_dict(), "weights": digest.hexdigest(),
        "prompts": prompts, "position": tr.position}))
""")


def test_two_gloo_ranks_share_ema_state_and_weights(tiny_base, tiny_data, tmp_path) -> None:
    script = tmp_path / "run_grpo.py"
    script.write_text(SCRIPT)
    args = [
        str(tiny_base),
        str(tiny_data["root"]),
        str(tmp_path),
        str(REPO / "infra" / "deepspeed" / "zero2.json"),
    ]
    proc = torchrun(script, args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    assert r0["world"] == r1["world"] == 2
    assert r0["ema"] == r1["ema"] and r0["ema"]["tasks"], "every rank holds the same EMA state"
    assert r0["weights"] == r1["weights"], "data-parallel ranks hold the same weights"
    assert set(r0["prompts"]).isdisjoint(r1["prompts"]), "each rank rolls out its own prompts"
    assert (tmp_path / "ckpt" / "latest").exists()
