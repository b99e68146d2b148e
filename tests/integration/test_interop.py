"""A run store is an ordinary xarray dataset: it writes to netCDF and keeps its CRS on a
plain `xr.open_zarr`, and stores written before the run record became one JSON string
still open."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rioxarray  # noqa: F401
import xarray as xr
import zarr

from satdask import ThresholdModel, open_run, run_batch
from satdask.io.store import ATTRS_KEY


def test_a_run_writes_to_netcdf_and_reads_back(sample_tif: Path, tmp_path: Path) -> None:
    run = run_batch(sample_tif, ThresholdModel(threshold=5000.0), tmp_path / "run.zarr")
    ds = run.dataset()
    ds.to_netcdf(tmp_path / "run.nc")
    back = xr.open_dataset(tmp_path / "run.nc", decode_coords="all")
    np.testing.assert_array_equal(back["prediction"].values, ds["prediction"].values)
    assert back.rio.crs == ds.rio.crs
    assert isinstance(back.attrs[ATTRS_KEY], str)  # the run record, as one JSON string


def test_a_plain_open_zarr_keeps_the_crs(sample_tif: Path, tmp_path: Path) -> None:
    run_batch(sample_tif, ThresholdModel(threshold=5000.0), tmp_path / "run.zarr")
    plain = xr.open_zarr(tmp_path / "run.zarr")
    assert "spatial_ref" in plain.coords
    assert plain.rio.crs == "EPSG:32633"
    assert plain["prediction"].rio.crs == "EPSG:32633"


def test_a_store_with_the_older_nested_record_still_opens(sample_tif: Path, tmp_path: Path) -> None:
    run = run_batch(sample_tif, ThresholdModel(threshold=5000.0), tmp_path / "run.zarr")
    group = zarr.open_group(tmp_path / "run.zarr", mode="r+")
    group.attrs[ATTRS_KEY] = dict(run.attrs)  # how satdask wrote it before
    assert open_run(tmp_path / "run.zarr").attrs == run.attrs
