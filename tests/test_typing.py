"""satdask ships its annotations (PEP 561) and `make` checks them with mypy."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_py_typed_marker_exists_and_is_packaged() -> None:
    assert (ROOT / "satdask" / "py.typed").is_file()
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "py.typed" in setuptools["package-data"]["satdask"]


def test_make_test_and_lint_run_mypy_after_lint_imports() -> None:
    makefile = (ROOT / "Makefile").read_text()
    for target in ("test", "lint"):
        recipe = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
        assert recipe, f"no {target} target"
        lines = [line.strip() for line in recipe.group(1).splitlines()]
        assert "$(BIN)/mypy" in lines, f"make {target} does not run mypy"
        assert lines.index("$(BIN)/mypy") > lines.index("$(BIN)/lint-imports")


def test_the_core_and_the_models_are_checked_strictly() -> None:
    mypy = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert set(mypy["packages"]) == {"satdask", "service"}
    strict = [o for o in mypy["overrides"] if "satdask.core.*" in o["module"]]
    assert len(strict) == 1 and "satdask.models.*" in strict[0]["module"]
    for flag in ("disallow_untyped_defs", "disallow_untyped_calls", "warn_return_any"):
        assert strict[0][flag] is True, flag
    assert "strict" not in strict[0]  # per module, it would turn strict on everywhere
