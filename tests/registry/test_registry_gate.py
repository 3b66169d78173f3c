"""The promotion gate, its config and the pyfunc's pure helpers: no MLflow store involved."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from onethinker.config import ConfigError, from_dict
from onethinker.registry.config import FloorsConfig, GateConfig, RegistryConfig
from onethinker.registry.core import parse_history, reconcile_history
from onethinker.registry.gate import (
    Scores,
    ScoresError,
    decide,
    scores_from_eval,
    scores_from_tags,
    scores_to_tags,
)
from onethinker.registry.pyfunc import input_rows, parse_response

GATE = GateConfig(margin=0.02, task_tolerance=0.05, floors=FloorsConfig(mean_accuracy=0.3, format_rate=0.5))
CHAMP = Scores(0.50, 0.9, {"ocr": 0.60, "math": 0.40})


# ---------------------------------------------------------------------------------------------- gate


def test_better_candidate_passes() -> None:
    # 0.53 - 0.50 = +0.03 >= margin 0.02; ocr 0.60 -> 0.58 is a drop of 0.02 <= 0.05
    d = decide(Scores(0.53, 0.9, {"ocr": 0.58, "math": 0.48}), CHAMP, GATE, "3")
    assert d.passed and d.decision == "promoted"
    assert d.champion_version == "3"
    assert any("+0.0300 >= margin 0.0200" in r and "v3" in r for r in d.reasons)
    assert any("largest drop ocr +0.0200" in r for r in d.reasons)


def test_worse_candidate_is_refused_on_the_aggregate() -> None:
    # 0.51 - 0.50 = +0.01 < margin 0.02, though no task drops
    d = decide(Scores(0.51, 0.9, {"ocr": 0.60, "math": 0.42}), CHAMP, GATE, "3")
    assert not d.passed and d.decision == "refused"
    assert d.failed == ("aggregate",)
    assert d.reasons == ("mean_accuracy 0.5100 vs champion v3 0.5000: +0.0100 < margin 0.0200",)


def test_margin_is_inclusive_despite_float_error() -> None:
    # 0.52 - 0.50 == 0.020000000000000018 in floats; exactly the margin passes
    assert decide(Scores(0.52, 0.9, {"ocr": 0.6, "math": 0.4}), CHAMP, GATE).passed
    assert decide(Scores(0.50, 0.9, {"ocr": 0.6, "math": 0.4}), CHAMP, GateConfig(margin=0.0)).passed


def test_task_drop_beyond_tolerance_is_refused_and_named() -> None:
    # aggregate +0.10 passes, but ocr drops 0.60 -> 0.50 = 0.10 > 0.05
    d = decide(Scores(0.60, 0.9, {"ocr": 0.50, "math": 0.70}), CHAMP, GATE, "3")
    assert not d.passed
    assert d.failed == ("task:ocr",)
    assert d.reasons == ("task ocr dropped 0.1000 (0.6000 -> 0.5000) > tolerance 0.0500",)


def test_task_missing_from_candidate_is_refused() -> None:
    d = decide(Scores(0.60, 0.9, {"ocr": 0.65}), CHAMP, GATE, "3")
    assert d.failed == ("task:math",)
    assert "not scored" in d.reasons[0]


def test_new_task_in_candidate_is_fine() -> None:
    assert decide(Scores(0.60, 0.9, {"ocr": 0.6, "math": 0.4, "tracking": 0.1}), CHAMP, GATE).passed


def test_first_model_must_pass_the_floors() -> None:
    ok = decide(Scores(0.30, 0.5, {}), None, GATE)
    assert ok.passed and ok.champion_version is None
    low = decide(Scores(0.29, 0.4, {}), None, GATE)
    assert not low.passed
    assert low.failed == ("floor:mean_accuracy", "floor:format_rate")
    assert low.reasons == ("mean_accuracy 0.2900 < floor 0.3000", "format_rate 0.4000 < floor 0.5000")
    missing_format = decide(Scores(0.9, None, {}), None, GATE)
    assert missing_format.failed == ("floor:format_rate",)


def test_champion_without_scores_falls_back_to_the_floors() -> None:
    d = decide(Scores(0.4, 0.9, {}), None, GATE, champion_version="7")
    assert d.passed and "v7 has no eval scores" in d.reasons[0]


def test_champion_scored_on_another_sample_is_not_compared() -> None:
    # the candidate would pass on the numbers (+0.10, no drop), but the samples differ: nothing to compare
    cand = Scores(0.60, 0.9, {"ocr": 0.6, "math": 0.6}, sample="bbbb")
    for champion_sample in ("aaaa", None):
        d = decide(cand, Scores(0.50, 0.9, {"ocr": 0.6, "math": 0.4}, sample=champion_sample), GATE, "3")
        assert not d.passed and d.failed == ("sample",)
        assert (
            f"champion v3 was scored on another evaluation sample ({champion_sample or 'unknown'} vs bbbb)"
            in (d.reasons[0])
        )
    same = decide(cand, Scores(0.50, 0.9, {"ocr": 0.6, "math": 0.4}, sample="bbbb"), GATE, "3")
    assert same.passed and "sample" not in same.failed
    # a candidate whose sample is unknown is compared as before (nothing to check against)
    assert decide(
        Scores(0.60, 0.9, {"ocr": 0.6, "math": 0.6}), Scores(0.5, 0.9, {"ocr": 0.6}, sample="aaaa"), GATE
    ).passed


# ---------------------------------------------------------------------------------------------- scores


def test_scores_from_eval_reads_the_model_entry(eval_doc) -> None:
    doc = eval_doc(0.25, {"ocr": 0.5, "math": 0.0})
    doc["models"]["grpo"]["tasks"]["tracking"] = {"mIoU": 0.3}  # no accuracy: left out
    s = scores_from_eval(doc, "grpo")
    assert s == Scores(0.25, 0.9, {"math": 0.0, "ocr": 0.5})
    assert scores_from_eval({**doc, "sample": "0123abcd"}, "grpo").sample == "0123abcd"


def test_scores_from_eval_names_what_is_missing(eval_doc) -> None:
    with pytest.raises(ScoresError, match=r"models.sft.*have: grpo"):
        scores_from_eval(eval_doc(0.2, {}), "sft")
    bad = eval_doc(0.2, {})
    bad["models"]["grpo"]["mean_accuracy"] = float("nan")
    with pytest.raises(ScoresError, match=r"models.grpo.mean_accuracy"):
        scores_from_eval(bad, "grpo")


def test_scores_round_trip_through_tags() -> None:
    s = Scores(1 / 3, 0.875, {"ocr": 0.1 + 0.2, "segmentation_video": 0.0}, sample="5e5e")
    tags = scores_to_tags(s)
    assert tags["eval.sample"] == "5e5e"
    assert tags["eval.task.segmentation_video"] == "0.0"
    assert scores_from_tags({**tags, "git_commit": "abc"}) == s
    assert scores_from_tags({"git_commit": "abc"}) is None


def test_champion_trail() -> None:
    assert parse_history("") == [] and parse_history("1,3") == ["1", "3"]
    assert reconcile_history(["1", "3"], "3") == ["1", "3"]
    assert reconcile_history(["1", "3"], "5") == ["1", "3", "5"]  # alias moved by other means
    assert reconcile_history([], None) == []


# ---------------------------------------------------------------------------------------------- config


def test_config_defaults_and_strict_loading() -> None:
    cfg = from_dict(
        RegistryConfig, {"name": "ot", "gate": {"margin": 0.01, "floors": {"format_rate": 0.8}}}, "register"
    )
    assert cfg.name == "ot" and cfg.model == "grpo" and cfg.eval_metrics == "metrics/eval.json"
    assert cfg.gate.floors.format_rate == 0.8 and cfg.gate.task_tolerance == 0.05
    with pytest.raises(ConfigError, match=r"register.gate.margin"):
        from_dict(RegistryConfig, {"gate": {"margin": -0.1}}, "register")
    with pytest.raises(ConfigError, match=r"register.gate.floors.mean_accuracy"):
        from_dict(RegistryConfig, {"gate": {"floors": {"mean_accuracy": 2}}}, "register")
    with pytest.raises(ConfigError, match=r"unknown key 'register.gate.tolerance'"):
        from_dict(RegistryConfig, {"gate": {"tolerance": 0.1}}, "register")
    with pytest.raises(ConfigError, match=r"register.name"):
        from_dict(RegistryConfig, {"name": "has space"}, "register")


# ---------------------------------------------------------------------------------------------- pyfunc helpers


@pytest.mark.parametrize(
    ("text", "think", "answer", "well_formed"),
    [
        ("<think>two red squares</think><answer>2</answer>", "two red squares", "2", True),
        (" <think> a </think>\n< answer >B</ answer > ", "a", "B", True),
        ("<answer>B</answer>", "", "B", False),  # no think block
        ("<think>unfinished", "", "", False),
        ("\n\n\n", "", "", False),  # what an untrained model says
        ("<think>x</think><answer>1</answer> trailing", "x", "1", False),
    ],
)
def test_parse_response(text: str, think: str, answer: str, well_formed: bool) -> None:
    row = parse_response(text)
    assert row == {
        "response": text,
        "think": think,
        "answer": answer,
        "well_formed": well_formed,
        "formatted": f"<think>{think}</think><answer>{answer}</answer>",
    }


@pytest.mark.parametrize(
    ("problem_type", "answer", "ok"),
    [
        ("multiple choice", "B", True),
        ("multiple choice", "blue", False),
        ("numerical", "3.5", True),
        ("spatial grounding", '{"boxes": [1, 2, 3, 4]}', True),
        ("spatial grounding", '{"boxes": [1, 2]}', False),
        ("tracking", '{"boxes": {"1": [1, 2, 3, 4]}}', True),
        ("tracking", "it moves right", False),
        ("open-ended", "anything", True),
    ],
)
def test_answer_ok_follows_the_task_schema(problem_type: str, answer: str, ok: bool) -> None:
    row = parse_response(f"<think>t</think><answer>{answer}</answer>", problem_type)
    assert row["answer"] == answer and row["answer_ok"] is ok


def test_input_rows_accepts_frames_lists_and_dicts() -> None:
    frame = pd.DataFrame(
        [
            {"question": "q1", "image": "a.png", "video": math.nan, "problem_type": None},
            {"question": "q2", "image": None, "video": "b.mp4", "problem_type": "numerical"},
        ]
    )
    rows = input_rows(frame)
    assert rows[0] == {"question": "q1", "image": "a.png", "video": None, "problem_type": "open-ended"}
    assert rows[1]["video"] == "b.mp4" and rows[1]["problem_type"] == "numerical"
    assert input_rows({"question": "q"}) == [
        {"question": "q", "image": None, "video": None, "problem_type": "open-ended"}
    ]
    assert len(input_rows([{"question": "a"}, {"question": "b", "image": ""}])) == 2
    with pytest.raises(ValueError, match="row 1: 'question' is required"):
        input_rows([{"question": "a"}, {"image": "x.png"}])
    with pytest.raises(ValueError, match="not both"):
        input_rows({"question": "a", "image": "x.png", "video": "y.mp4"})


def test_config_module_does_not_import_mlflow() -> None:
    import subprocess
    import sys

    code = "import sys, onethinker.registry; assert 'mlflow' not in sys.modules, 'mlflow imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
