"""What a scene is to the code that reads it: a pixel source, its metadata and its chunks.

`PixelSource` is the one protocol every reader goes through: a GeoTIFF/COG
(`satdask.io.geotiff.RasterSource`) and a STAC item's stacked assets
(`satdask.io.stac.StackSource`) both implement it, so batch runs, training, the
scene view and the service read pixels without knowing which one they hold.
Nothing here opens a file.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

import numpy as np
from affine import Affine
from rasterio.crs import CRS

from satdask.core.grid import (
    EdgePolicy,
    TileGrid,
    Window,
    check_edge,
    check_tile_size,
    require_tiles,
    size_text,
)
from satdask.errors import SceneError, ValidationError

TARGET_CHUNK_BYTES = 24 * 1024 * 1024
# The largest scene opened, checked right after the header is read and before anything is
# built: a header of a few hundred bytes can claim 200,000,000 px a side, and a scene
# view holds float64 coordinates for every row and column (8 MB per million). Override
# with SATDASK_MAX_SIDE / SATDASK_MAX_PIXELS, or set these (read at each check).
MAX_SCENE_SIDE = 1 << 20  # 1,048,576 px: 8 MB of coordinates a side
MAX_SCENE_PIXELS = 1 << 34  # 17.2 billion px, e.g. 131,072 x 131,072
REMOTE_RETRIES = 3
SUPPORTED_DTYPES = ("uint8", "uint16", "int16", "uint32", "int32", "float32", "float64")


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
    # GDAL's mask of invalid pixels beyond nodata and NaN: "alpha" (an alpha band, whose
    # number is `alpha_band`), "per-dataset" (an internal or .msk sidecar mask) or None
    mask: str | None = None
    alpha_band: int | None = None  # colorinterp alpha: a mask, not data, unless asked for

    @property
    def dtype(self) -> str:
        return self.dtypes[0] if self.dtypes else "none"

    @property
    def name(self) -> str:
        return self.uri.rstrip("/").rsplit("/", 1)[-1]


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


class PixelSource(Protocol):
    """What tasks read pixels through: a GeoTIFF's RasterSource or a STAC item's StackSource.

    It travels in dask graphs, so it holds names, never open handles. `band_labels`
    and `scene_attrs` are what the scene view carries along (per-band coordinates
    and attributes), and `satdask.io.open.source_from_scene` rebuilds the source
    from them after a user selects bands.
    """

    @property
    def uri(self) -> str: ...

    @property
    def bands(self) -> tuple[int, ...]: ...

    def read(self, window: Window, *, retries: int = REMOTE_RETRIES) -> np.ndarray:
        """(band, y, x) pixels of `window`; raises rasterio's RasterioError on bad bytes."""
        ...

    def read_mask(self, window: Window, *, retries: int = REMOTE_RETRIES) -> np.ndarray | None:
        """(y, x) bool, True where GDAL's per-dataset or alpha mask says a pixel is valid.

        None when the source has no such mask (all valid, or nodata only: the nodata
        value and NaN are found in the pixels themselves, which is cheaper).
        """
        ...

    def subset(self, index: slice) -> PixelSource: ...

    @property
    def band_labels(self) -> Mapping[str, tuple[str, ...]]:
        """Per-band labels to keep beside the band numbers ({} for a plain file)."""
        ...

    def scene_attrs(self) -> dict[str, Any]:
        """Attributes the scene view keeps to rebuild this source ({} for a plain file)."""
        ...

    def lineage(self) -> dict[str, Any]:
        """What a run or model records about the files behind the source, beyond its uri."""
        ...

    def probe(self) -> tuple[SceneInfo, tuple[SceneInfo, ...]]:
        """The source's metadata as one scene, and that of each file behind it."""
        ...

    def __dask_tokenize__(self) -> tuple[Any, ...]: ...


class PlainSource:
    """What a source with no per-band labels or scene attributes answers: nothing to keep."""

    @property
    def band_labels(self) -> dict[str, tuple[str, ...]]:
        return {}

    def scene_attrs(self) -> dict[str, Any]:
        return {}


def read_masked(
    source: PixelSource, window: Window, *, retries: int = REMOTE_RETRIES
) -> np.ndarray:
    """`source.read(window)`, as a numpy masked array where the source has a mask.

    Masked (True) where the mask says invalid, in every band: the form
    `core.features.block_features` takes, so a reader passes pixels and mask as one.
    """
    data = source.read(window, retries=retries)
    valid = source.read_mask(window, retries=retries)
    if valid is None:
        return data
    invalid = np.repeat(~valid[None], data.shape[0], axis=0)
    return np.ma.MaskedArray(data, mask=invalid, copy=False)


def applied_mask(info: SceneInfo, bands: Sequence[int]) -> str | None:
    """The mask a read of `bands` honours: none when the alpha band is read as data."""
    if info.mask == "alpha" and info.alpha_band in bands:
        return None
    return info.mask


def default_bands(info: SceneInfo) -> tuple[int, ...]:
    """Every band but an alpha band, which is the scene's mask rather than its data."""
    bands = tuple(b for b in range(1, info.count + 1) if b != info.alpha_band)
    return bands or tuple(range(1, info.count + 1))


def select_bands(info: SceneInfo, bands: Sequence[int] | None) -> tuple[int, ...]:
    """The bands named (an alpha band among them read as data), else `default_bands`."""
    if bands is None:
        return default_bands(info)
    chosen = tuple(bands)
    if not chosen:
        raise SceneError(f"{info.uri}: bands must name at least one band", uri=info.uri)
    bad: list[object] = [
        b for b in chosen if isinstance(b, bool) or not isinstance(b, int | np.integer)
    ]
    bad += [b for b in chosen if b not in bad and not 1 <= b <= info.count]
    if bad:
        raise SceneError(
            f"{info.uri}: band(s) {', '.join(map(str, bad))} do not exist; "
            f"the scene has bands 1..{info.count}",
            uri=info.uri,
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


def scene_limits(*, max_side: int | None = None, max_pixels: int | None = None) -> tuple[int, int]:
    """(side, pixels): as given, else SATDASK_MAX_SIDE / SATDASK_MAX_PIXELS, else the
    module's MAX_SCENE_SIDE / MAX_SCENE_PIXELS."""
    side = max_side or _env_limit("SATDASK_MAX_SIDE") or MAX_SCENE_SIDE
    pixels = max_pixels or _env_limit("SATDASK_MAX_PIXELS") or MAX_SCENE_PIXELS
    return side, pixels


def _env_limit(name: str) -> int | None:
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise SceneError(f"{name} must be a positive integer, got {text!r}")
    return value


def size_problem(height: int, width: int, *, max_side: int, max_pixels: int) -> str | None:
    """What is wrong with a claimed size, in the words every refusal uses, or None."""
    if max(height, width) > max_side:
        return f"{size_text(height, width)} is over the limit of {max_side} px a side"
    if height * width > max_pixels:
        return (
            f"{size_text(height, width)} ({height * width} px) is over the limit of {max_pixels} px"
        )
    return None


def check_size(
    info: SceneInfo, *, max_side: int | None = None, max_pixels: int | None = None
) -> None:
    """Refuse a size over the limits (`scene_limits`) with a one-line SceneError."""
    side, pixels = scene_limits(max_side=max_side, max_pixels=max_pixels)
    problem = size_problem(info.height, info.width, max_side=side, max_pixels=pixels)
    if problem is not None:
        names = (
            "SATDASK_MAX_SIDE, satdask.io.source.MAX_SCENE_SIDE"
            if "a side" in problem
            else "SATDASK_MAX_PIXELS, satdask.io.source.MAX_SCENE_PIXELS"
        )
        raise SceneError(f"{info.uri}: {problem} ({names})", uri=info.uri)


def check_scene(
    info: SceneInfo, *, max_side: int | None = None, max_pixels: int | None = None
) -> list[str]:
    """Raise on fatal problems; return the warnings.

    The size is checked first (`check_size`, with these limits if given), so nothing
    sized from a claim over the limits is ever built.
    """

    def fail(problem: str) -> ValidationError:
        return ValidationError(f"{info.uri}: {problem}", uri=info.uri)

    if info.width <= 0 or info.height <= 0:
        raise fail(f"raster size {size_text(info.height, info.width)} is empty")
    check_size(info, max_side=max_side, max_pixels=max_pixels)
    if info.count < 1:
        raise fail("raster has no band")
    if info.crs is None:
        raise fail("no CRS; assign one (e.g. gdal_edit.py -a_srs EPSG:XXXX) before use")
    if len(set(info.dtypes)) > 1:
        raise fail(f"bands have mixed dtypes {', '.join(info.dtypes)}")
    if info.dtype not in SUPPORTED_DTYPES:
        raise fail(f"dtype {info.dtype} is not supported; use one of {', '.join(SUPPORTED_DTYPES)}")
    if info.transform.b != 0 or info.transform.d != 0:
        raise fail("rotated or sheared transform is not supported; warp it north-up first")
    warnings = []
    if info.nodata is None:
        if info.mask is None:  # a mask marks the invalid pixels instead
            warnings.append("no nodata value: every pixel counts as valid")
    elif not _nodata_fits(info.nodata, info.dtype):
        warnings.append(f"nodata {info.nodata} cannot occur in {info.dtype}: it is ignored")
    if info.acquisition_time is None:
        warnings.append("no acquisition time (TIFFTAG_DATETIME or ACQUISITIONDATETIME)")
    return warnings


def _nodata_fits(nodata: float, dtype: str) -> bool:
    kind = np.dtype(dtype).kind
    if kind == "f":
        return True
    info = np.iinfo(dtype)
    return float(nodata).is_integer() and info.min <= nodata <= info.max
