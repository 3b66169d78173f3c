"""The ``annotate`` section of params.yaml: the chain-of-thought data engine (rejection sampling)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from onethinker.config import require


@dataclass(frozen=True)
class AnnotateConfig:
    """Ask an OpenAI-compatible chat endpoint for ``k`` responses per RL record that has no SFT record, score
    them with the project's rewards and keep the best one reaching ``min_accuracy`` as a new SFT record.

    Off by default: the synthetic world already writes exact chain-of-thought, so the stage only writes an
    empty result and a metrics file saying it is disabled.
    """

    enabled: bool = False
    base_url: str = "http://127.0.0.1:8000/v1"
    """The server's OpenAI API root (``vllm serve``, SGLang, ``onethinker serve``), ending in ``/v1``."""
    model: str = "onethinker"
    """The ``model`` field of each request (the server's served model name)."""
    api_key_env: str | None = "ONETHINKER_ANNOTATE_API_KEY"
    """NAME of the environment variable holding the API key (never the key itself); unset or empty: no key."""
    k: int = 4
    """Responses asked per record (one request with ``n = k``)."""
    min_accuracy: float = 1.0
    """A response is accepted when its reward accuracy is at least this and its format is right."""
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 1024
    """Per response."""
    seed: int = 0
    """Sent with each request (per-record seeds derive from it) and seeds the retry jitter."""
    concurrency: int = 8
    """Requests in flight at once."""
    max_retries: int = 5
    """Retries of one request on 429, 5xx, a timeout or a dropped connection (then the record fails)."""
    backoff_s: float = 1.0
    """First retry delay; doubles per retry, times a seeded jitter in [0.5, 1.5); a Retry-After header wins."""
    max_backoff_s: float = 60.0
    request_timeout_s: float = 300.0
    token_budget: int | None = None
    """Stop once this many tokens (prompt + completion, as the server reports) were paid for; None: no limit."""
    cost_per_1k_tokens: float = 0.0
    cost_budget: float | None = None
    """Stop once tokens / 1000 * cost_per_1k_tokens reaches this; None: no limit."""
    media: Literal["data", "file", "relative"] = "data"
    """How media are sent: ``data`` (base64 data URLs; any server), ``file`` (``file://`` absolute paths; vLLM
    with ``--allowed-local-media-path``, ``onethinker serve``), ``relative`` (paths under the media root;
    ``onethinker serve --media-root``)."""
    max_records: int | None = None
    """Annotate at most this many records (in file order); None: all."""
    cache_dir: str = "cache/annotate"
    """One JSON file per answered request, keyed by the request's hash (kept outside DVC outputs)."""
    out_dir: str = "annotated"
    """Release-layout SFT files (``sft_annotated_image.json``, ``sft_annotated_video.json``) and a manifest."""
    metrics_file: str = "metrics/annotate.json"
    sample_table_size: int = 20
    """Accepted and rejected responses each logged to MLflow's sample table."""
    log_mlflow: bool = True

    def validate(self, key: str) -> None:
        require(self.k >= 1, f"{key}.k", "must be >= 1")
        require(0.0 <= self.min_accuracy <= 1.0, f"{key}.min_accuracy", "must be in [0, 1]")
        require(self.concurrency >= 1, f"{key}.concurrency", "must be >= 1")
        require(self.max_retries >= 0, f"{key}.max_retries", "must be >= 0")
        require(self.backoff_s >= 0, f"{key}.backoff_s", "must be >= 0")
        require(self.max_backoff_s >= self.backoff_s, f"{key}.max_backoff_s", "must be >= backoff_s")
        require(self.request_timeout_s > 0, f"{key}.request_timeout_s", "must be positive")
        require(self.max_tokens >= 1, f"{key}.max_tokens", "must be >= 1")
        require(self.temperature >= 0, f"{key}.temperature", "must be >= 0")
        require(self.token_budget is None or self.token_budget >= 1, f"{key}.token_budget", "must be >= 1")
        require(self.cost_per_1k_tokens >= 0, f"{key}.cost_per_1k_tokens", "must be >= 0")
        require(
            self.cost_budget is None or self.cost_per_1k_tokens > 0,
            f"{key}.cost_budget",
            "needs cost_per_1k_tokens > 0 (otherwise nothing is ever spent)",
        )
        require(self.max_records is None or self.max_records >= 1, f"{key}.max_records", "must be >= 1")
        require(self.sample_table_size >= 0, f"{key}.sample_table_size", "must be >= 0")
        require(
            not self.enabled or self.base_url.startswith(("http://", "https://")),
            f"{key}.base_url",
            f"must be an http(s) URL, got {self.base_url!r}",
        )
        require(
            self.api_key_env is None
            or (self.api_key_env.replace("_", "").isalnum() and len(self.api_key_env) < 100),
            f"{key}.api_key_env",
            "must be the NAME of an environment variable (letters, digits, _), never the key itself",
        )
