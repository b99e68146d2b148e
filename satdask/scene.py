"""Opening scenes lazily and reading their pixels, one GDAL handle per thread.

Objects that travel in the dask graph (`RasterSource`) hold a URI and band list,
never a file handle: each worker thread opens its own handle on first use and
keeps it, because a GDAL dataset is not thread-safe.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import dask.array as da
import numpy as np
import rasterio
import xarray as xr
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import RasterioError
from rasterio.windows import Window

from satdask.errors import SceneError, ValidationError
from satdask.grid import TileGrid, check_tile_size

if TYPE_CHECKING:
    import pystac

# Small block cache: GDAL's default (5% of RAM per process) made peak memory grow
# with scene size; chunks are read once, so a big cache buys nothing. Values are in
# environment form (GDAL_CACHEMAX below 100000 means MB).
GDAL_OPTIONS: dict[str, str] = {
    "GDAL_CACHEMAX": "64",
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff,.TIF,.TIFF",
    "GDAL_HTTP_MAX_RETRY": "3",
    "GDAL_HTTP_RETRY_DELAY": "0.5",
    "VSI_CACHE": "TRUE",
}
TARGET_CHUNK_BYTES = 24 * 1024 * 1024
_HANDLES_PER_THREAD = 16  # a STAC stack keeps one per asset (Sentinel-2 has 13 bands)
_REMOTE_PREFIXES = ("http://", "https://", "s3://", "/vsi")
_DATETIME_TAGS = ("ACQUISITIONDATETIME", "TIFFTAG_DATETIME")

REMOTE_RETRIES = 3
_RETRY_BACKOFF_S = 0.1  # then 0.2, 0.4: under a second in all

_configured_pid: int | None = None
_local = threading.local()


def configure_gdal() -> None:
    """Apply GDAL_OPTIONS once per process, before its first read; a user's own values win.

    Set as environment variables because every thread sees those: rasterio's
    set_gdal_config from a worker thread only reaches that thread.
    """
    global _configured_pid
    if _configured_pid == os.getpid():
        return
    for key, value in {**GDAL_OPTIONS, **s3_endpoint_options(os.environ)}.items():
        os.environ.setdefault(key, value)
    _configured_pid = os.getpid()


def s3_endpoint_options(environ: Mapping[str, str]) -> dict[str, str]:
    """GDAL's names for the S3 endpoint that boto3 and s3fs read from AWS_ENDPOINT_URL.

    One variable then points every reader and writer at MinIO, moto or another
    S3-compatible store; path-style addressing, as those servers expect.
    """
    url = environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL")
    if not url:
        return {}
    parts = urlsplit(url)
    return {
        "AWS_S3_ENDPOINT": parts.netloc,
        "AWS_HTTPS": "YES" if parts.scheme == "https" else "NO",
        "AWS_VIRTUAL_HOSTING": "FALSE",
    }


def read_retries() -> int:
    """Remote reads retried so far on this thread (a task diffs it around its reads)."""
    return getattr(_local, "retries", 0)


def is_remote(uri: str) -> bool:
    return uri.startswith(_REMOTE_PREFIXES)


def normalize_uri(source: str | os.PathLike[str]) -> str:
    """Absolute path for local files (checked to exist), the URL unchanged otherwise."""
    uri = os.fspath(source)
    if is_remote(uri):
        return uri
    if uri.startswith("file://"):
        uri = uri[len("file://") :]
    path = Path(uri).expanduser()
    if not path.exists():
        raise SceneError(f"{uri}: no such file")
    if path.is_dir():
        raise SceneError(f"{uri}: is a directory, not a raster file")
    if path.stat().st_size == 0:
        raise SceneError(f"{uri}: file is empty")
    return str(path.resolve())


@dataclass(frozen=True)
class SceneInfo:
    """Metadata of a raster file, read without touching its pixels."""

    uri: str
    width: int
    height: int
    count: int
    dtypes: tuple[str, ...]
    crs: CRS | None
    transform: Affine
    nodata: float | None
    block_shape: tuple[int, int]
    acquisition_time: str | None

    @property
    def dtype(self) -> str:
        return self.dtypes[0] if self.dtypes else "none"

    @property
    def name(self) -> str:
        return self.uri.rstrip("/").rsplit("/", 1)[-1]


def probe(source: str | os.PathLike[str]) -> SceneInfo:
    """Read a raster's metadata; `SceneError` names the file when it is no raster."""
    uri = normalize_uri(source)
    try:
        with _open(uri) as src:
            return SceneInfo(
                uri=uri,
                width=src.width,
                height=src.height,
                count=src.count,
                dtypes=tuple(src.dtypes),
                crs=src.crs,
                transform=src.transform,
                nodata=src.nodata,
                block_shape=tuple(src.block_shapes[0]) if src.count else (0, 0),
                acquisition_time=_acquisition_time(src),
            )
    except RasterioError as exc:
        raise SceneError(f"{uri}: not a readable raster ({gdal_message(exc)})") from None


def _open(uri: str) -> rasterio.io.DatasetReader:
    configure_gdal()
    return rasterio.open(uri)


def gdal_message(exc: BaseException) -> str:
    """rasterio's message plus GDAL's own reason, which rasterio chains as the cause."""
    parts = [str(exc)]
    if exc.__cause__ is not None and str(exc.__cause__) not in parts[0]:
        parts.append(str(exc.__cause__))
    return " ".join(": ".join(parts).split())


def _acquisition_time(src: rasterio.io.DatasetReader) -> str | None:
    tags = {**src.tags(ns="IMAGERY"), **src.tags()}
    for key in _DATETIME_TAGS:
        if value := tags.get(key):
            return parse_datetime(value)
    return None


def parse_datetime(value: str) -> str:
    """ISO 8601 from a TIFF ('2026:06:01 10:30:00') or ISO timestamp."""
    text = value.strip()
    for fmt in ("%Y:%m:%d %H:%M:%S", "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.strptime(text, fmt).isoformat()
        except ValueError:
            pass
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).isoformat()
    except ValueError:
        raise ValidationError(f"acquisition time {value!r} is not a date and time") from None


@dataclass(frozen=True)
class RasterSource:
    """What a task needs to read pixels: the URI and bands, never an open handle.

    `stamp` (size and mtime of a local file) keys the per-thread handle cache, so
    a file rewritten in place is reopened rather than read through a stale handle.
    """

    uri: str
    bands: tuple[int, ...]
    stamp: tuple[int, int] = (0, 0)

    @classmethod
    def of(cls, uri: str, bands: Sequence[int]) -> RasterSource:
        stamp = (0, 0)
        if not is_remote(uri):
            st = os.stat(uri)
            stamp = (st.st_size, st.st_mtime_ns)
        return cls(uri, tuple(int(b) for b in bands), stamp)

    def read(self, window: Window, *, retries: int = REMOTE_RETRIES) -> np.ndarray:
        """(band, y, x) pixels of `window`; raises RasterioError on undecodable data.

        A remote read that fails is retried up to `retries` times on a fresh handle,
        with doubling backoff, and counted in `read_retries()`: connections drop,
        while bytes on a local disk do not heal, so local reads are tried once.
        """
        attempts = 1 + (retries if is_remote(self.uri) else 0)
        for attempt in range(attempts):
            try:
                return self._dataset().read(indexes=list(self.bands), window=window)
            except RasterioError:
                if attempt + 1 == attempts:
                    raise
                self._forget()
                _local.retries = read_retries() + 1
                time.sleep(_RETRY_BACKOFF_S * 2**attempt)
        raise AssertionError("unreachable")

    def _forget(self) -> None:
        handles = getattr(_local, "handles", {})
        handle = handles.pop((self.uri, self.stamp), None)
        if handle is not None:
            handle.close()

    def subset(self, index: slice) -> RasterSource:
        return RasterSource(self.uri, self.bands[index], self.stamp)

    def _dataset(self) -> rasterio.io.DatasetReader:
        handles: OrderedDict[tuple[str, tuple[int, int]], Any] | None = getattr(
            _local, "handles", None
        )
        if handles is None:
            handles = _local.handles = OrderedDict()
        key = (self.uri, self.stamp)
        if key in handles:
            handles.move_to_end(key)
            return handles[key]
        handles[key] = _open(self.uri)
        while len(handles) > _HANDLES_PER_THREAD:
            handles.popitem(last=False)[1].close()
        return handles[key]

    def __dask_tokenize__(self) -> tuple[Any, ...]:
        return ("RasterSource", self.uri, self.bands, self.stamp)


class PixelSource(Protocol):
    """What tasks read pixels through: a RasterSource, or a STAC item's StackSource."""

    uri: str
    bands: tuple[int, ...]

    def read(self, window: Window, *, retries: int = REMOTE_RETRIES) -> np.ndarray: ...

    def subset(self, index: slice) -> PixelSource: ...

    def __dask_tokenize__(self) -> tuple[Any, ...]: ...


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


def select_bands(info: SceneInfo, bands: Sequence[int] | None) -> tuple[int, ...]:
    if bands is None:
        return tuple(range(1, info.count + 1))
    chosen = tuple(bands)
    if not chosen:
        raise SceneError(f"{info.uri}: bands must name at least one band")
    bad = [b for b in chosen if isinstance(b, bool) or not isinstance(b, int | np.integer)]
    bad += [b for b in chosen if b not in bad and not 1 <= b <= info.count]
    if bad:
        raise SceneError(
            f"{info.uri}: band(s) {', '.join(map(str, bad))} do not exist; "
            f"the scene has bands 1..{info.count}"
        )
    return chosen


def default_tiles_per_chunk(
    info: SceneInfo, *, tile_size: int, bands: int, target_bytes: int = TARGET_CHUNK_BYTES
) -> tuple[int, int]:
    """Whole tiles per chunk: about `target_bytes`, aligned to the file's blocks.

    A striped file (blocks as wide as the scene) gets full-width chunks, since any
    narrower window decodes whole strips anyway.
    """
    pixels = target_bytes / (bands * np.dtype(info.dtype).itemsize)
    block_h, block_w = info.block_shape
    cols = max(1, math.ceil(info.width / tile_size))
    if block_w >= info.width and block_h < info.height:
        return max(1, int(pixels / (cols * tile_size) / tile_size)), cols
    k = max(1, int(math.sqrt(pixels) / tile_size))
    return (
        _align(_balance(k, info.height // tile_size), tile_size, block_h),
        _align(_balance(k, info.width // tile_size), tile_size, block_w),
    )


def _balance(k: int, tiles: int) -> int:
    """Same number of chunks, evened out: 8 tiles at k=6 become 4 + 4, not 6 + 2."""
    if tiles <= k:
        return max(tiles, 1)
    return math.ceil(tiles / math.ceil(tiles / k))


def _align(k: int, tile_size: int, block: int) -> int:
    """Round k down to a multiple of the tiles that make one file block, if any."""
    step = math.lcm(tile_size, block) // tile_size
    return max(step, k - k % step) if step <= 4 * k else k


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
    from satdask.validate import check_scene

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
    tile_size = check_tile_size(tile_size)
    info = probe(source)
    check_scene(info)
    chosen = select_bands(info, bands)
    return lazy_scene(
        RasterSource.of(info.uri, chosen),
        info,
        tile_size=tile_size,
        tiles_per_chunk=tiles_per_chunk,
        acquisition_time=acquisition_time,
    )


def lazy_scene(
    source: PixelSource,
    info: SceneInfo,
    *,
    tile_size: int,
    tiles_per_chunk: int | None,
    acquisition_time: str | None,
) -> xr.DataArray:
    """The tile-chunked DataArray over `source`, whose `bands` become the band coordinate."""
    chosen = source.bands
    if tiles_per_chunk is None:
        per_chunk = default_tiles_per_chunk(info, tile_size=tile_size, bands=len(chosen))
    else:
        per_chunk = (check_tile_size(tiles_per_chunk, name="tiles_per_chunk"),) * 2
    grid = TileGrid(info.height, info.width, info.transform, tile_size)
    ychunks, xchunks = grid.pixel_chunks(per_chunk)
    lazy = _LazyRaster(source, (len(chosen), info.height, info.width), info.dtype)
    data = da.from_array(
        lazy,
        chunks=((len(chosen),), ychunks, xchunks),
        lock=False,
        asarray=False,
        fancy=False,
        meta=np.empty((0, 0, 0), dtype=info.dtype),
        name="scene-" + da.core.tokenize(lazy, ychunks, xchunks),
    )
    return _as_dataarray(data, info, chosen, tile_size, acquisition_time)


def _as_dataarray(
    data: da.Array,
    info: SceneInfo,
    bands: tuple[int, ...],
    tile_size: int,
    acquisition_time: str | None,
) -> xr.DataArray:
    import rioxarray  # noqa: F401  (registers the .rio accessor)

    tf = info.transform
    xs = tf.c + tf.a * (np.arange(info.width) + 0.5)
    ys = tf.f + tf.e * (np.arange(info.height) + 0.5)
    when = parse_datetime(acquisition_time) if acquisition_time else info.acquisition_time
    arr = xr.DataArray(
        data,
        dims=("band", "y", "x"),
        coords={"band": list(bands), "y": ys, "x": xs},
        name=info.name,
        attrs={
            "source": info.uri,
            "tile_size": tile_size,
            "acquisition_time": when or "",
        },
    )
    arr = arr.rio.write_crs(info.crs).rio.write_transform(tf)
    return arr.rio.write_nodata(info.nodata, encoded=False)


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
