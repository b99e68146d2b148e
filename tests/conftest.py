"""Shared fixtures: real GeoTIFFs written with rasterio, and the shared CC0 scenes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine

SCENES_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "scenes"
UTM_10M = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 5000000.0)


def write_geotiff(
    path: Path,
    data: np.ndarray,
    *,
    crs: str | None = "EPSG:32633",
    transform: Affine = UTM_10M,
    nodata: float | None = None,
    blocksize: int = 256,
    compress: str | None = "deflate",
    tags: dict[str, str] | None = None,
) -> Path:
    """A real tiled GeoTIFF of `data` (band, y, x)."""
    bands, height, width = data.shape
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": bands,
        "dtype": data.dtype,
        "crs": crs,
        "transform": transform,
        "nodata": nodata,
    }
    if height >= blocksize and width >= blocksize:
        profile.update(tiled=True, blockxsize=blocksize, blockysize=blocksize)
    if compress:
        profile["compress"] = compress
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if tags:
            dst.update_tags(**tags)
    return path


@pytest.fixture
def geotiff(tmp_path: Path) -> Callable[..., Path]:
    """Factory: geotiff(data, name="scene.tif", **options) -> path."""

    def make(data: np.ndarray, name: str = "scene.tif", **options: Any) -> Path:
        return write_geotiff(tmp_path / name, data, **options)

    return make


@pytest.fixture
def real_scene() -> Callable[[str], Path]:
    """Path of a shared CC0 scene; skips (with the reason) where shared/ is absent."""

    def get(name: str) -> Path:
        path = SCENES_DIR / name
        if not path.exists():
            pytest.skip(f"shared scene {name} not found under {SCENES_DIR}")
        return path

    return get


@pytest.fixture(scope="session")
def sample_tif(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1024 x 1024 x 4 uint16 sample COG: 16 tiles with bright and dark regions."""
    from satdask.ingest import write_sample

    return write_sample(tmp_path_factory.mktemp("sample") / "sample.tif", size=1024, bands=4)


@pytest.fixture(scope="session")
def sample_registry(tmp_path_factory: pytest.TempPathFactory, sample_tif: Path) -> Path:
    """A registry holding one model trained on the sample scene."""
    from satdask import ModelRegistry, train

    directory = tmp_path_factory.mktemp("registry")
    ModelRegistry(directory).save(train([sample_tif], scheduler="threads"))
    return directory
