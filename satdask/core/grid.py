"""The tile grid of a scene: pure geometry, no I/O.

Every other module asks the grid where a tile is, so batch, API and plots agree
on one definition of tile (row, col), its pixel window, transform and bounds.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, NamedTuple

from affine import Affine

from satdask.errors import GridError

EdgePolicy = Literal["skip", "pad"]
EDGE_POLICIES: tuple[EdgePolicy, ...] = ("skip", "pad")
Chunks = tuple[tuple[int, ...], tuple[int, ...]]


class Window(NamedTuple):
    """A pixel window, in rasterio's argument order, so `rasterio.windows.Window(*w)` reads it.

    The core stays free of rasterio; only the readers convert.
    """

    col_off: int
    row_off: int
    width: int
    height: int

    def toslices(self) -> tuple[slice, slice]:
        """(rows, cols) slices, as numpy indexes a (y, x) array."""
        return (
            slice(self.row_off, self.row_off + self.height),
            slice(self.col_off, self.col_off + self.width),
        )


def size_text(height: int, width: int, bands: int | None = None) -> str:
    """`3 bands x 718 rows x 791 cols`: the one order sizes are printed in, everywhere."""
    text = f"{height} row{'s' * (height != 1)} x {width} col{'s' * (width != 1)}"
    return text if bands is None else f"{bands} band{'s' * (bands != 1)} x {text}"


def check_tile_size(tile_size: object, *, name: str = "tile_size") -> int:
    """A tile size (or a count of tiles, `name`) must be a positive integer; bool is refused."""
    if isinstance(tile_size, bool) or not isinstance(tile_size, int) or tile_size <= 0:
        raise GridError(f"{name} must be a positive integer, got {tile_size!r}")
    return tile_size


def check_edge(edge: object) -> EdgePolicy:
    for policy in EDGE_POLICIES:  # returns the policy itself, so the type follows
        if edge == policy:
            return policy
    raise GridError(f"edge must be one of {', '.join(EDGE_POLICIES)}, got {edge!r}")


def require_tiles(grid: TileGrid, name: str) -> TileGrid:
    """Refuse a grid with no tile: `name` (the scene) is too small for its tile size."""
    if grid.size == 0:
        raise GridError(
            f"{name}: {size_text(grid.height, grid.width)} holds no whole {grid.tile_size} px "
            "tile; use the pad edge policy (--edge pad) or a smaller tile size (--tile-size)"
        )
    return grid


@dataclass(frozen=True)
class TileGrid:
    """Tiles of `tile_size` pixels laid from the scene's upper-left corner.

    Under edge policy ``skip`` the partial tiles at the right and bottom edges are
    dropped (the reference pipeline's behaviour); under ``pad`` they are kept and
    the missing pixels count as invalid.
    """

    height: int
    width: int
    transform: Affine
    tile_size: int = 256
    edge: EdgePolicy = "skip"

    def __post_init__(self) -> None:
        check_tile_size(self.tile_size)
        check_edge(self.edge)
        if self.height <= 0 or self.width <= 0:
            raise GridError(f"scene size must be positive, got {self.height} x {self.width}")

    @property
    def rows(self) -> int:
        return self._count(self.height)

    @property
    def cols(self) -> int:
        return self._count(self.width)

    @property
    def shape(self) -> tuple[int, int]:
        return self.rows, self.cols

    @property
    def size(self) -> int:
        return self.rows * self.cols

    def _count(self, pixels: int) -> int:
        if self.edge == "pad":
            return math.ceil(pixels / self.tile_size)
        return pixels // self.tile_size

    def coverage(self) -> dict[str, float]:
        """The pixels the tiles cover and leave out: under ``skip``, strips at the right
        and bottom edges are never inferred, and a run says how many."""
        rows_in = min(self.rows * self.tile_size, self.height)
        cols_in = min(self.cols * self.tile_size, self.width)
        total = self.height * self.width
        uncovered = total - rows_in * cols_in
        return {
            "pixels_total": total,
            "pixels_uncovered": uncovered,
            "rows_uncovered": self.height - rows_in,
            "cols_uncovered": self.width - cols_in,
            "fraction_uncovered": uncovered / total,
        }

    def aligned_chunks(self, chunks: Chunks) -> Chunks | None:
        """`chunks` with a trailing chunk thinner than a tile merged into the one before it;
        None if some other chunk does not hold whole tiles.

        256 px chunking of a 791 px scene leaves (256, 256, 256, 23): the 23 px chunk holds
        no whole tile, and would be a block of nothing.
        """
        t = self.tile_size
        out = []
        for axis in chunks:
            sizes = list(axis)
            if len(sizes) > 1 and sizes[-1] < t:
                sizes[-2:] = [sizes[-2] + sizes[-1]]
            if any(c % t for c in sizes[:-1]):
                return None
            out.append(tuple(sizes))
        return out[0], out[1]

    @property
    def grid_transform(self) -> Affine:
        """Transform of the tile grid seen as a raster whose pixels are tiles."""
        return self.transform @ Affine.scale(self.tile_size)

    def _check(self, row: int, col: int) -> None:
        if not (0 <= row < self.rows and 0 <= col < self.cols):
            raise GridError(
                f"tile ({row}, {col}) is outside the {self.rows} x {self.cols} tile grid"
            )

    def window(self, row: int, col: int) -> Window:
        """Pixel window of a tile, clipped to the scene (smaller than a tile at pad edges)."""
        self._check(row, col)
        t = self.tile_size
        r0, c0 = row * t, col * t
        return Window(c0, r0, min(t, self.width - c0), min(t, self.height - r0))

    def tile_transform(self, row: int, col: int) -> Affine:
        self._check(row, col)
        t = self.tile_size
        return self.transform @ Affine.translation(col * t, row * t)

    def bounds(self, row: int, col: int) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) of the whole tile, including any padded part."""
        tf = self.tile_transform(row, col)
        t = self.tile_size
        xs = (tf.c, tf.c + tf.a * t)
        ys = (tf.f, tf.f + tf.e * t)
        return min(xs), min(ys), max(xs), max(ys)

    def tile_at(self, x: float, y: float) -> tuple[int, int]:
        """Tile containing the point (x, y) in the scene's CRS."""
        col_f, row_f = ~self.grid_transform @ (x, y)
        row, col = math.floor(row_f), math.floor(col_f)
        self._check(row, col)
        return row, col

    def centres(self) -> tuple[list[float], list[float]]:
        """Tile-centre coordinates (xs, ys) in the scene's CRS, for a rectilinear scene."""
        g = self.grid_transform
        xs = [g.c + g.a * (c + 0.5) for c in range(self.cols)]
        ys = [g.f + g.e * (r + 0.5) for r in range(self.rows)]
        return xs, ys

    def pixel_chunks(self, tiles_per_chunk: tuple[int, int]) -> Chunks:
        """Dask chunks in pixels holding whole tiles, `tiles_per_chunk` (rows, cols) each.

        The last chunk also takes the partial remainder, so no chunk is smaller than
        a tile; under ``pad`` that remainder becomes one more tile of the last chunk.
        """
        ky, kx = (check_tile_size(k, name="tiles_per_chunk") for k in tiles_per_chunk)
        return (
            _pixel_chunks(self.height, self.tile_size, ky),
            _pixel_chunks(self.width, self.tile_size, kx),
        )

    def tiles_per_pixel_chunk(self, chunks: Chunks) -> Chunks:
        """Tile counts of each chunk along rows and cols, by the edge policy."""
        rows, cols = chunks
        return tuple(self._count(c) for c in rows), tuple(self._count(c) for c in cols)

    def blocks(self, chunks: Chunks) -> Iterator[Block]:
        """Blocks of whole tiles in row-major order; each reads only pixels it uses."""
        t = self.tile_size
        row_tiles, col_tiles = self.tiles_per_pixel_chunk(chunks)
        r0 = 0
        for nr, rows_px in zip(row_tiles, chunks[0], strict=True):
            c0 = 0
            for nc, cols_px in zip(col_tiles, chunks[1], strict=True):
                if nr and nc:
                    window = Window(c0 * t, r0 * t, min(nc * t, cols_px), min(nr * t, rows_px))
                    yield Block(r0, c0, nr, nc, window)
                c0 += nc
            r0 += nr


@dataclass(frozen=True)
class Block:
    """A rectangle of tiles (row0, col0, rows, cols) and its pixel window in the scene."""

    row0: int
    col0: int
    rows: int
    cols: int
    window: Window

    @property
    def tiles(self) -> int:
        return self.rows * self.cols


def _pixel_chunks(pixels: int, tile_size: int, k: int) -> tuple[int, ...]:
    full_tiles = pixels // tile_size
    if full_tiles == 0:
        return (pixels,)
    groups, rest = divmod(full_tiles, k)
    px = [k * tile_size] * groups + ([rest * tile_size] if rest else [])
    px[-1] += pixels - full_tiles * tile_size
    return tuple(px)
