"""Properties of the pure core, checked on random inputs with hypothesis.

- TileGrid: tile (row, col) <-> pixel window <-> affine transform <-> bounds round
  trip for random sizes, pixel sizes, origins (north-up and south-up), tile sizes
  and both edge policies; blocks cover every tile exactly once.
- block_features equals a naive per-tile loop for every supported dtype, nodata
  value and NaN/inf pattern. Means of integer data are bit-identical to the exact
  sum over the count (the library's sums are exact integers below 2**53); float
  means agree within 1e-13 x the largest |sample|, variances within 64 eps x the
  largest sample squared (one-pass integer and two-pass float formulas both fit).
- Features and predictions are bit-identical for any chunking, block by block and
  through the dask path of tile_features.
"""

from __future__ import annotations

import math
from fractions import Fraction
from functools import partial

import dask
import dask.array as da
import numpy as np
import pytest
import rioxarray  # noqa: F401  (registers .rio)
import xarray as xr
from affine import Affine
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from rasterio.windows import Window, from_bounds
from rasterio.windows import bounds as window_bounds
from support import scene_arrays

from satdask import GridError, ThresholdModel, TileGrid, block_features, infer_block
from satdask.core.features import STATUS_NODATA, STATUS_OK
from satdask.core.grid import EDGE_POLICIES
from satdask.views.tiles import tile_features

DTYPES = ("uint8", "uint16", "int16", "uint32", "int32", "float32", "float64")
EPS = np.finfo(np.float64).eps
FLOAT64_BOUND = 1e150  # beyond ~1e154 a tile's squared deviations overflow float64
SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ---------------------------------------------------------------------------
# TileGrid
# ---------------------------------------------------------------------------


@st.composite
def grids(draw: st.DrawFn) -> TileGrid:
    size = st.floats(0.01, 1000.0, allow_nan=False, allow_infinity=False)
    origin = st.floats(-1e7, 1e7, allow_nan=False, allow_infinity=False)
    north_up = draw(st.booleans())
    dy = draw(size) * (-1.0 if north_up else 1.0)
    transform = Affine(draw(size), 0.0, draw(origin), 0.0, dy, draw(origin))
    grid = TileGrid(
        height=draw(st.integers(1, 4000)),
        width=draw(st.integers(1, 4000)),
        transform=transform,
        tile_size=draw(st.integers(1, 600)),
        edge=draw(st.sampled_from(EDGE_POLICIES)),
    )
    assume(grid.size > 0)
    return grid


def close(a: float, b: float, scale: float) -> bool:
    """Equal up to float rounding of coordinates of magnitude `scale`."""
    return abs(a - b) <= 1e-12 * max(1.0, scale)


@SETTINGS
@given(grid=grids(), data=st.data())
def test_tile_window_transform_and_bounds_round_trip(grid: TileGrid, data: st.DataObject) -> None:
    t = grid.tile_size
    expected_rows = grid.height // t if grid.edge == "skip" else -(-grid.height // t)
    assert grid.rows == expected_rows
    row = data.draw(st.integers(0, grid.rows - 1), label="row")
    col = data.draw(st.integers(0, grid.cols - 1), label="col")
    tf = grid.transform
    scale = abs(tf.c) + abs(tf.f) + (grid.width * abs(tf.a)) + (grid.height * abs(tf.e))

    # tile -> window: starts on the tile corner, inside the scene, whole under skip
    w = grid.window(row, col)
    assert (w.row_off, w.col_off) == (row * t, col * t)
    assert 0 < w.height <= t and 0 < w.width <= t
    assert w.row_off + w.height <= grid.height and w.col_off + w.width <= grid.width
    if grid.edge == "skip":
        assert (w.height, w.width) == (t, t)

    # tile -> transform: its pixel (0, 0) is the window's corner in the scene
    corner = grid.tile_transform(row, col) * (0, 0)
    expected = tf * (w.col_off, w.row_off)
    assert close(corner[0], expected[0], scale) and close(corner[1], expected[1], scale)

    # tile -> bounds: the whole tile's box; the window's own bounds lie inside it
    left, bottom, right, top = grid.bounds(row, col)
    assert left < right and bottom < top
    assert close(right - left, t * abs(tf.a), scale) and close(top - bottom, t * abs(tf.e), scale)
    wl, wb, wr, wt = window_bounds(Window(*w), tf)
    slack = 1e-12 * scale
    assert wl >= left - slack and wr <= right + slack
    assert wb >= bottom - slack and wt <= top + slack

    # bounds -> window: back to the whole tile (rasterio's from_bounds is north-up only)
    corners = [~tf * (x, y) for x in (left, right) for y in (bottom, top)]
    cols_px, rows_px = sorted(c for c, _ in corners), sorted(r for _, r in corners)
    assert (round(cols_px[0]), round(cols_px[-1])) == (col * t, (col + 1) * t)
    assert (round(rows_px[0]), round(rows_px[-1])) == (row * t, (row + 1) * t)
    if tf.e < 0:
        back = from_bounds(left, bottom, right, top, tf)
        assert (round(back.col_off), round(back.row_off)) == (col * t, row * t)

    # bounds -> tile: any point well inside the tile, and the tile centre
    u = data.draw(st.floats(0.01, 0.99), label="u")
    v = data.draw(st.floats(0.01, 0.99), label="v")
    assert grid.tile_at(left + u * (right - left), bottom + v * (top - bottom)) == (row, col)
    xs, ys = grid.centres()
    assert len(xs) == grid.cols and len(ys) == grid.rows
    assert close(xs[col], (left + right) / 2, scale) and close(ys[row], (bottom + top) / 2, scale)
    assert grid.tile_at(xs[col], ys[row]) == (row, col)


@SETTINGS
@given(grid=grids())
def test_points_beyond_the_grid_belong_to_no_tile(grid: TileGrid) -> None:
    t = grid.tile_size
    gt = grid.grid_transform
    outside = [(-0.5, 0.5), (0.5, -0.5), (grid.cols + 0.5, 0.5), (0.5, grid.rows + 0.5)]
    for col_f, row_f in outside:
        x, y = gt * (col_f, row_f)
        with pytest.raises(GridError, match="outside"):
            grid.tile_at(x, y)
    if grid.edge == "skip" and grid.width % t:  # the dropped partial column
        x, y = grid.transform * (grid.cols * t + 0.5, 0.5)
        with pytest.raises(GridError, match="outside"):
            grid.tile_at(x, y)


@SETTINGS
@given(grid=grids(), ky=st.integers(1, 5), kx=st.integers(1, 5))
def test_blocks_cover_every_tile_once_and_read_only_their_pixels(
    grid: TileGrid, ky: int, kx: int
) -> None:
    assume(grid.size <= 5000)
    t = grid.tile_size
    chunks = grid.pixel_chunks((ky, kx))
    for axis, total in zip(chunks, (grid.height, grid.width), strict=True):
        assert sum(axis) == total
        assert all(c % t == 0 and c > 0 for c in axis[:-1])
    seen = np.zeros(grid.shape, dtype=np.int64)
    for block in grid.blocks(chunks):
        extra = grid.edge == "pad"  # the last chunk's partial remainder is one more tile
        assert 1 <= block.rows <= ky + extra and 1 <= block.cols <= kx + extra
        seen[block.row0 : block.row0 + block.rows, block.col0 : block.col0 + block.cols] += 1
        w = block.window
        first = grid.window(block.row0, block.col0)
        last = grid.window(block.row0 + block.rows - 1, block.col0 + block.cols - 1)
        assert (w.row_off, w.col_off) == (first.row_off, first.col_off)
        assert w.row_off + w.height == last.row_off + last.height
        assert w.col_off + w.width == last.col_off + last.width
    assert (seen == 1).all()


# ---------------------------------------------------------------------------
# Features against a naive per-tile loop
# ---------------------------------------------------------------------------


def elements(dtype: np.dtype) -> st.SearchStrategy[object]:
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return st.integers(int(info.min), int(info.max))
    special = st.sampled_from([math.nan, math.inf, -math.inf])
    if dtype == np.float32:
        return st.floats(width=32, allow_nan=False, allow_infinity=False) | special
    bounded = st.floats(-FLOAT64_BOUND, FLOAT64_BOUND, allow_nan=False, allow_infinity=False)
    return bounded | special


@st.composite
def blocks(draw: st.DrawFn) -> tuple[np.ndarray, int, float | None, str]:
    """A (band, y, x) block starting on a tile corner, maybe with a partial edge tile."""
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    t = draw(st.integers(1, 6))
    shape = (
        draw(st.integers(1, 3)),
        draw(st.integers(1, 3)) * t + draw(st.integers(0, t - 1)),
        draw(st.integers(1, 3)) * t + draw(st.integers(0, t - 1)),
    )
    data = draw(hnp.arrays(dtype, shape, elements=elements(dtype)))
    options: list[st.SearchStrategy[float | None]] = [
        st.none(),
        st.sampled_from([float(v) for v in data.ravel()[:50]]),  # a value that occurs
        st.just(math.nan),
    ]
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        options += [
            st.integers(int(info.min), int(info.max)).map(float),
            st.sampled_from([float(info.min) - 1, float(info.max) + 1, 0.5]),  # never matches
        ]
    nodata = draw(st.one_of(options))
    if nodata is not None and not math.isfinite(nodata) and not math.isnan(nodata):
        nodata = None  # GDAL files do not carry an infinite nodata
    return data, t, nodata, draw(st.sampled_from(EDGE_POLICIES))


def naive_tiles(data: np.ndarray, t: int, nodata: float | None, edge: str):
    """Per tile: the valid samples, as float64, by the documented definition."""
    _, h, w = data.shape
    rows = h // t if edge == "skip" else -(-h // t)
    cols = w // t if edge == "skip" else -(-w // t)
    for r in range(rows):
        for c in range(cols):
            tile = data[:, r * t : (r + 1) * t, c * t : (c + 1) * t]
            x = tile.astype(np.float64)
            ok = np.isfinite(x)
            if nodata is not None and not math.isnan(nodata):
                ok &= x != nodata
            yield r, c, tile[ok], x[ok]


@SETTINGS
@given(block=blocks())
def test_features_equal_a_naive_per_tile_loop(block) -> None:
    data, t, nodata, edge = block
    f = block_features(data, tile_size=t, nodata=nodata, edge=edge)  # type: ignore[arg-type]
    per_tile = data.shape[0] * t * t
    shape = set()
    for r, c, raw, x in naive_tiles(data, t, nodata, edge):
        shape.add((r, c))
        n = x.size
        assert f.valid_fraction[r, c] == n / per_tile
        if n == 0:
            assert f.status[r, c] == STATUS_NODATA
            assert np.isnan(f.mean_intensity[r, c]) and np.isnan(f.std_intensity[r, c])
            continue
        assert f.status[r, c] == STATUS_OK
        mean, var = f.mean_intensity[r, c], f.std_intensity[r, c] ** 2
        if data.dtype.kind in "iu":
            # exact: the integer sum, correctly rounded once by the division
            exact = [int(v) for v in raw]
            total, total_sq = sum(exact), sum(v * v for v in exact)
            assert mean == np.float64(total) / n, (mean, total, n)
            ref_var = float(Fraction(n * total_sq - total * total, n * n))
        else:
            ref_mean = math.fsum(x) / n
            ref_var = math.fsum((x - ref_mean) ** 2) / n
            assert abs(mean - ref_mean) <= 1e-13 * np.abs(x).max()
        biggest = float(np.abs(x).max())
        assert abs(var - ref_var) <= 64 * EPS * biggest * biggest, (var, ref_var)
    assert f.shape == (max(r for r, _ in shape) + 1, max(c for _, c in shape) + 1)


@settings(max_examples=40, deadline=None)
@given(dtype=st.sampled_from(DTYPES), t=st.integers(1, 8))
def test_extreme_values_and_invalid_samples(dtype: str, t: int) -> None:
    """Max-valued tiles stay finite (exact for integers); NaN, +/-inf, nodata never count."""
    dt = np.dtype(dtype)
    data = np.zeros((2, t, 4 * t), dtype=dt)
    # float64's own max would overflow a tile's sum: see FLOAT64_BOUND
    top = np.iinfo(dt).max if dt.kind in "iu" else min(float(np.finfo(dt).max), FLOAT64_BOUND)
    data[:, :, :t] = top  # tile 0: every sample at the dtype's maximum
    data[:, :, t : 2 * t] = 7  # tile 1: the nodata value only
    if dt.kind == "f":
        data[0, :, 2 * t : 3 * t] = np.nan  # tile 2: half NaN, half +inf
        data[1, :, 2 * t : 3 * t] = np.inf
        data[:, :, 3 * t :] = -np.inf  # tile 3: -inf and one valid sample
        data[0, 0, 3 * t] = 3
    else:
        data[:, :, 2 * t : 3 * t] = 7
        data[:, :, 3 * t :] = 7
        data[0, 0, 3 * t] = 3
    f = block_features(data, tile_size=t, nodata=7)
    if dt.kind in "iu":  # exact sums
        assert f.mean_intensity[0, 0] == float(top) and f.std_intensity[0, 0] == 0.0
    else:  # float sums round, within the stated tolerance
        assert abs(f.mean_intensity[0, 0] - float(top)) <= 1e-13 * float(top)
        assert f.std_intensity[0, 0] <= 1e-13 * float(top)
    assert list(f.status[0]) == [STATUS_OK, STATUS_NODATA, STATUS_NODATA, STATUS_OK]
    assert f.valid_fraction[0, 3] == 1 / (2 * t * t)
    assert f.mean_intensity[0, 3] == 3.0


# ---------------------------------------------------------------------------
# Invariance to chunking
# ---------------------------------------------------------------------------

VARIABLES = ("prediction", "mean_intensity", "std_intensity", "valid_fraction", "status")
TF = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 5000000.0)


# A scene of a few tiles per side: uint16 with nodata, or float32 with NaN.
scenes = partial(
    scene_arrays,
    tiles=st.integers(1, 8),
    max_tiles=7,
    max_int=5,
    floats=[0.0, 0.1, 2.5, 1e30, -7.0, math.nan, math.inf],
)


def by_blocks(data: np.ndarray, grid: TileGrid, k: tuple[int, int], **options) -> dict:
    """What run_block does per block, assembled into the tile grid (no file, no dask)."""
    out: dict[str, np.ndarray] = {}
    for block in grid.blocks(grid.pixel_chunks(k)):
        r, c = block.window.toslices()
        got = infer_block(data[:, r, c], tile_size=grid.tile_size, edge=grid.edge, **options)
        for name, values in got.items():
            if name not in out:
                out[name] = np.zeros(grid.shape, dtype=values.dtype)
            out[name][
                block.row0 : block.row0 + block.rows, block.col0 : block.col0 + block.cols
            ] = values
    return out


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@SETTINGS
@given(
    scene=scenes(),
    ks=st.lists(st.tuples(st.integers(1, 4), st.integers(1, 4)), min_size=2, max_size=3),
    threshold=st.floats(-10.0, 10.0),
)
def test_block_results_are_bit_identical_for_any_chunking(scene, ks, threshold: float) -> None:
    data, t, nodata, edge = scene
    grid = TileGrid(data.shape[1], data.shape[2], TF, t, edge)  # type: ignore[arg-type]
    assume(grid.size > 0)
    model = ThresholdModel(threshold=threshold)
    whole = infer_block(data, model=model, tile_size=t, nodata=nodata, edge=edge)  # type: ignore[arg-type]
    for k in ks:
        got = by_blocks(data, grid, k, model=model, nodata=nodata)
        for name in VARIABLES:
            assert same_bits(got[name], whole[name]), (name, k)


def memory_scene(
    data: np.ndarray, *, tile_size: int, nodata: float | None, chunks: tuple
) -> xr.DataArray:
    """What open_scene returns, over an in-memory dask array instead of a file."""
    bands, h, w = data.shape
    scene = xr.DataArray(
        da.from_array(data, chunks=((bands,), *chunks)),
        dims=("band", "y", "x"),
        coords={
            "band": list(range(1, bands + 1)),
            "y": TF.f + TF.e * (np.arange(h) + 0.5),
            "x": TF.c + TF.a * (np.arange(w) + 0.5),
        },
        attrs={"source": "memory", "tile_size": tile_size},
    )
    scene = scene.rio.write_crs("EPSG:32633").rio.write_transform(TF)
    return scene.rio.write_nodata(nodata, encoded=False)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    scene=scenes(),
    ks=st.lists(st.tuples(st.integers(1, 4), st.integers(1, 4)), min_size=2, max_size=3),
)
def test_tile_features_through_dask_are_bit_identical_for_any_chunking(scene, ks) -> None:
    data, t, nodata, edge = scene
    grid = TileGrid(data.shape[1], data.shape[2], TF, t, edge)  # type: ignore[arg-type]
    assume(grid.size > 0)
    whole = block_features(data, tile_size=t, nodata=nodata, edge=edge)  # type: ignore[arg-type]
    for k in ks:
        lazy = memory_scene(data, tile_size=t, nodata=nodata, chunks=grid.pixel_chunks(k))
        features = tile_features(lazy, edge=edge)  # type: ignore[arg-type]
        chunks = grid.pixel_chunks(k)
        assert features.mean_intensity.data.numblocks == (len(chunks[0]), len(chunks[1]))
        with dask.config.set(scheduler="synchronous"):
            got = features.compute()
        for name in ("mean_intensity", "std_intensity", "valid_fraction"):
            assert same_bits(got[name].values, getattr(whole, name)), (name, k)
        assert same_bits(got["status"].values, whole.status), k
