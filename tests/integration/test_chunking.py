"""Real GeoTIFFs through run_batch: the run store is bit-identical for any chunking.

The complement of tests/unit/test_properties.py, which checks the same property on
in-memory arrays: here random small scenes are written with rasterio, run on the
threaded scheduler with three chunkings, and every array of every store must equal,
bit for bit, the features of the whole scene computed in one block.
"""

from __future__ import annotations

import math
import tempfile
from functools import partial
from pathlib import Path

from affine import Affine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import scene_arrays, store_arrays, write_geotiff

from satdask import ThresholdModel, TileGrid, infer_block, run_batch
from satdask.core.schema import VARIABLES

scenes = partial(
    scene_arrays,
    tiles=st.sampled_from([16, 32]),
    max_tiles=5,
    max_int=9,
    floats=[0.0, 0.5, 3.25, -1e20, math.nan, math.inf],
)


@settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scene=scenes())
def test_run_store_is_bit_identical_for_any_chunking(scene) -> None:
    data, t, nodata, edge = scene
    model = ThresholdModel(threshold=1.0)
    whole = infer_block(data, model=model, tile_size=t, nodata=nodata, edge=edge)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_geotiff(Path(tmp) / "scene.tif", data, nodata=nodata, blocksize=16)
        for k in (1, 2, None):
            out = Path(tmp) / f"run-{k}.zarr"
            run = run_batch(
                path,
                model,
                out,
                scheduler="threads",
                tile_size=t,
                tiles_per_chunk=k,
                edge=edge,  # type: ignore[arg-type]
            )
            if k == 1:  # one tile per block, but a pad edge's remainder joins the last block
                grid = TileGrid(data.shape[1], data.shape[2], Affine.identity(), t, edge)  # type: ignore[arg-type]
                assert run.attrs["config"]["blocks"] == len(
                    list(grid.blocks(grid.pixel_chunks((1, 1))))
                )
            got = store_arrays(out)
            for name in VARIABLES:
                assert got[name].dtype == whole[name].dtype, name
                assert got[name].tobytes() == whole[name].tobytes(), (name, k)
