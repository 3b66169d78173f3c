"""Optional model-based judge for open-ended answers, served over HTTP (OpenAI-compatible).

Off by default. When given to ``compute_score(..., judge=HttpJudge(...))``, the open-ended items are
sent in batches of ``batch_size`` prompts to ``{base_url}/completions`` (one request per batch, the
OpenAI completions API with a list of prompts; vLLM and most servers accept it). The judge answers
with a 0-10 grade, mapped to [0, 1]. Any failure of a batch (connection, HTTP status, a missing or
unparseable grade) falls back to ROUGE for that batch, and its items get the reason
``judge_fallback``. Optionally, as in the published reward, scores are then min-max normalised within
each ``problem_id`` (z-scores rescaled to [0, 1]; a group with no spread scores 1).

No dependency beyond the standard library (urllib).
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from onethinker.metrics.text import rouge_mean
from onethinker.rewards import parsing as P

DEFAULT_TEMPLATE = (
    "You are grading an answer against a reference answer.\n"
    "Question: {prompt}\nReference answer: {reference}\nAnswer to grade: {output}\n"
    "Reply with a single integer from 0 (wrong) to 10 (fully correct).\nGrade:"
)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


class JudgeError(RuntimeError):
    """The judge could not score a batch."""


@dataclass
class HttpJudge:
    """An OpenAI-compatible completions endpoint used as an open-ended accuracy judge."""

    base_url: str  # e.g. "http://127.0.0.1:8000/v1"
    model: str  # the served model name
    api_key: str | None = None  # sent as a Bearer token if set
    batch_size: int = 64  # prompts per request
    timeout_s: float = 30.0  # per request
    max_tokens: int = 8
    normalize_by_problem_id: bool = True  # min-max normalise within each problem_id, as published
    template: str = DEFAULT_TEMPLATE  # formatted with prompt, reference, output

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s}")

    def score(self, rows: Sequence[dict]) -> list[float]:
        """Grades in [0, 1] for rows with ``prompt``, ``reference``, ``output``; raises JudgeError."""
        prompts = [self.template.format(**r) for r in rows]
        body = json.dumps(
            {"model": self.model, "prompt": prompts, "max_tokens": self.max_tokens, "temperature": 0.0}
        ).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(f"{self.base_url.rstrip('/')}/completions", data=body, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:  # noqa: S310 - a configured URL
                payload = json.loads(resp.read())
            choices = sorted(payload["choices"], key=lambda c: int(c.get("index", 0)))
            if len(choices) != len(prompts):
                raise JudgeError(f"{len(choices)} grades for {len(prompts)} prompts")
            out = []
            for c in choices:
                m = _NUMBER.search(str(c.get("text", "")))
                if m is None:
                    raise JudgeError(f"no grade in {c.get('text')!r}")
                out.append(max(0.0, min(1.0, float(m.group()) / 10.0)))
            return out
        except JudgeError:
            raise
        except Exception as e:  # noqa: BLE001 - any failure falls back
            raise JudgeError(str(e)) from e


def normalize_by_group(scores: Sequence[float], groups: Sequence[object]) -> list[float]:
    """Within each group: z-scores rescaled to [0, 1]; a group without spread scores 1 (as published)."""
    out = list(scores)
    members: dict[object, list[int]] = {}
    for k, g in enumerate(groups):
        members.setdefault(g if isinstance(g, str | int | float | None) else repr(g), []).append(k)
    for idx in members.values():
        vals = np.asarray([scores[k] for k in idx], dtype=np.float64)
        std = vals.std()
        if std == 0:
            norm = np.ones_like(vals)
        else:
            z = (vals - vals.mean()) / (std + 1e-6)
            norm = (z - z.min()) / (z.max() - z.min() + 1e-12)
        for t, k in enumerate(idx):
            out[k] = float(norm[t])
    return out


def apply_judge(
    judge: HttpJudge, items: Sequence[object], preps: Sequence, acc: list, task_reasons: list
) -> None:
    """Replace the accuracy of the open-ended items in place (called by ``compute_score``)."""
    idxs = [i for i, p in enumerate(preps) if p.valid and p.gt_ok and p.key == "open-ended"]
    if not idxs:
        return
    rows = []
    for i in idxs:
        item = items[i]
        problem = item.get("problem") if isinstance(item, dict) else None
        rows.append(
            {
                "prompt": problem if isinstance(problem, str) else "",
                "reference": preps[i].ground_truth,
                "output": preps[i].structure_answer,
                "problem_id": item.get("problem_id") if isinstance(item, dict) else None,
            }
        )
    scores: list[float] = []
    for start in range(0, len(rows), judge.batch_size):
        batch = rows[start : start + judge.batch_size]
        try:
            scores += judge.score(batch)
        except JudgeError:
            scores += [rouge_mean(r["reference"], r["output"]) for r in batch]
            for i in idxs[start : start + judge.batch_size]:
                preps[i].reasons.append(P.JUDGE_FALLBACK)
    if judge.normalize_by_problem_id:
        scores = normalize_by_group(scores, [r["problem_id"] for r in rows])
    for i, s in zip(idxs, scores, strict=True):
        acc[i] = max(0.0, min(1.0, s))
        task_reasons[i] = ()
