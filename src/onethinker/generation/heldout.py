"""The held-out check shared by SFT and GRPO: greedy answers on a fixed sample of each benchmark.

The sample is the first ``per_task`` records of every evaluation file (deterministic, so SFT and GRPO are
measured on the same questions). Scores come from ``onethinker.rewards.compute_score``: the format rate is
the share of answers with well-formed ``<think>…</think><answer>…</answer>``; accuracy is the reward's
accuracy part. Output shape::

    {"format_rate": f, "mean_accuracy": f,
     "tasks": {"<task slug>": {"accuracy": f, "format_rate": f, "n": i, "distinct_answers": i}}}

``mean_accuracy`` is the mean over tasks (each task counts once, whatever its sample size).
``distinct_answers`` counts the different ``<answer>`` texts a task got: 1 means the model gives every
question of that task the same answer (it is not using the image or video), so its accuracy there is the
hit rate of one constant and a change of model mostly swaps one constant for another.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from onethinker.config import MediaConfig
from onethinker.contract.manifest import ManifestFile, RootedRecord
from onethinker.contract.prompts import PromptStyle
from onethinker.data.examples import prompt_example
from onethinker.generation.base import RolloutEngine, SamplingParams
from onethinker.generation.hf import HFRolloutEngine

EvalSets = Sequence[tuple[ManifestFile, Sequence[RootedRecord]]]


def heldout_records(eval_sets: EvalSets, per_task: int) -> list[RootedRecord]:
    """The first ``per_task`` records of every evaluation file, files in path order."""
    out: list[RootedRecord] = []
    for _, records in sorted(eval_sets, key=lambda item: item[0].path):
        out.extend(records[:per_task])
    return out


def summarise(
    slugs: Sequence[str], scores: Sequence[dict[str, float]], responses: Sequence[str] | None = None
) -> dict[str, Any]:
    from onethinker.contract.answers import extract_answer, normalize

    per: dict[str, list[dict[str, float]]] = defaultdict(list)
    answers: dict[str, set[str | None]] = defaultdict(set)
    for i, (slug, s) in enumerate(zip(slugs, scores, strict=True)):
        per[slug].append(s)
        if responses is not None:
            answers[slug].add(extract_answer(normalize(responses[i])))
    tasks = {
        slug: {
            "accuracy": sum(s["accuracy"] for s in items) / len(items),
            "format_rate": sum(1.0 for s in items if s["format"] >= 1.0) / len(items),
            "n": len(items),
            **({"distinct_answers": len(answers[slug])} if responses is not None else {}),
        }
        for slug, items in sorted(per.items())
    }
    n = max(1, len(scores))
    return {
        "format_rate": sum(1.0 for s in scores if s["format"] >= 1.0) / n,
        "mean_accuracy": sum(t["accuracy"] for t in tasks.values()) / max(1, len(tasks)),
        "tasks": tasks,
    }


def heldout_check(
    engine: RolloutEngine,
    records: Sequence[RootedRecord],
    media: MediaConfig,
    style: PromptStyle,
    max_new_tokens: int,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Generate greedily on ``records`` and score them. Returns (summary, per-sample predictions)."""
    from onethinker.rewards import compute_score

    examples = [prompt_example(x.record, x.root, media, style) for x in records]
    completions = engine.generate(examples, SamplingParams(n=1, greedy=True, max_new_tokens=max_new_tokens))
    items = [ex.reward_item(c[0].text) for ex, c in zip(examples, completions, strict=True)]
    scores = compute_score(items)
    predictions = [
        {**item, "accuracy": s["accuracy"], "format": s["format"], "overall": s["overall"]}
        for item, s in zip(items, scores, strict=True)
    ]
    summary = summarise([ex.slug for ex in examples], scores, [item["response"] for item in items])
    return summary, predictions


def run_heldout(
    model: Any,
    processor: Any,
    eval_sets: EvalSets,
    per_task: int,
    media: MediaConfig,
    style: PromptStyle,
    max_new_tokens: int,
    batch_size: int,
    predictions_path: str | Path,
    engine: RolloutEngine | None = None,
) -> dict[str, Any]:
    """The end-of-stage check of SFT and GRPO: greedy on the held-out sample, predictions to a JSONL file.

    ``engine``: the rollout engine to generate with (default: Hugging Face ``generate`` on ``model``).
    """
    engine = engine or HFRolloutEngine(model, processor, batch_size=batch_size)
    held, predictions = heldout_check(
        engine, heldout_records(eval_sets, per_task), media, style, max_new_tokens
    )
    path = Path(predictions_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(x) + "\n" for x in predictions))
    return held


def mlflow_metrics(held: dict[str, Any]) -> dict[str, float]:
    """The held-out summary as flat MLflow metrics: ``heldout/mean_accuracy``, ``heldout/accuracy/<task>``, ..."""
    flat = {f"heldout/{k}": float(held[k]) for k in ("format_rate", "mean_accuracy") if k in held}
    for slug, t in held.get("tasks", {}).items():
        for name in ("accuracy", "format_rate", "distinct_answers"):
            if name in t:
                flat[f"heldout/{name}/{slug}"] = float(t[name])
    return flat
