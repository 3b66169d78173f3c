"""The released OneThinker data drops in: real ``dvc repro`` of every stage on release-format files.

The files under ``tests/fixtures/onethinker_release`` are laid out as the release's own readers read them
(EasyR1's RL dataset, LLaMA-Factory's sharegpt SFT, ``eval_bench.py`` / ``seg_post_sam2.py``), with the
training media under the training root and the evaluation media under the evaluation root. In a copy of the
repository with ``prepare.source: onethinker``, ``dvc repro`` runs prepare -> validate -> base_model -> sft
-> grpo -> evaluate -> register on them (smoke-sized; a real SQLite MLflow store inside the copy): validation
finds nothing wrong, every stage writes its outputs. Then the checkout is copied to another folder: there,
``dvc status`` reports nothing changed, and ``prepare`` run again writes data of the same hash (the prepared
files and the manifest hold no absolute path).

Measured: 12.4 minutes on a shared 2-core machine at load average 9 (CPU-bound: most of it model
building, SFT, GRPO and evaluation start-up), so a few minutes on an idle one.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from repo_copy import copy_worktree, deep_merge, stage_env

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "tests" / "integration" / "params.smoke.yaml"
FIX = "tests/fixtures/onethinker_release"  # relative: each checkout reads its own copy
STAGES = ("prepare", "validate", "base_model", "sft", "grpo", "evaluate", "register")
RELEASE = {
    "prepare": {
        "source": "onethinker",
        "onethinker": {
            "rl": f"{FIX}/train/onethinker_rl_train.json",
            "sft": [f"{FIX}/train/onethinker_sft_image.json", f"{FIX}/train/onethinker_sft_video.json"],
            "eval": [
                f"{FIX}/eval/eval_mathvista.json",
                f"{FIX}/eval/eval_videomme.json",
                f"{FIX}/eval/eval_seg_refcoco.json",
                f"{FIX}/eval/eval_seg_mevis.json",
            ],
            "train_media_root": f"{FIX}/train",
            "eval_media_root": f"{FIX}/eval",
        },
    },
    "prompt": {"style": "full"},  # the release's own prompt text
    "sft": {"batch_size": 4},
    "grpo": {"max_response_length": 8},
    "evaluate": {"models": ["grpo"], "max_new_tokens": 8},
    "register": {"gate": {"floors": {"mean_accuracy": 0.0, "format_rate": 0.0}}},
}


def _run(cmd: list[str], root: Path, timeout: int = 1200) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=root, env=stage_env(root), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def release_repo(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("release") / "repo"
    root.mkdir()
    copy_worktree(REPO, root)
    params = deep_merge(yaml.safe_load((root / "params.yaml").read_text()), yaml.safe_load(SMOKE.read_text()))
    (root / "params.yaml").write_text(yaml.safe_dump(deep_merge(params, RELEASE), sort_keys=False))
    for args in (
        ["init", "-q"],
        ["add", "-A"],
        ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c"],
    ):
        subprocess.run(["git", *args], cwd=root, check=True)
    repro = _run(["dvc", "repro"], root)
    return {"root": root, "repro": repro}


def test_every_stage_runs_on_release_files(release_repo) -> None:
    root, repro = release_repo["root"], release_repo["repro"]
    assert repro.returncode == 0, (repro.stdout[-4000:], repro.stderr[-4000:])
    for stage in STAGES:
        assert f"Running stage '{stage}'" in repro.stdout, stage
    summary = json.loads((root / "reports" / "validation" / "summary.json").read_text())
    assert summary["ok"] and summary["num_failures"] == 0 and summary["num_files"] == 7
    # fields the pipeline does not read are kept and counted, never dropped silently
    assert summary["extra_fields"] == {"data_source": 3, "difficulty": 1}
    sft_files = [f for f in summary["files"] if f["kind"] == "sft"]
    sources = {k for f in sft_files for k in f["task_sources"]}
    assert sources == {"rl", "instruction", "answer", "field"}  # every step of the SFT task rule was used
    # per-task SFT counts cover the twelve slugs (the files hold only messages and media)
    sft = json.loads((root / "metrics" / "sft.json").read_text())
    assert len(sft["records_per_task"]) == 12 and all(n >= 1 for n in sft["records_per_task"].values())
    prepared = json.loads((root / "metrics" / "prepare.json").read_text())
    assert len(prepared["counts"]["sft"]) == 12 and len(prepared["counts"]["eval"]) == 12
    ev = json.loads((root / "metrics" / "eval.json").read_text())
    assert set(ev["models"]) == {"grpo"}
    registry = json.loads((root / "metrics" / "registry.json").read_text())
    assert registry["latest"]["version"] is not None
    assert (root / "mlflow" / "mlflow.db").is_file()


def test_manifest_and_prepared_files_hold_no_absolute_path(release_repo) -> None:
    root = release_repo["root"]
    for path in [root / "data" / "manifest.json", *(root / "data").rglob("*.json")]:
        text = path.read_text()
        assert str(root) not in text and str(REPO) not in text, path


def test_a_copied_checkout_is_up_to_date_and_prepares_the_same_data(release_repo, tmp_path) -> None:
    root = release_repo["root"]
    assert release_repo["repro"].returncode == 0
    other = tmp_path / "elsewhere" / "repo"
    shutil.copytree(root, other, symlinks=True, ignore=shutil.ignore_patterns(".site"))
    status = _run(["dvc", "status"], other, timeout=300)
    assert status.returncode == 0 and "up to date" in status.stdout, status.stdout + status.stderr
    lock = yaml.safe_load((other / "dvc.lock").read_text())
    data_hash = next(o for o in lock["stages"]["prepare"]["outs"] if o["path"] == "data")["md5"]
    # prepare again at the new location (the media roots now resolve under it): the same data, the same hash
    again = _run(["dvc", "repro", "--force", "prepare"], other, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    relock = yaml.safe_load((other / "dvc.lock").read_text())
    assert next(o for o in relock["stages"]["prepare"]["outs"] if o["path"] == "data")["md5"] == data_hash
    status = _run(["dvc", "status"], other, timeout=300)
    assert "up to date" in status.stdout, status.stdout  # nothing downstream is invalidated
