"""Talking to an OpenAI-compatible chat endpoint: retries with backoff, a token/cost budget, a response cache.

Standard library only (``urllib``), so the stage needs nothing beyond the project's dependencies. Threads
share one :class:`Budget` and one :class:`ResponseCache`; each cache entry is written atomically as its
response arrives, so a killed run loses at most the requests in flight.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import os
import random
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


class RequestFailed(RuntimeError):
    """A request that cannot succeed (a 4xx other than 429, or retries exhausted): one-line message."""


class BudgetExceeded(RuntimeError):
    """The token or cost budget is spent: no further request is sent."""


def request_key(body: dict[str, Any]) -> str:
    """The cache key of a request: SHA-256 of its canonical JSON (sorted keys, no whitespace)."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def backoff_delay(attempt: int, base: float, cap: float, jitter: float, retry_after: float | None) -> float:
    """Seconds before retry ``attempt`` (0-based): ``base * 2**attempt * jitter`` capped at ``cap``; a server's
    Retry-After wins (also capped). ``jitter`` is a factor in [0.5, 1.5)."""
    if retry_after is not None:
        return min(max(retry_after, 0.0), cap)
    return min(base * (2**attempt) * jitter, cap)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(when - (time.time() if now is None else now), 0.0)


@dataclass
class Budget:
    """Tokens paid for so far against an optional token and cost limit (thread-safe)."""

    token_budget: int | None = None
    cost_per_1k_tokens: float = 0.0
    cost_budget: float | None = None
    tokens: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    @property
    def cost(self) -> float:
        return self.tokens / 1000 * self.cost_per_1k_tokens

    def add(self, tokens: int) -> None:
        with self._lock:
            self.tokens += int(tokens)

    def spent(self) -> str | None:
        """Why no more requests may be sent, or None."""
        if self.token_budget is not None and self.tokens >= self.token_budget:
            return f"token budget spent: {self.tokens} of {self.token_budget} tokens"
        if self.cost_budget is not None and self.cost >= self.cost_budget:
            return f"cost budget spent: {self.cost:.4f} of {self.cost_budget:.4f}"
        return None


class ResponseCache:
    """One JSON file per request key under ``root/<key[:2]>/<key>.json``, written atomically."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.path(key).read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def put(self, key: str, value: dict[str, Any]) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{key}.{os.getpid()}.{threading.get_ident()}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(value, f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def __len__(self) -> int:
        return sum(1 for _ in self.root.glob("*/*.json")) if self.root.exists() else 0


@dataclass
class Stats:
    """Counters shared by the worker threads."""

    requests: int = 0
    """HTTP requests sent (retries included)."""
    retries: int = 0
    cache_hits: int = 0
    failed: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def bump(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)


class ChatClient:
    """POST ``/chat/completions`` with retries (429, 5xx, timeouts, dropped connections) and a cache."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        timeout_s: float,
        max_retries: int,
        backoff_s: float,
        max_backoff_s: float,
        seed: int,
        cache: ResponseCache,
        budget: Budget,
        stats: Stats | None = None,
    ):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.api_key = api_key
        self.timeout_s, self.max_retries = timeout_s, max_retries
        self.backoff_s, self.max_backoff_s, self.seed = backoff_s, max_backoff_s, seed
        self.cache, self.budget = cache, budget
        self.stats = stats or Stats()

    def _post(self, body: bytes) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
            return json.loads(resp.read())

    def complete(self, body: dict[str, Any], key: str) -> tuple[dict[str, Any], bool]:
        """The server's reply to ``body`` and whether it came from the cache. Raises ``BudgetExceeded`` before
        sending when the budget is spent, ``RequestFailed`` when the request cannot succeed."""
        cached = self.cache.get(key)
        if cached is not None:
            self.stats.bump("cache_hits")
            return cached, True
        data = json.dumps(body).encode()
        rng = random.Random(f"{self.seed}:{key}")
        for attempt in range(self.max_retries + 1):
            spent = self.budget.spent()
            if spent is not None:
                raise BudgetExceeded(spent)
            self.stats.bump("requests")
            retry_after: float | None = None
            try:
                reply = self._post(data)
            except urllib.error.HTTPError as exc:
                detail = exc.read()[:200].decode(errors="replace").replace("\n", " ")
                if exc.code not in RETRY_STATUS:
                    raise RequestFailed(f"HTTP {exc.code} from {self.url}: {detail}") from None
                retry_after = parse_retry_after(exc.headers.get("Retry-After"))
                why = f"HTTP {exc.code}"
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                why = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
            except json.JSONDecodeError:
                why = "a reply that is not JSON"
            else:
                usage = reply.get("usage") or {}
                self.budget.add(int(usage.get("total_tokens") or 0))
                self.cache.put(key, reply)
                return reply, False
            if attempt == self.max_retries:
                self.stats.bump("failed")
                raise RequestFailed(f"{why} from {self.url} after {self.max_retries} retries")
            self.stats.bump("retries")
            jitter = rng.uniform(0.5, 1.5)
            time.sleep(backoff_delay(attempt, self.backoff_s, self.max_backoff_s, jitter, retry_after))
        raise AssertionError("unreachable")
