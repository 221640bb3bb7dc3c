"""The package's shape: imports flow one way through its layers, with no circle.

Every import in ``src/`` is read from the source (those inside functions too), so a
lazy import cannot hide a loop. Layers, lowest first::

    core, _version  ->  noise, nets, weights  ->  methods  ->  engine, training  ->  front ends

A module may import its own package and any lower layer; front ends (``api``, ``cli``,
``report``, ``samples``, ``_napari``, the package ``__init__``) may import each other.
"""

import ast
from pathlib import Path

import pytest

PKG = "napari_masked_denoise"
SRC = Path(__file__).resolve().parents[1] / "src" / PKG
LAYER = {
    "core": 0,
    "_version": 0,
    "noise": 1,
    "nets": 1,
    "weights": 1,
    "methods": 2,
    "engine": 3,
    "training": 3,
    "api": 4,
    "cli": 4,
    "__main__": 4,
    "report": 4,
    "samples": 4,
    "_napari": 4,
    "": 4,
}
PURE = ("core", "noise", "nets", "weights", "methods", "engine", "training")


def _module(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([PKG, *parts])


def _imports() -> dict[str, set[str]]:
    """Module -> the package modules (and external top-level packages) it imports."""
    graph = {}
    for path in SRC.rglob("*.py"):
        mod, is_pkg = _module(path), path.name == "__init__.py"
        here = mod.split(".") if is_pkg else mod.split(".")[:-1]
        out = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                out.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = here[: len(here) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                out.add(target)
                for a in node.names:  # "from . import x" may import a module
                    out.add(f"{target}.{a.name}")
        graph[mod] = {m for m in out if not m.startswith(PKG) or _exists(m)}
    return graph


def _exists(mod: str) -> bool:
    rel = Path(*mod.split(".")[1:])
    return (SRC / rel).with_suffix(".py").exists() or (SRC / rel / "__init__.py").exists()


def _top(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_imports_go_down_the_layers():
    bad = []
    for mod, targets in _imports().items():
        for t in targets:
            if not t.startswith(PKG + ".") and t != PKG:
                continue
            a, b = _top(mod), _top(t)
            if a == b or b == "":
                if b == "" and a in PURE:
                    bad.append(f"{mod} -> {t} (the package front)")
                continue
            if LAYER[b] > LAYER[a] or (LAYER[b] == LAYER[a] and LAYER[a] < 4):
                bad.append(f"{mod} -> {t}")
    assert not bad, "imports against the layers:\n" + "\n".join(sorted(bad))


def test_no_import_circle():
    graph = {m: {t for t in ts if t in _imports_keys()} for m, ts in _imports().items()}
    # a package __init__ importing its own submodules is how packages expose them; the
    # submodules importing the package's other names back is the circle to find
    state, stack, cycles = {}, [], []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for t in graph[m]:
            if t == m or (t != PKG and m.startswith(t + ".") and t.count(".") < m.count(".")):
                continue  # a submodule importing its own package's __init__ (no code there runs it back)
            if state.get(t) == 1:
                cycles.append(stack[stack.index(t) :] + [t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import circles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def _imports_keys() -> set[str]:
    return {_module(p) for p in SRC.rglob("*.py")}


@pytest.mark.parametrize("layer", PURE)
def test_the_core_layers_never_import_qt(layer):
    qt = {"qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "napari", "magicgui", "superqt"}
    for mod, targets in _imports().items():
        if _top(mod) == layer:
            assert not {t.split(".")[0] for t in targets} & qt, mod
