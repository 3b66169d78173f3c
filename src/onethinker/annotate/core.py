"""Pure parts of the data engine: which records to annotate, the request, the choice, the SFT record, stats."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from onethinker.contract import MediaRoot, Record
from onethinker.contract.media import media_key
from onethinker.contract.prompts import strip_media_tokens

MIME = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".bmp": "image/bmp",
    ".mp4": "video/mp4",
    ".webm": "video/webm",
    ".avi": "video/x-msvideo",
    ".mkv": "video/x-matroska",
    ".mov": "video/quicktime",
}


def record_key(record: Record) -> tuple:
    """What pairs an RL record with its SFT record: the contract's content key (media paths, question)."""
    return record.content_key()


def records_to_annotate(rl: Sequence[Any], sft: Iterable[Record]) -> list[Any]:
    """RL records (or rooted RL records) without an SFT record, in file order (each content key once)."""
    have = {record_key(r) for r in sft}
    out, seen = [], set()
    for item in rl:
        k = record_key(getattr(item, "record", item))
        if k not in have and k not in seen:
            seen.add(k)
            out.append(item)
    return out


def record_seed(seed: int, record: Record) -> int:
    """The sampling seed sent for ``record``: stable across runs and independent of the record's position."""
    text = f"{seed}:{record.problem_id}:{record_key(record)}"
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % (2**31 - 1)


@dataclass
class MediaRef:
    """One media file of a request: how it is sent (``url``) and what identifies its content (``digest``)."""

    url: str
    digest: str
    kind: str  # "image" | "video"


def media_refs(
    record: Record, root: MediaRoot, mode: str, digests: dict[str, str] | None = None
) -> list[MediaRef]:
    """The record's media as request parts: data URLs, ``file://`` URLs or paths relative to the media root."""
    refs = []
    for m in record.media:
        path = root.resolve(m.path, record.kind)
        known = digests is not None and str(path) in digests
        raw = path.read_bytes() if mode == "data" or not known else None
        if raw is not None:
            digest = "sha256:" + hashlib.sha256(raw).hexdigest()
            if digests is not None:
                digests[str(path)] = digest
        else:
            digest = digests[str(path)]  # type: ignore[index]
        if mode == "data":
            mime = MIME.get(path.suffix.lower(), "application/octet-stream")
            url = f"data:{mime};base64,{base64.b64encode(raw).decode()}"  # type: ignore[arg-type]
        elif mode == "file":
            url = path.resolve().as_uri()
        else:
            url = media_key(m.path, record.kind)
        refs.append(MediaRef(url, digest, m.kind))
    return refs


def chat_body(
    prompt: str,
    refs: Sequence[MediaRef],
    *,
    model: str,
    n: int,
    temperature: float,
    top_p: float,
    max_tokens: int,
    seed: int,
    for_key: bool = False,
) -> dict[str, Any]:
    """An OpenAI chat-completions request: media parts first, then the prompt (as training does).

    ``for_key``: media are named by content hash instead of URL, so the cache key ignores where they live.
    """
    parts: list[dict[str, Any]] = []
    for ref in refs:
        url = ref.digest if for_key else ref.url
        tag = f"{ref.kind}_url"
        parts.append({"type": tag, tag: {"url": url}})
    parts.append({"type": "text", "text": strip_media_tokens(prompt)})
    return {
        "model": model,
        "messages": [{"role": "user", "content": parts}],
        "n": n,
        "temperature": temperature,
        "top_p": top_p,
        "max_tokens": max_tokens,
        "seed": seed,
    }


def response_texts(reply: Mapping[str, Any], k: int) -> list[str]:
    """The ``k`` response texts of a reply (missing or malformed choices are empty: they score 0)."""
    choices = reply.get("choices") if isinstance(reply, Mapping) else None
    texts = []
    for c in choices if isinstance(choices, list) else []:
        msg = c.get("message") if isinstance(c, Mapping) else None
        content = msg.get("content") if isinstance(msg, Mapping) else None
        texts.append(content if isinstance(content, str) else "")
    return (texts + [""] * k)[:k]


def choose(scores: Sequence[Mapping[str, float]], min_accuracy: float) -> int | None:
    """Index of the best accepted response: right format and accuracy >= ``min_accuracy``; the highest
    accuracy wins, then the highest overall reward, then the first. None when none is accepted."""
    best, best_rank = None, None
    for i, s in enumerate(scores):
        if s.get("format", 0.0) < 1.0 or s.get("accuracy", 0.0) < min_accuracy:
            continue
        rank = (s.get("accuracy", 0.0), s.get("overall", 0.0))
        if best_rank is None or rank > best_rank:
            best, best_rank = i, rank
    return best


def sft_record(record: Record, prompt: str, response: str, score: Mapping[str, float]) -> dict:
    """The release-layout SFT record for an accepted response (as ``prepare`` writes them, plus its reward):
    the user turn is the prompt with one placeholder per media file, media paths as in the RL record."""
    kinds = [m.kind for m in record.media]
    text = strip_media_tokens(prompt)
    user = "".join(f"<{k}>" for k in kinds) + text
    key = "videos" if record.data_type == "video" else "images"
    out: dict[str, Any] = {
        "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": response.strip()}],
        key: [media_key(m.path, record.kind) for m in record.media],
        "problem_id": record.problem_id or "",
        "problem_type": record.problem_type,
        "data_type": record.data_type,
        "reward_accuracy": round(float(score.get("accuracy", 0.0)), 6),
    }
    if float(score.get("accuracy", 0.0)) >= 1.0:
        out["answer"] = record.ground_truth  # exact: validation checks the assistant's answer against it
    return out


@dataclass
class TaskStats:
    """Per task: records asked, accepted, rejected (no response reached the threshold), failed requests."""

    n: int = 0
    accepted: int = 0
    rejected: int = 0
    failed: int = 0
    tokens: int = 0
    rewards: list[float] = field(default_factory=list)
    """Overall reward of every response scored."""

    def as_dict(self) -> dict[str, Any]:
        scored = self.accepted + self.rejected
        return {
            "n": self.n,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "failed": self.failed,
            "acceptance_rate": round(self.accepted / scored, 4) if scored else 0.0,
            "mean_reward": round(sum(self.rewards) / len(self.rewards), 4) if self.rewards else 0.0,
            "tokens": self.tokens,
        }
