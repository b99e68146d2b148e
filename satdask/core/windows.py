"""Model windows anchored to the scene: which pixels a block reads, and how to cut them.

A pixel model reads windows of `size` px with `halo` px of context on each side and
keeps only the centre (`step` = size - 2 * halo). Window k along an axis keeps the
scene's pixels [k * step, (k + 1) * step) whatever the dask chunks are, so every
chunking runs the very same windows on the very same pixels, and its outputs are
bit-identical. Pixels beyond the scene are taken from inside it by `padding`, also
counted from the scene's own edge, never from a chunk's.

Pure numpy: the reading is done by the caller, with the rows and columns
`read_span` gives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from satdask.errors import ModelError

Padding = Literal["reflect", "symmetric", "edge", "zeros"]
PADDINGS: tuple[Padding, ...] = ("reflect", "symmetric", "edge", "zeros")


def check_padding(padding: object) -> Padding:
    for mode in PADDINGS:
        if padding == mode:
            return mode
    raise ModelError(f"padding must be one of {', '.join(PADDINGS)}, got {padding!r}")


@dataclass(frozen=True)
class WindowLayout:
    size: int  # pixels a side the model reads
    halo: int  # pixels cropped from each side of its output

    def __post_init__(self) -> None:
        if self.halo < 0 or self.size - 2 * self.halo < 1:
            raise ModelError(
                f"halo {self.halo} px leaves nothing of a {self.size} px window "
                f"(the halo must be under half the window)"
            )

    @property
    def step(self) -> int:
        return self.size - 2 * self.halo

    def span(self, start: int, stop: int) -> tuple[int, int]:
        """The first window and the window count whose kept pixels cover [start, stop)."""
        first = start // self.step
        return first, -(-stop // self.step) - first

    def read_span(self, start: int, stop: int) -> tuple[int, int]:
        """Scene coordinates [lo, hi) the windows over [start, stop) read (may pass the edge)."""
        first, count = self.span(start, stop)
        return first * self.step - self.halo, (first + count) * self.step + self.halo


def source_index(lo: int, hi: int, extent: int, padding: Padding) -> np.ndarray:
    """For scene coordinates lo..hi-1, the scene pixel each takes; -1 means zero.

    Counted from the scene's edge, so the same coordinate pads the same way in every
    chunk. "reflect" mirrors without repeating the edge pixel (numpy's reflect),
    "symmetric" repeats it, "edge" repeats the edge pixel outward.
    """
    i = np.arange(lo, hi)
    if padding == "zeros":
        return np.where((i >= 0) & (i < extent), i, -1)
    if padding == "edge" or extent == 1:
        return np.clip(i, 0, extent - 1)
    if padding == "reflect":
        period = 2 * (extent - 1)
        m = np.mod(i, period)
        return np.where(m < extent, m, period - m)
    period = 2 * extent
    m = np.mod(i, period)
    return np.where(m < extent, m, period - 1 - m)


def pad_from_scene(
    pixels: np.ndarray, rows: np.ndarray, cols: np.ndarray, *, row0: int, col0: int
) -> np.ndarray:
    """Gather (band, len(rows), len(cols)) from `pixels`, read at scene (row0, col0).

    `rows` and `cols` are `source_index` answers; -1 entries become 0.
    """
    r = np.where(rows < 0, 0, rows - row0)
    c = np.where(cols < 0, 0, cols - col0)
    out = pixels[:, r[:, None], c[None, :]]
    if (rows < 0).any() or (cols < 0).any():
        out[:, rows < 0, :] = 0
        out[:, :, cols < 0] = 0
    return out


def cut_windows(region: np.ndarray, layout: WindowLayout) -> np.ndarray:
    """(band, Y, X) read with `read_span` -> (ny * nx, band, size, size) windows, row-major."""
    view = np.lib.stride_tricks.sliding_window_view(
        region, (layout.size, layout.size), axis=(1, 2)
    )[:, :: layout.step, :: layout.step]
    bands, ny, nx = view.shape[:3]
    return np.ascontiguousarray(view.transpose(1, 2, 0, 3, 4)).reshape(
        ny * nx, bands, layout.size, layout.size
    )


def join_windows(kept: np.ndarray, ny: int, nx: int) -> np.ndarray:
    """(ny * nx, ..., step, step) kept centres -> (..., ny * step, nx * step)."""
    step = kept.shape[-1]
    lead = kept.shape[1:-2]
    grid = kept.reshape(ny, nx, *lead, step, step)
    axes = tuple(range(2, 2 + len(lead)))
    return grid.transpose(*axes, 0, len(lead) + 2, 1, len(lead) + 3).reshape(
        *lead, ny * step, nx * step
    )
