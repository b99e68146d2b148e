"""The run store: one Zarr v3 group per run, written so a crash never looks finished.

The store is staged in the run's journal beside its destination (see
`satdask.journal`), moved into place with one rename, and only then marked
`complete: true`. Readers refuse a store without that mark.
"""

from __future__ import annotations

import os
import shutil
import uuid
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import zarr
from rasterio.crs import CRS

from satdask.errors import RunError
from satdask.grid import TileGrid
from satdask.tiles import tile_dataset

ATTRS_KEY = "satdask"
CHUNK_TILES = 1024  # output chunks hold many tiles: a 16384 px scene at 256 px is one chunk
# Zarr reads a chunk that was never written as the fill value. For the class and the
# status that is a value no tile can have, so a lost chunk shows instead of reading as
# "ok, dark" (the default fill, 0). Zarr's fill_value, not CF's _FillValue: nothing is
# masked on read and the dtypes stay.
FILL_VALUES = {"status": 255, "prediction": -128}


Destination = Path | str  # a local path, or a URL (s3://...) for object storage


def destination(out: str | os.PathLike[str]) -> Destination:
    """A URL stays a string (Path would fold its '//'); anything else is a local Path."""
    text = os.fspath(out)
    return text if is_url(text) else Path(text)


def is_url(out: str | os.PathLike[str]) -> bool:
    return "://" in os.fspath(out)


def check_destination(out: Destination, *, overwrite: bool) -> None:
    """Fail before any work when the run could not be written at `out`."""
    if isinstance(out, str):
        fs, path = _filesystem(out)
        if fs.exists(path) and not overwrite:
            raise RunError(
                f"{out}: already exists; pass overwrite=True (--overwrite) to replace it"
            )
        return
    if out.exists() and not overwrite:
        raise RunError(f"{out}: already exists; pass overwrite=True (--overwrite) to replace it")
    if out.exists() and not out.is_dir():
        raise RunError(f"{out}: exists and is not a run store; refusing to replace it")
    parent = out.parent
    if not parent.is_dir():
        raise RunError(f"{parent}: output directory does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise RunError(f"{parent}: output directory is not writable")


def write_run(
    variables: Mapping[str, np.ndarray],
    *,
    grid: TileGrid,
    crs: CRS,
    attrs: Mapping[str, Any],
    out: Destination,
    staging: Path,
    overwrite: bool = False,
) -> None:
    """Write the store with `complete: false`, put it in place, then mark it complete.

    Locally it is written at `staging` and renamed into place, so an old store is
    kept until then. Object storage has no rename: the store is written where it
    belongs (an old one removed first), and `complete: true`, written last, is
    still what tells a finished store from a crashed one.
    """
    check_destination(out, overwrite=overwrite)
    ds = tile_dataset(variables, grid=grid, crs=crs)
    ds.attrs[ATTRS_KEY] = {**attrs, "complete": False}
    chunks = (min(grid.rows, CHUNK_TILES), min(grid.cols, CHUNK_TILES))
    for name in variables:  # update, not replace: rioxarray keeps grid_mapping there
        ds[name].encoding["chunks"] = chunks
        if name in FILL_VALUES:
            ds[name].encoding["fill_value"] = FILL_VALUES[name]
    if isinstance(out, str):
        fs, path = _filesystem(out)
        if overwrite and fs.exists(path):
            fs.rm(path, recursive=True)
        _to_zarr(ds, out)
    else:
        try:
            _to_zarr(ds, staging)
            _move_into_place(staging, out, overwrite=overwrite)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    group = zarr.open_group(os.fspath(out), mode="r+", zarr_format=3)
    group.attrs[ATTRS_KEY] = {**attrs, "complete": True}


def _to_zarr(ds: xr.Dataset, target: str | Path) -> None:
    with warnings.catch_warnings():
        # Consolidated metadata is a zarr-python extension in v3; it lets a plain
        # xr.open_zarr(out) open the store without a fallback warning.
        warnings.simplefilter("ignore", zarr.errors.ZarrUserWarning)
        ds.to_zarr(target, mode="w-", zarr_format=3, consolidated=True)


def _filesystem(url: str) -> tuple[Any, str]:
    import fsspec

    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:  # e.g. s3:// without s3fs installed
        raise RunError(f"{url}: cannot reach this storage ({exc})") from None


def _move_into_place(staging: Path, out: Path, *, overwrite: bool) -> None:
    """rename() refuses a non-empty target, so two runs racing for `out` cannot both win."""
    trash = out.with_name(f".{out.name}.{uuid.uuid4().hex}.old")
    if overwrite and out.exists():
        os.rename(out, trash)
    try:
        os.rename(staging, out)
    except OSError as exc:
        if trash.exists():
            os.rename(trash, out)
        raise RunError(f"{out}: cannot move the run into place ({exc.strerror})") from None
    shutil.rmtree(trash, ignore_errors=True)


def read_attrs(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The run's lineage attributes; refuses anything that is not a complete run."""
    try:
        group = zarr.open_group(os.fspath(path), mode="r")
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, ValueError):
        raise RunError(f"{path}: not a run store") from None
    attrs = dict(group.attrs).get(ATTRS_KEY)
    if not isinstance(attrs, dict):
        raise RunError(f"{path}: not a satdask run store (no '{ATTRS_KEY}' attributes)")
    if attrs.get("complete") is not True:
        raise RunError(f"{path}: run store is incomplete (the run crashed or is still writing)")
    return attrs


def open_store(path: str | os.PathLike[str]) -> xr.Dataset:
    """Open a complete run store with georeferencing decoded."""
    read_attrs(path)
    return xr.open_zarr(os.fspath(path), decode_coords="all")
