"""Run a script in 2 CPU processes with torchrun (gloo; DeepSpeed's CPU accelerator), for the tests that
need real data-parallel ranks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(
    script: Path, args: list[str], cwd: Path, nproc: int = 2, timeout: int = 600
) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run --nproc_per_node N script args`` on a free loopback port."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc)]
    cmd += ["--master_addr", "127.0.0.1", "--master_port", str(free_port()), str(script), *args]
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)
