"""The optional HTTP judge: loopback server, fallback to ROUGE against a closed port, normalisation."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from reward_helpers import wrap

from onethinker.rewards import HttpJudge, compute_score
from onethinker.rewards.judge import normalize_by_group


def _items() -> list[dict]:
    gt = "a brown dog runs on the beach"
    answers = ["a brown dog runs on the beach", "a dog on a beach", "the cat sleeps", "dog"]
    items = [
        {
            "response": wrap(a),
            "ground_truth": gt,
            "problem_type": "open-ended",
            "data_type": "image",
            "problem": "What happens?",
            "problem_id": k // 2,
        }
        for k, a in enumerate(answers)
    ]
    items.append(
        {"response": wrap("B"), "ground_truth": "B", "problem_type": "multiple choice", "data_type": "image"}
    )
    return items


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_fallback_to_rouge_on_a_closed_port() -> None:
    items = _items()
    judge = HttpJudge(
        f"http://127.0.0.1:{_closed_port()}/v1",
        "judge",
        batch_size=3,
        timeout_s=2.0,
        normalize_by_problem_id=False,
    )
    with_judge, plain = compute_score(items, judge=judge), compute_score(items)
    for k in range(4):
        assert with_judge[k]["accuracy"] == pytest.approx(plain[k]["accuracy"])
        assert "judge_fallback" in with_judge[k]["reasons"]
    assert with_judge[4] == plain[4]  # other tasks untouched


class _Grades(BaseHTTPRequestHandler):
    grades: list[str] = []
    requests: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append(body)
        choices = [
            {"index": i, "text": f" {self.grades[(i + len(self.requests)) % len(self.grades)]}"}
            for i in range(len(body["prompt"]))
        ]
        data = json.dumps({"choices": choices[::-1]}).encode()  # any order: sorted by index
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Grades)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def test_judge_scores_in_batches(server: str) -> None:
    _Grades.grades, _Grades.requests = ["10"], []
    judge = HttpJudge(server, "judge", batch_size=3, normalize_by_problem_id=False)
    scores = compute_score(_items(), judge=judge)
    assert [s["accuracy"] for s in scores[:4]] == [1.0, 1.0, 1.0, 1.0]
    assert len(_Grades.requests) == 2 and [len(r["prompt"]) for r in _Grades.requests] == [3, 1]
    assert "What happens?" in _Grades.requests[0]["prompt"][0]
    assert all("judge_fallback" not in s["reasons"] for s in scores)


def test_unparseable_grades_fall_back(server: str) -> None:
    _Grades.grades, _Grades.requests = ["excellent"], []
    scores = compute_score(_items(), judge=HttpJudge(server, "judge", normalize_by_problem_id=False))
    assert all("judge_fallback" in s["reasons"] for s in scores[:4])


def test_normalize_by_group() -> None:
    # group 0: [0.2, 0.6] -> [0, 1]; group 1: equal scores -> 1 (as published)
    out = normalize_by_group([0.2, 0.6, 0.3, 0.3], [0, 0, 1, 1])
    assert out == pytest.approx([0.0, 1.0, 1.0, 1.0])


def test_judge_config_is_checked() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        HttpJudge("http://127.0.0.1:1/v1", "m", batch_size=0)
