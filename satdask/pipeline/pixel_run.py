"""A pixel model's part of a batch run: its blocks, and the task each block runs.

A block's task reads the block with its halo, runs the model, writes the block's
full-resolution classes into its own region of the staged run store and returns
only the block's tile summary (class fractions, majority class, features, status),
which the driver journals. Full-resolution arrays never pass through the driver.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from time import perf_counter
from typing import Any

import numpy as np
from rasterio.errors import RasterioError

from satdask.core.features import STATUS_FAILED, STATUS_OK, block_features
from satdask.core.grid import Block, EdgePolicy, TileGrid, Window
from satdask.core.pixels import ClassTable, class_flags, model_layout, tile_summary
from satdask.core.windows import Padding, WindowLayout, check_padding
from satdask.errors import ModelError
from satdask.io import store
from satdask.io._gdal import gdal_message
from satdask.io.geotiff import read_retries
from satdask.io.halo import pixel_block
from satdask.io.source import PixelSource, TiledRaster
from satdask.models.base import Model, PixelModel
from satdask.pipeline.results import BlockResult


@dataclass(frozen=True)
class PixelPlan:
    """How a pixel model runs over a scene: its windows, classes, padding and outputs."""

    layout: WindowLayout
    table: ClassTable
    padding: Padding
    keep_scores: bool
    dn_offset: int | None = None  # s2cloudless: the offset its scene's numbers carry

    @classmethod
    def of(
        cls, model: PixelModel, *, tile_size: int, padding: object, keep_scores: bool
    ) -> PixelPlan:
        if keep_scores and model.output == "window":
            raise ModelError("keep_scores applies to pixel models; a window model has none")
        table = ClassTable.of(model.classes)
        if int(table.values.max()) > np.iinfo(np.int8).max:
            raise ModelError(
                f"class value {int(table.values.max())} does not fit the tile grid's int8 "
                "prediction (at most 127)"
            )
        layout = model_layout(model, tile_size=tile_size)
        own = getattr(model, "padding", None)
        if own is not None and padding not in ("reflect", own):
            raise ModelError(
                f"padding {padding!r} cannot apply to a {model.kind} model, which pads "
                f"{own} as its reference does"
            )
        return cls(layout, table, check_padding(own or padding), keep_scores)

    def describe(self) -> dict[str, Any]:
        return {
            "window": self.layout.size,
            "halo": self.layout.halo,
            "padding": self.padding,
            "keep_scores": self.keep_scores,
            **({} if self.dn_offset is None else {"dn_offset": self.dn_offset}),
        }


def pixel_blocks(raster: TiledRaster, grid: TileGrid) -> list[Block]:
    """One block per dask chunk, covering every pixel (the edge policy shapes only the
    tile summary): a strip thinner than a tile still gets its pixels predicted."""
    row_tiles, col_tiles = grid.tiles_per_pixel_chunk(raster.chunks)
    blocks = []
    y = r0 = 0
    for nr, h in zip(row_tiles, raster.chunks[0], strict=True):
        x = c0 = 0
        for nc, w in zip(col_tiles, raster.chunks[1], strict=True):
            blocks.append(Block(r0, c0, nr, nc, Window(x, y, w, h)))
            x, c0 = x + w, c0 + nc
        y, r0 = y + h, r0 + nr
    return blocks


def run_pixel_block(
    source: PixelSource,
    block: Block,
    *,
    model: PixelModel,
    plan: PixelPlan,
    grid: TileGrid,
    nodata: float | None,
    edge: EdgePolicy,
    staging: Path | None,
) -> BlockResult:
    """Predict one block, write its pixels into `staging` (a pixel model's), and return
    its tile summary; a block whose bytes cannot be read fails its tiles alone.

    With no `staging` (the lazy API) the pixels come back in the result instead.
    """
    start, retries_before = perf_counter(), read_retries()
    t = grid.tile_size
    try:
        result = pixel_block(
            source,
            block.window,
            model=model,
            layout=plan.layout,
            table=plan.table,
            height=grid.height,
            width=grid.width,
            padding=plan.padding,
            nodata=nodata,
            keep_scores=plan.keep_scores,
        )
    except RasterioError as exc:
        classes = len(plan.table.values) if model.output == "pixel" else 0
        return _failed(block, gdal_message(exc), start=start, classes=classes)
    features = block_features(
        result.pixels, tile_size=t, nodata=nodata, edge=edge, valid=result.valid
    )
    ok = features.status == STATUS_OK
    if model.output == "window":
        tiles = result.classes[: block.rows, : block.cols].astype(np.int16)
        variables = {"prediction": np.where(ok, tiles, -1).astype(np.int8)}
    else:
        if staging is not None:
            store.write_pixel_block(
                staging,
                block.window.toslices(),
                classes=result.classes,
                scores=result.scores,
                layers=result.layers,
            )
        fraction, majority = tile_summary(
            result.classes, table=plan.table, tile_size=t, rows=block.rows, cols=block.cols
        )
        variables = {
            "prediction": np.where(ok, majority, -1).astype(np.int8),
            "class_fraction": np.where(ok, fraction, np.float32(np.nan)),
        }
    variables |= {
        "mean_intensity": features.mean_intensity,
        "std_intensity": features.std_intensity,
        "valid_fraction": features.valid_fraction.astype(np.float32),
        "status": features.status,
    }
    latency_ms = (perf_counter() - start) * 1000.0
    kept: dict[str, np.ndarray] = {}
    if staging is None and model.output == "pixel":
        kept["prediction"] = result.classes
        if result.scores is not None:
            kept["scores"] = result.scores.astype(np.float16)
        kept |= result.layers
    retries = read_retries() - retries_before
    return BlockResult(block, variables, [], latency_ms, retries, kept)


def _failed(block: Block, message: str, *, start: float, classes: int) -> BlockResult:
    """Every tile of an unreadable block failed; its pixels stay the fill value.

    `classes` is the class count of a pixel model's fractions, 0 for a window model.
    """
    shape = (block.rows, block.cols)
    variables: dict[str, np.ndarray] = {
        "prediction": np.full(shape, -1, dtype=np.int8),
        **({"class_fraction": np.full((classes, *shape), np.nan, np.float32)} if classes else {}),
        "mean_intensity": np.full(shape, np.nan),
        "std_intensity": np.full(shape, np.nan),
        "valid_fraction": np.zeros(shape, dtype=np.float32),
        "status": np.full(shape, STATUS_FAILED, dtype=np.uint8),
    }
    errors = [
        {"tile": [block.row0 + r, block.col0 + c], "message": message}
        for r in range(block.rows)
        for c in range(block.cols)
    ]
    return BlockResult(block, variables, errors, (perf_counter() - start) * 1000.0, 0)


def class_attrs(model: Model) -> dict[str, dict[str, Any]]:
    """The tile grid's attributes naming a pixel or window model's classes ({} otherwise)."""
    if not isinstance(model, PixelModel):
        return {}
    flags = class_flags(model.classes)
    prediction = {
        **flags,
        "long_name": "majority class of the tile's pixels"
        if model.output == "pixel"
        else "predicted class of the tile's window",
        "flag_values": [-1, *flags["flag_values"]],
        "flag_meanings": f"none {flags['flag_meanings']}",
        "flag_colors": [None, *flags["flag_colors"]],
    }
    return {
        "prediction": prediction,
        "class_fraction": {"long_name": "fraction of the tile's valid pixels in each class"},
    }


def layer_attrs(model: PixelModel) -> dict[str, dict[str, Any]]:
    """Attributes of a pixel model's float layers (s2cloudless: `cloud_probability`)."""
    return {name: {"long_name": name.replace("_", " "), "units": "1"} for name in model.layers}
