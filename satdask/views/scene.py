"""Scenes as lazy xarray DataArrays chunked in whole tiles, over any pixel source."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dask.array as da
import numpy as np
import xarray as xr
from rasterio.errors import RasterioError

from satdask.core.grid import TileGrid, Window
from satdask.errors import SceneError, ValidationError
from satdask.io._gdal import gdal_message
from satdask.io.open import open_source, source_from_scene
from satdask.io.source import (
    REMOTE_RETRIES,
    PixelSource,
    PlainSource,
    SceneInfo,
    TiledRaster,
    applied_mask,
    read_masked,
    tile_raster,
)

if TYPE_CHECKING:
    import pystac

SceneLike = str | os.PathLike[str] | xr.DataArray
# The (y, x) coordinate of a scene whose file has a per-dataset or alpha mask: True where
# a pixel is valid. A coordinate, so subsets, rechunks and arithmetic keep it in step.
VALID = "valid"


class _LazyRaster:
    """Array-like that dask.array.from_array slices; each slice is one windowed read."""

    def __init__(self, source: PixelSource, shape: tuple[int, int, int], dtype: str) -> None:
        self.source = source
        self.shape = shape
        self.dtype = np.dtype(dtype)
        self.ndim = 3

    def __getitem__(self, key: tuple[slice, slice, slice]) -> np.ndarray:
        bands, rows, cols = key
        window = _window(rows, cols, height=self.shape[1], width=self.shape[2])
        sub = self.source.subset(bands)
        try:
            return sub.read(window)
        except RasterioError as exc:  # e.g. a truncated file: it opens fine, fails on read
            raise _unreadable(self.source, window, exc, "pixels") from None

    def __dask_tokenize__(self) -> tuple[Any, ...]:
        return ("LazyRaster", self.source.__dask_tokenize__(), self.shape, str(self.dtype))


class _LazyMask:
    """Array-like of a source's (y, x) mask, True where valid; each slice is one read."""

    def __init__(self, source: PixelSource, shape: tuple[int, int]) -> None:
        self.source = source
        self.shape = shape
        self.dtype = np.dtype(bool)
        self.ndim = 2

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        rows, cols = key
        window = _window(rows, cols, height=self.shape[0], width=self.shape[1])
        try:
            valid = self.source.read_mask(window)
        except RasterioError as exc:
            raise _unreadable(self.source, window, exc, "the mask of pixels") from None
        return np.ones((window.height, window.width), dtype=bool) if valid is None else valid

    def __dask_tokenize__(self) -> tuple[Any, ...]:
        return ("LazyMask", self.source.__dask_tokenize__(), self.shape)


def _unreadable(source: PixelSource, window: Window, exc: RasterioError, what: str) -> SceneError:
    return SceneError(
        f"{source.uri}: {what} at rows {window.row_off}:{window.row_off + window.height}, "
        f"cols {window.col_off}:{window.col_off + window.width} cannot be read "
        f"({gdal_message(exc)})",
        uri=source.uri,
    )


def _window(rows: slice, cols: slice, *, height: int, width: int) -> Window:
    r0, r1, _ = rows.indices(height)
    c0, c1, _ = cols.indices(width)
    return Window(c0, r0, c1 - c0, r1 - r0)


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
    `assets=[keys]` picks them, `bands` picks by number or common name.
    """
    raster = open_source(
        source,
        tile_size=tile_size,
        tiles_per_chunk=tiles_per_chunk,
        bands=bands,
        assets=assets,
        acquisition_time=acquisition_time,
    )
    return lazy_scene(raster)


def as_scene(scene: SceneLike, **options: Any) -> xr.DataArray:
    """A DataArray as it is; anything else opened with `open_scene(scene, **options)`."""
    return scene if isinstance(scene, xr.DataArray) else open_scene(scene, **options)


def lazy_scene(raster: TiledRaster) -> xr.DataArray:
    """The tile-chunked DataArray over a raster, whose bands become the band coordinate.

    Georeferencing lives in coords and attrs (rioxarray's `spatial_ref` convention).
    The source's per-band labels become coordinates along `band` and its attributes
    join the scene's, so `scene_source` can rebuild it after any band selection. A
    file's per-dataset or alpha mask becomes the lazy (y, x) coordinate `valid`, read
    chunk by chunk like the pixels, which `tile_features` and runs over the array honour.
    """
    import rioxarray  # noqa: F401  (registers the .rio accessor)

    info, source = raster.info, raster.source
    bands = source.bands
    ychunks, xchunks = raster.chunks
    lazy = _LazyRaster(source, (len(bands), info.height, info.width), info.dtype)
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
    labels: dict[str, Any] = {
        name: ("band", list(values)) for name, values in source.band_labels.items()
    }
    if applied_mask(info, bands) is not None:
        mask = _LazyMask(source, (info.height, info.width))
        valid = da.from_array(
            mask,
            chunks=(ychunks, xchunks),
            lock=False,
            asarray=False,
            fancy=False,
            meta=np.empty((0, 0), dtype=bool),
            name="valid-" + da.core.tokenize(mask, ychunks, xchunks),
        )
        labels[VALID] = (("y", "x"), valid)
    arr = xr.DataArray(
        data,
        dims=("band", "y", "x"),
        coords={
            "band": list(bands),
            **labels,
            "y": tf.f + tf.e * (np.arange(info.height) + 0.5),
            "x": tf.c + tf.a * (np.arange(info.width) + 0.5),
        },
        name=info.name,
        attrs={
            "source": info.uri,
            "tile_size": raster.tile_size,
            "acquisition_time": info.acquisition_time or "",
            **source.scene_attrs(),
        },
    )
    arr = arr.rio.write_crs(info.crs).rio.write_transform(tf)
    return arr.rio.write_nodata(info.nodata, encoded=False)


def scene_raster(scene: xr.DataArray) -> TiledRaster:
    """What a batch run reads for a DataArray: its pixels exactly as the array holds them.

    When the array is a scene from `open_scene` unchanged over its whole extent (at most
    rechunked), its tasks read the file directly, window by window: the fast path, with
    failures isolated to the tiles whose bytes are bad. Anything else (arithmetic, a
    subset, a band selection, a graph of the user's) is computed as given, block by
    block, through an `ArrayPixels`: the file behind it is never re-read in its place.
    """
    import rioxarray  # noqa: F401  (registers the .rio accessor)

    if scene.dims != ("band", "y", "x"):
        raise SceneError(f"a scene has dims (band, y, x); this array has {scene.dims}")
    source = _file_read(scene) or ArrayPixels.of(scene)
    require_crs(scene, name=source.uri)
    tile_size = int(scene.attrs.get("tile_size", 256))
    info = SceneInfo(
        uri=source.uri,
        width=scene.sizes["x"],
        height=scene.sizes["y"],
        count=len(source.bands),
        dtypes=(str(scene.dtype),) * len(source.bands),
        crs=scene.rio.crs,
        transform=scene.rio.transform(recalc=True),
        nodata=scene_nodata(scene),
        block_shape=(tile_size, tile_size),  # the file's is unknown here; it only guides chunks
        acquisition_time=scene.attrs.get("acquisition_time") or None,
    )
    grid = TileGrid(info.height, info.width, info.transform, tile_size)
    chunks = (scene.chunks[1], scene.chunks[2]) if scene.chunks else None
    aligned = grid.aligned_chunks(chunks) if chunks else None
    if aligned is None:
        return tile_raster(source, info, tile_size=tile_size, tiles_per_chunk=None)
    return TiledRaster(source, info, tile_size, aligned)


def require_crs(scene: xr.DataArray, *, name: str | None = None) -> None:
    """An array without a CRS has no place on a map: refuse it as a file without one is."""
    import rioxarray  # noqa: F401  (registers the .rio accessor)

    if scene.rio.crs is None:
        name = name or str(scene.attrs.get("source") or scene.name or "the array")
        raise ValidationError(
            f"{name}: no CRS; write one (scene.rio.write_crs('EPSG:XXXX')) before a run",
            uri=name,
        )


def _file_read(scene: xr.DataArray) -> PixelSource | None:
    """The source a scene reads unchanged over its whole extent, taken from its dask graph.

    The graph, not the attributes, says where the pixels come from: xarray keeps
    `attrs["source"]` through arithmetic and subsets, which change the pixels.
    """
    graph = getattr(scene.data, "dask", None)
    if graph is None:
        return None
    names = [str(name) for name in graph.layers]
    if not all(name.startswith(("original-scene-", "scene-", "rechunk-")) for name in names):
        return None
    lazies = [
        value
        for name, layer in graph.layers.items()
        if str(name).startswith("original-scene-")
        for value in layer.values()
        if isinstance(value, _LazyRaster)
    ]
    if len(lazies) != 1 or lazies[0].shape != scene.shape:
        return None
    return lazies[0].source


@dataclass(frozen=True)
class ArrayPixels(PlainSource):
    """A PixelSource over an array's own values: what a derived scene's blocks compute.

    Each read computes just its window of the array (with dask's synchronous scheduler,
    inside the task that asked), so a derived scene is inferred block by block in
    bounded memory, like a file. `derived_from` names the file the array started from,
    for lineage, which records that the pixels were not read from it. `valid` is the
    array's `valid` coordinate (its file's mask), which its reads honour as a file's.
    """

    uri: str
    bands: tuple[int, ...]
    array: Any  # (band, y, x): a dask or numpy array
    derived_from: str | None
    valid: Any = None  # (y, x) bool, dask or numpy: True where valid; None when no mask

    @classmethod
    def of(cls, scene: xr.DataArray) -> ArrayPixels:
        origin = scene.attrs.get("source")
        labels = np.atleast_1d(scene["band"].values) if "band" in scene.coords else np.empty(0)
        numbers = [int(b) for b in labels if isinstance(b, int | np.integer)]
        bands = (
            numbers if len(numbers) == scene.sizes["band"] else range(1, scene.sizes["band"] + 1)
        )
        uri = f"array:{scene.name or 'scene'}" + (f" derived from {origin}" if origin else "")
        derived = str(origin) if origin else None
        return cls(uri, tuple(bands), scene.data, derived, scene_mask(scene))

    def read(self, window: Window, *, retries: int = REMOTE_RETRIES) -> np.ndarray:
        return _computed(self.array[(slice(None), *window.toslices())])

    def read_mask(self, window: Window, *, retries: int = REMOTE_RETRIES) -> np.ndarray | None:
        if self.valid is None:
            return None
        return _computed(self.valid[window.toslices()]).astype(bool, copy=False)

    def subset(self, index: slice) -> ArrayPixels:
        return ArrayPixels(
            self.uri, self.bands[index], self.array[index], self.derived_from, self.valid
        )

    def lineage(self) -> dict[str, Any]:
        """No file holds these pixels: say so, and name the one they were derived from."""
        return {
            "derived_from": self.derived_from,
            "pixels": "computed from an xarray array (arithmetic, a subset, a band selection "
            "or a graph of the caller's), not read from "
            + (self.derived_from or "any file")
            + "; they cannot be traced to a file by hash",
        }

    def probe(self) -> tuple[SceneInfo, tuple[SceneInfo, ...]]:
        raise SceneError(f"{self.uri}: an array in memory has no file to probe")

    def __dask_tokenize__(self) -> tuple[Any, ...]:
        name = getattr(self.array, "name", None) or da.core.tokenize(self.array)
        if self.valid is None:
            return ("ArrayPixels", self.uri, self.bands, name)
        mask = getattr(self.valid, "name", None) or da.core.tokenize(self.valid)
        return ("ArrayPixels", self.uri, self.bands, name, mask)


def _computed(part: Any) -> np.ndarray:
    """A window of a dask array computed in the calling task; a numpy one as it is."""
    if hasattr(part, "compute"):
        part = part.compute(scheduler="sync")
    return np.asarray(part)


def scene_mask(scene: xr.DataArray) -> Any | None:
    """The scene's (y, x) `valid` coordinate as a dask or numpy array, or None."""
    coord = scene.coords.get(VALID)
    if coord is None or coord.dims != ("y", "x"):
        return None
    return coord.data


def scene_source(scene: xr.DataArray) -> PixelSource:
    """The file (or STAC assets) behind a scene from `open_scene`, with the bands it holds."""
    uri = scene.attrs.get("source")
    if not uri or "band" not in scene.dims:
        raise SceneError(
            "expected a scene from satdask.open_scene (a DataArray with a 'source' attribute)"
        )
    labels = {
        str(name): [str(v) for v in np.atleast_1d(coord.values)]
        for name, coord in scene.coords.items()
        if coord.dims == ("band",) and name != "band"
    }
    bands = [int(b) for b in np.atleast_1d(scene["band"].values)]
    return source_from_scene(uri, bands, attrs=scene.attrs, labels=labels)


def scene_nodata(scene: xr.DataArray) -> float | None:
    value = scene.attrs.get("_FillValue")
    return None if value is None else float(value)


def read_tile(scene: xr.DataArray, row: int, col: int, *, grid: TileGrid) -> np.ndarray:
    """One tile's pixels by a windowed read of the file, bypassing dask (for the API).

    A numpy masked array where the file has a per-dataset or alpha mask (masked where
    invalid), which `infer_block` honours as a batch run does.
    """
    try:
        return read_masked(scene_source(scene), grid.window(row, col))
    except RasterioError as exc:
        uri = scene.attrs["source"]
        raise SceneError(
            f"{uri}: tile ({row}, {col}) cannot be read ({gdal_message(exc)})", uri=uri
        ) from None
