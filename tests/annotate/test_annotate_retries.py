"""Against a real HTTP server (stdlib, in this test) that answers 429 and 500 on a schedule: the stage
retries (counted here and at the server), honours Retry-After, and stops cleanly on its token budget with
what it had done written and a one-line message (exit 3)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from annotate_helpers import workdir

ONETHINKER = [sys.executable, "-m", "onethinker.cli"]


class Scheduled(BaseHTTPRequestHandler):
    """Request 3i+1 -> 429 (Retry-After: 0), 3i+2 -> 500, 3i+3 -> a reply of 100 tokens."""

    protocol_version = "HTTP/1.1"
    count = 0
    statuses: list[int] = []
    lock = threading.Lock()

    def log_message(self, *args) -> None:
        return

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with Scheduled.lock:
            Scheduled.count += 1
            phase = Scheduled.count % 3
        status = {1: 429, 2: 500, 0: 200}[phase]
        Scheduled.statuses.append(status)
        if status == 200:
            text = "<think>the count</think><answer>2</answer>"
            payload = {
                "choices": [
                    {"index": i, "message": {"role": "assistant", "content": text}} for i in range(body["n"])
                ],
                "usage": {"prompt_tokens": 80, "completion_tokens": 20, "total_tokens": 100},
            }
        else:
            payload = {"error": {"message": "busy", "code": status}}
        data = json.dumps(payload).encode()
        self.send_response(status)
        if status == 429:
            self.send_header("Retry-After", "0")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def test_retries_on_429_and_500_then_the_token_budget_stops_the_stage(half_annotated_data, tmp_path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Scheduled)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/v1"
        work = workdir(
            half_annotated_data,
            tmp_path,
            {
                "base_url": base,
                "k": 2,
                "min_accuracy": 1.0,
                "concurrency": 1,
                "backoff_s": 0.01,
                "max_backoff_s": 0.05,
                "max_retries": 3,
                "token_budget": 350,
                "media": "relative",
            },
        )
        out = subprocess.run([*ONETHINKER, "annotate"], cwd=work, capture_output=True, text=True, timeout=300)
        # 3 replies (300 tokens) < 350, so a 4th record is asked (400 tokens); then the budget stops the stage
        assert out.returncode == 3, out.stderr[-2000:]
        last = out.stderr.strip().splitlines()[-1]
        assert last.startswith("stopped: token budget spent: 400 of 350 tokens"), last
        metrics = json.loads((work / "metrics/annotate.json").read_text())
        assert metrics["complete"] is False and metrics["asked"] == 4 and metrics["records"] == 16
        assert metrics["requests"] == 12 == Scheduled.count and metrics["retries"] == 8
        assert Scheduled.statuses.count(429) == 4 and Scheduled.statuses.count(500) == 4
        assert metrics["tokens"] == 400 and metrics["accepted"] + metrics["rejected"] == 4
        assert sum(t["n"] for t in metrics["tasks"].values()) == 4
        assert len(list((work / "cache/annotate").rglob("*.json"))) == 4  # every paid reply is kept

        # A rerun with a larger budget pays only for the 12 records left, each after its 429 and 500.
        before = Scheduled.count
        out = subprocess.run(
            [*ONETHINKER, "annotate", "-S", "annotate.token_budget=100000", "-S", "annotate.log_mlflow=true"],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        metrics = json.loads((work / "metrics/annotate.json").read_text())
        assert metrics["complete"] is True and metrics["cache_hits"] == 4 and metrics["asked"] == 16
        assert Scheduled.count - before == 12 * 3 == metrics["requests"]

        # MLflow (the working folder's own SQLite store): per-task figures and the sample table
        import mlflow

        client = mlflow.MlflowClient(f"sqlite:///{work / 'mlflow' / 'mlflow.db'}")
        run = client.get_run(metrics["mlflow_run_id"])
        slug = next(iter(metrics["tasks"]))
        assert run.data.metrics[f"acceptance_rate/{slug}"] == metrics["tasks"][slug]["acceptance_rate"]
        assert run.data.metrics["requests"] == 36 and run.data.metrics["retries"] == 24
        table = json.loads(
            Path(
                client.download_artifacts(run.info.run_id, "annotate_samples.json", str(tmp_path))
            ).read_text()
        )
        accepted = metrics["accepted"]  # 16 records x 2 responses; one accepted response per accepted record
        assert len(table["data"]) == min(20, accepted) + min(20, 32 - accepted)
    finally:
        server.shutdown()
        server.server_close()


class Refuses(BaseHTTPRequestHandler):
    """400 for every request (a client error is never retried)."""

    protocol_version = "HTTP/1.1"
    count = 0

    def log_message(self, *args) -> None:
        return

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        Refuses.count += 1
        data = b'{"error": {"message": "bad model"}}'
        self.send_response(400)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def test_a_client_error_fails_the_record_without_retries_or_cache(tmp_path) -> None:
    import pytest

    from onethinker.annotate.client import Budget, ChatClient, RequestFailed, ResponseCache

    server = ThreadingHTTPServer(("127.0.0.1", 0), Refuses)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = ChatClient(
            f"http://127.0.0.1:{server.server_address[1]}/v1",
            "k",
            timeout_s=10,
            max_retries=3,
            backoff_s=0.01,
            max_backoff_s=0.01,
            seed=0,
            cache=ResponseCache(tmp_path / "c"),
            budget=Budget(),
        )
        with pytest.raises(RequestFailed, match="HTTP 400 from .*bad model"):
            client.complete({"model": "x"}, "ab" * 32)
        assert Refuses.count == 1 and client.stats.retries == 0 and len(client.cache) == 0
    finally:
        server.shutdown()
        server.server_close()
