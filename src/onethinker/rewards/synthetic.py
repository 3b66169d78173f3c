"""Synthetic rollout batches over every task, for the reward benchmark and tests.

``make_items(n, seed)`` builds ``n`` reward items in rollout groups (``group_size`` responses to the
same prompt and ground truth, as GRPO produces them), cycling over every (problem_type, data_type)
pair of the task table. Each response is drawn as valid (the right answer, or a small jitter of it),
near-miss (a wrong letter or number, a shifted box, missing frames, spaced tags) or malformed
(no tags, prose instead of JSON, truncated JSON, wrong shapes, empty answers).
"""

from __future__ import annotations

import json
import random

from onethinker.contract.tasks import TASK_PAIRS

_WORDS = [
    "the",
    "a",
    "of",
    "and",
    "to",
    "in",
    "is",
    "was",
    "for",
    "on",
    "that",
    "with",
    "as",
    "by",
    "at",
    "from",
    "this",
    "be",
    "are",
    "it",
    "an",
    "which",
    "or",
    "model",
    "image",
    "video",
    "person",
    "car",
    "dog",
    "ball",
    "table",
    "left",
    "right",
    "red",
    "blue",
    "green",
    "small",
    "large",
    "top",
    "bottom",
    "near",
    "far",
    "first",
    "second",
    "scene",
    "frame",
    "object",
    "moves",
    "holding",
    "walking",
    "running",
    "standing",
    "sitting",
    "open",
    "closed",
    "two",
    "three",
    "four",
]
_MATH_POOL = (
    ("12", ["12", "12.0", "13", "\\frac{24}{2}", "twelve"]),
    ("\\frac{3}{4}", ["\\frac{3}{4}", "0.75", "\\frac{4}{3}", "3/4", "0.7"]),
    ("2\\sqrt{3}", ["2\\sqrt{3}", "\\sqrt{12}", "3\\sqrt{2}", "2\\sqrt{3}", "3.46"]),
    ("45", ["45", "45^\\circ", "44", "45", "135"]),
    ("x=5", ["5", "x=5", "x=6", "5", "-5"]),
    ("\\pi", ["\\pi", "3.14159", "2\\pi", "\\pi", "pi"]),
)


def _sentence(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(lo, hi)))


def _wrap(rng: random.Random, answer: str, style: str) -> str:
    think = _sentence(rng, 20, 80)
    if style == "valid":
        return f"<think>{think}</think>\n<answer>{answer}</answer>"
    if style == "spaced":
        return f"< think >\n{think}\n< / think >\n\n< answer > {answer} < / answer >\n"
    if style == "no_tags":
        return f"{think} So the answer is {answer}."
    if style == "no_think":
        return f"<answer>{answer}</answer>"
    if style == "empty":
        return f"<think>{think}</think><answer></answer>"
    if style == "unclosed":
        return f"<think>{think}</think><answer>{answer}"
    return f"<think>{think}</think><answer>{answer}</answer> trailing text"


def _jitter(rng: random.Random, v: float, scale: float) -> float:
    return round(v + rng.gauss(0.0, scale), 1)


def _box(rng: random.Random, w: int = 640, h: int = 480) -> list[float]:
    x1, y1 = rng.randint(0, w - 100), rng.randint(0, h - 100)
    return [x1, y1, rng.randint(x1 + 20, w), rng.randint(y1 + 20, h)]


def _shift(rng: random.Random, box: list[float], scale: float) -> list[float]:
    return [_jitter(rng, v, scale) for v in box]


def _points(rng: random.Random, box: list[float]) -> list[list[int]]:
    return [[rng.randint(int(box[0]), int(box[2])), rng.randint(int(box[1]), int(box[3]))] for _ in range(3)]


def _perturb_words(rng: random.Random, text: str, p: float) -> str:
    out = []
    for w in text.split():
        r = rng.random()
        if r < p / 2:
            continue
        out.append(rng.choice(_WORDS) if r < p else w)
    return " ".join(out)


def _ground_truth(rng: random.Random, problem_type: str, data_type: str) -> object:
    """The ground-truth value (a string or a JSON-able object) for one prompt."""
    if problem_type == "multiple choice":
        return rng.choice("ABCDE")
    if problem_type == "numerical":
        return rng.choice([str(rng.randint(0, 50)), f"{rng.uniform(0, 100):.1f}", "1,200"])
    if problem_type == "regression":
        return f"{rng.uniform(0.5, 50):.2f}"
    if problem_type == "OCR":
        return _sentence(rng, 4, 15)
    if problem_type == "open-ended":
        return _sentence(rng, 12, 40)
    if problem_type == "math":
        return rng.randrange(len(_MATH_POOL))
    if problem_type == "temporal grounding":
        s = rng.randint(0, 60)
        return {"time": [s, s + rng.randint(3, 30)]}
    if problem_type == "spatial grounding":
        return {"boxes": _box(rng)}
    if problem_type == "spatial-temporal grounding":
        s = rng.randint(0, 20)
        e = s + rng.randint(3, 10)
        return {"time": [s, e], "boxes": {str(t): _box(rng) for t in range(s, e + 1)}}
    if problem_type == "tracking":
        return {"boxes": {str(t): _box(rng) for t in range(1, rng.randint(6, 16) + 1)}}
    box = _box(rng)
    gt = {
        "boxes": box,
        "positive_points": _points(rng, box),
        "negative_points": _points(rng, [0, 0, 640, 480]),
    }
    if data_type == "video":
        gt["time"] = round(rng.uniform(0, 30), 1)
    return gt


def _answer(rng: random.Random, problem_type: str, gt: object, kind: str) -> str:  # noqa: C901 - one branch per task
    """The answer text: kind is "valid" (right or jittered), "near" (wrong but well-formed) or "bad"."""
    if problem_type == "multiple choice":
        if kind == "valid":
            return str(gt)
        return (
            rng.choice([c for c in "ABCDE" if c != gt])
            if kind == "near"
            else rng.choice(["(B)", "B.", "b", "E) foo"])
        )
    if problem_type == "numerical":
        if kind == "valid":
            return str(gt)
        return str(rng.randint(0, 60)) if kind == "near" else rng.choice(["about ten", "", "1e", "N/A"])
    if problem_type == "regression":
        if kind == "bad":
            return rng.choice(["unknown", "", "approx. 3m"])
        return f"{float(str(gt)) * rng.uniform(0.9, 1.1) if kind == 'valid' else float(str(gt)) * 2:.2f}"
    if problem_type in ("OCR", "open-ended"):
        if kind == "bad":
            return _sentence(rng, 0, 5)
        return _perturb_words(rng, str(gt), 0.1 if kind == "valid" else 0.5)
    if problem_type == "math":
        gt_text, answers = _MATH_POOL[int(gt)]  # type: ignore[call-overload]
        if kind == "bad":
            return rng.choice(["I cannot solve this", "", "\\frac{", "x"])
        return rng.choice(answers[:2] if kind == "valid" else answers[2:])
    obj = json.loads(json.dumps(gt))  # a copy
    if kind == "bad":
        text = json.dumps(obj)
        return rng.choice(
            [
                text[: len(text) // 2],
                "the object is on the left",
                "[1, 2, 3]",
                json.dumps({"answer": "left"}),
                text.replace("[", "(").replace("]", ")"),
            ]
        )
    scale = 5.0 if kind == "valid" else 60.0
    if "time" in obj and isinstance(obj["time"], list):
        obj["time"] = [_jitter(rng, v, 1.0 if kind == "valid" else 8.0) for v in obj["time"]]
    elif "time" in obj:
        obj["time"] = _jitter(rng, obj["time"], 0.5 if kind == "valid" else 5.0)
    if isinstance(obj.get("boxes"), dict):
        frames = list(obj["boxes"])
        if kind == "near":  # drop some frames
            frames = frames[: max(1, len(frames) // 2)]
        obj["boxes"] = {k: _shift(rng, obj["boxes"][k], scale) for k in frames}
    elif "boxes" in obj:
        obj["boxes"] = _shift(rng, obj["boxes"], scale)
    for key in ("positive_points", "negative_points"):
        if key in obj:
            obj[key] = [[_jitter(rng, v, 10.0 if kind == "valid" else 80.0) for v in p] for p in obj[key]]
            if kind == "near" and rng.random() < 0.3:
                obj[key] = obj[key][:2]
    return json.dumps(obj)


def make_items(n: int, seed: int = 0, group_size: int = 8) -> list[dict]:
    """``n`` reward items over every task pair, ``group_size`` responses per prompt."""
    rng = random.Random(seed)
    items: list[dict] = []
    pid = 0
    while len(items) < n:
        pair = TASK_PAIRS[pid % len(TASK_PAIRS)]
        pt, dt = pair.problem_type, pair.data_type
        gt = _ground_truth(rng, pt, dt)
        gt_text = _MATH_POOL[gt][0] if pt == "math" else (gt if isinstance(gt, str) else json.dumps(gt))  # type: ignore[index]
        for _ in range(min(group_size, n - len(items))):
            r = rng.random()
            kind = "valid" if r < 0.5 else ("near" if r < 0.8 else "bad")
            style = rng.choices(
                ["valid", "spaced", "no_tags", "no_think", "empty", "unclosed", "trailing"],
                weights=[70, 10, 6, 4, 3, 3, 4],
            )[0]
            items.append(
                {
                    "response": _wrap(rng, _answer(rng, pt, gt, kind), style),
                    "ground_truth": f"<answer>{gt_text}</answer>",
                    "problem_type": pt,
                    "data_type": dt,
                    "problem": f"question {pid}",
                    "problem_id": pid,
                }
            )
        pid += 1
    return items
