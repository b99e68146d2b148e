"""Raster files behind scenes: GDAL settings, metadata, and windowed pixel reads.

Nothing here imports xarray or dask.array, so a batch run over a file starts
reading without paying for them. Objects that travel in the dask graph
(`RasterSource`) hold a URI and band list, never a file handle: each worker
thread opens its own handle on first use and keeps it, because a GDAL dataset
is not thread-safe.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import RasterioError
from rasterio.windows import Window

from satdask.errors import SceneError, ValidationError
from satdask.grid import EdgePolicy, TileGrid, check_edge, check_tile_size, require_tiles

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


@dataclass(frozen=True)
class TiledRaster:
    """A raster cut into chunks of whole tiles: what a batch run needs, without xarray."""

    source: PixelSource
    info: SceneInfo  # the file's metadata, with the acquisition time to record
    tile_size: int
    chunks: tuple[tuple[int, ...], tuple[int, ...]]  # pixel chunk sizes along y and x

    def grid(self, *, edge: EdgePolicy = "skip") -> TileGrid:
        grid = TileGrid(
            self.info.height, self.info.width, self.info.transform, self.tile_size, check_edge(edge)
        )
        return require_tiles(grid, self.info.uri)


def tile_raster(
    source: PixelSource,
    info: SceneInfo,
    *,
    tile_size: int,
    tiles_per_chunk: int | None,
    acquisition_time: str | None = None,
) -> TiledRaster:
    """Chunks of `tiles_per_chunk` tiles a side, or sized from the file's block layout.

    `acquisition_time` overrides the one the file (or STAC item) gives.
    """
    if tiles_per_chunk is None:
        per_chunk = default_tiles_per_chunk(info, tile_size=tile_size, bands=len(source.bands))
    else:
        per_chunk = (check_tile_size(tiles_per_chunk, name="tiles_per_chunk"),) * 2
    if acquisition_time:
        info = replace(info, acquisition_time=parse_datetime(acquisition_time))
    grid = TileGrid(info.height, info.width, info.transform, tile_size)
    return TiledRaster(source, info, tile_size, grid.pixel_chunks(per_chunk))


def open_raster(
    source: str | os.PathLike[str],
    *,
    tile_size: int = 256,
    tiles_per_chunk: int | None = None,
    bands: Sequence[int] | None = None,
    acquisition_time: str | None = None,
) -> TiledRaster:
    """Probe and validate a GeoTIFF/COG and cut it into chunks: no pixel is read."""
    from satdask.validate import check_scene

    tile_size = check_tile_size(tile_size)
    info = probe(source)
    check_scene(info)
    chosen = select_bands(info, bands)
    return tile_raster(
        RasterSource.of(info.uri, chosen),
        info,
        tile_size=tile_size,
        tiles_per_chunk=tiles_per_chunk,
        acquisition_time=acquisition_time,
    )
