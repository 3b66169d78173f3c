"""``make deploy``: every deployment of ``prefect.yaml`` on the Prefect server, with its schedules, no prompt.

Plain ``prefect deploy --all`` asks interactive questions (remote storage for each deployment, schedules for
the ones without any) and a scripted answer can answer the wrong one. This runs ``prefect --no-prompt deploy
--all`` (the CLI's global switch: ``prefect.yaml`` is taken as written) with stdin closed, so nothing can wait
for an answer, then reads the deployments back from the API and prints one line each (flow/name, work pool,
schedules). It exits 1 when a deployment of ``prefect.yaml`` is missing or its pool or schedules differ.

    python -m flows.deploy [--prefect-file prefect.yaml] [--state-dir .serve]

The API address is ``PREFECT_API_URL`` when set, else the one ``make serve`` wrote to ``.serve/env``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from flows import servers
from flows.commands import tool


@dataclass(frozen=True)
class Expected:
    """A deployment as ``prefect.yaml`` declares it."""

    name: str
    entrypoint: str
    pool: str | None
    schedules: tuple[tuple[str, str, bool], ...]
    """(cron, timezone, active) per cron schedule."""


def expected_deployments(prefect_file: Path) -> list[Expected]:
    """The deployments of ``prefect_file`` with their pools and cron schedules."""
    doc = yaml.safe_load(prefect_file.read_text()) or {}
    out = []
    for d in doc.get("deployments") or []:
        scheds = tuple(
            (str(s["cron"]), str(s.get("timezone") or "UTC"), bool(s.get("active", True)))
            for s in d.get("schedules") or []
            if "cron" in s
        )
        out.append(Expected(d["name"], d["entrypoint"], (d.get("work_pool") or {}).get("name"), scheds))
    return out


def read_env_file(path: Path) -> dict[str, str]:
    """``export KEY=VALUE`` lines of ``.serve/env`` (values shell-quoted)."""
    env: dict[str, str] = {}
    if not path.exists():
        return env
    for line in path.read_text().splitlines():
        parts = shlex.split(line)
        if len(parts) == 2 and parts[0] == "export" and "=" in parts[1]:
            key, value = parts[1].split("=", 1)
            env[key] = value
    return env


def stack_env(state_dir: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for ``prefect``: ``base`` (default: this process's), with the stack's settings from
    ``<state_dir>/env`` where ``base`` has no ``PREFECT_API_URL``."""
    env = dict(os.environ if base is None else base)
    if not env.get("PREFECT_API_URL"):
        env.update({k: v for k, v in read_env_file(state_dir / "env").items() if k != "PATH"})
    return env


def deployed(api_url: str) -> dict[tuple[str, str], dict[str, Any]]:
    """``(entrypoint, deployment name) -> deployment`` as the server has them, with ``flow_name`` added."""
    flows = {f["id"]: f["name"] for f in servers.http_json("POST", f"{api_url}/flows/filter", {})}
    out = {}
    for d in servers.http_json("POST", f"{api_url}/deployments/filter", {}):
        d["flow_name"] = flows.get(d["flow_id"], "?")
        out[(d.get("entrypoint") or "", d["name"])] = d
    return out


def compare(
    expected: list[Expected], found: Mapping[tuple[str, str], Mapping[str, Any]]
) -> tuple[list[str], list[str]]:
    """One line per expected deployment, and the problems (missing, other pool, other schedules)."""
    lines, problems = [], []
    for e in expected:
        d = found.get((e.entrypoint, e.name))
        if d is None:
            problems.append(f"{e.name} ({e.entrypoint}): not on the server")
            continue
        got = tuple(
            (
                str(s["schedule"].get("cron")),
                str(s["schedule"].get("timezone") or "UTC"),
                bool(s.get("active")),
            )
            for s in d.get("schedules") or []
            if s.get("schedule", {}).get("cron")
        )
        label = f"{d['flow_name']}/{e.name}"
        if d.get("work_pool_name") != e.pool:
            problems.append(f"{label}: work pool {d.get('work_pool_name')!r}, prefect.yaml says {e.pool!r}")
        if sorted(got) != sorted(e.schedules):
            problems.append(f"{label}: schedules {list(got)}, prefect.yaml says {list(e.schedules)}")
        when = ", ".join(f"cron '{c}' {tz}{'' if on else ' (paused)'}" for c, tz, on in got) or "no schedule"
        lines.append(f"{label:<28} pool {d.get('work_pool_name') or '-':<5} {when}")
    return lines, problems


def deploy(root: Path, env: Mapping[str, str], timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
    """``prefect --no-prompt deploy --all`` in ``root`` (its prefect.yaml), stdin closed."""
    return subprocess.run(
        [tool("prefect"), "--no-prompt", "deploy", "--all"],
        cwd=root,
        env={**env, "PWD": str(root)},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.deploy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--prefect-file", type=Path, default=Path("prefect.yaml"))
    parser.add_argument("--state-dir", type=Path, default=Path(".serve"))
    args = parser.parse_args(argv)
    root = Path.cwd().resolve()
    env = stack_env(args.state_dir if args.state_dir.is_absolute() else root / args.state_dir)
    api_url = env.get("PREFECT_API_URL")
    if not api_url:
        print(
            "error: no Prefect server: PREFECT_API_URL is unset and .serve/env is missing (make serve)",
            file=sys.stderr,
        )
        return 1
    if not servers.http_ok(f"{api_url}/health"):
        print(f"error: the Prefect server at {api_url} does not answer (make serve)", file=sys.stderr)
        return 1
    expected = expected_deployments(root / args.prefect_file)
    proc = deploy(root, env)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        print(f"error: prefect deploy failed (exit {proc.returncode})", file=sys.stderr)
        return 1
    lines, problems = compare(expected, deployed(api_url))
    print(f"deployed {len(lines)} of {len(expected)} deployment(s) from {args.prefect_file} to {api_url}:")
    print("\n".join(f"  {line}" for line in lines))
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if not problems:
        print(
            "run one: prefect deployment run training-pipeline/weekly   (UI: "
            f"{env.get('PREFECT_UI_URL') or api_url.removesuffix('/api')}/deployments)"
        )
    return 1 if problems else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
