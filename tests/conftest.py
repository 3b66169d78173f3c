"""Test-wide settings: every tool's state stays under the repo's ignored .cache/ folder, nothing is fetched."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
}.items():
    os.environ.setdefault(key, value)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return REPO / "tests" / "fixtures"
