"""``onethinker serve`` over a registry alias: ``models:/logged@champion`` resolves to the logged Hugging Face
folder, and the server answers over HTTP on loopback (text only; counters in /health and /metrics)."""

from __future__ import annotations

import json
import threading
import urllib.request

from onethinker.config import MediaConfig


def test_champion_alias_is_served_over_the_openai_api(logged, tmp_path) -> None:
    from onethinker.serve import ChatModel, make_server, resolve_model

    folder = resolve_model("models:/logged@champion", tmp_path)
    assert (folder / "config.json").is_file()
    server, counters = make_server(ChatModel(folder, "logged", MediaConfig(), "cpu"), "127.0.0.1", 0, None)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        body = {
            "model": "logged",
            "messages": [{"role": "user", "content": "What colour is square 3?"}],
            "max_tokens": 6,
            "n": 2,
            "temperature": 0,
        }
        req = urllib.request.Request(
            f"{base}/v1/chat/completions", json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=60) as r:
            reply = json.loads(r.read())
        assert [c["index"] for c in reply["choices"]] == [0, 1]
        assert (
            reply["choices"][0]["message"]["content"] == reply["choices"][1]["message"]["content"]
        )  # greedy
        assert reply["usage"]["completion_tokens"] <= 12 and reply["model"] == "logged"
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as r:
            metrics = r.read().decode()
        assert "onethinker_serve_requests 1\n" in metrics and "onethinker_serve_completions 1\n" in metrics
        assert counters.snapshot()["repeated"] == 0
    finally:
        server.shutdown()
        server.server_close()
