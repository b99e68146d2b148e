"""Per-tile features of a block of whole tiles: pure, vectorized numpy.

A block (band, y, x) is reshaped to (band, ky, T, kx, T) and reduced once, so the
cost is one pass over the pixels whatever the number of tiles. Sums are exact
integers for 8- and 16-bit data and fixed-order float64 otherwise, which makes
every tile's result bit-identical however the scene is chunked.

Invalid samples are excluded: the nodata value, NaN and +/-inf (an infinite value
is treated as a sensor fault, not as data), pixels a mask marks invalid (`valid`,
or the mask of a numpy masked array: GDAL's per-dataset or alpha mask, as readers
pass it), and pixels beyond the scene in padded edge tiles. A tile with no valid
sample gets status ``nodata`` and NaN features.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from satdask.core.grid import EdgePolicy

STATUS_OK, STATUS_NODATA, STATUS_FAILED = 0, 1, 2
STATUS_NAMES = ("ok", "nodata", "failed")
FEATURE_NAMES = ("mean_intensity", "std_intensity", "valid_fraction")

# Integer types whose sums are taken exactly (wider ones go through float64 moments)
_EXACT_DTYPES = (np.dtype("uint8"), np.dtype("uint16"), np.dtype("int16"))
# float64 holds every integer below 2**53, so while a tile's sum of squares stays below
# it (4 bands x 256 x 256 x 65535**2 is under 2**50) every partial sum in float64 is an
# exact integer and the order of additions cannot change the result. Past that bound
# (many bands of wide integers) exact sums are taken in int64 instead.
_FLOAT64_EXACT = 2**53
# Pixels are converted to float64 a strip of rows at a time: 512 KiB, so the two passes
# over a strip stay in L2 cache instead of streaming a float64 copy of the whole block.
_STRIP_VALUES = 2**16


@dataclass(frozen=True)
class TileFeatures:
    """Arrays of shape (tile rows, tile cols) for one block."""

    mean_intensity: np.ndarray
    std_intensity: np.ndarray
    valid_fraction: np.ndarray
    status: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return self.status.shape

    def mark_failed(self, failed: np.ndarray) -> TileFeatures:
        """Copy with the tiles in `failed` (bool, same shape) set to status failed."""
        mean = np.where(failed, np.nan, self.mean_intensity)
        std = np.where(failed, np.nan, self.std_intensity)
        frac = np.where(failed, 0.0, self.valid_fraction)
        status = np.where(failed, np.uint8(STATUS_FAILED), self.status).astype(np.uint8)
        return TileFeatures(mean, std, frac, status)


def block_features(
    data: np.ndarray,
    *,
    tile_size: int,
    nodata: float | None = None,
    edge: EdgePolicy = "skip",
    valid: np.ndarray | None = None,
) -> TileFeatures:
    """Features of every tile in a (band, y, x) block that starts on a tile corner.

    A block may end with a partial tile at the scene's right or bottom edge: under
    ``skip`` it is dropped, under ``pad`` it is kept with the missing pixels invalid.
    `valid` ((y, x) bool, or (band, y, x)) marks the pixels a mask lets through; a
    masked array's mask counts too. Masked pixels leave every band's statistics and
    the valid fraction, so a tile masked whole is ``nodata``.
    """
    pixels, given = _given_mask(data, valid)
    data, valid = _whole_tiles(pixels, tile_size, edge, given)
    bands, height, width = data.shape
    t = tile_size
    ky, kx = height // t, width // t
    if ky == 0 or kx == 0:  # a strip thinner than a tile (skip): no tile to describe
        empty = np.empty((ky, kx))
        return TileFeatures(empty, empty, empty, empty.astype(np.uint8))
    if data.dtype in _EXACT_DTYPES and not _is_nan(nodata):
        if (
            given is not None and valid is not None
        ):  # masked samples become zeros, which add nothing to the sums
            data = np.where(valid, data, data.dtype.type(0))
        count, mean, var = _integer_moments(data, valid, nodata, t, ky, kx)
    else:
        count, mean, var = _float_moments(data, valid, nodata, t, ky, kx)
    per_tile = bands * t * t
    empty = count == 0
    return TileFeatures(
        mean_intensity=np.where(empty, np.nan, mean),
        std_intensity=np.where(empty, np.nan, np.sqrt(var)),
        valid_fraction=count / per_tile,
        status=np.where(empty, STATUS_NODATA, STATUS_OK).astype(np.uint8),
    )


def _given_mask(data: np.ndarray, valid: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """The pixels, and (band, y, x) True where the caller's masks let a sample through.

    None when no mask is given or none masks anything: the unmasked fast path.
    """
    given: np.ndarray | None = None
    if isinstance(data, np.ma.MaskedArray):
        mask = np.ma.getmask(data)
        data = np.asarray(data.data)
        if mask is not np.ma.nomask:
            given = ~np.broadcast_to(mask, data.shape)
    else:
        data = np.asarray(data)
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
        if valid.shape not in (data.shape[1:], data.shape):
            raise ValueError(
                f"valid has shape {valid.shape}; expected (y, x) {data.shape[1:]} "
                f"or (band, y, x) {data.shape}"
            )
        valid = np.broadcast_to(valid, data.shape)
        given = valid if given is None else given & valid
    if given is None or given.all():
        return data, None
    return data, np.ascontiguousarray(given)


def _whole_tiles(
    data: np.ndarray, t: int, edge: EdgePolicy, valid: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Crop (skip) or pad (pad) to whole tiles, with the (band, y, x) mask of valid
    samples: `valid` as given, padded pixels invalid; None when every sample is."""
    _, h, w = data.shape
    if edge == "skip":
        cropped = (slice(None), slice(0, h - h % t), slice(0, w - w % t))
        return data[cropped], None if valid is None else valid[cropped]
    ph, pw = -h % t, -w % t
    if not (ph or pw):
        return data, valid
    if valid is None:
        valid = np.ones(data.shape, dtype=bool)
    pad = ((0, 0), (0, ph), (0, pw))
    return np.pad(data, pad), np.pad(valid, pad, constant_values=False)


def _is_nan(value: float | None) -> bool:
    return value is not None and bool(np.isnan(value))


def _representable(value: float | None, dtype: np.dtype) -> bool:
    """A nodata value outside an integer dtype's range can never match a pixel."""
    if value is None or not float(value).is_integer():
        return False
    info = np.iinfo(dtype)
    return info.min <= value <= info.max


def _tiles(a: np.ndarray, t: int, ky: int, kx: int) -> np.ndarray:
    return a.reshape(a.shape[0], ky, t, kx, t)


def _integer_moments(
    data: np.ndarray, real: np.ndarray | None, nodata: float | None, t: int, ky: int, kx: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact integer sums of values and squares: associative, so chunking cannot matter.

    Nodata pixels are not masked out of a copy: their exact contribution
    (n x nodata, n x nodata^2) is subtracted from the sums afterwards. Padded
    pixels (`real` False) are zeros and so add nothing.
    """
    per_tile = data.shape[0] * t * t
    n_real = (
        np.full((ky, kx), per_tile, dtype=np.int64) if real is None else _count(real, t, ky, kx)
    )
    total, total_sq = _exact_moment_sums(data, t, ky, kx)
    count = n_real
    if nodata is not None and _representable(nodata, data.dtype):
        value = int(nodata)
        is_nodata = data == data.dtype.type(value)
        if real is not None:
            is_nodata &= real
        if is_nodata.any():  # most blocks hold none: skip the count
            n_nodata = _count(is_nodata, t, ky, kx)
            count = n_real - n_nodata
            total = total - value * n_nodata
            total_sq = total_sq - value * value * n_nodata
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
        var = np.maximum(total_sq / count - mean * mean, 0.0)
    return count, mean, var


def _count(mask: np.ndarray, t: int, ky: int, kx: int) -> np.ndarray:
    """Per-tile int64 counts of True in a (band, y, x) mask of whole tiles.

    Whole rows are added first (contiguous and vectorized) in the narrowest
    accumulator that cannot overflow, then each tile's T columns.
    """
    bands = mask.shape[0]
    narrow = np.uint16 if bands * t <= np.iinfo(np.uint16).max else np.uint32
    rows = mask.view(np.uint8).reshape(bands, ky, t, kx * t)
    columns = np.add.reduce(rows, axis=(0, 2), dtype=narrow)
    counts: np.ndarray = columns.reshape(ky, kx, t).sum(axis=-1, dtype=np.int64)
    return counts


def _exact_moment_sums(data: np.ndarray, t: int, ky: int, kx: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-tile int64 sums of values and of squares: one pass over the block."""
    bands = data.shape[0]
    info = np.iinfo(data.dtype)
    if bands * t * t * max(-int(info.min), int(info.max)) ** 2 >= _FLOAT64_EXACT:
        x5 = _tiles(data, t, ky, kx)
        squares = np.multiply(x5, x5, dtype=np.uint32 if info.min == 0 else np.int32)
        return x5.sum(axis=(0, 2, 4), dtype=np.int64), squares.sum(axis=(0, 2, 4), dtype=np.int64)
    width = kx * t
    step = min(t, max(1, _STRIP_VALUES // (bands * width)))
    strip = np.empty((bands, step, width))
    # per band, tile row, pixel row and tile: the sum of that row's T values and of their
    # squares. Each is one contiguous run of T floats, which einsum sums in SIMD without
    # a temporary for the squares.
    rows = np.empty((2, bands, ky, t, kx))
    for i in range(ky):  # a loop over strips of rows; each step covers every tile in them
        for r in range(0, t, step):
            part = strip[:, : min(step, t - r)]
            n = part.shape[1]
            np.copyto(part, data[:, i * t + r : i * t + r + n], casting="unsafe")
            runs = part.reshape(bands, n, kx, t)
            np.einsum("abct->abc", runs, out=rows[0, :, i, r : r + n])
            np.einsum("abct,abct->abc", runs, runs, out=rows[1, :, i, r : r + n])
    sums = rows.sum(axis=(1, 3)).astype(np.int64)
    return sums[0], sums[1]


def _float_moments(
    data: np.ndarray, valid: np.ndarray | None, nodata: float | None, t: int, ky: int, kx: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two-pass float64 mean and variance, each sum taken in a fixed order per tile."""
    x = data.astype(np.float64)
    finite = np.isfinite(x)
    if nodata is not None and not _is_nan(nodata):
        finite &= x != nodata
    valid = finite if valid is None else valid & finite
    x[~valid] = 0.0
    count = _count(valid, t, ky, kx)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = _tile_sum(_tiles(x, t, ky, kx)) / count
        dev = _tiles(x, t, ky, kx) - mean[None, :, None, :, None]
        dev[~_tiles(valid, t, ky, kx)] = 0.0
        np.multiply(dev, dev, out=dev)
        var = _tile_sum(dev) / count
    return count, mean, var


def _tile_sum(x5: np.ndarray) -> np.ndarray:
    """Sum (band, ky, T, kx, T) over each tile: rows of T first, then the row sums.

    Both reductions run over a contiguous last axis of fixed length, so numpy's
    pairwise summation sees the same sequence for a tile in any block shape.
    """
    rows = x5.sum(axis=4)  # (band, ky, T, kx)
    bands, ky, t, kx = rows.shape
    per_tile = np.ascontiguousarray(rows.transpose(1, 3, 0, 2)).reshape(ky, kx, bands * t)
    sums: np.ndarray = per_tile.sum(axis=-1)
    return sums
