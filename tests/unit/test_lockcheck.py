"""``onethinker.lockcheck``: comparing a committed dvc.lock with what a clone computed (pure parts).

The real clone-and-repro check runs in ``tests/e2e/test_reproducible.py`` and in CI (``make check-lock``).
"""

from __future__ import annotations

import copy

from onethinker.lockcheck import lock_differences, uncached_outs, without_volatile

LOCK = {
    "schema": "2.0",
    "stages": {
        "prepare": {
            "cmd": "onethinker prepare",
            "deps": [{"path": "src/onethinker/data", "md5": "aaa.dir"}],
            "params": {"params.yaml": {"prepare": {"seed": 1}}},
            "outs": [
                {"path": "data", "md5": "bbb.dir"},
                {"path": "metrics/prepare.json", "md5": "ccc"},
            ],
        },
        "validate": {
            "cmd": "onethinker validate",
            "deps": [{"path": "data", "md5": "bbb.dir"}],
            "outs": [{"path": "reports/validation", "md5": "ddd.dir"}],
        },
    },
}
DVC_YAML = {
    "stages": {
        "prepare": {"outs": ["data"], "metrics": [{"metrics/prepare.json": {"cache": False}}]},
        "evaluate": {
            "outs": ["reports/eval/predictions"],
            "plots": [{"reports/eval/accuracy_by_task.csv": {"x": "accuracy"}}, "reports/eval/x.png"],
        },
    }
}
METRICS = {"metrics/prepare.json": {"counts": {"train": 32}, "seconds": 1.2, "peak_rss_mb": 270.0}}


def test_uncached_outs_are_the_cache_false_ones() -> None:
    assert uncached_outs(DVC_YAML) == {"metrics/prepare.json"}


def test_volatile_keys_are_dropped_at_any_depth() -> None:
    doc = {
        "seconds": 3,
        "models": {"sft": {"seconds": 1, "n": 4}},
        "mlflow_run_id": "x",
        "l": [{"seconds": 2}],
    }
    assert without_volatile(doc) == {"models": {"sft": {"n": 4}}, "l": [{}]}


def test_the_same_lock_and_content_reproduce() -> None:
    computed = copy.deepcopy(LOCK)
    computed["stages"]["prepare"]["outs"][1]["md5"] = "other"  # the timing changed the file's md5 ...
    after = {"metrics/prepare.json": {"counts": {"train": 32}, "seconds": 9.9, "peak_rss_mb": 300.0}}
    # ... but not its content, volatile keys aside
    assert (
        lock_differences(LOCK, computed, ["prepare", "validate"], {"metrics/prepare.json"}, METRICS, after)
        == []
    )


def test_every_kind_of_difference_is_named() -> None:
    computed = copy.deepcopy(LOCK)
    computed["stages"]["prepare"]["outs"][0]["md5"] = "zzz.dir"
    computed["stages"]["prepare"]["params"]["params.yaml"]["prepare"]["seed"] = 2
    computed["stages"]["validate"]["deps"].append({"path": "extra", "md5": "e"})
    del computed["stages"]["validate"]["outs"]
    after = {"metrics/prepare.json": {"counts": {"train": 31}, "seconds": 1.2}}
    diffs = lock_differences(
        LOCK, computed, ["prepare", "validate", "sft"], {"metrics/prepare.json"}, METRICS, after
    )
    assert "prepare: out data md5 bbb.dir committed, zzz.dir computed" in diffs
    assert any(d.startswith("prepare: params") for d in diffs)
    assert "prepare: metrics/prepare.json differs from the committed file (volatile keys aside)" in diffs
    assert "validate: dep extra only in the computed dvc.lock" in diffs
    assert "validate: out reports/validation only in the committed dvc.lock" in diffs
    assert "sft: missing from the committed dvc.lock" in diffs
    assert len(diffs) == 6
