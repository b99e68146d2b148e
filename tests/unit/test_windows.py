"""Scene-anchored model windows: padding counted from the scene's edge, windows cut and
joined back, spans that cover a chunk whatever its offset."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from satdask.core.pixels import ClassTable, tile_summary
from satdask.core.windows import (
    PADDINGS,
    WindowLayout,
    check_padding,
    cut_windows,
    join_windows,
    pad_from_scene,
    source_index,
)
from satdask.errors import ModelError
from satdask.models.base import ModelClass

NUMPY_MODE = {"reflect": "reflect", "symmetric": "symmetric", "edge": "edge", "zeros": "constant"}


@pytest.mark.parametrize("padding", PADDINGS)
@given(extent=st.integers(2, 40), before=st.integers(0, 90), after=st.integers(0, 90))
def test_padding_is_numpys_counted_from_the_scene_edge(
    padding: str, extent: int, before: int, after: int
) -> None:
    scene = np.arange(1, extent + 1)
    expected = np.pad(scene, (before, after), mode=NUMPY_MODE[padding])  # type: ignore[call-overload]
    index = source_index(-before, extent + after, extent, check_padding(padding))
    got = np.where(index < 0, 0, scene[np.maximum(index, 0)])
    assert np.array_equal(got, expected)


def test_an_unknown_padding_and_a_halo_over_half_the_window_are_refused() -> None:
    with pytest.raises(ModelError, match="padding must be one of reflect, symmetric, edge, zeros"):
        check_padding("wrap")
    with pytest.raises(ModelError, match="halo 32 px leaves nothing of a 64 px window"):
        WindowLayout(64, 32)


@given(
    size=st.integers(3, 40),
    halo=st.integers(0, 8),
    start=st.integers(0, 300),
    length=st.integers(1, 200),
)
def test_spans_cover_the_chunk_with_windows_anchored_at_zero(
    size: int, halo: int, start: int, length: int
) -> None:
    if size - 2 * halo < 1:
        return
    layout = WindowLayout(size, halo)
    first, count = layout.span(start, start + length)
    lo, hi = layout.read_span(start, start + length)
    assert first * layout.step <= start < (first + 1) * layout.step
    assert (first + count) * layout.step >= start + length > (first + count - 1) * layout.step
    assert (lo, hi) == (first * layout.step - halo, (first + count) * layout.step + halo)


def test_windows_cut_and_joined_give_the_region_back() -> None:
    layout = WindowLayout(10, 2)  # step 6
    region = np.arange(2 * (3 * 6 + 4) * (2 * 6 + 4)).reshape(2, 3 * 6 + 4, 2 * 6 + 4)
    windows = cut_windows(region, layout)
    assert windows.shape == (6, 2, 10, 10)
    assert np.array_equal(windows[4], region[:, 12:22, 0:10])  # row 2, col 0
    kept = windows[:, :, 2:8, 2:8]
    assert np.array_equal(join_windows(kept, 3, 2), region[:, 2:20, 2:14])


def test_pad_from_scene_gathers_rows_and_zeros() -> None:
    pixels = np.arange(2 * 4 * 5).reshape(2, 4, 5)
    rows = source_index(-1, 5, 4, "zeros")  # scene rows -1..4 of 4: one zero row each side
    cols = source_index(1, 7, 5, "edge")  # cols 1..6 of 5: col 4 repeated twice
    out = pad_from_scene(pixels, rows, cols, row0=0, col0=0)
    assert out.shape == (2, 6, 6)
    assert np.all(out[:, 0] == 0) and np.all(out[:, 5] == 0)
    assert np.array_equal(out[:, 1:5, :4], pixels[:, :, 1:5])
    assert np.array_equal(out[:, 1:5, 5], pixels[:, :, 4])


def test_tile_summary_counts_classes_per_tile_and_skips_the_fill() -> None:
    table = ClassTable.of((ModelClass(0, "water"), ModelClass(2, "forest")))
    classes = np.full((4, 6), 2, dtype=np.uint8)
    classes[:2, :2] = 0
    classes[0, 0] = table.fill
    fraction, majority = tile_summary(classes, table=table, tile_size=2, rows=2, cols=3)
    assert fraction.shape == (2, 2, 3)
    assert fraction[0, 0, 0] == 1.0 and fraction[1, 0, 0] == 0.0  # 3 water, the fill not counted
    assert np.all(fraction[1].ravel()[1:] == 1.0)
    assert majority.tolist() == [[0, 2, 2], [2, 2, 2]]


@pytest.mark.parametrize("k", [3, 9])
def test_class_counts_per_tile_with_partial_tiles(k: int) -> None:
    from satdask.core.pixels import class_counts

    table = ClassTable.of(tuple(ModelClass(3 * i, f"c{i}") for i in range(k)))
    rng = np.random.default_rng(k)
    classes = rng.choice([*table.values.tolist(), table.fill], size=(70, 45)).astype(table.dtype)
    counts = class_counts(classes, table=table, tile_size=32)
    assert counts.shape == (k, 3, 2)
    for r in range(3):
        for c in range(2):
            tile = classes[r * 32 : (r + 1) * 32, c * 32 : (c + 1) * 32]
            assert counts[:, r, c].tolist() == [int((tile == v).sum()) for v in table.values]
