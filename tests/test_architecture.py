"""The package structure, checked: dependencies point down only (docs/DESIGN.md, "Layers").

Every import of a horq module in ``src/horq`` (top-level or inside a function: a lazy import is still a
dependency) is read with ``ast`` and must go to the importer's own package or to a lower layer. torch is
imported only by ``horq.nn`` and the applications, so a deployed model needs numpy and the extension only.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

#: Layer of each top-level unit, lowest first; a module may import its own unit and any lower layer.
LAYERS = {
    "horq.bits": 0, "horq.geometry": 0, "horq.sizes": 0, "horq.fileio": 0, "horq.timing": 0, "horq.heap": 0,
    "horq.reference": 1,
    "horq._core": 2, "horq.kernels": 3, "horq.format": 3, "horq.data": 3,
    "horq.runtime": 4,
    "horq.nn": 5,
    "horq.apps": 6,
}
#: Modules outside their unit's folder: ``python -m horq`` is the command line.
PLACED = {"horq.__main__": "horq.apps"}
#: Units that must never import torch (lazily or not).
TORCH_FREE = ("horq.bits", "horq.geometry", "horq.sizes", "horq.fileio", "horq.timing", "horq.heap", "horq.reference",
              "horq.kernels", "horq.format", "horq.data", "horq.runtime")
#: The package root is a facade (``__version__``; ``horq.export`` forwards to ``horq.nn.export`` when called):
#: anything may import it, and its own lazy import is exempt.
FACADE = "horq"


def _modules():
    for path in sorted((SRC / "horq").rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield name, path


KNOWN = {name for name, _ in _modules()} | {"horq._core"}


def _unit(module: str) -> str | None:
    """The layer unit a module belongs to (the longest key of LAYERS that prefixes it)."""
    if module in PLACED:
        return PLACED[module]
    best = None
    for key in LAYERS:
        if (module == key or module.startswith(key + ".")) and (best is None or len(key) > len(best)):
            best = key
    return best


def _imports(name: str, path: Path):
    """(imported module, line) for every import in the file, relative ones resolved, ``from horq import x``
    resolved to ``horq.x`` when x is a module."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                yield (sub if sub in KNOWN else target), node.lineno


def _violations():
    found = []
    for name, path in _modules():
        own = _unit(name)
        for target, line in _imports(name, path):
            where = f"{path.relative_to(SRC)}:{line}"
            if target.split(".")[0] == "torch" and own in TORCH_FREE:
                found.append(f"{where}: {name} imports torch")
            if not target.startswith("horq") or name == FACADE or target == FACADE:
                continue
            dest = _unit(target)
            if dest is None or own is None:
                found.append(f"{where}: {target} or {name} has no layer in LAYERS (add it)")
            elif dest != own and LAYERS[dest] >= LAYERS[own]:
                found.append(f"{where}: {name} (layer {LAYERS[own]}) imports {target} (layer {LAYERS[dest]})")
    return found


def test_dependencies_point_down():
    assert _violations() == []


def test_every_module_has_a_layer():
    assert [name for name, _ in _modules() if name != FACADE and _unit(name) is None] == []


def test_the_checker_catches_an_upward_import(tmp_path):
    """The rule can fail: a library module that imports the applications is reported."""
    fake = tmp_path / "horq"
    (fake / "runtime").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "runtime" / "__init__.py").write_text("def f():\n    from horq.apps import cli\n    import torch\n")
    globals()["SRC"], old = tmp_path, SRC
    try:
        found = _violations()
    finally:
        globals()["SRC"] = old
    assert any("horq.runtime (layer 4) imports horq.apps" in f for f in found), found
    assert any("horq.runtime imports torch" in f for f in found), found


@pytest.mark.parametrize("unit", sorted(LAYERS))
def test_layer_units_exist(unit):
    assert unit in KNOWN or any(k.startswith(unit + ".") for k in KNOWN)
