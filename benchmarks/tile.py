"""The API path in-process: one tile's windowed read plus the batch block function.

    python benchmarks/tile.py [SCENE] [--tiles 256]

Without SCENE it uses the 4096 x 4096 x 4 DEFLATE sample cached by batch.py.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from satdask import ThresholdModel, infer_block, open_scene, read_tile, scene_grid
from satdask.views.scene import scene_nodata


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("scene", nargs="?", type=Path)
    p.add_argument("--tiles", type=int, default=256)
    args = p.parse_args()
    if args.scene is None:
        from batch import scenes

        args.scene = scenes(4096)[0]
    scene = open_scene(args.scene)
    grid = scene_grid(scene)
    nodata = scene_nodata(scene)
    model = ThresholdModel(threshold=4000.0)
    rng = np.random.default_rng(0)
    # each tile once, so every first read decodes; then the same tile again, from
    # GDAL's block cache
    order = rng.permutation(grid.size)[: args.tiles]
    timings: dict[str, list[float]] = {"cold": [], "cached": [], "read": [], "block": []}
    for index in order:
        row, col = divmod(int(index), grid.cols)
        for kind in ("cold", "cached"):
            t0 = time.perf_counter()
            data = read_tile(scene, row, col, grid=grid)
            t1 = time.perf_counter()
            infer_block(data, model=model, tile_size=grid.tile_size, nodata=nodata, edge=grid.edge)
            t2 = time.perf_counter()
            timings[kind].append((t2 - t0) * 1e3)
            if kind == "cold":
                timings["read"].append((t1 - t0) * 1e3)
                timings["block"].append((t2 - t1) * 1e3)
    med = {k: statistics.median(v) for k, v in timings.items()}
    print(
        f"{args.scene.name}: {len(order)} tiles, read_tile + infer_block in-process\n"
        f"  first read   median {med['cold']:.3f} ms (decode and read {med['read']:.3f} ms, "
        f"block function {med['block']:.3f} ms), p99 "
        f"{statistics.quantiles(timings['cold'], n=100)[98]:.3f} ms\n"
        f"  cached tile  median {med['cached']:.3f} ms"
    )


if __name__ == "__main__":
    main()
