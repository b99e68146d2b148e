"""The API path in-process: one tile's windowed read plus the batch block function.

    python benchmarks/tile.py [SCENE] [--tiles 500]

Without SCENE it uses the 4096 x 4096 x 4 DEFLATE sample cached by batch.py.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from satdask import ThresholdModel, infer_block, open_scene, read_tile, scene_grid
from satdask.scene import scene_nodata


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("scene", nargs="?", type=Path)
    p.add_argument("--tiles", type=int, default=500)
    args = p.parse_args()
    if args.scene is None:
        from batch import scenes

        args.scene = scenes(4096)[0]
    scene = open_scene(args.scene)
    grid = scene_grid(scene)
    nodata = scene_nodata(scene)
    model = ThresholdModel(threshold=4000.0)
    rng = np.random.default_rng(0)
    picks = rng.integers(0, [grid.rows, grid.cols], size=(args.tiles, 2))
    read_ms, total_ms = [], []
    for row, col in picks:
        t0 = time.perf_counter()
        data = read_tile(scene, int(row), int(col), grid=grid)
        t1 = time.perf_counter()
        infer_block(data, model=model, tile_size=grid.tile_size, nodata=nodata, edge=grid.edge)
        t2 = time.perf_counter()
        read_ms.append((t1 - t0) * 1e3)
        total_ms.append((t2 - t0) * 1e3)
    q = statistics.quantiles(total_ms, n=100)
    print(
        f"{args.scene.name}: {args.tiles} random tiles, read_tile + infer_block in-process\n"
        f"  median {statistics.median(total_ms):.3f} ms (read {statistics.median(read_ms):.3f} ms)"
        f", p99 {q[98]:.3f} ms"
    )


if __name__ == "__main__":
    main()
