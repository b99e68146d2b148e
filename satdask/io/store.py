"""The run store: one Zarr v3 group per run, written so a crash never looks finished.

The store is staged in the run's journal beside its destination (see
`satdask.io._journal`), moved into place with one rename, and only then marked
`complete: true`. Readers refuse a store without that mark.

It is written with zarr alone, laid out as xarray and rioxarray would write the
tile grid (dims, tile-centre coordinates, a CF grid mapping in `spatial_ref`,
consolidated metadata), so `xr.open_zarr` decodes it while a batch run never
imports xarray. A test holds the two layouts equal.
"""

from __future__ import annotations

import base64
import json
import math
import os
import shutil
import struct
import uuid
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr
from affine import Affine
from rasterio.crs import CRS

from satdask._uri import is_url
from satdask.core.grid import TileGrid
from satdask.core.schema import FILL_VALUES, VARIABLE_ATTRS
from satdask.errors import RunError

if TYPE_CHECKING:
    import xarray as xr

ATTRS_KEY = "satdask"
PIXELS = "pixels"  # the group of a pixel model's full-resolution arrays
CHUNK_TILES = 1024  # output chunks hold many tiles: a 16384 px scene at 256 px is one chunk
GRID_MAPPING = "spatial_ref"
# CF's _FillValue for float arrays, NaN, in the form xarray gives it in Zarr v3 attributes
_NAN_FILL: dict[str, Any] = {
    "_FillValue": base64.standard_b64encode(struct.pack("<d", math.nan)).decode()
}


Destination = Path | str  # a local path, or a URL (s3://...) for object storage


def destination(out: str | os.PathLike[str]) -> Destination:
    """A URL stays a string (Path would fold its '//'); anything else is a local Path."""
    text = os.fspath(out)
    return text if is_url(text) else Path(text)


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
    variable_attrs: Mapping[str, Mapping[str, Any]] | None = None,
) -> None:
    """Write the store with `complete: false`, put it in place, then mark it complete.

    Locally it is written at `staging` and renamed into place, so an old store is
    kept until then. Object storage has no rename: the store is written where it
    belongs (an old one removed first), and `complete: true`, written last, is
    still what tells a finished store from a crashed one.
    """
    check_destination(out, overwrite=overwrite)
    pending = {**attrs, "complete": False}
    if isinstance(out, str):
        fs, path = _filesystem(out)
        if overwrite and fs.exists(path):
            fs.rm(path, recursive=True)
        _write_tile_grid(
            out, variables, grid=grid, crs=crs, attrs=pending, variable_attrs=variable_attrs
        )
    else:
        try:
            _write_tile_grid(
                staging, variables, grid=grid, crs=crs, attrs=pending, variable_attrs=variable_attrs
            )
            _move_into_place(staging, out, overwrite=overwrite)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    group = zarr.open_group(os.fspath(out), mode="r+", zarr_format=3)
    group.attrs[ATTRS_KEY] = encode_attrs({**attrs, "complete": True})


def encode_attrs(attrs: Mapping[str, Any]) -> str:
    """The run record as one JSON string: nested dicts are no attribute netCDF can hold.

    A float scene's nodata may be NaN, which Python's json writes and reads as NaN.
    """
    return json.dumps(attrs, sort_keys=True)


def decode_attrs(value: object) -> dict[str, Any] | None:
    """The run record from its attribute: a JSON string, or the nested dict that stores
    written before satdask 0.2 hold; None if it is neither."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value if isinstance(value, dict) else None


def _write_tile_grid(
    target: Destination,
    variables: Mapping[str, np.ndarray],
    *,
    grid: TileGrid,
    crs: CRS,
    attrs: Mapping[str, Any],
    variable_attrs: Mapping[str, Mapping[str, Any]] | None = None,
) -> None:
    """The tile grid at the store's root; a pixel run's `pixels` group is already there."""
    exists = isinstance(target, Path) and target.exists()
    root = zarr.open_group(os.fspath(target), mode="a" if exists else "w-", zarr_format=3)
    root.attrs[ATTRS_KEY] = encode_attrs(attrs)
    _write_georeference(root, crs=crs, transform=grid.grid_transform, shape=grid.shape)
    chunks = (min(grid.rows, CHUNK_TILES), min(grid.cols, CHUNK_TILES))
    described = {**VARIABLE_ATTRS, **(variable_attrs or {})}
    for name, data in variables.items():
        floating = data.dtype.kind == "f"
        lead = data.shape[:-2]  # (class,) for the class fractions
        root.create_array(
            name,
            data=data,
            chunks=(*lead, *chunks),
            dimension_names=[*(["class"] if lead else []), "y", "x"],
            fill_value=np.nan if floating else FILL_VALUES.get(name, 0),
            attributes=_variable_attrs(described.get(name, {}), floating=floating),
        )
    with warnings.catch_warnings():
        # Consolidated metadata is a zarr-python extension in v3; it lets a plain
        # xr.open_zarr(out) open the store without a fallback warning.
        warnings.simplefilter("ignore", zarr.errors.ZarrUserWarning)
        zarr.consolidate_metadata(os.fspath(target), zarr_format=3)


def _variable_attrs(attrs: Mapping[str, Any], *, floating: bool) -> dict[str, Any]:
    return {
        **attrs,
        "grid_mapping": GRID_MAPPING,
        # a coordinate of every variable, so a plain xr.open_zarr keeps the CRS
        "coordinates": GRID_MAPPING,
        **(_NAN_FILL if floating else {}),
    }


def _write_georeference(
    group: zarr.Group, *, crs: CRS, transform: Affine, shape: tuple[int, int]
) -> None:
    """Cell-centre x/y coordinates and the `spatial_ref` grid mapping, as rioxarray writes."""
    rows, cols = shape
    xs = transform.c + transform.a * (np.arange(cols) + 0.5)
    ys = transform.f + transform.e * (np.arange(rows) + 0.5)
    for dim, values in (("x", xs), ("y", ys)):
        group.create_array(
            dim, data=values, dimension_names=[dim], fill_value=np.nan, attributes=_NAN_FILL
        )
    ref = group.create_array(
        GRID_MAPPING, shape=(), dtype=np.int64, attributes=_grid_mapping_attrs(crs, transform)
    )
    ref[...] = 0


def create_pixel_arrays(
    target: Path,
    *,
    crs: CRS,
    transform: Affine,
    shape: tuple[int, int],
    chunks: tuple[int, int],
    prediction: tuple[np.dtype, int, Mapping[str, Any]],
    classes: list[int] | None = None,
    layers: Mapping[str, Mapping[str, Any]] | None = None,
) -> None:
    """The `pixels` group of a pixel run: empty arrays the workers write block by block.

    `prediction` is (dtype, fill, attrs); `classes` adds `scores` (class, y, x) in
    float16; `layers` a model's float32 (y, x) layers by name, with their attrs. Every
    block is a whole number of `chunks`, so no two workers ever write the same chunk.
    Kept if it exists: a resumed run reuses what the killed one wrote.
    """
    if (target / PIXELS / "zarr.json").exists():
        return
    group = zarr.open_group(os.fspath(target), mode="a", zarr_format=3).create_group(PIXELS)
    _write_georeference(group, crs=crs, transform=transform, shape=shape)
    dtype, fill, attrs = prediction
    group.create_array(
        "prediction",
        shape=shape,
        dtype=dtype,
        chunks=chunks,
        dimension_names=["y", "x"],
        fill_value=fill,
        attributes=_variable_attrs({**attrs, "_FillValue": fill}, floating=False),
    )
    if classes is not None:
        group.create_array("class", data=np.asarray(classes), dimension_names=["class"])
        group.create_array(
            "scores",
            shape=(len(classes), *shape),
            dtype=np.float16,
            chunks=(len(classes), *chunks),
            dimension_names=["class", "y", "x"],
            fill_value=np.nan,
            attributes=_variable_attrs({"long_name": "class scores"}, floating=True),
        )
    for name, layer_attrs in (layers or {}).items():
        group.create_array(
            name,
            shape=shape,
            dtype=np.float32,
            chunks=chunks,
            dimension_names=["y", "x"],
            fill_value=np.nan,
            attributes=_variable_attrs(dict(layer_attrs), floating=True),
        )


_PIXEL_ARRAYS: dict[tuple[str, int, int], zarr.Array] = {}


def write_pixel_block(
    target: Path,
    window: tuple[slice, slice],
    *,
    classes: np.ndarray,
    scores: np.ndarray | None,
    layers: Mapping[str, np.ndarray] | None = None,
) -> None:
    """Write one block's region from the worker that computed it.

    Arrays are opened once per process, keyed by their metadata file's inode and
    mtime, so a store made anew at the same path is never written through a stale array.
    """
    for name, data in (("prediction", classes), ("scores", scores), *(layers or {}).items()):
        if data is None:
            continue
        path = target / PIXELS / name
        st = os.stat(path / "zarr.json")
        key = (os.fspath(path), st.st_ino, st.st_mtime_ns)
        if key not in _PIXEL_ARRAYS:
            _PIXEL_ARRAYS[key] = zarr.open_array(os.fspath(path), mode="r+")
        array = _PIXEL_ARRAYS[key]
        region = (slice(None), *window) if data.ndim == 3 else window
        array[region] = data.astype(array.dtype, copy=False)


def _grid_mapping_attrs(crs: CRS, transform: Affine) -> dict[str, Any]:
    """rioxarray's `spatial_ref` attributes: CF grid mapping, WKT, GDAL geotransform."""
    import pyproj

    wkt = crs.to_wkt()
    try:
        cf = pyproj.CRS.from_user_input(wkt).to_cf()
    except KeyError:  # as rioxarray: a CRS with no CF form still gets its WKT
        cf = {}
    return {
        **cf,
        "spatial_ref": wkt,
        "crs_wkt": wkt,
        "GeoTransform": " ".join(str(v) for v in transform.to_gdal()),
    }


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
    if not is_url(path) and not os.path.exists(path):
        raise RunError(f"{path}: does not exist", uri=os.fspath(path))
    try:
        group = zarr.open_group(os.fspath(path), mode="r")
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, ValueError):
        raise RunError(f"{path}: not a run store") from None
    attrs = decode_attrs(dict(group.attrs).get(ATTRS_KEY))
    if attrs is None:
        raise RunError(f"{path}: not a satdask run store (no '{ATTRS_KEY}' attributes)")
    if attrs.get("complete") is not True:
        raise RunError(f"{path}: run store is incomplete (the run crashed or is still writing)")
    return attrs


def open_store(path: str | os.PathLike[str]) -> xr.Dataset:
    """Open a complete run store with georeferencing decoded."""
    import rioxarray  # noqa: F401  (registers the .rio accessor)
    import xarray as xr

    read_attrs(path)
    return xr.open_zarr(os.fspath(path), decode_coords="all")
