"""The conda environment and the pip metadata must list the same dependencies."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# conda-forge splits dask[distributed] into two packages
CONDA_NAMES = {"dask[distributed]": ["dask", "distributed"], "moto[server]": ["moto"]}
# extras installed in an environment of their own, never in the conda one
# (airflow: .venv-airflow, so its pins cannot clash with the service's)
OWN_ENVIRONMENT = {"airflow"}


def _split(spec: str) -> tuple[str, str]:
    match = re.fullmatch(r"\s*([A-Za-z0-9_.\-\[\],]+?)\s*((?:[<>=!~].*)?)\s*", spec)
    assert match, f"cannot parse requirement {spec!r}"
    return match.group(1).lower(), match.group(2).replace(" ", "")


def pip_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"])
    for name, extra in project["optional-dependencies"].items():
        if name not in OWN_ENVIRONMENT:
            specs += [s for s in extra if not s.startswith("satdask")]
    out: dict[str, str] = {}
    for spec in specs:
        name, bound = _split(spec)
        for conda_name in CONDA_NAMES.get(name, [name]):
            out[conda_name] = bound
    return out


def conda_requirements() -> dict[str, str]:
    lines = (ROOT / "environment.yml").read_text().splitlines()
    deps = [line.strip()[2:] for line in lines if line.strip().startswith("- ")]
    deps = [d for d in deps if d not in ("conda-forge", "pip", "pip:")]
    return dict(_split(d) for d in deps if not d.startswith("python"))


def test_environment_yml_lists_the_same_dependencies_and_bounds_as_pyproject() -> None:
    assert conda_requirements() == pip_requirements()


def test_runtime_dependencies_have_lower_bounds() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for spec in project["dependencies"]:
        assert ">=" in spec, f"{spec} has no lower bound"
    assert project["requires-python"] == ">=3.11"
    assert "satdask" in project["scripts"]
