"""The held-out check shared by SFT and GRPO: greedy answers on a fixed sample of each benchmark.

The sample is the first ``per_task`` records of every evaluation file (deterministic, so SFT and GRPO are
measured on the same questions). Scores come from ``onethinker.rewards.compute_score``: the format rate is
the share of answers with well-formed ``<think>…</think><answer>…</answer>``; accuracy is the reward's
accuracy part. Output shape::

    {"format_rate": f, "mean_accuracy": f,
     "tasks": {"<task slug>": {"accuracy": f, "format_rate": f, "n": i, "timeouts": i, "distinct_answers": i}}}

``mean_accuracy`` is the mean over tasks (each task counts once, whatever its sample size).
``timeouts`` counts answers whose symbolic comparison was over the reward's time or size budget (scored
0); ``skipped_overlong_prompts`` (only when there are any) counts prompts over the length limit, not
generated and scored 0. ``distinct_answers`` counts the different ``<answer>`` texts a task got: 1 means the model gives every
question of that task the same answer (it is not using the image or video), so its accuracy there is the
hit rate of one constant and a change of model mostly swaps one constant for another.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from onethinker.config import MediaConfig
from onethinker.contract.manifest import ManifestFile, RootedRecord
from onethinker.contract.prompts import PromptStyle
from onethinker.data.examples import Example, prompt_example
from onethinker.generation.base import Completion, RolloutEngine, SamplingParams
from onethinker.generation.hf import HFRolloutEngine, encode_prompt
from onethinker.rewards.options import RewardConfig
from onethinker.rewards.parsing import TIMEOUT

log = logging.getLogger(__name__)

EvalSets = Sequence[tuple[ManifestFile, Sequence[RootedRecord]]]


def heldout_records(eval_sets: EvalSets, per_task: int) -> list[RootedRecord]:
    """The first ``per_task`` records of every evaluation file, files in path order."""
    out: list[RootedRecord] = []
    for _, records in sorted(eval_sets, key=lambda item: item[0].path):
        out.extend(records[:per_task])
    return out


def generate_within(
    engine: RolloutEngine,
    processor: Any,
    examples: Sequence[Example],
    sampling: SamplingParams,
    max_prompt_length: int | None,
    what: str = "prompt",
) -> tuple[list[list[Completion]], list[int]]:
    """Generate for every example whose prompt fits ``max_prompt_length`` tokens; an over-long one is not
    generated (its completions are empty, so it scores 0) and is named in a warning. Returns (completions per
    example, indices skipped). Skipping, not truncating: a cut prompt loses its question or breaks the media
    placeholders, and one over-long prompt must not run the machine out of memory."""
    encoded = [encode_prompt(processor, ex) for ex in examples]
    skipped = [
        i
        for i, enc in enumerate(encoded)
        if max_prompt_length is not None and int(enc["input_ids"].shape[-1]) > max_prompt_length
    ]
    for i in skipped:
        record = examples[i].record
        log.warning(
            "%s: %s of %d tokens is longer than the limit (%d); not generated, scored 0",
            record.where if record is not None else f"problem_id {examples[i].problem_id}",
            what,
            int(encoded[i]["input_ids"].shape[-1]),
            max_prompt_length,
        )
    skip = set(skipped)
    keep = [i for i in range(len(examples)) if i not in skip]
    out: list[list[Completion]] = [[Completion("", [], False)] * sampling.n for _ in examples]
    if keep:
        todo = [examples[i] for i in keep]
        if isinstance(engine, HFRolloutEngine):
            got = engine.generate(todo, sampling, encoded=[encoded[i] for i in keep])
        else:
            got = engine.generate(todo, sampling)
        for i, group in zip(keep, got, strict=True):
            out[i] = group
    return out, skipped


def summarise(
    slugs: Sequence[str],
    scores: Sequence[dict[str, float]],
    responses: Sequence[str] | None = None,
    skipped: Sequence[int] = (),
) -> dict[str, Any]:
    from onethinker.contract.answers import extract_answer, normalize

    per: dict[str, list[dict[str, float]]] = defaultdict(list)
    answers: dict[str, set[str | None]] = defaultdict(set)
    for i, (slug, s) in enumerate(zip(slugs, scores, strict=True)):
        per[slug].append(s)
        if responses is not None:
            answers[slug].add(extract_answer(normalize(responses[i])))
    skipped_per: dict[str, int] = defaultdict(int)
    for i in skipped:
        skipped_per[slugs[i]] += 1
    tasks = {
        slug: {
            "accuracy": sum(s["accuracy"] for s in items) / len(items),
            "format_rate": sum(1.0 for s in items if s["format"] >= 1.0) / len(items),
            "n": len(items),
            "timeouts": sum(1 for s in items if TIMEOUT in s.get("reasons", ())),
            **({"skipped_overlong_prompts": skipped_per[slug]} if skipped_per.get(slug) else {}),
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
    *,
    processor: Any = None,
    max_prompt_length: int | None = None,
    reward_options: RewardConfig | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Generate greedily on ``records`` and score them. Returns (summary, per-sample predictions).

    Prompts longer than ``max_prompt_length`` tokens are not generated (scored 0, counted per task as
    ``skipped_overlong_prompts``); ``processor`` (default: the engine's) measures them."""
    from onethinker.rewards import compute_score

    examples = [prompt_example(x.record, x.root, media, style) for x in records]
    sampling = SamplingParams(n=1, greedy=True, max_new_tokens=max_new_tokens)
    completions, skipped = generate_within(
        engine,
        processor or engine.processor,  # type: ignore[attr-defined]
        examples,
        sampling,
        max_prompt_length,
    )
    items = [ex.reward_item(c[0].text) for ex, c in zip(examples, completions, strict=True)]
    scores = compute_score(items, options=reward_options)
    predictions = [
        {**item, "accuracy": s["accuracy"], "format": s["format"], "overall": s["overall"]}
        for item, s in zip(items, scores, strict=True)
    ]
    summary = summarise([ex.slug for ex in examples], scores, [item["response"] for item in items], skipped)
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
    *,
    max_prompt_length: int | None = None,
    reward_options: RewardConfig | None = None,
) -> dict[str, Any]:
    """The end-of-stage check of SFT and GRPO: greedy on the held-out sample, predictions to a JSONL file.

    ``engine``: the rollout engine to generate with (default: Hugging Face ``generate`` on ``model``).
    """
    engine = engine or HFRolloutEngine(model, processor, batch_size=batch_size)
    held, predictions = heldout_check(
        engine,
        heldout_records(eval_sets, per_task),
        media,
        style,
        max_new_tokens,
        processor=processor,
        max_prompt_length=max_prompt_length,
        reward_options=reward_options,
    )
    path = Path(predictions_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(x) + "\n" for x in predictions))
    return held


def mlflow_metrics(held: dict[str, Any]) -> dict[str, float]:
    """The held-out summary as flat MLflow metrics: ``heldout/mean_accuracy``, ``heldout/accuracy/<task>``, ..."""
    flat = {f"heldout/{k}": float(held[k]) for k in ("format_rate", "mean_accuracy") if k in held}
    for slug, t in held.get("tasks", {}).items():
        for name in ("accuracy", "format_rate", "distinct_answers", "timeouts", "skipped_overlong_prompts"):
            if name in t:
                flat[f"heldout/{name}/{slug}"] = float(t[name])
    return flat
