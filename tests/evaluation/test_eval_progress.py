"""What `onethinker evaluate` tells its operator: one bar over every model and benchmark with the time left,
a message when answers come from the cache, a line per benchmark in reports/eval/evaluate.log (not on the
terminal), and the files it wrote.

A real (tiny) evaluation: the session's tiny data set and base model, two model names, two benchmarks.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
import yaml

from onethinker.config import load_params
from onethinker.evaluation.stage import run_evaluate_stage


@pytest.fixture
def params(tiny_data: dict, tiny_base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")  # the bar is as wide as the terminal: room for the whole postfix
    eval_dir = Path(tiny_data["root"]) / "eval"
    doc = {
        "data": {"root": str(tiny_data["root"])},
        "evaluate": {
            "models": ["base", "twin"],
            "model_dirs": {"base": str(tiny_base), "twin": str(tiny_base)},
            "benchmarks": [
                str(eval_dir / "synthetic-ocr-image.json"),
                str(eval_dir / "synthetic-temporal_grounding-video.json"),
            ],
            "media_root": str(tiny_data["media_root"]),
            "max_per_benchmark": 1,
            "max_new_tokens": 8,
            "log_mlflow": False,
        },
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(doc))
    return load_params(tmp_path / "params.yaml")


def _run(params, capsys, caplog) -> tuple[str, str]:
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="onethinker.evaluation"):
        run_evaluate_stage(params, progress=True)
    return capsys.readouterr().err, "\n".join(caplog.messages)


def test_one_bar_with_eta_then_cache_message_and_written_files(params, capsys, caplog) -> None:
    bar, log = _run(params, capsys, caplog)

    # one bar for the whole evaluation, with elapsed<remaining, naming model, benchmark and phase
    assert "evaluate 2 models x 2 benchmarks" in bar
    assert "eval base:" not in bar  # no per-benchmark bars any more
    frames = [f for f in re.split(r"[\r\n]", bar) if f.startswith("evaluate ")]
    assert frames and "100%" in frames[-1], frames[-3:]
    assert all(re.search(r"\d\d:\d\d<(\d\d:\d\d|\?)", f) for f in frames), frames
    assert any("base:synthetic-ocr-image generating" in f for f in frames), frames
    assert any("twin:synthetic-temporal_grounding-video scoring" in f for f in frames), frames

    # the terminal log: what is to generate and what was written; one line per model and benchmark in the file
    assert "base: 2 answers to generate" in log and "twin: 2 answers to generate" in log
    assert "synthetic-ocr-image: 1 samples" not in log and "synthetic-ocr-image: 1 samples" not in bar
    written = log.split("evaluate wrote:", 1)[1].split()
    assert written[:2] == ["metrics/eval.json", "metrics/headline/eval.json"], written
    for rel in ("predictions/base.jsonl", "predictions/twin.jsonl", "accuracy_by_task.png", "evaluate.log"):
        assert f"reports/eval/{rel}" in written, written
    assert all(Path(w).is_file() for w in written), written
    detail = Path("reports/eval/evaluate.log").read_text()
    assert re.search(
        r"^base synthetic-ocr-image: 1 samples \(1 generated, 0 from the cache\), accuracy", detail, re.M
    )
    assert len(re.findall(r"^(base|twin) synthetic-\S+: 1 samples", detail, re.M)) == 4, detail

    # a second run: every answer from the cache, said once per model; the bar still ends at 100%
    bar, log = _run(params, capsys, caplog)
    assert re.search(r"base: all 2 answers from the cache \(checkpoints/eval/base/; .*\), scoring only", log)
    assert "twin: all 2 answers from the cache" in log
    detail = Path("reports/eval/evaluate.log").read_text()  # rewritten by each run
    assert detail.count("(0 generated, 1 from the cache)") == 4 and "1 generated" not in detail, detail
    frames = [f for f in re.split(r"[\r\n]", bar) if f.startswith("evaluate ")]
    assert "100%" in frames[-1] and not any("generating" in f for f in frames), frames
