"""Test-wide settings: every tool's state stays under the repo's ignored .cache/ folder, nothing is fetched."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from onethinker.config import DataConfig, PrepareConfig

REPO = Path(__file__).resolve().parents[1]
_CACHE = REPO / ".cache"

for key, value in {
    "HF_HUB_OFFLINE": "1",
    "HF_HOME": str(_CACHE / "huggingface"),
    "HF_DATASETS_CACHE": str(_CACHE / "huggingface" / "datasets"),
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DVC_NO_ANALYTICS": "1",
    "DVC_SITE_CACHE_DIR": str(REPO / ".dvc" / "tmp" / "site"),
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_HOME": str(REPO / ".prefect"),
    "MPLCONFIGDIR": str(_CACHE / "matplotlib"),
    "TORCH_EXTENSIONS_DIR": str(_CACHE / "torch_extensions"),
    "TOKENIZERS_PARALLELISM": "false",
    # a failing batched reward raises instead of falling back to the per-item path (see rewards.registry)
    "ONETHINKER_REWARD_STRICT": "1",
}.items():
    os.environ.setdefault(key, value)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return REPO / "tests" / "fixtures"


# A tiny prepared data set and a base model built from the default config, shared by model and RL tests.


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> dict:
    from onethinker.data.prepare import prepare_synthetic

    root = tmp_path_factory.mktemp("tiny") / "data"
    result = prepare_synthetic(
        PrepareConfig(train_per_task=2, eval_per_task=1), DataConfig(root=str(root)), "compact"
    )
    from onethinker.contract import PreparedData

    data = PreparedData.load(root)
    return {
        "root": root,
        "media_root": root / "media",
        "train_files": [str(p) for p in result.train_files],
        "eval_files": [str(p) for p in result.eval_files],
        "rl": data.rooted("rl"),  # typed records with their media root
        "sft": data.rooted("sft"),
        "eval_sets": data.eval_sets(),
    }


@pytest.fixture(scope="session")
def tiny_base(tiny_data, tmp_path_factory) -> Path:
    from onethinker.contract import read_records
    from onethinker.modeling import BaseModelConfig, build_base_model

    corpus = []
    for f in tiny_data["train_files"]:
        for r in read_records(f):
            corpus.extend(m["content"] for m in r.get("messages", [])) or corpus.append(r.get("problem", ""))
    out = tmp_path_factory.mktemp("base") / "base"
    return build_base_model(BaseModelConfig(vocab_size=512), corpus, out)


@pytest.fixture(scope="session")
def tiny_sft(tiny_base, tiny_data, tmp_path_factory) -> Path:
    """A briefly fine-tuned tiny model: enough to emit <think>/<answer> sometimes (so rewards vary) and to
    stop at different lengths."""
    from onethinker.config import MediaConfig
    from onethinker.sft.config import SFTConfig
    from onethinker.sft.trainer import train_sft
    from onethinker.training.model_utils import save_hf_folder

    tmp = tmp_path_factory.mktemp("sft")
    cfg = SFTConfig(
        base_model_dir=str(tiny_base),
        output_dir=str(tmp / "sft"),
        checkpoint_dir=str(tmp / "ckpt"),
        max_steps=40,
        batch_size=8,
        lr=3e-3,
        warmup_ratio=0.05,
        log_every=40,
        save_every=1000,
        heldout_per_task=0,
        log_mlflow=False,
        freeze_vision_tower=False,
        freeze_projector=False,
    )
    model, proc, _ = train_sft(cfg, tiny_data["sft"], MediaConfig(), "compact", progress=False)
    return save_hf_folder(model, proc, tmp / "sft")
