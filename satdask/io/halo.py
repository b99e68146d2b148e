"""A block's pixels with the halo its model windows need, read once from the source.

The one block function of pixel models: the lazy `predict`, the batch run and the
service all call `pixel_block`, so their pixels cannot disagree. A block reads the
rows and columns its scene-anchored windows cover (`WindowLayout.read_span`); the
parts beyond the scene are filled from inside it by the padding
(`satdask.core.windows.source_index`), counted from the scene's edge.

Invalid pixels (GDAL's rules: a pixel is nodata where every band holds the nodata
value; NaN in any band; the per-dataset or alpha mask) enter the model as 0 and get
the fill value, never a class.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from satdask.core.grid import Window
from satdask.core.pixels import ClassTable, pixel_classes, window_outputs
from satdask.core.windows import Padding, WindowLayout, pad_from_scene, source_index
from satdask.io.source import PixelSource
from satdask.models.base import PixelModel


@dataclass(frozen=True)
class PixelBlock:
    """One block's results at the scene's resolution, and the block's own pixels."""

    classes: np.ndarray  # (y, x) class values, table.fill where invalid
    scores: np.ndarray | None  # (K, y, x) float32 with keep_scores; (K, ny, nx) per window
    valid: np.ndarray  # (y, x) bool
    pixels: np.ndarray  # (band, y, x) as read, for the tile summary's features
    layers: dict[str, np.ndarray] = field(default_factory=dict)  # (y, x) float32, NaN invalid


def valid_pixels(data: np.ndarray, *, nodata: float | None, mask: np.ndarray | None) -> np.ndarray:
    """(y, x) True where a (band, y, x) block holds data, by GDAL's mask rules."""
    valid = np.ones(data.shape[1:], dtype=bool) if mask is None else mask.astype(bool)
    if data.dtype.kind == "f":
        valid &= ~np.isnan(data).any(axis=0)
        if nodata is not None and not np.isnan(nodata):
            valid &= (data != nodata).any(axis=0)
    elif nodata is not None and float(nodata).is_integer():
        info = np.iinfo(data.dtype)
        if info.min <= nodata <= info.max:
            valid &= (data != data.dtype.type(nodata)).any(axis=0)
    return valid


def read_region(
    source: PixelSource,
    rows: tuple[int, int],
    cols: tuple[int, int],
    *,
    height: int,
    width: int,
    padding: Padding,
    nodata: float | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pixels and validity of scene rows/cols [lo, hi), which may pass the scene's edge."""
    ry = source_index(*rows, height, padding)
    rx = source_index(*cols, width, padding)
    inside_y, inside_x = ry[ry >= 0], rx[rx >= 0]
    r0, c0 = int(inside_y.min()), int(inside_x.min())
    window = Window(c0, r0, int(inside_x.max()) - c0 + 1, int(inside_y.max()) - r0 + 1)
    data = source.read(window)
    valid = valid_pixels(data, nodata=nodata, mask=source.read_mask(window))
    if _is_plain(ry, r0, data.shape[1]) and _is_plain(rx, c0, data.shape[2]):
        return data, valid  # no padding: the read is the region
    region = pad_from_scene(data, ry, rx, row0=r0, col0=c0)
    region_valid = pad_from_scene(valid[None], ry, rx, row0=r0, col0=c0)[0]
    return region, region_valid


def _is_plain(index: np.ndarray, start: int, size: int) -> bool:
    return index.size == size and index[0] == start and bool((np.diff(index) == 1).all())


def pixel_block(
    source: PixelSource,
    window: Window,
    *,
    model: PixelModel,
    layout: WindowLayout,
    table: ClassTable,
    height: int,
    width: int,
    padding: Padding,
    nodata: float | None,
    keep_scores: bool = False,
) -> PixelBlock:
    """Classes of every pixel of `window` (or of every model window it holds), and their
    scores with `keep_scores`."""
    rows = layout.read_span(window.row_off, window.row_off + window.height)
    cols = layout.read_span(window.col_off, window.col_off + window.width)
    region, valid = read_region(
        source, rows, cols, height=height, width=width, padding=padding, nodata=nodata
    )
    dy, dx = window.row_off - rows[0], window.col_off - cols[0]
    own = (slice(dy, dy + window.height), slice(dx, dx + window.width))
    pixels, own_valid = region[:, own[0], own[1]], valid[own]
    if not valid.all():
        region = np.where(valid, region, region.dtype.type(0))
    outputs = window_outputs(
        region,
        model=model,
        layout=layout,
        keep_scores=keep_scores,
        inside=_inside(rows, cols, height=height, width=width),
    )
    if model.output == "window":
        scores = None if outputs.scores is None else np.moveaxis(outputs.scores, -1, 0)
        return PixelBlock(table.values[outputs.best], scores, own_valid, pixels)
    offset = (dy - layout.halo, dx - layout.halo)
    classes, scores, layers = pixel_classes(outputs, own_valid, table=table, offset=offset)
    named = dict(zip(model.layers, layers, strict=True)) if layers is not None else {}
    return PixelBlock(classes, scores, own_valid, pixels, named)


def _inside(
    rows: tuple[int, int], cols: tuple[int, int], *, height: int, width: int
) -> np.ndarray | None:
    """(Y, X) False where a region read over `rows` x `cols` passes the scene's edge."""
    if rows[0] >= 0 and cols[0] >= 0 and rows[1] <= height and cols[1] <= width:
        return None
    y, x = np.arange(*rows), np.arange(*cols)
    return ((y >= 0) & (y < height))[:, None] & ((x >= 0) & (x < width))[None, :]
