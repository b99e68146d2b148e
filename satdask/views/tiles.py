"""Per-tile views of a scene as georeferenced xarray objects at tile resolution.

The lazy feature map and the run store share one layout: dims (y, x) over tiles,
tile-centre coordinates and a `spatial_ref` whose transform is the tile grid's.
"""

from __future__ import annotations

from collections.abc import Mapping

import dask.array as da
import numpy as np
import xarray as xr
from rasterio.crs import CRS

from satdask.core.features import FEATURE_NAMES, block_features
from satdask.core.grid import Block, EdgePolicy, TileGrid, check_edge, require_tiles
from satdask.core.schema import VARIABLE_ATTRS
from satdask.views.scene import require_crs, scene_mask, scene_nodata


def scene_grid(scene: xr.DataArray, *, edge: EdgePolicy = "skip") -> TileGrid:
    """The tile grid of a scene from `open_scene`; refuses a grid with no tile."""
    import rioxarray  # noqa: F401

    grid = TileGrid(
        height=scene.sizes["y"],
        width=scene.sizes["x"],
        transform=scene.rio.transform(recalc=False),
        tile_size=int(scene.attrs.get("tile_size", 256)),
        edge=check_edge(edge),
    )
    return require_tiles(grid, scene.attrs.get("source", "scene"))


def scene_blocks(scene: xr.DataArray, *, edge: EdgePolicy = "skip") -> tuple[TileGrid, list[Block]]:
    """The tile grid, and the blocks of whole tiles the scene's dask chunks cut it into."""
    grid = scene_grid(scene, edge=edge)
    chunks = scene.chunks or ((), (scene.sizes["y"],), (scene.sizes["x"],))  # numpy: one chunk
    return grid, list(grid.blocks((chunks[1], chunks[2])))


def tile_chunks(scene: xr.DataArray, grid: TileGrid) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Pixel chunks along y and x that hold whole tiles: the scene's own where they do (a
    thin trailing chunk merged into the one before it), else about as many tiles per chunk.
    """
    chunks = scene.chunks or ((scene.sizes["y"],), (scene.sizes["x"],))
    own = (tuple(chunks[-2]), tuple(chunks[-1]))
    aligned = grid.aligned_chunks(own)
    if aligned is not None:
        return aligned
    ky, kx = (max(1, round(max(c) / grid.tile_size)) for c in own)
    return grid.pixel_chunks((ky, kx))


def tile_dataset(variables: Mapping[str, object], *, grid: TileGrid, crs: CRS) -> xr.Dataset:
    """Wrap (rows, cols) arrays, numpy or dask, as a georeferenced tile-grid Dataset."""
    import rioxarray  # noqa: F401

    xs, ys = grid.centres()
    ds = xr.Dataset(
        {
            name: xr.DataArray(data, dims=("y", "x"), attrs=VARIABLE_ATTRS.get(name, {}))
            for name, data in variables.items()
        },
        coords={"y": ys, "x": xs},
    )
    return ds.rio.write_crs(crs).rio.write_transform(grid.grid_transform)


def tile_features(scene: xr.DataArray, *, edge: EdgePolicy = "skip") -> xr.Dataset:
    """Lazy per-tile features: one `map_blocks` call per chunk, nothing read yet.

    The scene's `valid` coordinate (its file's mask), when it has one, is read beside
    each chunk and honoured as a batch run honours it.
    """
    require_crs(scene)
    grid = scene_grid(scene, edge=edge)
    t = grid.tile_size
    data = scene.data.rechunk(((scene.sizes["band"],), *tile_chunks(scene, grid)))
    row_tiles, col_tiles = grid.tiles_per_pixel_chunk((data.chunks[1], data.chunks[2]))
    arrays = [data]
    mask = scene_mask(scene)
    if mask is not None:  # (1, y, x), chunked as the pixels: one mask block per block
        arrays.append(da.asarray(mask)[None].rechunk(((1,), data.chunks[1], data.chunks[2])))
    stacked = da.map_blocks(
        _stacked_features,
        *arrays,
        tile_size=t,
        nodata=scene_nodata(scene),
        edge=grid.edge,
        chunks=((len(FEATURE_NAMES) + 1,), row_tiles, col_tiles),
        dtype=np.float64,
        meta=np.empty((0, 0, 0), dtype=np.float64),
    )
    variables = dict(zip(FEATURE_NAMES, stacked[:-1], strict=True))
    variables["status"] = stacked[-1].astype(np.uint8)
    return tile_dataset(variables, grid=grid, crs=scene.rio.crs)


def _stacked_features(
    block: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    tile_size: int,
    nodata: float | None,
    edge: EdgePolicy,
) -> np.ndarray:
    valid = None if mask is None else mask[0]
    f = block_features(block, tile_size=tile_size, nodata=nodata, edge=edge, valid=valid)
    return np.stack([f.mean_intensity, f.std_intensity, f.valid_fraction, f.status])
