"""Pictures of scenes, tile grids, predictions and model health, for notebooks.

Matplotlib is imported inside the functions that draw (it lives in the
``notebooks`` extra), so ``import satdask.plot`` works without it and
``quicklook``, ``health_table`` and ``styled_health_table`` never need it.

``quicklook`` never reads the full scene. For a scene from ``open_scene`` it asks
GDAL for a decimated window (``out_shape``), which a COG answers from its
overviews: on an 8192 x 8192 x 4 uint16 COG a 1024 px view took 0.03 s and
~35 MB, against 4-6 s and 500-650 MB for a lazy ``coarsen().mean()`` that reads and
averages every pixel through dask. Arrays that are not a plain window of their
file (computed, strided, or without a ``source``) fall back to that coarsen path,
which still streams chunk by chunk and never holds the scene in memory.
"""

from __future__ import annotations

import html
import itertools
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from satdask.core.features import STATUS_FAILED, STATUS_NODATA, STATUS_OK
from satdask.core.grid import TileGrid
from satdask.core.schema import RunRecord
from satdask.errors import PlotError
from satdask.pipeline.runs import RunResult, open_run
from satdask.render import COLOURS

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure, SubFigure
    from pandas.io.formats.style import Styler
    from rasterio.windows import Window

__all__ = [
    "health_table",
    "imshow",
    "map_axes",
    "prediction_map",
    "quicklook",
    "styled_health_table",
    "tile_grid",
]

Limits = Sequence[tuple[float, float]]
_COLOUR_INTERP_RGB = ("red", "green", "blue")
_PLAIN_LAYERS = ("original-scene-", "scene-", "getitem-")  # open_scene's read, then indexing


# --------------------------------------------------------------------------- quicklook


def quicklook(
    scene: xr.DataArray,
    *,
    max_size: int = 1024,
    rgb: Sequence[int] | None = None,
    percentiles: tuple[float, float] = (2.0, 98.0),
    limits: Limits | None = None,
) -> xr.DataArray:
    """A downsampled RGBA view (y, x, channel) of a scene, float32 in [0, 1].

    Its longer side is at most ``max_size`` px. Channels are the file's red, green
    and blue bands where it declares them, else bands (3, 2, 1) of a scene with
    four or more bands (blue, green, red, NIR order), else its first three bands,
    else the one band as grey; ``rgb`` (file band numbers) overrides that. Each
    channel is stretched between the ``percentiles`` of its valid pixels, or
    between ``limits`` (one (low, high) per channel, e.g. another quicklook's
    ``attrs["limits"]``, so a zoom keeps the overview's colours). Nodata is
    transparent (alpha 0). ``attrs["extent"]`` is (left, right, bottom, top) in
    the scene's CRS, ready for ``imshow``.
    """
    if max_size < 1:
        raise PlotError(f"max_size must be >= 1, got {max_size}")
    if "band" not in scene.dims:  # one band selected by scalar: keep it as a band
        scene = scene.expand_dims("band") if "band" in scene.coords else scene.expand_dims(band=[1])
    scene = scene.transpose("band", "y", "x")
    bands = _rgb_bands(scene, rgb)
    read = _read_decimated(scene, bands, max_size)
    method = "decimated read"
    if read is None:
        read = _coarsened(scene, bands, max_size)
        method = "coarsen"
    values, valid, extent = read
    image, used = _stretch(values, valid, percentiles=percentiles, limits=limits)
    height, width = valid.shape
    left, right, bottom, top = extent
    xs = left + (right - left) * (np.arange(width) + 0.5) / width
    ys = top - (top - bottom) * (np.arange(height) + 0.5) / height
    return xr.DataArray(
        image,
        dims=("y", "x", "channel"),
        coords={"y": ys, "x": xs, "channel": ["r", "g", "b", "a"]},
        name=f"quicklook of {scene.name}" if scene.name else "quicklook",
        attrs={
            "extent": extent,
            "bands": list(bands),
            "limits": used,
            "crs": _crs_name(scene),
            "method": method,
            "source": scene.attrs.get("source", ""),
        },
    )


def _crs_name(scene: xr.DataArray) -> str:
    crs = scene.rio.crs if "spatial_ref" in scene.coords else None
    return crs.to_string() if crs is not None else ""


def _rgb_bands(scene: xr.DataArray, rgb: Sequence[int] | None) -> tuple[int, ...]:
    """File band numbers to show as R, G, B (one band means grey)."""
    present = [int(b) for b in np.atleast_1d(scene["band"].values)]
    if rgb is not None:
        chosen = tuple(int(b) for b in rgb)
        missing = [b for b in chosen if b not in present]
        if len(chosen) not in (1, 3) or missing:
            raise PlotError(f"rgb must name 1 or 3 of the scene's bands {present}, got {rgb}")
        return chosen
    interp = _colour_interp(scene)
    by_name = {interp[b - 1]: b for b in present if 0 < b <= len(interp)}
    if all(name in by_name for name in _COLOUR_INTERP_RGB):
        return tuple(by_name[name] for name in _COLOUR_INTERP_RGB)
    if len(present) >= 4 and {1, 2, 3} <= set(present):
        return (3, 2, 1)
    return tuple(present[:3]) if len(present) >= 3 else (present[0],)


def _file_of(scene: xr.DataArray) -> str | None:
    """The one GeoTIFF a scene reads, if it does: not a STAC item's JSON, not a bare array."""
    from satdask.io.geotiff import RasterSource
    from satdask.views.scene import scene_source

    if not scene.attrs.get("source") or "band" not in scene.dims:
        return None
    source = scene_source(scene)
    return source.uri if isinstance(source, RasterSource) else None


def _colour_interp(scene: xr.DataArray) -> tuple[str, ...]:
    source = _file_of(scene)
    if not source:
        return ()
    import rasterio

    from satdask.io._gdal import configure_gdal

    configure_gdal()
    with rasterio.open(source) as src:
        return tuple(ci.name for ci in src.colorinterp)


def _reads_file_unchanged(scene: xr.DataArray) -> bool:
    """True for a scene from ``open_scene`` and its ``isel``/``sel`` subsets only.

    xarray keeps attrs (and so ``source``) through arithmetic; any dask layer but
    the file read and indexing means the values differ from the file's.
    """
    layers = getattr(getattr(scene.data, "dask", None), "layers", None)
    return layers is not None and all(str(name).startswith(_PLAIN_LAYERS) for name in layers)


def _window_of(scene: xr.DataArray, transform: Any) -> Window | None:
    """The file window a scene (or an `isel` of it) covers; None if not a plain window."""
    from rasterio.windows import Window

    xs, ys = scene["x"].values, scene["y"].values
    col = (xs[0] - transform.c) / transform.a - 0.5
    row = (ys[0] - transform.f) / transform.e - 0.5
    if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
        return None
    steps_ok = all(
        len(v) < 2 or np.allclose(np.diff(v), step, rtol=1e-9, atol=0)
        for v, step in ((xs, transform.a), (ys, transform.e))
    )
    return Window(round(col), round(row), len(xs), len(ys)) if steps_ok else None


def _read_decimated(
    scene: xr.DataArray, bands: Sequence[int], max_size: int
) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float, float]] | None:
    """One GDAL read at the output size; a COG serves it from its overviews."""
    source = _file_of(scene)
    if not source or not _reads_file_unchanged(scene):
        return None
    import rasterio
    from rasterio.errors import RasterioError
    from rasterio.windows import bounds as window_bounds

    from satdask.io._gdal import configure_gdal

    configure_gdal()
    with rasterio.open(source) as src:
        window = _window_of(scene, src.transform)
        if window is None:
            return None
        shape = _out_shape(window.height, window.width, max_size)
        try:
            values, valid = _read_window(src, bands, window, shape)
        except RasterioError:  # undecodable blocks: read piece by piece, leave them out
            values, valid = _read_in_pieces(src, bands, window, shape)
        left, bottom, right, top = window_bounds(window, src.transform)
    valid &= np.isfinite(values).all(axis=0)
    return values, valid, (left, right, bottom, top)


def _read_window(
    src: Any, bands: Sequence[int], window: Window, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """(band, y, x) float64 pixels at `shape` and the dataset's validity mask (nodata, alpha)."""
    from rasterio.enums import Resampling

    decimated = shape != (window.height, window.width)
    resampling = Resampling.average if decimated else Resampling.nearest
    values = src.read(
        list(bands), window=window, out_shape=(len(bands), *shape), resampling=resampling
    )
    mask = src.dataset_mask(window=window, out_shape=shape, resampling=Resampling.nearest)
    return values.astype(np.float64), mask > 0


def _read_in_pieces(
    src: Any, bands: Sequence[int], window: Window, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """The same view read one file block (at most 64 x 64 pieces) at a time; a piece
    that cannot be decoded stays invalid, so a damaged file still gets its picture."""
    from rasterio.errors import RasterioError
    from rasterio.windows import Window

    values = np.zeros((len(bands), *shape), dtype=np.float64)
    valid = np.zeros(shape, dtype=bool)
    block_h, block_w = src.block_shapes[0]
    out_rows = _edges(shape[0], math.ceil(window.height / block_h))
    out_cols = _edges(shape[1], math.ceil(window.width / block_w))
    for r0, r1 in itertools.pairwise(out_rows):
        y0, y1 = (round(r * window.height / shape[0]) for r in (r0, r1))
        for c0, c1 in itertools.pairwise(out_cols):
            x0, x1 = (round(c * window.width / shape[1]) for c in (c0, c1))
            piece = Window(window.col_off + x0, window.row_off + y0, x1 - x0, y1 - y0)
            try:
                part, ok = _read_window(src, bands, piece, (r1 - r0, c1 - c0))
            except RasterioError:
                continue
            values[:, r0:r1, c0:c1] = part
            valid[r0:r1, c0:c1] = ok
    return values, valid


def _edges(size: int, pieces: int) -> list[int]:
    """Distinct cut points splitting `size` output pixels into up to `pieces` (<= 64) runs."""
    n = max(1, min(pieces, 64, size))
    return sorted({round(i * size / n) for i in range(n + 1)})


def _coarsened(
    scene: xr.DataArray, bands: Sequence[int], max_size: int
) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float, float]]:
    """A lazy block mean over the scene's own chunks, computed once at the output size."""
    sub = scene.sel(band=list(bands))
    factor = max(1, math.ceil(max(sub.sizes["y"], sub.sizes["x"]) / max_size))
    nodata = scene.attrs.get("_FillValue")
    valid = np.isfinite(sub)
    if nodata is not None and not np.isnan(nodata):
        valid &= sub != nodata
    mean = sub.where(valid).coarsen(y=factor, x=factor, boundary="trim").mean()
    values = mean.transpose("band", "y", "x").values.astype(np.float64)
    tf = scene.rio.transform(recalc=True)
    rows, cols = mean.sizes["y"] * factor, mean.sizes["x"] * factor
    xs = (tf.c, tf.c + tf.a * cols)
    ys = (tf.f, tf.f + tf.e * rows)
    complete = np.asarray(np.isfinite(values).all(axis=0))
    return values, complete, (min(xs), max(xs), min(ys), max(ys))


def _out_shape(height: int, width: int, max_size: int) -> tuple[int, int]:
    scale = max(height, width) / max_size
    if scale <= 1:
        return height, width
    return max(1, round(height / scale)), max(1, round(width / scale))


def _stretch(
    values: np.ndarray,
    valid: np.ndarray,
    *,
    percentiles: tuple[float, float],
    limits: Limits | None,
) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """(h, w, 4) float32 RGBA, each channel linearly stretched; grey when one band."""
    if limits is not None and len(limits) != len(values):
        raise PlotError(
            f"limits needs one (low, high) per channel ({len(values)}), got {len(limits)}"
        )
    used: list[tuple[float, float]] = []
    channels = []
    for i, band in enumerate(values):
        if limits is not None:
            lo, hi = (float(v) for v in limits[i])
        elif valid.any():
            lo, hi = (float(v) for v in np.percentile(band[valid], percentiles))
        else:
            lo, hi = 0.0, 1.0
        hi = hi if hi > lo else lo + 1.0
        used.append((lo, hi))
        channels.append(np.clip((band - lo) / (hi - lo), 0.0, 1.0))
    if len(channels) == 1:
        channels *= 3
    rgba = np.stack([*channels, valid.astype(np.float64)], axis=-1).astype(np.float32)
    rgba[~valid, :3] = 0.0
    return rgba, used


# --------------------------------------------------------------------------- drawing


def imshow(ax: Axes, quick: xr.DataArray, **options: Any) -> Axes:
    """Draw a ``quicklook`` in map coordinates (north up, equal aspect, CRS labels)."""
    ax.imshow(quick.values, extent=quick.attrs["extent"], interpolation="nearest", **options)
    map_axes(ax, quick.attrs.get("crs", ""))
    return ax


def map_axes(ax: Axes, crs: object = "") -> Axes:
    """Map styling: equal aspect, plain (not offset) coordinates, axes labelled with the CRS."""
    name = str(crs or "")
    ax.set_aspect("equal")
    suffix = f" [{name}]" if name else ""
    ax.set_xlabel(f"x{suffix}")
    ax.set_ylabel(f"y{suffix}")
    ax.ticklabel_format(style="plain", useOffset=False)
    ax.tick_params(labelsize=8)
    return ax


def _grid_extent(grid: TileGrid) -> tuple[float, float, float, float]:
    """(left, right, bottom, top) of the tile grid's tiles (partial edge tiles excluded)."""
    g = grid.grid_transform
    xs = (g.c, g.c + g.a * grid.cols)
    ys = (g.f, g.f + g.e * grid.rows)
    return min(xs), max(xs), min(ys), max(ys)


def tile_grid(
    ax: Axes,
    grid: TileGrid,
    *,
    color: str = "white",
    outline: str | None = "black",
    linewidth: float = 0.8,
    alpha: float = 0.9,
    labels: bool = False,
    fontsize: float = 7.0,
) -> LineCollection:
    """Draw the tile boundaries in map coordinates; ``labels`` writes each tile's row,col.

    Lines and labels get a thin ``outline`` so they show on bright and dark pixels alike.
    Only the grid's tiles are drawn: partial edge tiles skipped by the edge policy are not.
    """
    from matplotlib.collections import LineCollection

    effects = _outlined(outline, linewidth + 1.2)
    g = grid.grid_transform
    xs = [g.c + g.a * c for c in range(grid.cols + 1)]
    ys = [g.f + g.e * r for r in range(grid.rows + 1)]
    segments = [[(x, ys[0]), (x, ys[-1])] for x in xs] + [[(xs[0], y), (xs[-1], y)] for y in ys]
    lines = LineCollection(
        segments, colors=color, linewidths=linewidth, alpha=alpha, path_effects=effects
    )
    ax.add_collection(lines)
    if labels:
        centres_x, centres_y = grid.centres()
        for r, y in enumerate(centres_y):
            for c, x in enumerate(centres_x):
                ax.text(
                    x,
                    y,
                    f"{r},{c}",
                    color=color,
                    fontsize=fontsize,
                    ha="center",
                    va="center",
                    path_effects=_outlined(outline, 2.0),
                )
    return lines


def _outlined(colour: str | None, width: float) -> list[Any]:
    from matplotlib import patheffects

    if colour is None:
        return []
    return [patheffects.withStroke(linewidth=width, foreground=colour), patheffects.Normal()]


def prediction_map(
    run: RunResult | str | os.PathLike[str],
    scene: xr.DataArray | str | os.PathLike[str] | None = None,
    *,
    ax: Axes | None = None,
    alpha: float = 0.45,
    max_size: int = 1024,
    limits: Limits | None = None,
) -> Figure | SubFigure:
    """Each tile's class over the scene's quicklook; nodata and failed tiles marked.

    ``scene`` defaults to the run's own scene when that file is still there;
    without one the classes are drawn alone. ``limits`` is the quicklook's colour
    stretch (see ``quicklook``): give two maps the same one to compare their
    brightness. The legend counts the tiles of each class: bright, dark, nodata
    (no valid pixel) and failed (unreadable bytes, also marked with a cross).
    The whole scene is in view: under edge "skip" the strips at the right and
    bottom that hold no whole tile were never inferred, and are hatched grey.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    result = run if isinstance(run, RunResult) else open_run(run)
    record = result.record
    ds = result.dataset()
    prediction, status = ds["prediction"].values, ds["status"].values
    grid = _run_grid(result, ds)
    fig: Figure | SubFigure  # `ax` may be on a subfigure
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 7), layout="constrained")
    else:
        fig = ax.figure
    background = _background(result, scene, max_size=max_size, limits=limits)
    if background is not None:
        imshow(ax, background)
    overlay = _class_rgba(prediction, status, alpha=alpha)
    ax.imshow(overlay, extent=_grid_extent(grid), interpolation="nearest")
    failed_rows, failed_cols = np.nonzero(status == STATUS_FAILED)
    if failed_rows.size:
        xs, ys = grid.centres()
        ax.scatter(
            [xs[c] for c in failed_cols], [ys[r] for r in failed_rows], marker="x", color="black"
        )
    tile_grid(ax, grid, color="black", outline=None, linewidth=0.4, alpha=0.35)
    strips = _draw_uncovered(ax, grid)
    left, right, bottom, top = _view_extent(grid)
    ax.set_xlim(left, right)
    ax.set_ylim(bottom, top)
    map_axes(ax, str(record["scene"].get("crs") or ""))
    counts = _class_counts(prediction, status)
    handles = [
        Patch(facecolor=_rgb01(name), edgecolor="black", label=f"{name} ({counts[name]})")
        for name in ("bright", "dark", "nodata")
    ]
    handles.append(
        Patch(
            facecolor=_rgb01("failed"),
            edgecolor="black",
            hatch="xx",
            label=f"failed ({counts['failed']})",
        )
    )
    if strips:
        pixels, fraction = _uncovered_pixels(record, grid)
        handles.append(
            Patch(**_UNCOVERED_STYLE, label=f"in no tile ({pixels:,} px, {100 * fraction:.2g}%)")
        )
    ax.legend(
        handles=handles,
        title="tiles",
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=8,
        title_fontsize=9,
        frameon=False,
    )
    scene_name = Path(str(record["scene"]["uri"])).name
    model_id = str(record["model"].get("id") or "")[:8] or "unregistered"
    ax.set_title(
        f"{scene_name}: predicted class per {grid.tile_size} px tile\n"
        f"run {result.run_id[:8]}, model {model_id}",
        fontsize=10,
    )
    return fig


# Pixels no tile covers: light grey, hatched, so they read as "not looked at", not as a class.
_UNCOVERED_STYLE: dict[str, Any] = {
    "facecolor": (0.85, 0.85, 0.85, 0.6),
    "edgecolor": (0.3, 0.3, 0.3),
    "hatch": "//",
}


def _scene_extent(grid: TileGrid) -> tuple[float, float, float, float]:
    """(left, right, bottom, top) of the whole scene."""
    t = grid.transform
    xs = (t.c, t.c + t.a * grid.width)
    ys = (t.f, t.f + t.e * grid.height)
    return min(xs), max(xs), min(ys), max(ys)


def _view_extent(grid: TileGrid) -> tuple[float, float, float, float]:
    """The scene and its tiles: padded edge tiles reach past the scene."""
    scene, tiles = _scene_extent(grid), _grid_extent(grid)
    return (
        min(scene[0], tiles[0]),
        max(scene[1], tiles[1]),
        min(scene[2], tiles[2]),
        max(scene[3], tiles[3]),
    )


def _uncovered_strips(grid: TileGrid) -> list[tuple[float, float, float, float]]:
    """(left, right, bottom, top) of the scene's parts in no tile: the cols right of the
    last tile (full height), then the rows below it (up to the tiles' right edge)."""
    covered_rows = min(grid.rows * grid.tile_size, grid.height)
    covered_cols = min(grid.cols * grid.tile_size, grid.width)
    windows = [
        (covered_cols, 0, grid.width, grid.height),
        (0, covered_rows, covered_cols, grid.height),
    ]
    t = grid.transform
    strips = []
    for c0, r0, c1, r1 in windows:
        if c1 > c0 and r1 > r0:
            (x0, y0), (x1, y1) = t * (c0, r0), t * (c1, r1)
            strips.append((min(x0, x1), max(x0, x1), min(y0, y1), max(y0, y1)))
    return strips


def _draw_uncovered(ax: Axes, grid: TileGrid) -> list[Any]:
    from matplotlib.patches import Rectangle

    patches = []
    for left, right, bottom, top in _uncovered_strips(grid):
        patch = Rectangle(
            (left, bottom), right - left, top - bottom, linewidth=0, **_UNCOVERED_STYLE
        )
        patch.set_gid("uncovered")
        patches.append(ax.add_patch(patch))
    return patches


def _uncovered_pixels(record: RunRecord, grid: TileGrid) -> tuple[int, float]:
    """(pixels, fraction) in no tile: as the run recorded it, or from the grid's geometry
    for a store written before runs recorded their coverage."""
    coverage = record.get("coverage")
    if coverage is not None:
        return coverage["pixels_uncovered"], coverage["fraction_uncovered"]
    covered = min(grid.rows * grid.tile_size, grid.height) * min(
        grid.cols * grid.tile_size, grid.width
    )
    total = grid.height * grid.width
    return total - covered, (total - covered) / total


def _run_grid(run: RunResult, ds: xr.Dataset) -> TileGrid:
    """The run's tile grid, rebuilt from the scene shape and the store's transform."""
    from affine import Affine

    config, shape = run.record["config"], run.record["scene"]["shape"]
    t = int(config["tile_size"])
    pixel = ds.rio.transform() @ Affine.scale(1 / t)
    return TileGrid(int(shape[1]), int(shape[2]), pixel, t, config["edge"])


def _background(
    run: RunResult,
    scene: xr.DataArray | str | os.PathLike[str] | None,
    *,
    max_size: int,
    limits: Limits | None,
) -> xr.DataArray | None:
    from satdask.views.scene import open_scene

    if scene is None:
        uri = str(run.record["scene"]["uri"])
        if not Path(uri).is_file():
            return None
        scene = uri
    if not isinstance(scene, xr.DataArray):
        scene = open_scene(scene, bands=run.record["config"].get("bands"))
    return quicklook(scene, max_size=max_size, limits=limits)


def _rgb01(name: str) -> tuple[float, float, float]:
    r, g, b = COLOURS[name]
    return r / 255, g / 255, b / 255


def _class_rgba(prediction: np.ndarray, status: np.ndarray, *, alpha: float) -> np.ndarray:
    """(rows, cols, 4): classes translucent over the scene, nodata and failed opaque."""
    rgba = np.zeros((*prediction.shape, 4), dtype=np.float32)
    ok = status == STATUS_OK
    layers = [
        (ok & (prediction == 0), "dark", alpha),
        (ok & (prediction == 1), "bright", alpha),
        (status == STATUS_NODATA, "nodata", 0.85),
        (status == STATUS_FAILED, "failed", 0.9),
    ]
    for mask, name, a in layers:
        rgba[mask] = (*_rgb01(name), a)
    return rgba


def _class_counts(prediction: np.ndarray, status: np.ndarray) -> dict[str, int]:
    ok = status == STATUS_OK
    return {
        "bright": int(np.count_nonzero(ok & (prediction == 1))),
        "dark": int(np.count_nonzero(ok & (prediction == 0))),
        "nodata": int(np.count_nonzero(status == STATUS_NODATA)),
        "failed": int(np.count_nonzero(status == STATUS_FAILED)),
    }


# --------------------------------------------------------------------------- health

_TABLE_COLUMNS = ["value", "limit", "verdict", "reason"]


def health_table(run: RunResult | str | os.PathLike[str]) -> pd.DataFrame:
    """The run's health checks as a DataFrame, one row per check, indexed by its name.

    Columns: ``value`` (what the run measured; None where the check was not
    assessed), ``limit`` (the health policy's bound: a check passes when
    ``value <= limit``), ``verdict`` ("ok", "retrain", "investigate" or "not
    assessed") and ``reason`` (why, for any verdict but "ok"). These are the
    rows ``health_report`` judged, never re-derived here. ``attrs`` holds the
    run's ``run_id``, ``status``, ``reasons`` and ``recommendations``.
    ``styled_health_table`` is the same table for a notebook.
    """
    import pandas as pd

    result = run if isinstance(run, RunResult) else open_run(run)
    health = result.health
    rows = [{**check, "reason": check["reason"] or ""} for check in health.get("checks", [])]
    frame = pd.DataFrame(rows, columns=["name", *_TABLE_COLUMNS]).set_index("name")
    frame.index.name = "check"
    frame.attrs = {
        "run_id": result.run_id,
        "status": health["status"],
        "reasons": list(health["reasons"]),
        "recommendations": list(health["recommendations"]),
    }
    return frame


def styled_health_table(run: RunResult | str | os.PathLike[str] | pd.DataFrame) -> Styler:
    """``health_table`` for a notebook: numbers rounded, reasons in full, verdicts coloured.

    Takes a run (or its store's path), or a table ``health_table`` already made.
    The caption names the run and its health status.
    """
    import pandas as pd

    frame = run if isinstance(run, pd.DataFrame) else health_table(run)
    caption = f"run {frame.attrs.get('run_id', '?')}: health {frame.attrs.get('status', '?')}"
    return (
        frame.style.format({"value": _shown, "limit": _shown}, escape="html")
        .format_index(escape="html")
        .map(_verdict_style, subset=["verdict"])
        .set_properties(**{"text-align": "left"})
        .set_table_styles([{"selector": "th", "props": "text-align: left"}])
        .set_caption(html.escape(caption))
    )


def _shown(value: Any) -> str:
    """How a value reads in the table: thousands separated, at most 4 significant digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int) or (math.isfinite(value) and value.is_integer()):
        return f"{value:,.0f}"
    return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"


def _verdict_style(verdict: str) -> str:
    if verdict in ("retrain", "investigate"):
        return "background-color: #bc4c00; color: white; font-weight: bold"
    return "color: #1a7f37" if verdict == "ok" else "color: #57606a"
