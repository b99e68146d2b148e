"""`predict`: a model over a scene as a lazy, georeferenced xarray Dataset.

The Dataset's arrays are one dask task per block, running the very block function a
batch run runs (`run_block` for a tile model, `run_pixel_block` for a pixel or window
model), so `predict(...).compute()` and `run_batch` cannot disagree. Nothing is
read until the user computes, and the result composes with their own xarray code.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
from dask.array import Array
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from satdask.core.grid import Block, EdgePolicy
from satdask.core.pixels import class_flags
from satdask.core.schema import SCHEMA
from satdask.io.registry import ModelArtifact
from satdask.models.base import Model, PixelModel
from satdask.pipeline.batch import RunPlan, plan_run, run_block
from satdask.pipeline.pixel_run import class_attrs, layer_attrs, run_pixel_block
from satdask.pipeline.results import BlockResult

if TYPE_CHECKING:
    import xarray as xr

    from satdask.views.scene import SceneLike


def predict(
    scene: SceneLike,
    model: ModelArtifact | Model,
    *,
    tile_size: int | None = None,
    tiles_per_chunk: int | None = None,
    edge: EdgePolicy = "skip",
    bands: Sequence[int] | None = None,
    allow_model_mismatch: bool = False,
    padding: str = "reflect",
    keep_scores: bool = False,
) -> xr.Dataset:
    """The model's predictions over `scene`, lazily: nothing is read until computed.

    A pixel model gives `prediction` (y, x) at the scene's resolution, grid and
    transform (and `scores` (class, y, x) in float16 with `keep_scores`); a tile or
    window model gives the tile grid a run store holds. Options as in `run_batch`.
    """
    plan = plan_run(
        scene,
        model,
        tile_size=tile_size,
        tiles_per_chunk=tiles_per_chunk,
        edge=edge,
        bands=bands,
        allow_model_mismatch=allow_model_mismatch,
        padding=padding,
        keep_scores=keep_scores,
        hash_scene=False,
    )
    results = _block_tasks(plan)
    if plan.writes_pixels:
        return _pixel_dataset(plan, results)
    return _tile_dataset(plan, results)


def _block_tasks(plan: RunPlan) -> tuple[str, dict[Any, Any]]:
    """One task per block, each giving that block's BlockResult."""
    options: dict[str, Any] = {"nodata": plan.raster.info.nodata, "edge": plan.grid.edge}
    if plan.pixel is not None:
        run: Any = run_pixel_block
        options |= {"plan": plan.pixel, "grid": plan.grid, "staging": None}
    else:
        run, options["tile_size"] = run_block, plan.grid.tile_size
    token = tokenize(plan.source, plan.model, plan.fingerprint)
    name, model_key = f"satdask-blocks-{token}", f"satdask-model-{token}"
    # Tasks name their block by index and the model by key: dask sees only an int and a
    # key in them, never a Block to walk into, and a cluster receives the model once.
    task = partial(_run_block, blocks=plan.blocks, run=run, source=plan.source, **options)
    layer: dict[Any, Any] = {model_key: plan.model}
    layer |= {(name, i): (task, i, model_key) for i in range(len(plan.blocks))}
    return name, layer


def _run_block(
    index: int, model: Model, *, blocks: Sequence[Block], run: Any, source: Any, **options: Any
) -> BlockResult:
    result: BlockResult = run(source, blocks[index], model=model, **options)
    return result


def _variable(
    results: tuple[str, dict[Any, Any]],
    plan: RunPlan,
    name: str,
    *,
    chunks: tuple[tuple[int, ...], ...],
    dtype: np.dtype,
    fill: float,
    pixels: bool,
) -> Array:
    """A dask array of one variable of every block's result (its chunks in block order)."""
    blocks_name, blocks = results
    key = f"satdask-{name}-{tokenize(blocks_name, name)}"
    ny, nx = len(chunks[-2]), len(chunks[-1])
    lead = (0,) * (len(chunks) - 2)
    layer: dict[Any, Any] = {
        (key, *lead, i // nx, i % nx): (
            partial(_take, name=name, fill=fill, dtype=dtype, pixels=pixels, lead=chunks[:-2]),
            (blocks_name, i),
        )
        for i in range(ny * nx)
    }
    # the variable's layer depends on the blocks' layer: without saying so, dask may cull it
    graph = HighLevelGraph(
        layers={blocks_name: blocks, key: layer},
        dependencies={blocks_name: set(), key: {blocks_name}},
    )
    return Array(graph, key, chunks=chunks, dtype=dtype)


def _take(
    result: BlockResult,
    *,
    name: str,
    fill: float,
    dtype: np.dtype,
    pixels: bool,
    lead: tuple[tuple[int, ...], ...],
) -> np.ndarray:
    """A block's array of `name`; a failed block's pixels are the fill value."""
    held = result.pixels if pixels else result.variables
    if name in held:
        return held[name]
    b = result.block
    shape = (b.window.height, b.window.width) if pixels else (b.rows, b.cols)
    return np.full((*(c[0] for c in lead), *shape), fill, dtype=dtype)


def _block_chunks(plan: RunPlan, *, pixels: bool) -> tuple[tuple[int, ...], tuple[int, ...]]:
    if pixels:
        return plan.raster.chunks
    rows = tuple(dict.fromkeys((b.row0, b.rows) for b in plan.blocks))
    cols = tuple(dict.fromkeys((b.col0, b.cols) for b in plan.blocks))
    return tuple(n for _, n in rows), tuple(n for _, n in cols)


def _pixel_dataset(plan: RunPlan, results: tuple[str, dict[Any, Any]]) -> xr.Dataset:
    import rioxarray  # noqa: F401
    import xarray as xr

    assert plan.pixel is not None and isinstance(plan.model, PixelModel)
    table, info = plan.pixel.table, plan.raster.info
    chunks = _block_chunks(plan, pixels=True)
    prediction = _variable(
        results, plan, "prediction", chunks=chunks, dtype=table.dtype, fill=table.fill, pixels=True
    )
    t = info.transform
    coords = {
        "y": t.f + t.e * (np.arange(info.height) + 0.5),
        "x": t.c + t.a * (np.arange(info.width) + 0.5),
    }
    attrs = {**class_flags(plan.model.classes), "_FillValue": table.fill}
    data = {"prediction": xr.DataArray(prediction, dims=("y", "x"), attrs=attrs)}
    if plan.pixel.keep_scores:
        k = len(table.values)
        scores = _variable(
            results,
            plan,
            "scores",
            chunks=((k,), *chunks),
            dtype=np.dtype(np.float16),
            fill=np.nan,
            pixels=True,
        )
        data["scores"] = xr.DataArray(scores, dims=("class", "y", "x"))
        coords["class"] = table.values
    for name, layer in layer_attrs(plan.model).items():
        values = _variable(
            results, plan, name, chunks=chunks, dtype=np.dtype(np.float32), fill=np.nan, pixels=True
        )
        data[name] = xr.DataArray(values, dims=("y", "x"), attrs=layer)
    ds = xr.Dataset(data, coords=coords)
    return ds.rio.write_crs(info.crs).rio.write_transform(t)


def _tile_dataset(plan: RunPlan, results: tuple[str, dict[Any, Any]]) -> xr.Dataset:
    from satdask.views.tiles import tile_dataset

    assert plan.raster.info.crs is not None
    chunks = _block_chunks(plan, pixels=False)
    empty = {v.name: (np.dtype(v.dtype), v.empty) for v in SCHEMA}
    variables = {
        name: _variable(results, plan, name, chunks=chunks, dtype=dtype, fill=fill, pixels=False)
        for name, (dtype, fill) in empty.items()
    }
    ds = tile_dataset(variables, grid=plan.grid, crs=plan.raster.info.crs)
    for name, attrs in class_attrs(plan.model).items():
        if name in ds:
            ds[name].attrs.update(attrs)
    return ds
