"""Scenes as lazy xarray DataArrays chunked in whole tiles, over `satdask.raster`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import dask.array as da
import numpy as np
import xarray as xr
from rasterio.errors import RasterioError
from rasterio.windows import Window

from satdask.errors import SceneError
from satdask.grid import TileGrid
from satdask.raster import (
    PixelSource,
    RasterSource,
    SceneInfo,
    TiledRaster,
    gdal_message,
    open_raster,
)

if TYPE_CHECKING:
    import pystac


class _LazyRaster:
    """Array-like that dask.array.from_array slices; each slice is one windowed read."""

    def __init__(self, source: PixelSource, shape: tuple[int, int, int], dtype: str) -> None:
        self.source = source
        self.shape = shape
        self.dtype = np.dtype(dtype)
        self.ndim = 3

    def __getitem__(self, key: tuple[slice, slice, slice]) -> np.ndarray:
        bands, rows, cols = key
        window = Window.from_slices(rows, cols, height=self.shape[1], width=self.shape[2])
        sub = self.source.subset(bands)
        try:
            return sub.read(window)
        except RasterioError as exc:  # e.g. a truncated file: it opens fine, fails on read
            r, c = window.toslices()
            raise SceneError(
                f"{self.source.uri}: pixels at rows {r.start}:{r.stop}, cols {c.start}:{c.stop} "
                f"cannot be read ({gdal_message(exc)})"
            ) from None

    def __dask_tokenize__(self) -> tuple[Any, ...]:
        return ("LazyRaster", self.source.__dask_tokenize__(), self.shape, str(self.dtype))


def open_scene(
    source: str | os.PathLike[str] | pystac.Item,
    *,
    tile_size: int = 256,
    tiles_per_chunk: int | None = None,
    bands: Sequence[int | str] | None = None,
    assets: Sequence[str] | None = None,
    acquisition_time: str | None = None,
) -> xr.DataArray:
    """Open a GeoTIFF/COG as a lazy (band, y, x) DataArray whose chunks are whole tiles.

    Nothing but metadata is read here; georeferencing lives in coords and attrs
    (rioxarray's `spatial_ref` convention) so it survives arithmetic. A STAC item
    (a `pystac.Item`, or a path/URL to its JSON) stacks its single-band assets:
    `assets=[keys]` picks them, `bands` picks by number or common name (`satdask.stac`).
    """
    from satdask import stac

    if stac.is_item(source):
        return stac.open_item(
            source,
            tile_size=tile_size,
            tiles_per_chunk=tiles_per_chunk,
            assets=assets,
            bands=bands,
            acquisition_time=acquisition_time,
        )
    if assets is not None:
        raise SceneError(f"{os.fspath(source)}: assets= selects assets of a STAC item only")
    raster = open_raster(
        source,
        tile_size=tile_size,
        tiles_per_chunk=tiles_per_chunk,
        bands=bands,  # type: ignore[arg-type]  (names are for STAC items; refused here)
        acquisition_time=acquisition_time,
    )
    return lazy_scene(raster)


def lazy_scene(raster: TiledRaster) -> xr.DataArray:
    """The tile-chunked DataArray over a raster, whose bands become the band coordinate.

    Georeferencing lives in coords and attrs (rioxarray's `spatial_ref` convention).
    """
    import rioxarray  # noqa: F401  (registers the .rio accessor)

    info, bands = raster.info, raster.source.bands
    ychunks, xchunks = raster.chunks
    lazy = _LazyRaster(raster.source, (len(bands), info.height, info.width), info.dtype)
    data = da.from_array(
        lazy,
        chunks=((len(bands),), ychunks, xchunks),
        lock=False,
        asarray=False,
        fancy=False,
        meta=np.empty((0, 0, 0), dtype=info.dtype),
        name="scene-" + da.core.tokenize(lazy, ychunks, xchunks),
    )
    tf = info.transform
    arr = xr.DataArray(
        data,
        dims=("band", "y", "x"),
        coords={
            "band": list(bands),
            "y": tf.f + tf.e * (np.arange(info.height) + 0.5),
            "x": tf.c + tf.a * (np.arange(info.width) + 0.5),
        },
        name=info.name,
        attrs={
            "source": info.uri,
            "tile_size": raster.tile_size,
            "acquisition_time": info.acquisition_time or "",
        },
    )
    arr = arr.rio.write_crs(info.crs).rio.write_transform(tf)
    return arr.rio.write_nodata(info.nodata, encoded=False)


def scene_raster(scene: xr.DataArray) -> TiledRaster:
    """A scene from `open_scene`, however rechunked, as the raster a batch run reads."""
    source = scene_source(scene)
    info = SceneInfo(
        uri=source.uri,
        width=scene.sizes["x"],
        height=scene.sizes["y"],
        count=len(source.bands),
        dtypes=(str(scene.dtype),) * len(source.bands),
        crs=scene.rio.crs,
        transform=scene.rio.transform(recalc=False),
        nodata=scene_nodata(scene),
        block_shape=(0, 0),  # unknown here, and only used to choose chunks
        acquisition_time=scene.attrs.get("acquisition_time") or None,
    )
    tile_size = int(scene.attrs.get("tile_size", 256))
    return TiledRaster(source, info, tile_size, (scene.chunks[1], scene.chunks[2]))


def scene_source(scene: xr.DataArray) -> PixelSource:
    """The file (or STAC assets) behind a scene from `open_scene`, with the bands it holds."""
    from satdask.stac import is_stack, stack_source

    uri = scene.attrs.get("source")
    if not uri or "band" not in scene.dims:
        raise SceneError(
            "expected a scene from satdask.open_scene (a DataArray with a 'source' attribute)"
        )
    if is_stack(scene):
        return stack_source(scene)
    return RasterSource.of(uri, [int(b) for b in np.atleast_1d(scene["band"].values)])


def scene_nodata(scene: xr.DataArray) -> float | None:
    value = scene.attrs.get("_FillValue")
    return None if value is None else float(value)


def read_tile(scene: xr.DataArray, row: int, col: int, *, grid: TileGrid) -> np.ndarray:
    """One tile's pixels by a windowed read of the file, bypassing dask (for the API)."""
    try:
        return scene_source(scene).read(grid.window(row, col))
    except RasterioError as exc:
        raise SceneError(
            f"{scene.attrs['source']}: tile ({row}, {col}) cannot be read ({gdal_message(exc)})"
        ) from None
