"""A pixel model over one block: windows in, classes per pixel (or per window) out.

Pure numpy around `PixelModel.scores`: the caller reads the block's pixels with
their halo (`satdask.core.windows.WindowLayout.read_span`), this cuts them into the
scene-anchored windows, runs the model on batches of exactly `batch_size` windows,
crops each output to its kept centre and puts the centres back together. The loop
is over model calls, never over tiles or pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
    """Windows of the model's fixed size, or a tile plus the halo for a dynamic model, so a
    chunk of whole tiles holds whole windows and no window is computed twice."""
    size = model.window or tile_size + 2 * model.halo
    return WindowLayout(size, model.halo)


@dataclass(frozen=True)
class WindowOutputs:
    """A region's outputs, window by window: kept centres, (ny, nx, ...) leading."""

    best: np.ndarray  # (ny, nx, step, step) class indexes, or (ny, nx) for a window model
    scores: np.ndarray | None  # (ny, nx, K, ...) float32 with keep_scores
    layers: np.ndarray | None  # (ny, nx, L, step, step) float32 for a model with layers


def window_outputs(
    region: np.ndarray,
    *,
    model: PixelModel,
    layout: WindowLayout,
    keep_scores: bool = False,
    inside: np.ndarray | None = None,
) -> WindowOutputs:
    """Run the model over every window of `region` and keep each window's centre.

    `region` is (band, Y, X), Y and X a whole number of steps plus twice the halo;
    `inside` (Y, X) is False where it was padded beyond the scene (None: all inside).
    The argmax is taken window by window on the kept centres, so only class indexes
    (one byte a pixel) are put back together, never the float scores.
    """
    ny, nx = ((n - 2 * layout.halo) // layout.step for n in region.shape[1:])
    windows = cut_windows(region, layout)
    inside_windows = None if inside is None else cut_windows(inside[None], layout)[:, 0]
    n, batch, k = windows.shape[0], model.batch_size, len(model.classes)
    h, s = layout.halo, layout.step
    out: dict[str, np.ndarray] = {}
    for start in range(0, n, batch):  # one model call per batch of windows
        chunk = _whole_batch(windows[start : start + batch], batch)
        given = None if inside_windows is None else inside_windows[start : start + batch]
        kwargs = {} if given is None else {"inside": _whole_batch(given, batch)}
        scores = np.asarray(model.scores(chunk, **kwargs), dtype=np.float32)[: n - start]
        kept = scores if model.output == "window" else scores[:, :, h : h + s, h : h + s]
        parts = {"best": first_max(kept[:, :k])}
        if keep_scores:
            parts["scores"] = kept[:, :k]
        if kept.shape[1] > k:
            parts["layers"] = kept[:, k:]
        for name, part in parts.items():
            if name not in out:
                out[name] = np.empty((n, *part.shape[1:]), dtype=part.dtype)
            out[name][start : start + batch] = part
    grid = {name: a.reshape(ny, nx, *a.shape[1:]) for name, a in out.items()}
    return WindowOutputs(grid["best"], grid.get("scores"), grid.get("layers"))


def _whole_batch(chunk: np.ndarray, batch: int) -> np.ndarray:
    """Always whole batches, the last padded with zeros: results cannot depend on chunking."""
    if chunk.shape[0] == batch:
        return chunk
    padding = np.zeros((batch - chunk.shape[0], *chunk.shape[1:]), dtype=chunk.dtype)
    return np.concatenate([chunk, padding])


def first_max(scores: np.ndarray) -> np.ndarray:
    """The index of the highest score along axis 1, the first on a tie (numpy's argmax,
    except that a NaN score never wins): one vectorised pass per class, which on the few
    classes of a segmentation head is twice as fast as argmax over a middle axis."""
    best = scores[:, 0].copy()
    index = np.zeros(best.shape, dtype=np.uint8 if scores.shape[1] <= 256 else np.uint16)
    for k in range(1, scores.shape[1]):
        higher = scores[:, k] > best
        index[higher] = k
        np.maximum(best, scores[:, k], out=best)
    return index


def pixel_classes(
    outputs: WindowOutputs, valid: np.ndarray, *, table: ClassTable, offset: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """A pixel model's window outputs -> class values per pixel (fill where invalid), and
    the (K, Y, X) scores and (L, Y, X) layers if given (NaN where invalid), all cropped to
    `valid`'s shape from `offset` (the block's first pixel within the kept centres)."""
    ny, nx = outputs.best.shape[:2]
    (oy, ox), (h, w) = offset, valid.shape

    def joined(kept: np.ndarray) -> np.ndarray:
        whole = join_windows(kept.reshape(ny * nx, *kept.shape[2:]), ny, nx)
        return whole[..., oy : oy + h, ox : ox + w]

    classes = table.values[joined(outputs.best)]
    classes[~valid] = table.fill
    scores = None if outputs.scores is None else joined(outputs.scores)
    layers = None if outputs.layers is None else joined(outputs.layers)
    if layers is not None:
        layers[:, ~valid] = np.nan
    return classes, scores, layers


def class_counts(classes: np.ndarray, *, table: ClassTable, tile_size: int) -> np.ndarray:
    """Pixels of each class of `table` in every tile of a block: (K, rows, cols) int64.

    A block ending in partial tiles counts them as tiles (the fill is no class). A few
    classes are counted with one comparison each over the block (3.4 ms for 3 classes
    on a 1536 px block), many with one bincount over tile and class (28 ms).
    """
    t, (h, w) = tile_size, classes.shape
    rows, cols = -(-h // t), -(-w // t)
    if (h, w) != (rows * t, cols * t):
        padded = np.full((rows * t, cols * t), table.fill, dtype=classes.dtype)
        padded[:h, :w] = classes
        classes = padded
    tiles = classes.reshape(rows, t, cols, t)
    k = len(table.values)
    if k <= 8:
        return np.stack([np.count_nonzero(tiles == v, axis=(1, 3)) for v in table.values])
    index = np.full(int(table.fill) + 1, k, dtype=np.intp)  # the fill and gaps -> k
    index[table.values] = np.arange(k)
    tile = (np.arange(rows * t) // t)[:, None] * cols + (np.arange(cols * t) // t)[None, :]
    counts = np.bincount((tile * (k + 1) + index[classes]).ravel(), minlength=rows * cols * (k + 1))
    return np.moveaxis(counts.reshape(rows, cols, k + 1)[..., :k], -1, 0)


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

    Pixels past the block's `rows` x `cols` tiles (a strip the edge policy skips) are
    not counted.
    """
    counts = class_counts(
        classes[: rows * tile_size, : cols * tile_size], table=table, tile_size=tile_size
    )
    total = counts.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = (counts / total).astype(np.float32)
    majority = np.where(total > 0, table.values[counts.argmax(axis=0)].astype(np.int16), -1)
    return fraction, majority


def flag_name(name: str) -> str:
    """A class name as one word of CF's space-separated flag_meanings."""
    return name.replace(" ", "_")


def class_flags(classes: tuple[ModelClass, ...]) -> dict[str, Any]:
    """CF flag attributes naming a model's classes, with their colours."""
    return {
        "long_name": "predicted class",
        "flag_values": [c.value for c in classes],
        "flag_meanings": " ".join(flag_name(c.name) for c in classes),
        "flag_colors": [c.color for c in classes],
    }
