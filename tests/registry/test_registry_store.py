"""Registry behaviour against a real SQLite MLflow store: gate, aliases, promote, rollback, the served model.

The tiny model is logged once (the ``logged`` fixture); the other tests register more versions of the same
logged model URI under their own registered model name, with the scores each scenario needs.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest

from onethinker.registry import RegistryError, promote, register_version, rollback
from onethinker.registry.core import CHALLENGER, CHAMPION, HISTORY_TAG, PREVIOUS, aliases, format_result
from onethinker.registry.gate import Scores

GOOD = Scores(0.50, 0.9, {"ocr": 0.60, "math": 0.40})


def _tags(name: str, version: str) -> dict[str, str]:
    return mlflow.MlflowClient().get_model_version(name, version).tags


def _registry(cfg) -> dict:
    return json.loads(Path(cfg.registry_file).read_text())


def test_logged_model_carries_lineage(logged, logged_root) -> None:
    tags = _tags("logged", logged.version)
    assert logged.promoted and logged.champion_after == logged.version
    assert tags["dvc.data_hash"] == "0123456789abcdef0123456789abcdef.dir"
    assert len(tags["params_hash"]) == 32
    assert tags["eval_run_id"] == "eval-run-456" and tags["training_run_id"] == "train-run-123"
    assert tags["register_run_id"] == logged.run_id and "git_commit" in tags
    assert tags["eval.mean_accuracy"] == "0.5" and tags["eval.task.ocr"] == "0.5"
    assert tags["gate.decision"] == "promoted"
    run = mlflow.MlflowClient().get_run(logged.run_id)
    assert run.data.tags["registry.version"] == f"logged/{logged.version}"
    assert run.data.metrics["eval.mean_accuracy"] == 0.5
    mv = mlflow.MlflowClient().get_model_version("logged", logged.version)
    assert mv.run_id == logged.run_id
    doc = json.loads((logged_root / "metrics" / "registry.json").read_text())
    assert doc["champion_version"] == int(logged.version) and doc["latest"]["decision"] == "promoted"


def test_champion_loads_and_answers_an_image_question(logged, tmp_path) -> None:
    from PIL import Image, ImageDraw

    from onethinker.registry.pyfunc import input_example

    image = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(image).ellipse((10, 10, 40, 40), fill="blue")
    image.save(tmp_path / "q.png")
    model = mlflow.pyfunc.load_model(f"models:/logged@{CHAMPION}", model_config={"media_root": str(tmp_path)})
    rows = [
        {"question": "What shape is blue?", "image": str(tmp_path / "q.png")},  # absolute, under the root
        {"question": "How many circles?", "image": "q.png", "problem_type": "numerical"},  # relative to it
        input_example().iloc[0].to_dict(),  # the image inlined as a data URI
        {"question": "What is two plus two?", "problem_type": "math"},  # text only
    ]
    out = model.predict(rows, params={"max_new_tokens": 8})
    assert list(out.columns) == ["response", "think", "answer", "formatted", "well_formed", "answer_ok"]
    assert len(out) == len(rows)
    for row in out.to_dict(orient="records"):
        assert isinstance(row["response"], str) and isinstance(row["well_formed"], bool)
        assert row["formatted"] == f"<think>{row['think']}</think><answer>{row['answer']}</answer>"
        assert isinstance(row["answer_ok"], bool)  # the answer checked against its task's schema

    # media are confined to the root: no reading, and no probing, of other files
    (tmp_path.parent / "secret.png").write_bytes((tmp_path / "q.png").read_bytes())
    messages = []
    for path in ("../secret.png", str(tmp_path.parent / "secret.png"), "../missing.png", "/etc/passwd"):
        for column in ("image", "video"):
            with pytest.raises(Exception, match="outside the media root") as err:
                model.predict([{"question": "What is it?", column: path}])
            messages.append(str(err.value).replace(path, "PATH"))
    assert len(set(messages)) == 1, messages  # the same words whether or not the file exists


def test_first_model_below_floors_is_not_champion(make_cfg, logged, tmp_path) -> None:
    cfg = make_cfg()
    r = register_version(cfg, logged.model_uri, Scores(0.1, 0.2, {"ocr": 0.1}), root=tmp_path)
    assert not r.promoted and r.champion_after is None
    assert aliases(cfg, root=tmp_path) == {CHALLENGER: r.version}
    tags = _tags(cfg.name, r.version)
    assert tags["gate.decision"] == "refused" and "floor 0.3000" in tags["gate.reasons"]
    assert _registry(cfg)["champion_version"] is None
    assert _registry(cfg)["latest"]["decision"] == "refused"


def test_better_candidate_is_promoted_worse_is_refused(make_cfg, logged, tmp_path) -> None:
    cfg = make_cfg()
    first = register_version(cfg, logged.model_uri, GOOD, root=tmp_path)
    assert first.promoted
    better = register_version(
        cfg, logged.model_uri, Scores(0.55, 0.9, {"ocr": 0.62, "math": 0.45}), root=tmp_path
    )
    assert better.promoted and better.champion_before == first.version
    assert aliases(cfg, root=tmp_path) == {
        CHAMPION: better.version,
        CHALLENGER: better.version,
        PREVIOUS: first.version,
    }
    worse = register_version(
        cfg, logged.model_uri, Scores(0.54, 0.9, {"ocr": 0.62, "math": 0.45}), root=tmp_path
    )
    assert not worse.promoted and worse.champion_after == better.version
    assert aliases(cfg, root=tmp_path)[CHAMPION] == better.version
    assert aliases(cfg, root=tmp_path)[CHALLENGER] == worse.version
    assert _tags(cfg.name, worse.version)["gate.failed"] == "aggregate"
    doc = _registry(cfg)
    assert [e["decision"] for e in doc["history"]] == ["promoted", "promoted", "refused"]
    assert doc["champion_version"] == int(better.version) and doc["champion_mean_accuracy"] == 0.55
    assert "gate: refused" in format_result(worse)


def test_task_drop_beyond_tolerance_is_refused_with_the_task_named(make_cfg, logged, tmp_path) -> None:
    cfg = make_cfg()
    first = register_version(cfg, logged.model_uri, GOOD, root=tmp_path)
    drop = register_version(
        cfg, logged.model_uri, Scores(0.70, 0.9, {"ocr": 0.50, "math": 0.90}), root=tmp_path
    )
    assert not drop.promoted
    tags = _tags(cfg.name, drop.version)
    assert tags["gate.failed"] == "task:ocr"
    assert "task ocr dropped 0.1000" in tags["gate.reasons"]
    assert aliases(cfg, root=tmp_path)[CHAMPION] == first.version


def test_champion_from_another_sample_is_rescored_before_the_gate(make_cfg, logged, tmp_path) -> None:
    cfg = make_cfg()
    old = Scores(0.50, 0.9, {"ocr": 0.60, "math": 0.40, "tracking": 0.30}, sample="old-sample")
    v1 = register_version(cfg, logged.model_uri, old, root=tmp_path).version
    cand = Scores(0.52, 0.9, {"ocr": 0.50, "math": 0.54}, sample="new-sample")

    # without a way to re-score, the gate refuses to compare across samples
    refused = register_version(cfg, logged.model_uri, cand, root=tmp_path)
    assert refused.decision.failed == ("sample",) and aliases(cfg, root=tmp_path)[CHAMPION] == v1

    asked: list[str] = []

    def rescore(uri: str) -> Scores:
        asked.append(uri)
        # the URI names the champion's registered version: it resolves in the store
        source = mlflow.MlflowClient().get_model_version(cfg.name, uri.rsplit("/", 1)[1])
        assert str(source.version) == v1
        return Scores(0.40, 0.9, {"ocr": 0.45, "math": 0.35}, sample="new-sample")

    result = register_version(cfg, logged.model_uri, cand, root=tmp_path, rescore=rescore)
    assert asked == [f"models:/{cfg.name}/{v1}"]
    # on the same sample the candidate gains +0.12 and no task drops: promoted
    assert result.promoted, result.decision.reasons
    assert result.entry["champion_rescored"] == {
        "version": int(v1),
        "from_sample": "old-sample",
        "to_sample": "new-sample",
        "mean_accuracy_before": 0.50,
        "mean_accuracy_after": 0.40,
    }
    tags = _tags(cfg.name, v1)
    assert tags["eval.sample"] == "new-sample" and tags["eval.rescored_from"] == "old-sample"
    assert tags["eval.mean_accuracy"] == "0.4" and "eval.task.tracking" not in tags
    assert "re-scored on this evaluation sample first" in format_result(result)
    # same sample now: no second re-score
    register_version(cfg, logged.model_uri, cand, root=tmp_path, rescore=rescore)
    assert len(asked) == 1


def test_rollback_restores_the_previous_champion(make_cfg, logged, tmp_path) -> None:
    cfg = make_cfg()
    v1 = register_version(cfg, logged.model_uri, GOOD, root=tmp_path).version
    v2 = register_version(
        cfg, logged.model_uri, Scores(0.6, 0.9, {"ocr": 0.6, "math": 0.6}), root=tmp_path
    ).version
    v3 = register_version(
        cfg, logged.model_uri, Scores(0.7, 0.9, {"ocr": 0.7, "math": 0.7}), root=tmp_path
    ).version
    assert aliases(cfg, root=tmp_path)[CHAMPION] == v3

    back = rollback(cfg, root=tmp_path)
    assert (back.decision, back.champion_before, back.champion_after) == ("rolled_back", v3, v2)
    assert aliases(cfg, root=tmp_path)[CHAMPION] == v2 and aliases(cfg, root=tmp_path)[PREVIOUS] == v1
    assert "rollback.demoted" in _tags(cfg.name, v3)
    back = rollback(cfg, root=tmp_path)  # repeated: walks further back
    assert back.champion_after == v1
    assert PREVIOUS not in aliases(cfg, root=tmp_path)
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        rollback(cfg, root=tmp_path)
    assert mlflow.MlflowClient().get_registered_model(cfg.name).tags[HISTORY_TAG] == v1
    doc = _registry(cfg)
    assert doc["champion_version"] == int(v1) and doc["latest"]["decision"] == "rolled_back"
    # the champion now serves v1
    assert str(mlflow.MlflowClient().get_model_version_by_alias(cfg.name, CHAMPION).version) == v1


def test_repeated_promotion_is_idempotent(make_cfg, logged, tmp_path) -> None:
    cfg = make_cfg()
    v1 = register_version(cfg, logged.model_uri, GOOD, root=tmp_path).version
    v2 = register_version(
        cfg, logged.model_uri, Scores(0.6, 0.9, {"ocr": 0.6, "math": 0.6}), root=tmp_path
    ).version
    rollback(cfg, root=tmp_path)  # champion back to v1, so v2 can be promoted by hand
    first = promote(cfg, v2, root=tmp_path)
    assert first.changed and first.decision == "promoted"
    before = _registry(cfg)
    again = promote(cfg, int(v2), root=tmp_path)
    assert not again.changed and again.decision == "unchanged"
    assert _registry(cfg) == before
    assert aliases(cfg, root=tmp_path)[CHAMPION] == v2 and aliases(cfg, root=tmp_path)[PREVIOUS] == v1
    assert mlflow.MlflowClient().get_registered_model(cfg.name).tags[HISTORY_TAG] == f"{v1},{v2}"


def test_force_promotes_a_refused_candidate_and_records_it(make_cfg, logged, tmp_path) -> None:
    cfg = make_cfg()
    v1 = register_version(cfg, logged.model_uri, GOOD, root=tmp_path).version
    v2 = register_version(
        cfg, logged.model_uri, Scores(0.3, 0.9, {"ocr": 0.1, "math": 0.4}), root=tmp_path
    ).version
    n = len(_registry(cfg)["history"])

    refused = promote(cfg, v2, root=tmp_path)
    assert refused.decision == "refused" and not refused.changed
    assert any("task ocr dropped" in r for r in refused.reasons)
    assert aliases(cfg, root=tmp_path)[CHAMPION] == v1 and len(_registry(cfg)["history"]) == n

    forced = promote(cfg, v2, force=True, root=tmp_path)
    assert forced.forced and forced.changed and forced.champion_after == v2
    tags = _tags(cfg.name, v2)
    assert tags["gate.forced"] == "true" and tags["gate.decision"] == "forced"
    doc = _registry(cfg)
    assert doc["latest"]["forced"] is True and doc["champion_version"] == int(v2)
    assert doc["history"][-1]["reasons"] == list(forced.reasons)
    assert aliases(cfg, root=tmp_path)[PREVIOUS] == v1


def test_promote_unknown_version_fails(make_cfg, logged, tmp_path) -> None:
    cfg = make_cfg()
    register_version(cfg, logged.model_uri, GOOD, root=tmp_path)
    with pytest.raises(RegistryError, match="no version 99"):
        promote(cfg, 99, root=tmp_path)


def test_register_model_checks_inputs_before_logging(
    mlflow_store, tiny_model_dir, tmp_path, eval_doc
) -> None:
    from onethinker.registry import RegistryConfig, register_model
    from onethinker.registry.gate import ScoresError

    cfg = RegistryConfig(name="never-registered")
    with pytest.raises(ScoresError, match="models.grpo"):
        register_model(cfg, tiny_model_dir, eval_doc(0.5, {}, model="sft"), root=tmp_path)
    with pytest.raises(RegistryError, match="not a saved Hugging Face model folder"):
        register_model(cfg, tmp_path, eval_doc(0.5, {}), root=tmp_path)
    with pytest.raises(RegistryError, match="run the evaluate stage first"):
        register_model(cfg, tiny_model_dir, root=tmp_path)
    # the evaluation must have scored this very folder (its fingerprint over the files' contents)
    with pytest.raises(RegistryError, match="no model_fingerprint"):
        register_model(cfg, tiny_model_dir, eval_doc(0.5, {}), root=tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text("{}")
    with pytest.raises(RegistryError, match="scored another model"):
        register_model(cfg, tiny_model_dir, eval_doc(0.5, {}, model_dir=other), root=tmp_path)
    assert aliases(cfg, root=tmp_path) == {}
