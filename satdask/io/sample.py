"""A deterministic synthetic scene: a COG written window by window, in bounded memory.

It is written next to its final path and moved into place at the end, so a crash
never leaves a file that looks finished.
"""

from __future__ import annotations

import contextlib
import glob
import math
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from satdask.errors import SatdaskError

__all__ = ["write_sample"]


SAMPLE_CRS = "EPSG:32633"
SAMPLE_PIXEL_SIZE = 10.0
SAMPLE_ORIGIN = (500000.0, 5000000.0)  # upper-left corner (x, y)
SAMPLE_DATETIME = "2026:06:01 10:30:00"
SAMPLE_NODATA = 0

# Valid pixels are scaled into [low, high]; 0 stays free for nodata. Integer types of
# 16 bits or more and floats use a reflectance-like 1..10000 scale, so one threshold
# model means the same thing on every dtype.
_SAMPLE_RANGES: dict[str, tuple[float, float]] = {
    "uint8": (1.0, 250.0),
    "uint16": (1.0, 10000.0),
    "int16": (1.0, 10000.0),
    "uint32": (1.0, 10000.0),
    "int32": (1.0, 10000.0),
    "float32": (1.0, 10000.0),
    "float64": (1.0, 10000.0),
}
# Side of the square generation window, in pixels (rounded to whole tiles). Fixed, so
# memory depends on bands and tile size only, never on the scene size.
_WINDOW_TARGET = 1024
_NOISE = 0.005  # per-pixel noise amplitude, as a fraction of the value range
_GTIFF_MAX_CLASSIC = 3_500_000_000  # bytes; above this, ask for BigTIFF
# Threads for DEFLATE in the COG copy. They change speed only, never bytes (tested).
_COG_THREADS = "ALL_CPUS"
# GDAL's block cache defaults to 5% of RAM and, not the arrays here, is what made peak
# memory grow with size (RSS 0.9 GB at 8192 px). 64 MB kept it at about 300 MB from
# 4096 to 16384 px. rasterio.Env takes an integer GDAL_CACHEMAX as bytes, not MB.
_CACHE_BYTES = 64 * 1024 * 1024


def _check_int(name: str, value: object, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SatdaskError(f"sample: --{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _collar_width(size: int, tile_size: int) -> int:
    return max(tile_size // 4, size // 64)


def _control_grid(size: int, tile_size: int, seed: int) -> tuple[np.ndarray, float]:
    """Coarse random field whose bilinear upsampling gives the bright and dark regions.

    Control values are a shuffled, evenly spaced set from -1 to 1, so every seed gets
    as much bright as dark ground and a threshold on tile means always splits the tiles.
    """
    spacing = float(max(tile_size, min(4 * tile_size, size // 4), 1))
    n = math.ceil(size / spacing) + 2
    rng = np.random.default_rng([seed, 0])
    values = rng.permutation(np.linspace(-1.0, 1.0, n * n)).reshape(n, n)
    return values, spacing


def _interp_axis(start: int, stop: int, spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """Lower control index and weight of the upper one for pixel centres start..stop-1."""
    pos = (np.arange(start, stop, dtype=np.float64) + 0.5) / spacing
    idx = np.floor(pos).astype(np.intp)
    return idx, pos - idx


def _sample_window(
    row0: int,
    col0: int,
    height: int,
    width: int,
    *,
    size: int,
    bands: int,
    dtype: np.dtype,
    seed: int,
    window_index: tuple[int, int],
    grid: np.ndarray,
    spacing: float,
    collar: int,
) -> np.ndarray:
    """Pixels of one window, all bands. A pure function of its arguments."""
    low, high = _SAMPLE_RANGES[dtype.name]
    iy, wy = _interp_axis(row0, row0 + height, spacing)
    ix, wx = _interp_axis(col0, col0 + width, spacing)
    # Separable bilinear interpolation: first along y over all control columns, then x.
    rows = grid[iy] * (1.0 - wy)[:, None] + grid[iy + 1] * wy[:, None]
    field = rows[:, ix] * (1.0 - wx)[None, :] + rows[:, ix + 1] * wx[None, :]
    # tanh steepens the slopes into distinct plateaus; the sinusoid adds gentle texture.
    period = max(size / 3.0, 1.0)
    ys = np.sin(2.0 * np.pi * (np.arange(row0, row0 + height) + 0.5) / period)
    xs = np.sin(2.0 * np.pi * (np.arange(col0, col0 + width) + 0.5) / period)
    base = 0.5 + 0.34 * np.tanh(3.0 * field) + 0.05 * ys[:, None] * xs[None, :]
    base = base.astype(np.float32)

    rows_abs = np.arange(row0, row0 + height)
    cols_abs = np.arange(col0, col0 + width)
    in_rows = (rows_abs >= collar) & (rows_abs < size - collar)
    in_cols = (cols_abs >= collar) & (cols_abs < size - collar)
    valid = in_rows[:, None] & in_cols[None, :]

    rng = np.random.default_rng([seed, 1, window_index[0], window_index[1]])
    out = np.empty((bands, height, width), dtype=dtype)
    scale = np.float32(high - low)
    base -= np.float32(_NOISE)  # noise below is drawn from [0, 2 * _NOISE)
    band = np.empty((height, width), dtype=np.float32)  # reused: fewer page faults
    for b in range(bands):
        rng.random(out=band, dtype=np.float32)
        band *= np.float32(2.0 * _NOISE)
        band += base
        band += np.float32(0.04 * ((b % 5) - 2))  # per-band shift, -0.08 .. +0.08
        np.clip(band, 0.0, 1.0, out=band)
        band *= scale
        band += np.float32(low)
        if dtype.kind in "iu":
            np.rint(band, out=band)
        band[~valid] = SAMPLE_NODATA
        out[b] = band
    return out


def _capped_cache(current: object) -> dict[str, int]:
    """GDAL options that lower the block cache to _CACHE_BYTES, never raise it.

    rasterio reports the effective cache size in bytes, whether set or defaulted.
    """
    try:
        current_bytes = int(str(current))
    except ValueError:
        return {"GDAL_CACHEMAX": _CACHE_BYTES}
    return {} if current_bytes <= _CACHE_BYTES else {"GDAL_CACHEMAX": _CACHE_BYTES}


def _gdal_env() -> Any:
    """A GDAL environment with the block cache capped (see _CACHE_BYTES)."""
    import rasterio
    from rasterio.env import get_gdal_config

    return rasterio.Env(**_capped_cache(get_gdal_config("GDAL_CACHEMAX")))


def _scratch_profile(
    *, width: int, height: int, count: int, dtype: np.dtype, tile_size: int
) -> dict[str, Any]:
    """The scratch GTiff a sample is generated into, georeferenced like every sample.

    Tiled like the COG, band-sequential so one window of all bands is one contiguous
    write; cheap ZSTD keeps the scratch file small on disk.
    """
    from affine import Affine

    # Built directly: rasterio's from_origin multiplies Affines, which affine 3.x deprecates.
    west, north = SAMPLE_ORIGIN
    transform = Affine(SAMPLE_PIXEL_SIZE, 0.0, west, 0.0, -SAMPLE_PIXEL_SIZE, north)
    big = width * height * count * dtype.itemsize > _GTIFF_MAX_CLASSIC
    return {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": count,
        "dtype": dtype.name,
        "crs": SAMPLE_CRS,
        "transform": transform,
        "nodata": SAMPLE_NODATA,
        "tiled": True,
        "blockxsize": tile_size,
        "blockysize": tile_size,
        "interleave": "band",
        "compress": "zstd",
        "zstd_level": 1,
        "bigtiff": "YES" if big else "NO",
    }


@contextlib.contextmanager
def _staged_cog(final: Path, *, tile_size: int) -> Iterator[Path]:
    """A scratch path to fill; once filled, it becomes a COG moved into place at `final`.

    Scratch and partial files sit beside `final` and go whatever happens, so a crash
    never leaves a file that looks finished.
    """
    import rasterio.shutil
    from rasterio.errors import RasterioError

    parent = final.parent
    token = uuid.uuid4().hex
    scratch = parent / f".{final.name}.scratch-{token}.tif"
    partial = parent / f".{final.name}.partial-{token}.tif"
    try:
        yield scratch
        # The COG driver builds the overviews and lays out header, overviews and full
        # resolution tiles in a fixed order; TIFFTAG_* metadata is carried over as tags.
        rasterio.shutil.copy(
            scratch,
            partial,
            driver="COG",
            COMPRESS="DEFLATE",
            PREDICTOR="YES",
            BLOCKSIZE=tile_size,
            OVERVIEWS="AUTO",
            OVERVIEW_RESAMPLING="AVERAGE",
            STATISTICS="NO",
            NUM_THREADS=_COG_THREADS,
            BIGTIFF="IF_SAFER",
        )
        os.replace(partial, final)
    except (RasterioError, OSError) as exc:
        raise SatdaskError(f"sample: cannot write {str(final)!r}: {exc}") from exc
    finally:
        for leftover in (scratch, partial):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
            # GDAL may keep side-car files (.aux.xml, .ovr) next to temporary datasets.
            for sidecar in parent.glob(f"{glob.escape(leftover.name)}.*"):
                with contextlib.suppress(FileNotFoundError):
                    sidecar.unlink()


def write_sample(
    path: str | os.PathLike[str],
    *,
    size: int = 4096,
    bands: int = 4,
    dtype: str = "uint16",
    seed: int = 0,
    tile_size: int = 256,
) -> Path:
    """Write a deterministic multi-band COG so demos and tests need no network.

    The scene is ``size`` x ``size`` pixels in EPSG:32633 (10 m, upper-left corner at
    500000, 5000000) with smooth bright and dark regions, a nodata (0) collar of
    ``max(tile_size // 4, size // 64)`` pixels on every side and an acquisition time
    in TIFFTAG_DATETIME. The same arguments always give the same bytes. Pixels are
    generated window by window into a temporary tiled GTiff, so memory does not grow
    with ``size``; an existing file at ``path`` is replaced only once the new one is
    complete.
    """
    size = _check_int("size", size, minimum=1)
    bands = _check_int("bands", bands, minimum=1)
    seed = _check_int("seed", seed, minimum=0)
    tile_size = _check_int("tile-size", tile_size, minimum=16)
    if tile_size % 16:
        raise SatdaskError(f"sample: --tile-size must be a multiple of 16, got {tile_size}")
    if not isinstance(dtype, str) or dtype not in _SAMPLE_RANGES:
        raise SatdaskError(
            f"sample: --dtype {dtype!r} is not supported; use one of {', '.join(_SAMPLE_RANGES)}"
        )
    np_dtype = np.dtype(dtype)

    final = Path(path)
    if not final.parent.is_dir():
        raise SatdaskError(f"sample: output directory {str(final.parent)!r} does not exist")

    import rasterio

    collar = _collar_width(size, tile_size)
    grid, spacing = _control_grid(size, tile_size, seed)
    window = tile_size * max(1, _WINDOW_TARGET // tile_size)
    profile = _scratch_profile(
        width=size, height=size, count=bands, dtype=np_dtype, tile_size=tile_size
    )
    # The scratch dataset closes before _staged_cog copies it into the COG.
    with (
        _gdal_env(),
        _staged_cog(final, tile_size=tile_size) as scratch,
        rasterio.open(scratch, "w", **profile) as dst,
    ):
        dst.update_tags(TIFFTAG_DATETIME=SAMPLE_DATETIME)
        for wi, row0 in enumerate(range(0, size, window)):
            height = min(window, size - row0)
            for wj, col0 in enumerate(range(0, size, window)):
                width = min(window, size - col0)
                data = _sample_window(
                    row0,
                    col0,
                    height,
                    width,
                    size=size,
                    bands=bands,
                    dtype=np_dtype,
                    seed=seed,
                    window_index=(wi, wj),
                    grid=grid,
                    spacing=spacing,
                    collar=collar,
                )
                dst.write(data, window=((row0, row0 + height), (col0, col0 + width)))
    return final
