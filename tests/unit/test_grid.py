from __future__ import annotations

import pytest
from affine import Affine

from satdask import GridError, TileGrid

TF = Affine(10.0, 0.0, 1000.0, 0.0, -10.0, 9000.0)


def test_skip_drops_partial_edge_tiles_and_pad_keeps_them() -> None:
    skip = TileGrid(718, 791, TF, tile_size=256)
    pad = TileGrid(718, 791, TF, tile_size=256, edge="pad")
    assert skip.shape == (2, 3) and skip.size == 6
    assert pad.shape == (3, 4) and pad.size == 12


def test_window_transform_and_bounds_of_a_tile() -> None:
    grid = TileGrid(1000, 1000, TF, tile_size=256)
    w = grid.window(1, 2)
    assert (w.row_off, w.col_off, w.height, w.width) == (256, 512, 256, 256)
    assert grid.tile_transform(1, 2) == Affine(
        10.0, 0.0, 1000.0 + 5120.0, 0.0, -10.0, 9000.0 - 2560.0
    )
    assert grid.bounds(1, 2) == (6120.0, 3880.0, 8680.0, 6440.0)


def test_pad_edge_window_is_clipped_to_the_scene_but_bounds_cover_the_whole_tile() -> None:
    grid = TileGrid(300, 600, TF, tile_size=256, edge="pad")
    w = grid.window(1, 2)
    assert (w.row_off, w.col_off, w.height, w.width) == (256, 512, 44, 88)
    left, bottom, right, top = grid.bounds(1, 2)
    assert right - left == 2560.0 and top - bottom == 2560.0


def test_tile_at_inverts_bounds() -> None:
    grid = TileGrid(1024, 2048, TF, tile_size=256)
    for row, col in [(0, 0), (3, 7), (2, 5)]:
        left, bottom, right, top = grid.bounds(row, col)
        assert grid.tile_at((left + right) / 2, (top + bottom) / 2) == (row, col)
        assert grid.tile_at(left + 1e-6, top - 1e-6) == (row, col)


def test_grid_transform_and_centres_describe_the_tile_raster() -> None:
    grid = TileGrid(512, 768, TF, tile_size=256)
    assert grid.grid_transform == Affine(2560.0, 0.0, 1000.0, 0.0, -2560.0, 9000.0)
    xs, ys = grid.centres()
    assert xs == [1000.0 + 1280.0, 1000.0 + 3840.0, 1000.0 + 6400.0]
    assert ys == [9000.0 - 1280.0, 9000.0 - 3840.0]


@pytest.mark.parametrize("row, col", [(-1, 0), (0, -1), (2, 0), (0, 3)])
def test_tiles_outside_the_grid_are_refused(row: int, col: int) -> None:
    grid = TileGrid(512, 768, TF, tile_size=256)
    with pytest.raises(GridError, match=rf"tile \({row}, {col}\) is outside the 2 x 3"):
        grid.window(row, col)


@pytest.mark.parametrize("size", [0, -256, 2.5, "256", True])
def test_bad_tile_sizes_are_refused(size: object) -> None:
    with pytest.raises(GridError, match="tile_size must be a positive integer"):
        TileGrid(512, 512, TF, tile_size=size)  # type: ignore[arg-type]


def test_bad_edge_policy_is_refused() -> None:
    with pytest.raises(GridError, match="edge must be one of skip, pad"):
        TileGrid(512, 512, TF, edge="wrap")  # type: ignore[arg-type]


def test_pixel_chunks_hold_whole_tiles_with_the_remainder_last() -> None:
    grid = TileGrid(718, 1300, TF, tile_size=256)
    assert grid.pixel_chunks((1, 2)) == ((256, 462), (512, 512, 276))
    assert grid.tiles_per_pixel_chunk(grid.pixel_chunks((1, 2))) == ((1, 1), (2, 2, 1))
    pad = TileGrid(718, 1300, TF, tile_size=256, edge="pad")
    assert pad.tiles_per_pixel_chunk(pad.pixel_chunks((1, 2))) == ((1, 2), (2, 2, 2))


def test_a_scene_smaller_than_a_tile_is_one_chunk() -> None:
    grid = TileGrid(71, 2475, TF, tile_size=256)
    assert grid.shape == (0, 9)
    assert grid.pixel_chunks((4, 4))[0] == (71,)


def test_blocks_cover_every_tile_once_and_read_only_whole_tiles_under_skip() -> None:
    grid = TileGrid(718, 1300, TF, tile_size=256)
    blocks = list(grid.blocks(grid.pixel_chunks((1, 2))))
    covered = {
        (b.row0 + r, b.col0 + c) for b in blocks for r in range(b.rows) for c in range(b.cols)
    }
    assert covered == {(r, c) for r in range(grid.rows) for c in range(grid.cols)}
    assert sum(b.tiles for b in blocks) == grid.size
    last = blocks[-1]
    assert (last.window.height, last.window.width) == (256, 256)
    pad = TileGrid(718, 1300, TF, tile_size=256, edge="pad")
    last = list(pad.blocks(pad.pixel_chunks((1, 2))))[-1]
    assert (last.window.height, last.window.width) == (462, 276)
