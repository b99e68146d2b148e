"""The service reads bottom-up: each module imports only modules listed below its own.

tests/unit/test_layers.py finds cycles anywhere; this holds the service's modules to
one order, so a new import that would close a cycle fails here first, naming the edge.
Imports inside functions and under TYPE_CHECKING count (parsed with `ast`).
"""

from __future__ import annotations

import ast
from pathlib import Path

SERVICE = Path(__file__).resolve().parents[2] / "service"

# Top to bottom; a module may import any module in a lower row.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("service",),  # the package: create_app and Settings
    ("service.view",),  # `satdask view`: a run's scene and model, served like `serve`
    ("service.server",),  # `satdask serve`: settings, GDAL options, then uvicorn
    ("service.app", "service.protocol"),
    ("service.mapview",),  # GET /map: the page, Leaflet's files, a click's tile
    ("service.tiles",),  # web-mercator map tiles, TileJSON and the catalog
    ("service.pixels",),  # a pixel model's tile
    ("service.scenes", "service.schemas", "service.docs", "service.settings", "service.listing"),
    ("service.runs_root",),  # finished run stores by name, their layers
    ("service.auth", "service.metrics", "service.gdal", "service.loadgen", "service.images"),
    ("service.tile_images",),  # RGBA tiles and their PNG bytes
    ("service.public",),  # what a client may see: names, messages, error bodies
    ("service.remote",),
    ("service.paths", "service.limits"),  # containment; what a file may claim
    ("service.files", "service.tiff"),  # opening by descriptor; reading a TIFF header
    ("service.errors",),
)


def module_name(path: Path) -> str:
    return "service" if path.stem == "__init__" else f"service.{path.stem}"


def service_imports(path: Path) -> set[str]:
    """The service modules `path` imports, at any depth of its syntax tree."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "service":
                found.add(".".join(parts[:2]) if len(parts) > 1 else "service")
    return found


def layer_of(module: str) -> int:
    for i, row in enumerate(LAYERS):
        if module in row:
            return i
    raise AssertionError(f"{module} is in no layer of {__file__}: place it")


def upward_imports(folder: Path) -> list[str]:
    wrong = []
    modules = {module_name(p): p for p in sorted(folder.glob("*.py"))}
    for module, path in modules.items():
        here = layer_of(module)
        for target in sorted(service_imports(path) - {module}):
            if target in modules and layer_of(target) <= here:
                wrong.append(f"{path.name} imports {target}")
    return wrong


def test_every_service_module_has_a_layer() -> None:
    for path in SERVICE.glob("*.py"):
        layer_of(module_name(path))


def test_the_service_imports_only_downward() -> None:
    assert not upward_imports(SERVICE), "imports up (or across) the service's layers"


def test_an_upward_import_is_seen(tmp_path: Path) -> None:
    """A checker that saw nothing would pass; errors importing remote is the old cycle."""
    (tmp_path / "errors.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from service.remote import R\n"
    )
    (tmp_path / "remote.py").write_text("def f():\n    from service.errors import E\n")
    assert upward_imports(tmp_path) == ["errors.py imports service.remote"]
