"""Two ``register`` processes at once on the same SQLite store: the gate still sees every champion change.

Each process registers a version and gates it against the champion; a slowed-down gate (1.5 s between
reading the champion and writing the decision) makes the two overlap for sure. Without a lock both read the
same champion, both pass, and the last writer wins: the worse model can end up champion and one promotion is
lost from the champion history. With the registry lock the second gate runs after the first has written, so
the better model ends as champion and the history and the registry file hold every promotion.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import mlflow

from onethinker.registry import register_version
from onethinker.registry.core import CHAMPION, HISTORY_TAG, LOCK_SUFFIX
from onethinker.registry.gate import Scores

WORKER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from onethinker.registry import core
    from onethinker.registry.config import RegistryConfig
    from onethinker.registry.gate import Scores
    from onethinker.registry.config import GateConfig, FloorsConfig

    name, model_uri, mean, root, barrier, me = sys.argv[1:7]
    decide = core.decide

    def slow_decide(*args, **kwargs):  # a slow gate: the window between reading and writing the champion
        time.sleep(1.5)
        return decide(*args, **kwargs)

    core.decide = slow_decide
    cfg = RegistryConfig(
        name=name,
        registry_file=str(Path(root) / "registry.json"),
        gate=GateConfig(margin=0.02, task_tolerance=0.05, floors=FloorsConfig(mean_accuracy=0.3, format_rate=0.5)),
    )
    Path(barrier, me).touch()
    while len(list(Path(barrier).iterdir())) < 2:  # start together
        time.sleep(0.01)
    result = core.register_version(cfg, model_uri, Scores(float(mean), 0.9, {"ocr": float(mean)}), root=Path(root))
    print(json.dumps({"version": result.version, "decision": result.decision.decision}))
    """
)


def test_concurrent_registers_keep_the_best_champion_and_every_promotion(
    make_cfg, logged, tmp_path, mlflow_store
) -> None:
    cfg = make_cfg()
    first = register_version(cfg, logged.model_uri, Scores(0.50, 0.9, {"ocr": 0.50}), root=tmp_path)
    assert first.promoted
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WORKER,
                cfg.name,
                logged.model_uri,
                mean,
                str(tmp_path),
                str(barrier),
                who,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for who, mean in (("worse", "0.60"), ("better", "0.70"))
    ]
    t0 = time.monotonic()
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    worse, better = (json.loads(out.strip().splitlines()[-1]) for out, _ in outs)

    client = mlflow.MlflowClient()
    rm = client.get_registered_model(cfg.name)
    history = rm.tags[HISTORY_TAG].split(",")
    assert str(rm.aliases[CHAMPION]) == better["version"], (worse, better, history)
    promoted = [first.version] + [r["version"] for r in (worse, better) if r["decision"] == "promoted"]
    assert sorted(history, key=int) == sorted(promoted, key=int), (history, worse, better)
    assert history[-1] == better["version"]
    entries = json.loads(Path(cfg.registry_file).read_text())["history"]
    assert sorted(e["version"] for e in entries) == sorted(
        int(v) for v in (first.version, worse["version"], better["version"])
    )
    # the lock is gone once both are done
    assert not client.search_registered_models(f"name = '{cfg.name}{LOCK_SUFFIX}'")
    assert time.monotonic() - t0 < 300
