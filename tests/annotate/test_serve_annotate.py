"""End to end with real processes on loopback: a short SFT of the tiny model, ``onethinker serve`` over it,
``onethinker annotate`` against it killed with SIGKILL mid-run and rerun (every request counted at the
server), the written files validated and trained on with ``onethinker sft``; and the server's own checks
(OpenAI reply shape, n, usage, media confined to the media root)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from annotate_helpers import workdir

ONETHINKER = [sys.executable, "-m", "onethinker.cli"]
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}
"""The processes run torch on one thread: on a loaded 2-core machine two spinning threads per process make the
tiny model's steps tens of times slower (measured: 10 SFT steps 39 s on torch's default threads, 1.4 s on one)."""
MIN_ACCURACY = 1.0
CONCURRENCY = 1
N_RECORDS = 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def _post(url: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _wait(
    pred, what: str, timeout: float = 120.0, proc: subprocess.Popen | None = None, poll_s: float = 0.2
) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            if pred():
                return
        except (urllib.error.URLError, ConnectionError):
            pass
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: process exited {proc.returncode}: {proc.stderr.read()[-2000:]}")
        time.sleep(poll_s)
    raise AssertionError(f"timed out waiting for {what}")


TASKS = ("multiple choice", "numerical")
"""Short answers: the teacher memorises the image records of these tasks (4 records) in a few dozen steps."""


@pytest.fixture(scope="module")
def served(tiny_data, tiny_base, tmp_path_factory):
    """A teacher (the tiny model SFT-trained on 4 image records until it knows them) served on a free loopback
    port, and a working folder whose prepared data lacks those 4 SFT records (what annotate asks for)."""
    import torch

    from onethinker.config import MediaConfig
    from onethinker.contract import PreparedData, read_records, write_records
    from onethinker.sft.config import SFTConfig
    from onethinker.sft.trainer import export, train_sft

    work = tmp_path_factory.mktemp("serve")
    port = _free_port()
    workdir(
        tiny_data["root"],
        work,
        {
            "base_url": f"http://127.0.0.1:{port}/v1",
            "model": "teacher",
            "k": 2,
            "min_accuracy": MIN_ACCURACY,
            "concurrency": CONCURRENCY,
            "temperature": 0.5,
            "max_tokens": 64,
            "media": "relative",
            "backoff_s": 0.05,
            "max_backoff_s": 0.2,
        },
        sft={
            "base_model_dir": "models/base",
            "batch_size": 4,
            "cutoff_len": 512,
            "heldout_per_task": 0,
            "log_mlflow": False,
            "save_every": 1000,
            "cpu_threads": 1,
        },
    )
    shutil.copytree(tiny_base, work / "models" / "base")
    taught = [
        x
        for x in PreparedData.load(work / "data").rooted("sft")
        if x.record.problem_type in TASKS and x.record.data_type == "image"
    ]
    assert len(taught) == N_RECORDS
    sft_image = work / "data" / "train" / "sft_image.json"
    drop = {x.record.where.index for x in taught}
    write_records(sft_image, [r for i, r in enumerate(read_records(sft_image)) if i not in drop])
    cfg = SFTConfig(
        base_model_dir=str(tiny_base),
        output_dir=str(work / "teacher" / "model"),
        checkpoint_dir=str(work / "teacher" / "ckpt"),
        max_steps=40,
        batch_size=4,
        lr=3e-3,
        warmup_ratio=0.0,
        cutoff_len=512,
        save_every=1000,
        heldout_per_task=0,
        cpu_threads=1,
        log_mlflow=False,
        freeze_vision_tower=False,
        freeze_projector=False,
    )
    threads = torch.get_num_threads()
    try:
        model, processor, result = train_sft(cfg, taught, MediaConfig(), "compact", progress=False)
        export(model, processor, cfg.output_dir, result)
    finally:
        torch.set_num_threads(threads)  # the test process's other tests keep torch's default
    del model
    proc = subprocess.Popen(
        [
            *ONETHINKER,
            "serve",
            "teacher/model",
            "--served-model-name",
            "teacher",
            "--port",
            str(port),
            "--media-root",
            "data/media",
        ],
        cwd=work,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ONE_THREAD,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: _get(f"{base}/health")["status"] == "ok", "the server", proc=proc)
        yield work, base, proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_server_answers_the_openai_api_and_confines_media(served) -> None:
    work, base, _ = served
    assert _get(f"{base}/v1/models")["data"][0]["id"] == "teacher"
    image = next((work / "data" / "media").rglob("*.png")).relative_to(work / "data" / "media").as_posix()
    body = {
        "model": "teacher",
        "n": 3,
        "max_tokens": 8,
        "temperature": 1.0,
        "seed": 5,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": image}},
                    {"type": "text", "text": "What is shown?"},
                ],
            }
        ],
    }
    status, reply = _post(f"{base}/v1/chat/completions", body)
    assert status == 200 and reply["object"] == "chat.completion" and len(reply["choices"]) == 3
    usage = reply["usage"]
    assert (
        usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
        and usage["prompt_tokens"] > 0
    )
    assert 0 < usage["completion_tokens"] <= 3 * 8
    assert (
        _post(f"{base}/v1/chat/completions", body)[1]["choices"] == reply["choices"]
    )  # same seed, same text
    (work / "outside.png").write_bytes((work / "data" / "media" / image).read_bytes())
    for url in (
        "../outside.png",
        str(work / "outside.png"),
        (work / "outside.png").as_uri(),
        "http://x/y.png",
    ):
        bad = {
            **body,
            "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}],
        }
        status, err = _post(f"{base}/v1/chat/completions", bad)
        assert status == 400 and "\n" not in err["error"]["message"], (url, err)
    health = _get(f"{base}/health")
    assert health["errors"] >= 4 and health["completions"] >= 2


def test_annotate_killed_and_rerun_pays_once_then_validates_and_trains(served) -> None:
    work, base, server = served
    before = _get(f"{base}/health")
    proc = subprocess.Popen(
        [*ONETHINKER, "annotate"], cwd=work, stderr=subprocess.PIPE, text=True, env=ONE_THREAD
    )
    cache = work / "cache" / "annotate"
    _wait(lambda: len(list(cache.glob("*/*.json"))) >= 2, "2 cached answers", proc=proc, poll_s=0.02)
    server.send_signal(signal.SIGSTOP)  # frozen: however fast it answers, no record completes from here on
    try:
        proc.kill()  # SIGKILL: no cleanup runs
        proc.wait()
    finally:
        server.send_signal(signal.SIGCONT)
    _wait(lambda: _get(f"{base}/health")["in_flight"] == 0, "the server to finish orphaned requests")
    cached = len(list(cache.glob("*/*.json")))
    at_kill = _get(f"{base}/health")
    sent_first = at_kill["requests"] - before["requests"]
    assert 2 <= cached < N_RECORDS and cached <= sent_first <= cached + CONCURRENCY

    out = subprocess.run(
        [*ONETHINKER, "annotate"], cwd=work, capture_output=True, text=True, timeout=600, env=ONE_THREAD
    )
    assert out.returncode == 0, out.stderr[-3000:]
    after = _get(f"{base}/health")
    metrics = json.loads((work / "metrics" / "annotate.json").read_text())
    # the rerun asked exactly the records not cached, once each; only replies lost in flight were asked again
    assert after["requests"] - at_kill["requests"] == N_RECORDS - cached == metrics["requests"]
    assert metrics["cache_hits"] == cached and metrics["retries"] == 0
    assert after["repeated"] - before["repeated"] == sent_first - cached <= CONCURRENCY

    assert metrics["accepted"] + metrics["rejected"] == N_RECORDS and metrics["failed"] == 0
    assert sum(t["rejected"] for t in metrics["tasks"].values()) == metrics["rejected"]
    assert metrics["accepted"] >= 1, metrics["tasks"]
    paths = [f["path"] for f in metrics["files"]]
    records = [r for f in paths for r in json.loads((work / f).read_text())]
    assert len(records) == metrics["accepted"]
    assert all(r["reward_accuracy"] >= MIN_ACCURACY for r in records)
    for f in paths:
        assert str(work) not in (work / f).read_text()  # no absolute paths
        v = subprocess.run(
            [*ONETHINKER, "validate", f, "--media-root", "data/media", "--kind", "sft"],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=300,
            env=ONE_THREAD,
        )
        assert v.returncode == 0, v.stdout + v.stderr

    # SFT on the generated files alone (the prepared SFT files emptied): two steps train and export
    for name in ("sft_image.json", "sft_video.json"):
        (work / "data" / "train" / name).write_text("[]\n")
    out = subprocess.run(
        [
            *ONETHINKER,
            "sft",
            "-S",
            "sft.max_steps=2",
            "-S",
            "sft.output_dir=models/sft2",
            "-S",
            "sft.checkpoint_dir=checkpoints/sft2",
        ],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=600,
        env=ONE_THREAD,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert (work / "models" / "sft2" / "config.json").is_file() and "sft: 2 steps" in out.stdout
