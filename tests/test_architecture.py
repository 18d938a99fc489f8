"""The package's import graph: no cycles, and no import from a lower layer to a higher one.

Layers, lowest first (a module may import its own package and anything in a lower layer;
lazy imports inside functions count):

   -1  errors                             the exceptions every layer raises; imports nothing
    0  io, settings, toy, progress,       leaves: no mtadapt imports but errors, no torch needed
       config_io                          (config_io: line-tracked YAML -> dataclasses, the one builder)
    1  models                             families, loading, tiny builders, Marian-native
    2  methods                            knows modules by the patterns families supply
    3  config                             dataclass configs (method names from the registry)
    4  data                               readers, validation, batching, the run's TaskData
    5  inference                          engines (PyTorch, CTranslate2), generation, sharded
                                          corpus translation, precision policy
    6  evaluate                           metrics, dev scores
    7  runs                               a run folder or base + adapters, ready for inference
    8  augment                            noise, back-translation
    9  train                              the loop, checkpoints, schedules
   10  compare, serve, export,            grids and reports; the HTTP server; models back to their engines
       export_ctranslate2                 (Bergamot, CTranslate2)
   11  cli_options                        command-line options built from settings dataclasses
   12  cli_verbs                          each verb's options dataclass (its flags)
   13  cli, api                           the user's entry points: the shell and Python
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

LAYERS: dict[str, int] = {
    "errors": -1, "io": 0, "settings": 0, "toy": 0, "progress": 0, "config_io": 0,
    "models": 1, "methods": 2, "config": 3, "data": 4, "inference": 5, "evaluate": 6, "runs": 7, "augment": 8,
    "train": 9, "compare": 10, "serve": 10, "export": 10, "export_ctranslate2": 10,
    "cli_options": 11, "cli_verbs": 12, "cli": 13, "api": 13,
}


def _modules() -> dict[str, Path]:
    mods = {}
    for f in (SRC / "mtadapt").rglob("*.py"):
        rel = f.relative_to(SRC).with_suffix("")
        mods[".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)] = f
    return mods


def _imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the package modules it imports (at top level or inside functions)."""

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    edges: dict[str, set[str]] = {}
    for module, path in mods.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
                names = [f"{base}.{a.name}" for a in node.names] + [base]
            for name in names:
                target = resolve(name) if name.startswith("mtadapt") else None
                # a package's __init__ is not an edge from its own modules
                if target and target != module and not (mods[target].name == "__init__.py" and module.startswith(target + ".")):
                    targets.add(target)
        edges[module] = targets
    return edges


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


def test_every_module_has_a_layer():
    unplaced = sorted(m for m in _modules() if m != "mtadapt" and _layer(m) is None)
    assert not unplaced, f"place these in LAYERS (tests/test_architecture.py): {unplaced}"


def test_imports_go_down_the_layers():
    upward = []
    for module, targets in _imports(_modules()).items():
        for target in targets:
            same_package = module.split(".")[1] == target.split(".")[1] if target != "mtadapt" else True
            if not same_package and (_layer(target) or 0) >= (_layer(module) or 0):
                upward.append(f"{module} (layer {_layer(module)}) imports {target} (layer {_layer(target)})")
    assert not upward, "\n".join(sorted(upward))


def test_no_import_cycles():
    edges = _imports(_modules())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(10_000)

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in edges:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_the_cli_and_config_import_no_torch():
    """`mtadapt --help` and recipe validation start fast: torch loads only when a verb runs."""
    code = "import sys, mtadapt.cli, mtadapt.config; mtadapt.cli.build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_checker_sees_an_upward_import(tmp_path, monkeypatch):
    """The walker is not vacuous: a lazy import from a lower layer to a higher one is found."""
    package = tmp_path / "mtadapt"
    (package / "data").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "data" / "__init__.py").write_text("")
    (package / "data" / "x.py").write_text("def f():\n    from mtadapt.train.loop import train\n")
    (package / "train").mkdir()
    (package / "train" / "__init__.py").write_text("")
    (package / "train" / "loop.py").write_text("import mtadapt.data.x\n")
    monkeypatch.setattr(sys.modules[__name__], "SRC", tmp_path)
    edges = _imports(_modules())
    assert edges["mtadapt.data.x"] == {"mtadapt.train.loop"}
    assert edges["mtadapt.train.loop"] == {"mtadapt.data.x"}


def private_imports(mods: dict[str, Path]) -> list[str]:
    """`module: from other import _name` for every underscore name one module takes from
    another (its own package's modules included): what is private stays in its module."""
    found = []
    for module, path in mods.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom):
                continue
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            if base.startswith("mtadapt") and base != module:
                found += [f"{module}: from {base} import {a.name}" for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__")]
    return found


def test_no_module_imports_another_modules_private_names():
    assert private_imports(_modules()) == []


def test_the_private_import_check_sees_one(tmp_path):
    (tmp_path / "a.py").write_text("from mtadapt.config import _Builder\nfrom mtadapt.io import atomic_writer\n")
    assert private_imports({"mtadapt.a": tmp_path / "a.py"}) == ["mtadapt.a: from mtadapt.config import _Builder"]
