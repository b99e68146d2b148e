"""How a run scales to 100,000 tiles without running it to the end.

    python benchmarks/scale.py [--mosaic 5] [--run-blocks 8]

Builds a VRT mosaic of N x N copies of the cached 16384 px sample (5 x 5 gives
81,920 x 81,920 px, 102,400 tiles of 256 px), then reports the block/task count,
the time and memory to plan the run, and the throughput of its first blocks.
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc
from pathlib import Path

import rasterio

from satdask import ThresholdModel, open_scene, scene_grid
from satdask.pipeline.batch import run_block
from satdask.views.scene import scene_nodata, scene_source


def mosaic_vrt(tile: Path, n: int, out: Path) -> Path:
    """A VRT that repeats `tile` n x n times: a huge scene with no extra disk."""
    with rasterio.open(tile) as src:
        w, h, count, tf, crs = src.width, src.height, src.count, src.transform, src.crs.to_wkt()

    def band(b: int) -> str:
        sources = "".join(
            f"<SimpleSource><SourceFilename>{tile}</SourceFilename>"
            f"<SourceBand>{b}</SourceBand>"
            f'<SrcRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/>'
            f'<DstRect xOff="{c * w}" yOff="{r * h}" xSize="{w}" ySize="{h}"/></SimpleSource>'
            for r in range(n)
            for c in range(n)
        )
        head = f'<VRTRasterBand dataType="UInt16" band="{b}"><NoDataValue>0</NoDataValue>'
        return f"{head}{sources}</VRTRasterBand>"

    out.write_text(
        f'<VRTDataset rasterXSize="{w * n}" rasterYSize="{h * n}"><SRS>{crs}</SRS>'
        f"<GeoTransform>{tf.c}, {tf.a}, 0, {tf.f}, 0, {tf.e}</GeoTransform>"
        '<Metadata><MDI key="TIFFTAG_DATETIME">2026:06:01 10:30:00</MDI></Metadata>'
        + "".join(band(b) for b in range(1, count + 1))
        + "</VRTDataset>"
    )
    return out


def main() -> None:
    from batch import CACHE, scenes

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--mosaic", type=int, default=5)
    p.add_argument("--run-blocks", type=int, default=8)
    args = p.parse_args()
    vrt = mosaic_vrt(scenes(16384)[0], args.mosaic, CACHE / f"mosaic-{args.mosaic}.vrt")

    tracemalloc.start()
    t0 = time.perf_counter()
    scene = open_scene(vrt)
    grid = scene_grid(scene)
    blocks = list(grid.blocks((scene.chunks[1], scene.chunks[2])))
    plan_s = time.perf_counter() - t0
    _, plan_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"{vrt.name}: {grid.width} x {grid.height} px, {grid.size:,} tiles, "
        f"{len(blocks):,} blocks (= tasks) of {scene.chunks[1][0]} px; "
        f"planned in {plan_s:.2f} s using {plan_peak / 2**20:.1f} MiB"
    )
    source, nodata = scene_source(scene), scene_nodata(scene)
    model = ThresholdModel(threshold=4000.0)
    t0 = time.perf_counter()
    done = [
        run_block(source, b, model=model, tile_size=256, nodata=nodata, edge="skip")
        for b in blocks[: args.run_blocks]
    ]
    s = time.perf_counter() - t0
    px = sum(b.window.width * b.window.height for b in blocks[: args.run_blocks])
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"first {len(done)} blocks sequentially: {px / s / 1e6:.0f} Mpx/s on one thread; "
        f"the whole scene at that rate per core: {grid.width * grid.height / (px / s) / 60:.1f} "
        f"core-minutes; peak RSS {rss:.0f} MiB"
    )


if __name__ == "__main__":
    main()
