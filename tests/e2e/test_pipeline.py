"""End to end: real `dvc repro` of the whole pipeline on a smoke-sized profile, in a copy of the repo.

Checks that every stage runs to completion, writes its metrics, registers a champion that loads and
answers, and that a second `dvc repro` skips every stage. A corrupted record makes `onethinker validate`
exit non-zero and name it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from repo_copy import copy_worktree, deep_merge, stage_env

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "tests" / "integration" / "params.smoke.yaml"
STAGES = ("prepare", "validate", "base_model", "sft", "grpo", "evaluate", "register")


def _copy_repo(dest: Path) -> Path:
    copy_worktree(REPO, dest)
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    subprocess.run(["git", "add", "-A"], cwd=dest, check=True)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"], cwd=dest, check=True
    )
    return dest


def _env(root: Path) -> dict[str, str]:
    return stage_env(root)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> dict:
    root = _copy_repo(tmp_path_factory.mktemp("repo"))
    params = deep_merge(yaml.safe_load((root / "params.yaml").read_text()), yaml.safe_load(SMOKE.read_text()))
    params = deep_merge(
        params, {"register": {"gate": {"floors": {"mean_accuracy": 0.0, "format_rate": 0.0}}}}
    )
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = _env(root)
    first = subprocess.run(["dvc", "repro"], cwd=root, env=env, capture_output=True, text=True, timeout=1500)
    t0 = time.perf_counter()
    second = subprocess.run(["dvc", "repro"], cwd=root, env=env, capture_output=True, text=True, timeout=300)
    noop_s = time.perf_counter() - t0
    print(f"\nno-op dvc repro: {noop_s:.2f}s")
    return {"root": root, "env": env, "first": first, "second": second, "noop_s": noop_s}


def test_every_stage_runs(pipeline) -> None:
    first, root = pipeline["first"], pipeline["root"]
    assert first.returncode == 0, (first.stdout[-4000:], first.stderr[-4000:])
    for stage in STAGES:
        assert f"Running stage '{stage}'" in first.stdout, stage
    for name in ("prepare", "sft", "grpo", "eval", "registry"):
        assert (root / "metrics" / f"{name}.json").is_file(), name
    ev = json.loads((root / "metrics" / "eval.json").read_text())
    assert set(ev["models"]) == {"base", "sft", "grpo"}
    assert len(ev["models"]["grpo"]["tasks"]) == 12
    sft = json.loads((root / "metrics" / "sft.json").read_text())
    assert set(sft["heldout"]) >= {"format_rate", "mean_accuracy", "tasks"}
    assert (root / "reports" / "grpo" / "reward_overall.png").stat().st_size > 1000
    assert (root / "reports" / "eval" / "accuracy_by_task.png").stat().st_size > 1000
    assert (root / "reports" / "validation" / "index.html").is_file()


def test_second_repro_skips_every_stage(pipeline) -> None:
    second = pipeline["second"]
    assert second.returncode == 0, second.stderr[-3000:]
    assert "Running stage" not in second.stdout
    status = subprocess.run(
        ["dvc", "status"],
        cwd=pipeline["root"],
        env=pipeline["env"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "up to date" in status.stdout, status.stdout


def test_champion_loads_and_answers(pipeline) -> None:
    root = pipeline["root"]
    registry = json.loads((root / "metrics" / "registry.json").read_text())
    assert registry["champion_version"] is not None
    script = (
        "import mlflow, json; from onethinker import tracking; tracking.configure();"
        "m = mlflow.pyfunc.load_model('models:/onethinker@champion');"
        "img = [str(p) for p in __import__('pathlib').Path('data/media/images/eval').glob('*.png')][0];"
        "out = m.predict([{'question': 'What colour is the circle?', 'image': img,"
        " 'problem_type': 'multiple choice'}]);"
        "print(json.dumps(out.to_dict(orient='records')))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=root,
        env=pipeline["env"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = json.loads(proc.stdout.strip().splitlines()[-1])[0]
    assert row["formatted"].startswith("<think>") and "</think><answer>" in row["formatted"]
    assert row["formatted"].endswith("</answer>")


def test_validate_rejects_an_injected_bad_record(pipeline) -> None:
    root = pipeline["root"]
    rl = json.loads((root / "data" / "train" / "rl.json").read_text())
    bad = next(r for r in rl if r["problem_type"] == "spatial grounding")
    bad["answer"] = '<answer>{"boxes": [700, 10, 300, 40]}</answer>'
    (root / "bad.json").write_text(json.dumps(rl))
    proc = subprocess.run(
        [
            "onethinker",
            "validate",
            "bad.json",
            "--media-root",
            "data/media",
            "--set",
            "validate.report_dir=reports/bad",
        ],
        cwd=root,
        env=pipeline["env"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1
    assert bad["problem_id"] in proc.stderr and "box_order" in proc.stderr


def test_register_rescores_a_champion_scored_on_another_sample(pipeline) -> None:
    """A new evaluation sample (generation budget 12 tokens instead of 16; the smoke data has one question per
    benchmark): the champion's stored scores no longer compare, so `onethinker register` evaluates the
    champion again, for real, on the new sample."""
    root, env = pipeline["root"], pipeline["env"]
    small = {
        "evaluate.max_new_tokens": "12",
        "evaluate.models": "[grpo]",
        "evaluate.metrics_file": "metrics/eval_small.json",
        "evaluate.reports_dir": "reports/eval_small",
        "register.eval_metrics": "metrics/eval_small.json",
        "register.registry_file": "metrics/registry_small.json",
    }
    sets = [arg for k, v in small.items() for arg in ("--set", f"{k}={v}")]
    for cmd in ("evaluate", "register"):
        proc = subprocess.run(
            ["onethinker", cmd, *sets], cwd=root, env=env, capture_output=True, text=True, timeout=600
        )
        assert proc.returncode == 0, (cmd, proc.stdout[-3000:], proc.stderr[-3000:])
    assert "re-scoring models:/onethinker/" in proc.stdout
    full = json.loads((root / "metrics" / "eval.json").read_text())
    part = json.loads((root / "metrics" / "eval_small.json").read_text())
    assert full["sample"] != part["sample"]
    latest = json.loads((root / "metrics" / "registry_small.json").read_text())["history"][-1]
    rescored = latest["champion_rescored"]
    assert (rescored["from_sample"], rescored["to_sample"]) == (full["sample"], part["sample"])
    # the champion is the same grpo model: on the same sample, greedy, it scores exactly what the candidate does
    assert rescored["mean_accuracy_after"] == part["models"]["grpo"]["mean_accuracy"]
    assert not any("another evaluation sample" in r for r in latest["reasons"]), latest["reasons"]
