"""Fixtures of the Airflow DAG tests: its jobs module, and a scene that drifted."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import rasterio

DAGS = Path(__file__).resolve().parents[2] / "orchestration" / "dags"
BRIGHTER = 3000  # added to every valid sample: far beyond the training spread


@pytest.fixture(scope="session")
def jobs() -> ModuleType:
    """orchestration/dags/satdask_jobs.py, imported as Airflow imports it (by file name)."""
    spec = importlib.util.spec_from_file_location("satdask_jobs", DAGS / "satdask_jobs.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["satdask_jobs"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def bright_tif(tmp_path_factory: pytest.TempPathFactory, sample_tif: Path) -> Path:
    """The sample scene made much brighter: the model trained on it must see drift."""
    with rasterio.open(sample_tif) as src:
        data, profile, tags = src.read(), src.profile, src.tags()
    nodata = profile["nodata"]
    shifted = np.where(data != nodata, data.astype(np.int64) + BRIGHTER, data).astype(data.dtype)
    path = tmp_path_factory.mktemp("bright") / "bright.tif"
    with rasterio.open(path, "w", **profile) as dst:  # same grid, CRS, tiling and tags
        dst.write(shifted)
        dst.update_tags(**tags)
    return path
