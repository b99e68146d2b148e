"""The package's import structure: no cycle, and no import up the layers, at any depth.

import-linter (run by `make test`) checks imports against the layers in pyproject.toml.
This test reads the same layers and parses every module with `ast`, so every import
statement counts, inside functions and under `TYPE_CHECKING` included, whatever a
graph builder does with them, and a cycle inside one layer (which a layers contract
allows) fails too.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("satdask", "service")


def module_files() -> dict[str, Path]:
    """Every module of the packages, by dotted name (a package by its own name)."""
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def imported(path: Path, name: str, known: set[str]) -> Iterator[str]:
    """Modules of the packages that `path` imports, wherever the import statement is."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                yield target
                break


def import_graph() -> tuple[dict[str, set[str]], dict[str, Path]]:
    files = module_files()
    known = set(files)
    return {name: set(imported(path, name, known)) for name, path in files.items()}, files


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def layer_of(module: str, layers: list[list[str]]) -> int | None:
    """Index of the layer holding `module` (0 is the top), or None for the package roots."""
    for i, members in enumerate(layers):
        if any(module == m or module.startswith(m + ".") for m in members):
            return i
    return None


def contract_layers() -> list[list[str]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [c for c in config["contracts"] if c["type"] == "layers"]
    return [[m.strip() for m in line.replace(":", "|").split("|")] for line in contract["layers"]]


def test_the_graph_is_read() -> None:
    """A parser that saw nothing would pass every check below."""
    graph, _ = import_graph()
    assert "satdask.io.geotiff" in graph["satdask.io.stac"]
    assert "satdask.views.scene" in graph["satdask.views.checks"]  # inside a function
    assert "satdask.views.scene" in graph["satdask.pipeline.batch"]  # under TYPE_CHECKING


def test_no_import_cycle_at_any_depth() -> None:
    graph, files = import_graph()
    found = cycles(graph)
    described = [" <-> ".join(str(files[m].relative_to(ROOT)) for m in c) for c in found]
    assert not found, "import cycles: " + "; ".join(described)


def test_cycles_are_found() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_runs_up_the_layers() -> None:
    graph, files = import_graph()
    layers = contract_layers()
    upward = []
    for module, targets in graph.items():
        here = layer_of(module, layers)
        for target in targets:
            there = layer_of(target, layers)
            if here is not None and there is not None and there < here:
                upward.append(f"{files[module].relative_to(ROOT)} imports {target}")
    assert not upward, "imports up the layers: " + "; ".join(sorted(upward))


def test_every_satdask_module_has_a_layer() -> None:
    """A new module outside the layers would escape both checks."""
    graph, _ = import_graph()
    layers = contract_layers()
    loose = [m for m in graph if m.startswith("satdask.") and layer_of(m, layers) is None]
    assert not loose


def test_satdask_never_imports_service() -> None:
    graph, files = import_graph()
    wrong = [
        f"{files[m].relative_to(ROOT)} imports {t}"
        for m, targets in graph.items()
        if m.split(".")[0] == "satdask"
        for t in targets
        if t.split(".")[0] == "service"
    ]
    assert not wrong
