"""GeoTIFF/COG files: metadata, and windowed pixel reads through per-thread handles.

Nothing here imports xarray or dask.array, so a batch run over a file starts
reading without paying for them. A `RasterSource` travels in the dask graph and
holds a URI and band list, never a file handle: each worker thread opens its own
handle on first use and keeps it, because a GDAL dataset is not thread-safe.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import rasterio
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.errors import RasterioError
from rasterio.windows import Window as RioWindow

from satdask._uri import is_remote, normalize_uri
from satdask.core.grid import Window, check_tile_size
from satdask.errors import SceneError, ValidationError
from satdask.io._gdal import configure_gdal, gdal_message
from satdask.io.source import (
    REMOTE_RETRIES,
    PlainSource,
    SceneInfo,
    TiledRaster,
    check_scene,
    parse_datetime,
    select_bands,
    tile_raster,
)

_HANDLES_PER_THREAD = 16  # a STAC stack keeps one per asset (Sentinel-2 has 13 bands)
_DATETIME_TAGS = ("ACQUISITIONDATETIME", "TIFFTAG_DATETIME")
_RETRY_BACKOFF_S = 0.1  # then 0.2, 0.4: under a second in all

# A local file opens with its sidecars looked up by name (a .msk mask is one), not by a
# directory listing; remote files keep GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR (no sidecar).
_LOCAL_OPEN = {"GDAL_DISABLE_READDIR_ON_OPEN": "TRUE"}

_local = threading.local()
_T = TypeVar("_T")


def read_retries() -> int:
    """Remote reads retried so far on this thread (a task diffs it around its reads)."""
    return getattr(_local, "retries", 0)


def probe(source: str | os.PathLike[str]) -> SceneInfo:
    """Read a raster's metadata; `SceneError` names the file when it is no raster."""
    return probe_uri(normalize_uri(source))


def probe_uri(uri: str) -> SceneInfo:
    """`probe` of a name opened exactly as given: no check by name, no `resolve()`.

    For a caller that vetted the file itself, e.g. the service, which opens a file by
    descriptor and hands GDAL `/proc/self/fd/N`: resolving that would turn it back into
    a name that can be swapped.
    """
    try:
        with _open(uri) as src:
            mask, alpha, _ = _mask_of(src)
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
                mask=mask,
                alpha_band=alpha,
            )
    except RasterioError as exc:
        raise SceneError(f"{uri}: not a readable raster ({gdal_message(exc)})", uri=uri) from None


def _open(uri: str) -> rasterio.io.DatasetReader:
    configure_gdal()
    if is_remote(uri):
        return rasterio.open(uri)
    with rasterio.Env(**_LOCAL_OPEN):
        return rasterio.open(uri)


def _mask_of(src: rasterio.io.DatasetReader) -> tuple[str | None, int | None, int]:
    """(mask kind, alpha band, band whose GDAL mask is the dataset's) of an open file.

    GDAL's mask flags of the first data band decide: a per-dataset mask (internal or
    .msk) is "per-dataset"; else a band of colorinterp alpha is the mask ("alpha"),
    whatever the band count (GDAL's own flags see one only in 2- or 4-band files).
    Nodata-only and all-valid files have none: the pixels say which are invalid.
    """
    interp = src.colorinterp
    alpha = next((i for i, c in enumerate(interp, start=1) if c == ColorInterp.alpha), None)
    first = next((b for b in range(1, src.count + 1) if b != alpha), None)
    if first is None:
        return None, alpha, 1
    flags = src.mask_flag_enums[first - 1]
    if MaskFlags.per_dataset in flags and MaskFlags.alpha not in flags:
        return "per-dataset", alpha, first
    return ("alpha" if alpha is not None else None), alpha, first


def _acquisition_time(src: rasterio.io.DatasetReader) -> str | None:
    tags = {**src.tags(ns="IMAGERY"), **src.tags()}
    for key in _DATETIME_TAGS:
        if value := tags.get(key):
            return parse_datetime(value)
    return None


@dataclass(frozen=True)
class RasterSource(PlainSource):
    """What a task needs to read pixels: the URI and bands, never an open handle.

    `stamp` (device, inode, size and mtime of a local file; zeros for a URL) keys the
    per-thread handle cache, so a file rewritten or replaced is reopened rather than read
    through a stale handle, and a name such as `/proc/self/fd/N`, whose number a later
    file may get, never finds the handle of another file.
    """

    uri: str
    bands: tuple[int, ...]
    stamp: tuple[int, ...] = (0, 0)

    @classmethod
    def of(cls, uri: str, bands: Sequence[int]) -> RasterSource:
        stamp: tuple[int, ...] = (0, 0)
        if not is_remote(uri):
            st = os.stat(uri)
            stamp = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        return cls(uri, tuple(int(b) for b in bands), stamp)

    def read(self, window: Window, *, retries: int = REMOTE_RETRIES) -> np.ndarray:
        """(band, y, x) pixels of `window`; raises RasterioError on undecodable data.

        A remote read that fails is retried up to `retries` times on a fresh handle,
        with doubling backoff, and counted in `read_retries()`: connections drop,
        while bytes on a local disk do not heal, so local reads are tried once.
        """
        return self._retrying(
            lambda src: src.read(indexes=list(self.bands), window=_rio(window)), retries
        )

    def read_mask(self, window: Window, *, retries: int = REMOTE_RETRIES) -> np.ndarray | None:
        """(y, x) True where the file's per-dataset or alpha mask says valid, else None.

        An alpha band read as data (named in `bands`) is data, not a mask. Retried as
        `read` is, on the same per-thread handle.
        """
        return self._retrying(lambda src: self._mask(src, window), retries)

    def _mask(self, src: rasterio.io.DatasetReader, window: Window) -> np.ndarray | None:
        kind, alpha, first = _mask_of(src)
        if kind == "per-dataset":  # one band's mask is the dataset's
            mask: np.ndarray = src.read_masks(first, window=_rio(window))
        elif kind == "alpha" and alpha not in self.bands:
            mask = src.read(alpha, window=_rio(window))
        else:
            return None
        return mask != 0  # GDAL: 0 is invalid; any other alpha (partly opaque) is valid

    def _retrying(self, read: Callable[[rasterio.io.DatasetReader], _T], retries: int) -> _T:
        attempts = 1 + (retries if is_remote(self.uri) else 0)
        for attempt in range(attempts):
            try:
                return read(self._dataset())
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

    def lineage(self) -> dict[str, Any]:
        return {}

    def probe(self) -> tuple[SceneInfo, tuple[SceneInfo, ...]]:
        info = probe(self.uri)
        return info, (info,)

    def _dataset(self) -> rasterio.io.DatasetReader:
        handles: OrderedDict[tuple[str, tuple[int, ...]], Any] | None = getattr(
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


def open_raster(
    source: str | os.PathLike[str],
    *,
    tile_size: int = 256,
    tiles_per_chunk: int | None = None,
    bands: Sequence[int] | None = None,
    acquisition_time: str | None = None,
) -> TiledRaster:
    """Probe and validate a GeoTIFF/COG and cut it into chunks: no pixel is read."""
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


def _rio(window: Window) -> RioWindow:
    """rasterio's window for ours (a rasterio Window passes through unchanged)."""
    return RioWindow(window.col_off, window.row_off, window.width, window.height)


def check_complete(info: SceneInfo) -> None:
    """Refuse a local GeoTIFF whose pixel blocks extend past the end of the file.

    A truncated GeoTIFF (an interrupted copy or download) opens fine and fails only
    when its missing blocks are read, so the header alone cannot tell. The block
    offsets and sizes in the TIFF directory can, at about 2 us per block.
    """
    if is_remote(info.uri):
        return
    size = os.path.getsize(info.uri)
    end = _data_end(info)
    if end > size:
        raise ValidationError(
            f"{info.uri}: file is truncated: its pixel data ends at byte {end} but the file "
            f"has {size} bytes (an interrupted copy or download?)",
            uri=info.uri,
        )


def _data_end(info: SceneInfo) -> int:
    """Largest offset + size over the full-resolution blocks of a GeoTIFF (0 otherwise)."""
    configure_gdal()
    with rasterio.open(info.uri) as src:
        if src.driver != "GTiff":
            return 0
        interleave = src.tags(ns="IMAGE_STRUCTURE").get("INTERLEAVE", "PIXEL")
        band_ids = range(1, src.count + 1) if interleave == "BAND" else (1,)
        block_h, block_w = info.block_shape
        rows, cols = -(-info.height // block_h), -(-info.width // block_w)
        end = 0
        for bidx in band_ids:
            for y in range(rows):
                for x in range(cols):
                    offset = src.get_tag_item(f"BLOCK_OFFSET_{x}_{y}", "TIFF", bidx=bidx)
                    if offset:  # missing or 0: a sparse block, read as nodata
                        nbytes = src.get_tag_item(f"BLOCK_SIZE_{x}_{y}", "TIFF", bidx=bidx)
                        end = max(end, int(offset) + int(nbytes or 0))
        return end
