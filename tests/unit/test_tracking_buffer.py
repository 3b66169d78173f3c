"""The tracking buffer's sender does not sit in MLflow's hidden HTTP retries during an outage.

A server that answers the buffer's ``/health`` probe but fails every REST call (HTTP 503, one of the codes MLflow
retries with exponential backoff, for minutes by default) stands for a server that went away between the probe
and the call. The buffer must call that an outage at once (its own warning, its own retry), and keep MLflow's
settings for every other thread.
"""

from __future__ import annotations

import http.server
import logging
import threading
import time
from collections.abc import Iterator

import pytest

from onethinker.tracking import buffer


class _HalfUp(http.server.BaseHTTPRequestHandler):
    calls = 0

    def _answer(self) -> None:
        if self.path.startswith("/health"):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"OK")
            return
        type(self).calls += 1
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"error_code": "TEMPORARILY_UNAVAILABLE", "message": "down"}')

    do_GET = do_POST = _answer

    def log_message(self, *args) -> None:  # keep the test output clean
        pass


@pytest.fixture
def half_up() -> Iterator[str]:
    _HalfUp.calls = 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HalfUp)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_fail_fast_applies_to_the_calling_thread_only() -> None:
    import mlflow.utils.rest_utils as rest_utils

    default = rest_utils.MLFLOW_HTTP_REQUEST_MAX_RETRIES.get()
    assert default > 0
    inside, other = [], []
    entered, checked = threading.Event(), threading.Event()

    def sender() -> None:
        with buffer.fail_fast(timeout_s=7):
            inside.append(
                (
                    rest_utils.MLFLOW_HTTP_REQUEST_MAX_RETRIES.get(),
                    rest_utils.MLFLOW_HTTP_REQUEST_TIMEOUT.get(),
                )
            )
            entered.set()
            checked.wait(10)

    t = threading.Thread(target=sender)
    t.start()
    assert entered.wait(10)
    other.append(rest_utils.MLFLOW_HTTP_REQUEST_MAX_RETRIES.get())  # the training loop's thread, meanwhile
    checked.set()
    t.join()
    assert inside == [(0, 7)]
    assert other == [default]
    assert rest_utils.MLFLOW_HTTP_REQUEST_MAX_RETRIES.get() == default  # and after the block


def test_a_failing_call_after_a_good_probe_is_reported_as_an_outage_at_once(
    half_up: str, tmp_path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(buffer.REPLAY_ENV, "5")  # the detached replayer close() starts gives up soon
    buf = buffer.RunBuffer("0" * 32, half_up, tmp_path / "spool", retry_s=30.0)
    with caplog.at_level(logging.WARNING, logger="onethinker.tracking"):
        buf.add({"op": "metrics", "metrics": {"train/loss": 1.0}, "step": 1, "ts": 0})
        deadline = time.monotonic() + 20  # MLflow's own retries of a 503 take minutes
        while "unreachable" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "unreachable" in caplog.text, caplog.text
        assert _HalfUp.calls == 1  # one try, no hidden retries
        assert buf.pending() == 1  # nothing dropped: it waits for the buffer's own retry
        spooled = buf.close("FINISHED", flush_timeout_s=0)
    assert spooled is not None
    lines = spooled.read_text().splitlines()
    assert len(lines) == 3  # header, the metrics, the end of the run
    for p in spooled.parent.iterdir():  # the detached replayer must not outlive the test on a dead port
        p.unlink()
