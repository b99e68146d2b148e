"""A pixel model over one block: windows in, classes per pixel (or per window) out.

Pure numpy around `PixelModel.scores`: the caller reads the block's pixels with
their halo (`satdask.core.windows.WindowLayout.read_span`), this cuts them into the
scene-anchored windows, runs the model on batches of exactly `batch_size` windows,
crops each output to its kept centre and puts the centres back together. The loop
is over model calls, never over tiles or pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from satdask.core.windows import WindowLayout, cut_windows, join_windows
from satdask.errors import ModelError
from satdask.models.base import ModelClass, PixelModel


@dataclass(frozen=True)
class ClassTable:
    """Class values in model order, the dtype that stores them and a fill no class has."""

    values: np.ndarray
    fill: int

    @classmethod
    def of(cls, classes: tuple[ModelClass, ...]) -> ClassTable:
        values = [c.value for c in classes]
        if min(values) < 0:
            raise ModelError(f"class values must be 0 or more, got {min(values)}")
        dtype = np.uint8 if max(values) < 255 else np.uint16
        if max(values) >= np.iinfo(dtype).max:
            raise ModelError(f"class value {max(values)} does not fit in 16 bits")
        return cls(np.asarray(values, dtype=dtype), int(np.iinfo(dtype).max))

    @property
    def dtype(self) -> np.dtype:
        return self.values.dtype


def model_layout(model: PixelModel, *, tile_size: int) -> WindowLayout:
    """Windows of the model's fixed size, or a tile plus the halo for a dynamic model."""
    size = model.window or tile_size + 2 * model.halo
    return WindowLayout(size, model.halo)


def window_scores(region: np.ndarray, *, model: PixelModel, layout: WindowLayout) -> np.ndarray:
    """Scores of every window of `region`: (ny, nx, K, step, step) kept centres for a pixel
    model, (ny, nx, K) for a window model.

    `region` is (band, Y, X), Y and X a whole number of steps plus twice the halo.
    """
    ny, nx = ((n - 2 * layout.halo) // layout.step for n in region.shape[1:])
    windows = cut_windows(region, layout)
    n, batch = windows.shape[0], model.batch_size
    h, s = layout.halo, layout.step
    out: np.ndarray | None = None
    for start in range(0, n, batch):  # one model call per batch of windows
        chunk = windows[start : start + batch]
        if chunk.shape[0] < batch:  # always whole batches: results cannot depend on chunking
            chunk = np.concatenate([chunk, np.zeros_like(windows[: batch - chunk.shape[0]])])
        scores = np.asarray(model.scores(chunk), dtype=np.float32)
        kept = scores if model.output == "window" else scores[:, :, h : h + s, h : h + s]
        if out is None:
            out = np.empty((n, *kept.shape[1:]), dtype=np.float32)
        out[start : start + batch] = kept[: n - start]
    assert out is not None, "a region holds at least one window"
    return out.reshape(ny, nx, *out.shape[1:])


def pixel_classes(
    kept: np.ndarray, valid: np.ndarray, *, table: ClassTable, offset: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """(ny, nx, K, step, step) kept scores -> class values per pixel, fill where invalid,
    and the (K, Y, X) scores, both cropped to `valid`'s shape from `offset` (the block's
    first pixel within the kept centres).

    Ties between class scores go to the first class, as numpy's argmax does.
    """
    ny, nx = kept.shape[:2]
    (oy, ox), (h, w) = offset, valid.shape
    scores = join_windows(kept.reshape(ny * nx, *kept.shape[2:]), ny, nx)
    scores = scores[:, oy : oy + h, ox : ox + w]
    classes = table.values[scores.argmax(axis=0)]
    classes[~valid] = table.fill
    return classes, scores


def tile_summary(
    classes: np.ndarray,
    *,
    table: ClassTable,
    tile_size: int,
    rows: int,
    cols: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Per tile of a block: the fraction of its predicted pixels in each class (K, rows,
    cols; NaN with none) and the majority class (-1 with none; ties to the first class).

    Pixels past the block's `rows` x `cols` whole tiles (a strip the edge policy skips)
    are not counted.
    """
    k = len(table.values)
    part = classes[: rows * tile_size, : cols * tile_size]
    index = np.full(int(table.values.max()) + 2, k, dtype=np.intp)  # fill and gaps -> k
    index[table.values] = np.arange(k)
    cls = index[np.minimum(part, index.size - 1)]
    ty = np.arange(part.shape[0]) // tile_size
    tx = np.arange(part.shape[1]) // tile_size
    tile = ty[:, None] * cols + tx[None, :]
    counts = np.bincount((tile * (k + 1) + cls).ravel(), minlength=rows * cols * (k + 1))
    counts = counts.reshape(rows, cols, k + 1)[..., :k]
    total = counts.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = (counts / total[..., None]).astype(np.float32)
    majority = np.where(total > 0, table.values[counts.argmax(axis=-1)].astype(np.int16), -1)
    return np.moveaxis(fraction, -1, 0), majority
