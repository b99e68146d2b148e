from __future__ import annotations

import numpy as np
import pytest

from satdask import block_features
from satdask.core.features import STATUS_NODATA, STATUS_OK


def naive(data: np.ndarray, tile: int, nodata: float | None, edge: str = "skip"):
    """Per-tile loop in plain numpy: the definition the vectorized code must match."""
    _, h, w = data.shape
    rows = h // tile if edge == "skip" else -(-h // tile)
    cols = w // tile if edge == "skip" else -(-w // tile)
    mean = np.full((rows, cols), np.nan)
    std = np.full((rows, cols), np.nan)
    frac = np.zeros((rows, cols))
    for r in range(rows):
        for c in range(cols):
            t = data[:, r * tile : (r + 1) * tile, c * tile : (c + 1) * tile].astype(np.float64)
            ok = np.isfinite(t)
            if nodata is not None and not np.isnan(nodata):
                ok &= t != nodata
            vals = t[ok]
            frac[r, c] = vals.size / (data.shape[0] * tile * tile)
            if vals.size:
                mean[r, c] = vals.mean()
                std[r, c] = vals.std()
    return mean, std, frac


@pytest.mark.parametrize(
    "dtype", ["uint8", "uint16", "int16", "uint32", "int32", "float32", "float64"]
)
@pytest.mark.parametrize("edge", ["skip", "pad"])
def test_features_equal_a_per_tile_numpy_loop(dtype: str, edge: str) -> None:
    rng = np.random.default_rng(7)
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    high = min(info.max, 60000) if info else 5000.0
    data = rng.integers(0, int(high), size=(3, 70, 90)).astype(dtype)
    nodata = 0
    data[:, :16, :16] = 0  # one fully nodata tile
    data[1, 20:30, 40:50] = 0  # scattered nodata
    if np.dtype(dtype).kind == "f":
        data[0, 40:45, 5:9] = np.nan
    f = block_features(data, tile_size=16, nodata=nodata, edge=edge)  # type: ignore[arg-type]
    mean, std, frac = naive(data, 16, nodata, edge)
    np.testing.assert_allclose(f.mean_intensity, mean, rtol=1e-12)
    np.testing.assert_allclose(f.std_intensity, std, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(f.valid_fraction, frac)
    assert f.status[0, 0] == STATUS_NODATA and np.isnan(f.mean_intensity[0, 0])
    assert (f.status[np.isfinite(mean)] == STATUS_OK).all()


def test_pad_edge_tiles_have_a_valid_fraction_below_one() -> None:
    data = np.ones((2, 40, 40), dtype=np.uint16)
    f = block_features(data, tile_size=32, edge="pad")
    assert f.shape == (2, 2)
    assert f.valid_fraction[0, 0] == 1.0
    assert f.valid_fraction[0, 1] == pytest.approx(8 / 32)
    assert f.valid_fraction[1, 1] == pytest.approx(64 / 1024)
    np.testing.assert_array_equal(f.mean_intensity, 1.0)


def test_nan_nodata_and_infinities_are_excluded() -> None:
    data = np.full((1, 4, 4), 2.0, dtype=np.float32)
    data[0, 0, :] = [np.nan, np.inf, -np.inf, 6.0]
    f = block_features(data, tile_size=4, nodata=float("nan"))
    assert f.valid_fraction[0, 0] == pytest.approx(13 / 16)
    assert f.mean_intensity[0, 0] == pytest.approx((12 * 2.0 + 6.0) / 13)


def test_nodata_outside_the_dtype_range_is_ignored() -> None:
    data = np.full((1, 8, 8), 5, dtype=np.uint16)
    f = block_features(data, tile_size=8, nodata=-9999)
    assert f.valid_fraction[0, 0] == 1.0 and f.mean_intensity[0, 0] == 5.0


def test_uint16_extremes_stay_exact() -> None:
    data = np.full((4, 256, 256), np.iinfo(np.uint16).max, dtype=np.uint16)
    f = block_features(data, tile_size=256)
    assert f.mean_intensity[0, 0] == 65535.0 and f.std_intensity[0, 0] == 0.0


@pytest.mark.parametrize("dtype", ["uint16", "float32"])
def test_results_are_bit_identical_however_the_block_is_cut(dtype: str) -> None:
    rng = np.random.default_rng(3)
    data = (rng.random((3, 128, 192)) * 1000).astype(dtype)
    whole = block_features(data, tile_size=32)
    for rows, cols in [(32, 32), (64, 96), (128, 32)]:
        for r0 in range(0, 128, rows):
            for c0 in range(0, 192, cols):
                part = block_features(data[:, r0 : r0 + rows, c0 : c0 + cols], tile_size=32)
                sl = np.s_[r0 // 32 : (r0 + rows) // 32, c0 // 32 : (c0 + cols) // 32]
                assert part.mean_intensity.tobytes() == whole.mean_intensity[sl].tobytes()
                assert part.std_intensity.tobytes() == whole.std_intensity[sl].tobytes()


@pytest.mark.parametrize(("dtype", "bands"), [("uint16", 4), ("uint16", 40), ("int16", 40)])
def test_integer_sums_of_squares_are_exact_on_both_paths(dtype: str, bands: int) -> None:
    """4 bands accumulate squares in float64 (exact below 2**53); 40 exceed that bound."""
    info = np.iinfo(dtype)
    rng = np.random.default_rng(11)
    data = rng.integers(info.min, info.max, size=(bands, 256, 256), endpoint=True).astype(dtype)
    data[:, :3, :5] = 9
    f = block_features(data, tile_size=256, nodata=9)
    x = data.astype(np.int64).ravel()
    x = x[x != 9]
    mean = x.sum() / x.size
    assert f.mean_intensity[0, 0] == mean
    assert f.std_intensity[0, 0] == np.sqrt((x * x).sum() / x.size - mean * mean)
