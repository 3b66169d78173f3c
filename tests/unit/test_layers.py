"""The package's layers (DESIGN.md): an import never runs up a floor.

Floors, bottom to top: the data contract; modeling, training and tracking; rewards, metrics and validation;
generation (the rollout engines); the stages; the entry points. Every ``onethinker`` import in the source,
at module level or inside a function, is read from the syntax tree and checked.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "onethinker"

FLOORS: dict[str, int] = {
    "contract": 0,  # the data contract: records, answers, schema, prompts, media roots, manifest
    "tasks": 0,
    "config": 0,
    "data": 0,
    "modeling": 1,
    "training": 1,
    "tracking": 1,
    "metrics_files": 1,  # the stages' metrics files (detail and headline): JSON only
    "plots": 1,
    "lockcheck": 1,  # re-runs DVC stages in a fresh clone and compares with dvc.lock (no onethinker imports)  # PNGs drawn with matplotlib from plain numbers
    "rewards": 2,
    "metrics": 2,
    "validation": 2,
    "generation": 3,
    "sft": 4,
    "rl": 4,
    "evaluation": 4,
    "registry": 4,
    "annotate": 4,
    "serve": 4,
    "cli": 5,
}


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "onethinker":
                out.extend((node.lineno, f"onethinker.{a.name}") for a in node.names)
            elif node.module.startswith("onethinker."):
                out.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            out.extend((node.lineno, a.name) for a in node.names if a.name.startswith("onethinker."))
    return out


def test_every_room_has_a_floor() -> None:
    rooms = {p.stem if p.is_file() else p.name for p in SRC.iterdir() if not p.name.startswith(("_", "."))}
    rooms.discard("py")
    missing = sorted(r for r in rooms if r not in FLOORS)
    assert not missing, f"give these a floor in FLOORS: {missing}"


def test_no_import_runs_up_a_floor() -> None:
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        module = ".".join(path.relative_to(SRC.parent).with_suffix("").parts)
        here = _room(module)
        if here not in FLOORS:
            continue
        for line, target in _imports(path):
            there = _room(target)
            if there in FLOORS and FLOORS[there] > FLOORS[here]:
                bad.append(f"{path.relative_to(SRC.parent)}:{line} ({here}) imports {target} ({there})")
    assert not bad, "imports up a floor:\n" + "\n".join(bad)


def test_the_stages_reach_the_engines_only_through_generation() -> None:
    """rl, evaluation and serve share the engines from the generation layer; none defines its own."""
    assert not (SRC / "rl" / "rollout.py").exists()
    assert not (SRC / "evaluation" / "heldout.py").exists()
    users = [
        p
        for p in SRC.rglob("*.py")
        if any(t.startswith("onethinker.generation") for _, t in _imports(p))
        and _room(".".join(p.relative_to(SRC.parent).with_suffix("").parts)) != "generation"
    ]
    rooms = {_room(".".join(p.relative_to(SRC.parent).with_suffix("").parts)) for p in users}
    assert {"rl", "evaluation", "registry", "sft"} <= rooms
