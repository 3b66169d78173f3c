"""Two gloo processes, each with half of a global batch, end with the EMA state of one process on the whole batch."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from onethinker.rl.advantages import (
    AdvantageConfig,
    EMAState,
    allreduce_task_moments,
    compute_advantages,
)

MC, NUM, SEG_IMG, SEG_VID = "multiple choice", "numerical", "segmentation/image", "segmentation/video"

# Two steps; each rank holds whole groups (4 responses each) and a different task mix.
# Step 2 gives rank 1 a task it has never seen (segmentation/video) and rank 0 none of MC, so each rank must
# learn the other's updates from the all-reduce. Scores are dyadic, so sums are exact in any order and the
# states must match bit for bit.
STEPS: list[dict[int, tuple[list[float], list[int], list[str]]]] = [
    {
        0: ([1, 0, 0, 1, 0.5, 0.25, 0, 0], [0, 0, 0, 0, 1, 1, 1, 1], [MC] * 4 + [SEG_IMG] * 4),
        1: ([1, 1, 1, 0, 3, 1, 2, 2], [2, 2, 2, 2, 3, 3, 3, 3], [MC] * 4 + [NUM] * 4),
    },
    {
        0: ([0, 4, 2, 2, 0.75, 0.75, 0.5, 0], [4, 4, 4, 4, 5, 5, 5, 5], [NUM] * 4 + [SEG_IMG] * 4),
        1: ([0, 0, 0, 1, 0.125, 0.5, 0.5, 0.25], [6, 6, 6, 6, 7, 7, 7, 7], [MC] * 4 + [SEG_VID] * 4),
    },
]
CONFIG = AdvantageConfig(estimator="ema_grpo", ema_decay=0.9)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        state = EMAState()
        advs = []
        # step 1 passes the function, step 2 a process group: both forms of `reduce`
        reducers = [allreduce_task_moments, dist.group.WORLD]
        for step, reduce in zip(STEPS, reducers, strict=True):
            scores, groups, tasks = step[rank]
            adv, state, _ = compute_advantages(
                torch.tensor(scores, dtype=torch.float64),
                torch.tensor(groups),
                tasks,
                state,
                CONFIG,
                reduce=reduce,
            )
            advs.append(adv.tolist())
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps({"state": state.to_dict(), "advs": advs}))
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_match_one_process_on_the_global_batch(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]

    state = EMAState()
    global_advs = []
    for step in STEPS:
        scores = step[0][0] + step[1][0]
        groups = step[0][1] + step[1][1]
        tasks = step[0][2] + step[1][2]
        adv, state, _ = compute_advantages(
            torch.tensor(scores, dtype=torch.float64), torch.tensor(groups), tasks, state, CONFIG
        )
        global_advs.append(adv.tolist())

    assert EMAState.from_dict(ranks[0]["state"]) == EMAState.from_dict(ranks[1]["state"])
    assert EMAState.from_dict(ranks[0]["state"]) == state
    assert set(state.tasks) == {MC, NUM, SEG_IMG, SEG_VID}
    assert state.tasks[MC].updates == 2 and state.tasks[SEG_VID].updates == 1
    # each rank's advantages are its slice of the global batch's advantages
    for i, global_adv in enumerate(global_advs):
        torch.testing.assert_close(
            torch.tensor(ranks[0]["advs"][i] + ranks[1]["advs"][i]), torch.tensor(global_adv)
        )


def test_allreduce_without_a_process_group_is_the_identity():
    local = {MC: (1.0, 1.0, 2)}
    assert allreduce_task_moments(local) == local
