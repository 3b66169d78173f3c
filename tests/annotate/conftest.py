"""Data for the annotate tests: the synthetic world with one SFT record per task, so the other RL records
(16, one per task pair) are what the engine annotates."""

from __future__ import annotations

from pathlib import Path

import pytest

from onethinker.config import DataConfig, PrepareConfig


@pytest.fixture(scope="session")
def half_annotated_data(tmp_path_factory) -> Path:
    from onethinker.data.prepare import prepare_synthetic

    root = tmp_path_factory.mktemp("annotate") / "data"
    prepare_synthetic(
        PrepareConfig(train_per_task=2, eval_per_task=1, sft_fraction=0.5),
        DataConfig(root=str(root)),
        "compact",
    )
    return root
