"""Metrics DVC users can read: small headline files beside the per-task detail.

The headline functions on hand-worked numbers; the committed headline files agree with the committed detail;
`dvc metrics show` of the repository prints the headline table under 100 columns, and `dvc metrics diff
--all --targets metrics/eval.json` still compares the detail task by task.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from onethinker.metrics_files import (
    eval_headline,
    headline_path,
    heldout_headline,
    registry_headline,
    write_with_headline,
)
from repo_copy import copy_worktree

REPO = Path(__file__).resolve().parents[2]
DVC = str(Path(sys.executable).parent / "dvc")
HEADLINES = {
    "sft": lambda d: heldout_headline(d, "sft"),
    "grpo": lambda d: heldout_headline(d, "grpo"),
    "eval": eval_headline,
    "registry": registry_headline,
}


def test_headlines_round_to_three_digits_and_drop_what_is_missing() -> None:
    held = {"heldout": {"mean_accuracy": 0.30224, "format_rate": 0.99875, "tasks": {"ocr": {}}}, "steps": 7}
    assert heldout_headline(held, "sft") == {"sft_acc": 0.302}
    assert heldout_headline({"steps": 7}, "grpo") == {}  # no held-out check ran
    models = {
        "base": {"mean_accuracy": 0.0},
        "sft": {"mean_accuracy": 0.30249},
        "grpo": {"mean_accuracy": 0.3091},
    }
    assert list(eval_headline({"models": models}).items()) == [("base", 0.0), ("sft", 0.302), ("grpo", 0.309)]
    assert eval_headline({"models": {"x": {"mean_accuracy": float("nan")}}}) == {}
    reg = {"champion_version": 1, "latest": {"version": "6", "decision": "refused"}, "history": [{}]}
    assert registry_headline(reg) == {"champion": 1}
    assert registry_headline({"champion_version": None, "latest": {}}) == {}
    assert headline_path("metrics/eval.json") == Path("metrics/headline/eval.json")
    assert headline_path("reports/nightly/eval.json") == Path("reports/nightly/headline/eval.json")


def test_write_with_headline_writes_both(tmp_path: Path) -> None:
    detail, head = write_with_headline(
        tmp_path / "m" / "sft.json", {"heldout": {"mean_accuracy": 0.5}}, {"acc": 0.5}
    )
    assert json.loads(detail.read_text()) == {"heldout": {"mean_accuracy": 0.5}}
    assert head == tmp_path / "m" / "headline" / "sft.json" and json.loads(head.read_text()) == {"acc": 0.5}
    assert not list(tmp_path.rglob("*.tmp"))


def test_dvc_yaml_marks_only_the_headlines_as_metrics() -> None:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    metrics = sorted(
        next(iter(m)) if isinstance(m, dict) else m for s in stages.values() for m in s.get("metrics", [])
    )
    assert metrics == sorted(f"metrics/headline/{n}.json" for n in HEADLINES)
    outs = {next(iter(o)) if isinstance(o, dict) else o for s in stages.values() for o in s.get("outs", [])}
    assert {f"metrics/{n}.json" for n in (*HEADLINES, "prepare", "base_model")} <= outs


def test_committed_headlines_agree_with_the_committed_detail() -> None:
    for name, fn in HEADLINES.items():
        detail = json.loads((REPO / "metrics" / f"{name}.json").read_text())
        assert json.loads((REPO / "metrics" / "headline" / f"{name}.json").read_text()) == fn(detail), name


def test_dvc_metrics_show_fits_100_columns_and_diff_reads_the_detail(tmp_path: Path) -> None:
    copy_worktree(REPO, tmp_path)
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "DVC_SITE_CACHE_DIR": str(tmp_path / ".site")}
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([*git, "add", "-A"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "copy"], cwd=tmp_path, check=True)

    show = subprocess.run([DVC, "metrics", "show"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert show.returncode == 0, show.stderr
    lines = show.stdout.splitlines()
    print("\n" + show.stdout)
    assert max(len(line) for line in lines) < 100, [len(line) for line in lines]
    header = lines[0].split()
    assert header == ["Path", "base", "champion", "grpo", "grpo_acc", "sft", "sft_acc"], header
    assert sorted(line.split()[0] for line in lines[1:]) == sorted(
        f"metrics/headline/{n}.json" for n in HEADLINES
    )

    # the detail, task by task, with --targets (it is an output, not a DVC metric)
    ev = json.loads((tmp_path / "metrics" / "eval.json").read_text())
    ev["models"]["grpo"]["tasks"]["ocr"]["accuracy"] = 0.5
    (tmp_path / "metrics" / "eval.json").write_text(json.dumps(ev))
    diff = subprocess.run(
        [DVC, "metrics", "diff", "--targets", "metrics/eval.json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert diff.returncode == 0, diff.stderr
    assert "models.grpo.tasks.ocr.accuracy" in diff.stdout, diff.stdout
