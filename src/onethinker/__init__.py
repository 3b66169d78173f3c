"""OneThinker pipeline."""

from __future__ import annotations


def child_command(module: str, *args: str) -> tuple[list[str], dict[str, str]]:
    """``(argv, env)`` to run ``python -m <module> <args>`` in a child process that imports this very copy of
    ``onethinker`` (also when it is importable only through ``sys.path``, as in a logged MLflow model)."""
    import os
    import sys
    from pathlib import Path

    env = dict(os.environ)
    parent = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([parent, *filter(None, [env.get("PYTHONPATH")])])
    return [sys.executable, "-m", module, *args], env
