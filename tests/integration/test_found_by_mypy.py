"""Bugs the type checker found (`mypy` in `make test`), each held by a test of its own."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import xarray as xr

from satdask import ThresholdModel, ValidationError, open_scene, run_batch
from satdask.views.tiles import scene_blocks

AD_HOC = ThresholdModel(threshold=0.5)  # no training lineage: no input check applies


def _no_crs_scene() -> xr.DataArray:
    """A (band, y, x) array of two whole 256 px tiles with coordinates but no CRS."""
    pixels = np.random.default_rng(3).integers(1, 255, size=(1, 256, 512), dtype=np.uint8)
    return xr.DataArray(
        da.from_array(pixels, chunks=(1, 256, 256)),
        dims=("band", "y", "x"),
        coords={"band": [1], "y": np.arange(256) + 0.5, "x": np.arange(512) + 0.5},
        name="scene",
    )


def test_a_run_on_an_array_without_a_crs_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    # Was: every tile computed, then AttributeError ('NoneType' has no 'to_string')
    # while describing the run, leaving a .partial staging directory behind.
    with pytest.raises(ValidationError, match=r"^array:scene: no CRS; .*write_crs") as caught:
        run_batch(_no_crs_scene(), AD_HOC, tmp_path / "run.zarr", scheduler="threads")
    assert "\n" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_the_same_array_with_a_crs_runs(tmp_path: Path) -> None:
    """The refusal is about the CRS alone: written, the same array runs."""
    scene = _no_crs_scene().rio.write_crs("EPSG:32633")
    run = run_batch(scene, AD_HOC, tmp_path / "run.zarr", scheduler="threads")
    assert run.attrs["scene"]["crs"] == "EPSG:32633"
    assert run.attrs["counts"]["tiles_inferred"] == 2


def test_a_scene_opened_from_a_file_keeps_its_crs(geotiff, tmp_path: Path) -> None:
    """The file path of run_batch was already checked (satdask.io.source.check_scene)."""
    path = geotiff(np.full((1, 256, 256), 7, dtype=np.uint8))
    run = run_batch(open_scene(path), AD_HOC, tmp_path / "run.zarr", scheduler="threads")
    assert run.attrs["scene"]["crs"]


def test_scene_blocks_of_an_in_memory_array_are_the_blocks_of_one_chunk() -> None:
    # Was: TypeError ('NoneType' object is not subscriptable): a numpy array has no chunks.
    scene = _no_crs_scene().compute()
    assert scene.chunks is None
    grid, blocks = scene_blocks(scene)
    assert [(b.rows, b.cols) for b in blocks] == [(1, 2)]
    assert grid.shape == (1, 2)
