"""``dvc.yaml`` lists exactly the code and the params each stage reads, derived from the code itself.

- Code: the ``onethinker`` modules a stage runs are the CLI command's imports, followed through every import
  of every module they reach (module level or inside functions, ``importlib`` names and the lazy names of
  packages with a ``_LAZY`` table included; ``if TYPE_CHECKING`` blocks excluded). One edge is not followed:
  ``onethinker.config`` imports every stage's config class to check the whole params file, but another
  stage's config class does not shape this stage's outputs (a stage reaches its own through its code). Each stage's
  ``src/onethinker`` deps must cover exactly those files: a module a stage starts to import (a new contract
  package, rollout engines moved to ``generation/``) fails the test until ``dvc.yaml`` lists it, and so does a
  listed file the stage no longer reads. ``register`` ships the whole package with the logged model
  (``code_paths``), so it depends on all of it.
- Params: the sections and keys a stage reads are the attribute chains on the ``Params`` object (``p.grpo``,
  ``p.prompt.style``) in the command and in every function it hands ``p`` to, closures included.

Run ``python tests/unit/test_dvc_drift.py`` to print what each stage reads (to update ``dvc.yaml``).
"""

from __future__ import annotations

import ast
import dataclasses
from functools import cache
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"
PKG = SRC / "onethinker"
SHIPS_THE_PACKAGE = {"register"}  # the logged pyfunc model carries src/onethinker as code_paths


# --------------------------------------------------------------------------------------------------
# Modules


def module_file(name: str) -> Path | None:
    base = SRC.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def _lazy_names(package: str) -> dict[str, str]:
    """A package's ``_LAZY`` table (name -> submodule, imported by its ``__getattr__``), and the submodules its
    ``__getattr__`` always imports (under the key ``*``)."""
    path = module_file(package)
    if path is None or path.name != "__init__.py":
        return {}
    out: dict[str, str] = {}
    for node in _parsed(path).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_LAZY" for t in node.targets):
            out.update(ast.literal_eval(node.value))
        if isinstance(node, ast.FunctionDef) and node.name == "__getattr__":
            for sub in ast.walk(node):  # importlib.import_module(f"{__name__}.video_processor")
                if isinstance(sub, ast.JoinedStr) and isinstance(sub.values[-1], ast.Constant):
                    tail = str(sub.values[-1].value)
                    if tail.startswith(".") and len(sub.values) == 2:
                        out["*"] = tail[1:]
    return out


def _executed(tree: ast.AST) -> list[ast.AST]:
    """The nodes of ``tree`` that run: ``if TYPE_CHECKING:`` blocks are left out."""
    out: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        if (
            isinstance(node, ast.If)
            and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING"
        ):
            todo.extend(node.orelse)
            continue
        out.append(node)
        todo.extend(ast.iter_child_nodes(node))
    return out


def _imports_in(tree: ast.AST, current: str, is_package: bool) -> set[str]:
    """Every onethinker module an import (or an importlib string) anywhere in ``tree`` runs."""
    out: set[str] = set()
    package = current if is_package else current.rpartition(".")[0]
    for node in _executed(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            lazy = _lazy_names(mod)
            for a in node.names:
                out.add(f"{mod}.{a.name}")  # a submodule imported by name
                if a.name in lazy:  # a name the package imports on first use
                    out.add(f"{mod}.{lazy[a.name]}")
                    if "*" in lazy:
                        out.add(f"{mod}.{lazy['*']}")
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value.startswith("onethinker.")
            and current != "onethinker.config"  # it loads every stage's config class: see the docstring
        ):
            out.add(node.value)  # importlib.import_module("onethinker.rl.config") and the like
    return {m for m in out if m.split(".")[0] == "onethinker" and module_file(m) is not None}


@cache
def _module_imports(name: str) -> frozenset[str]:
    path = module_file(name)
    assert path is not None, name
    return frozenset(_imports_in(_parsed(path), name, path.name == "__init__.py"))


def closure(start: set[str]) -> set[Path]:
    """Files of the modules reachable from ``start`` (parents' ``__init__`` included: importing runs them)."""
    seen: set[str] = set()
    todo = list(start)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        todo.extend(_module_imports(name))
    return {module_file(m) for m in seen}  # type: ignore[misc]


def _command_function(command: str) -> ast.FunctionDef:
    tree = _parsed(PKG / "cli.py")
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            for dec in node.decorator_list:
                func = dec.func if isinstance(dec, ast.Call) else None
                # @app.command("name") or the CLI's own @_command("name", "summary")
                if func is not None and (
                    getattr(func, "attr", None) == "command" or getattr(func, "id", None) == "_command"
                ):
                    name = dec.args[0].value if dec.args else node.name  # type: ignore[attr-defined]
                    if name == command:
                        return node
    raise AssertionError(f"no CLI command {command!r}")


def _cli_helpers_called(fn: ast.FunctionDef) -> list[ast.FunctionDef]:
    """Module-level functions of cli.py that the command calls (``_training_corpus(p)``)."""
    tree = _parsed(PKG / "cli.py")
    defs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    called = {n.func.id for n in ast.walk(fn) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    return [defs[c] for c in sorted(called) if c in defs and c != fn.name]


def code_files(command: str) -> set[Path]:
    fn = _command_function(command)
    start: set[str] = {"onethinker.config"}  # _load() reads the params in every command
    for node in [fn, *_cli_helpers_called(fn)]:  # the command's own imports, not every command's
        start |= _imports_in(node, "onethinker.cli", False)
    top = [n for n in _parsed(PKG / "cli.py").body if not isinstance(n, ast.FunctionDef)]
    start |= _imports_in(ast.Module(body=top, type_ignores=[]), "onethinker.cli", False)
    return closure(start) | {PKG / "cli.py"}


# --------------------------------------------------------------------------------------------------
# Params


@cache
def _parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text())


@cache
def _functions_by_name() -> dict[str, list[ast.FunctionDef]]:
    out: dict[str, list[ast.FunctionDef]] = {}
    for path in sorted(PKG.rglob("*.py")):
        for node in ast.walk(_parsed(path)):
            if isinstance(node, ast.FunctionDef):
                out.setdefault(node.name, []).append(node)
    return out


def _chain(node: ast.AST, var: str) -> list[str] | None:
    """``p.a.b`` -> ["a", "b"] when rooted at ``var``."""
    names = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name) and node.id == var and names:
        return names[::-1]
    return None


def params_read(command: str) -> set[str]:
    """Dotted params the command reads: ``grpo`` (a whole section) or ``prompt.style`` (one key)."""
    funcs = _functions_by_name()
    fn = _command_function(command)
    found: set[str] = set()
    todo: list[tuple[ast.FunctionDef, str]] = [(fn, "p"), *((h, "p") for h in _cli_helpers_called(fn))]
    done: set[tuple[int, str]] = set()
    while todo:
        func, var = todo.pop()
        if (id(func), var) in done:
            continue
        done.add((id(func), var))
        parents = {id(c): n for n in ast.walk(func) for c in ast.iter_child_nodes(n)}
        for node in ast.walk(func):
            chain = _chain(node, var) if isinstance(node, ast.Attribute) else None
            if chain and not isinstance(parents.get(id(node)), ast.Attribute):  # the longest chain only
                section = chain[0]
                if section in ("sections", "path", "as_dict"):
                    continue
                found.add(".".join(chain[:2]) if len(chain) > 1 and _is_leaf(section, chain[1]) else section)
            if isinstance(node, ast.Call):  # p handed on: follow it into the callee
                callee = (
                    node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
                )
                for i, arg in enumerate(node.args):
                    if isinstance(arg, ast.Name) and arg.id == var:
                        for target in funcs.get(callee or "", []):
                            names = [a.arg for a in target.args.args]
                            if i < len(names):
                                todo.append((target, names[i]))
    return found


@cache
def _section_fields(section: str) -> tuple[str, ...]:
    from onethinker.config import SECTIONS, _register_optional_sections

    _register_optional_sections()
    return tuple(f.name for f in dataclasses.fields(SECTIONS[section]))


def _is_leaf(section: str, attr: str) -> bool:
    try:
        return attr in _section_fields(section)
    except KeyError:
        return False


def expand(params: set[str]) -> set[str]:
    """Whole sections as their keys, so ``prompt`` equals ``prompt.style`` (its only key)."""
    out = set()
    for p in params:
        section, _, key = p.partition(".")
        out.update({f"{section}.{key}"} if key else {f"{section}.{f}" for f in _section_fields(section)})
    return out


# --------------------------------------------------------------------------------------------------
# dvc.yaml


def _stages() -> dict:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def _command(stage: dict) -> str:
    return stage["cmd"].split()[1]


def _listed_code(stage: dict) -> set[Path]:
    out: set[Path] = set()
    for dep in stage.get("deps", []):
        path = REPO / dep
        if not dep.startswith("src/onethinker"):
            continue
        assert path.exists(), f"dvc.yaml lists {dep}, which does not exist"
        out.update(path.rglob("*.py") if path.is_dir() else {path})
    return out


def _rel(files: set[Path]) -> list[str]:
    return sorted(str(f.relative_to(REPO)) for f in files)


STAGES = sorted(_stages())


@pytest.mark.parametrize("name", STAGES)
def test_code_deps_are_what_the_stage_imports(name: str) -> None:
    stage = _stages()[name]
    needed = set(PKG.rglob("*.py")) if name in SHIPS_THE_PACKAGE else code_files(_command(stage))
    listed = _listed_code(stage)
    assert not needed - listed, f"dvc.yaml stage {name} misses code it runs: {_rel(needed - listed)}"
    assert not listed - needed, f"dvc.yaml stage {name} lists code it never imports: {_rel(listed - needed)}"


MANIFEST_ROOT_KEYS = {"prepare.onethinker.train_media_root", "prepare.onethinker.eval_media_root"}
"""Keys a stage reads through the manifest (``PreparedData.load(root, p)`` looks up the media-root keys the
manifest names), invisible to the attribute chains: allowed in ``dvc.yaml``, not derived."""


@pytest.mark.parametrize("name", STAGES)
def test_params_are_what_the_stage_reads(name: str) -> None:
    stage = _stages()[name]
    read = expand(params_read(_command(stage)))
    listed = expand(set(stage.get("params", [])))
    assert not read - listed, f"dvc.yaml stage {name} misses params it reads: {sorted(read - listed)}"
    extra = listed - read - MANIFEST_ROOT_KEYS
    assert not extra, f"dvc.yaml stage {name} lists params it never reads: {sorted(extra)}"


def test_the_derivation_sees_known_reads() -> None:
    """Hand-checked facts, so the derivation itself cannot silently go blind."""
    assert {"grpo", "media", "prompt.style", "data.root", "reward"} <= params_read("grpo")
    assert {"register", "media", "prompt.style", "evaluate"} <= params_read("register")
    files = code_files("sft")
    for rel in (
        "generation/heldout.py",
        "modeling/__init__.py",
        "generation/hf.py",
        "training/checkpoint.py",
    ):
        assert PKG / rel in files, rel
    assert PKG / "registry" / "core.py" not in code_files("grpo")


def _compress(files: set[Path]) -> list[str]:
    """Folders whose every module is needed, else files: what dvc.yaml lists."""
    out: list[str] = []

    def walk(folder: Path) -> None:
        mods = set(folder.rglob("*.py"))
        if mods and mods <= files and folder != PKG:
            out.append(str(folder.relative_to(REPO)))
            return
        for f in sorted(folder.glob("*.py")):
            if f in files:
                out.append(str(f.relative_to(REPO)))
        for sub in sorted(p for p in folder.iterdir() if p.is_dir() and p.name != "__pycache__"):
            walk(sub)

    walk(PKG)
    return out


if __name__ == "__main__":  # print what each stage reads
    for name, stage in _stages().items():
        cmd = _command(stage)
        files = set(PKG.rglob("*.py")) if name in SHIPS_THE_PACKAGE else code_files(cmd)
        print(f"{name}:\n  params: {sorted(params_read(cmd))}")
        print("  code:\n" + "\n".join(f"    - {d}" for d in _compress(files)))
