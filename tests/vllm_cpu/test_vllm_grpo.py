"""GRPO end to end with ``grpo.engine: vllm`` on the tiny text-only Qwen3 (the trainer accepts a text-only
causal LM; prompts are the synthetic records' questions without their media), through the real stage
(``run_grpo_stage``: trainer, weight pushes after every optimizer step, held-out check, model export, MLflow
run), next to the same stage with ``engine: hf``: both log the same per-task metrics, and the vLLM run also
shows its rollouts came from the policy's weights (log-prob gaps near 0)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.vllm


def _params(tmp: Path, data_root: Path, model_dir: Path, engine: str):
    from onethinker.config import load_params

    out = tmp / engine
    grpo = {
        "sft_model_dir": str(model_dir),
        "output_dir": str(out / "model"),
        "checkpoint_dir": str(out / "ckpt"),
        "metrics_file": str(out / "grpo.json"),
        "plots_dir": str(out / "plots"),
        "steps": 2,
        "rollout_batch_size": 4,
        "n": 4,
        "max_response_length": 16,
        "global_batch_size": 2,
        "micro_batch_size": 8,
        "lr": 1e-3,
        "online_filter": False,
        "save_every": 1,
        "heldout_per_task": 1,
        "heldout_max_new_tokens": 16,
        "engine": engine,
        "vllm": {"max_model_len": 1024},
    }
    path = tmp / f"params.{engine}.yaml"
    path.write_text(
        yaml.safe_dump({"data": {"root": str(data_root)}, "prompt": {"style": "compact"}, "grpo": grpo})
    )
    return load_params(path)


@pytest.fixture()
def mlflow_store(tmp_path, monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.delenv("ONETHINKER_PARENT_RUN_ID", raising=False)
    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    mlflow.MlflowClient().create_experiment("onethinker", artifact_location=(tmp_path / "artifacts").as_uri())
    yield tmp_path
    mlflow.set_tracking_uri(None)


def _metric_keys(run_id: str) -> dict[str, float]:
    import mlflow

    return dict(mlflow.MlflowClient().get_run(run_id).data.metrics)


def test_grpo_steps_with_the_vllm_engine_log_the_hf_engines_metrics(
    tiny_data, text_model, mlflow_store, vllm_engine
) -> None:
    from onethinker.rl.stage import run_grpo_stage

    del vllm_engine  # the session's engine is alive too: the trainer builds and feeds its own
    hf = run_grpo_stage(_params(mlflow_store, tiny_data["root"], text_model, "hf"), progress=False)
    vl = run_grpo_stage(_params(mlflow_store, tiny_data["root"], text_model, "vllm"), progress=False)
    assert vl["steps"] == hf["steps"] == 2
    assert (mlflow_store / "vllm" / "model" / "model.safetensors").exists()
    hf_metrics, vl_metrics = _metric_keys(hf["mlflow_run_id"]), _metric_keys(vl["mlflow_run_id"])
    per_task = {k for k in hf_metrics if k.startswith(("train/reward/", "train/malformed_rate/", "heldout/"))}
    assert any(k.startswith("train/reward/accuracy/") for k in per_task)
    assert per_task <= set(vl_metrics), sorted(per_task - set(vl_metrics))
    # the vLLM rollouts were sampled from the policy's weights, pushed after every optimizer step
    assert vl_metrics["train/rollout_logprob_gap_max"] < 1e-3
    assert vl_metrics["train/weight_sync_logprob_gap"] < 1e-3
    assert "train/rollout_logprob_gap" not in hf_metrics  # the HF engine samples from the policy itself
