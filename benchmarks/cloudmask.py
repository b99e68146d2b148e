"""s2cloudless cloud masks over a whole Sentinel-2 scene: satdask against the reference.

The reference is what s2cloudless's README shows: read the whole 13-band array with
rasterio, convert the digital numbers to reflectance (`satdask.models.s2cloudless.
reflectance`, the conversion the tests feed the oracle) and run
`S2PixelCloudDetector(all_bands=True)` on it in memory. Two lines:

- **reference**: `get_cloud_probability_maps`, then `get_mask_from_prob` on those
  probabilities: the classifier runs once (the efficient use);
- **reference, documented calls**: `get_cloud_probability_maps` and `get_cloud_masks`,
  as the README writes them: `get_cloud_masks` classifies every pixel a second time.

satdask is one process calling `satdask.run_batch(scene, CloudMaskModel.installed(...),
store, scheduler="threads")`: the same LightGBM file and OpenCV calls, block by block
with a halo, writing the mask and the probabilities to a Zarr store.

Each command is its own process: wall time from spawn to the end of its work (python
start and imports included; the reference's .npy files, written once for the equality
check, are saved after that point), CPU time and peak RSS from wait4(2) (for a
LocalCluster, the process tree's RSS sampled from /proc every 20 ms, whichever is
larger). Commands alternate within each repeat; ratios are per repeat, shown as a
min-max spread next to the median.

Where satdask's time goes is measured in this process on a few blocks, one thread:
decoding (`read_region`, the ten bands of a block with its halo, on a fresh handle),
reflectance, LightGBM (`classify`), the convolution and dilation (the OpenCV calls of
`CloudMaskModel.scores`, timed alone), the whole block function (`pixel_block`), whose
remainder is the masks and padding, and the Zarr write. The cheap pieces are the best
of 3 calls; `classify` and `pixel_block`, seconds each, run once.
The floor of "decoding plus the model" is the whole scene's ten bands decoded on one
thread plus LightGBM's own `predict` on its pixels with num_threads=2 in one call.

    python benchmarks/cloudmask.py --size 1024 --repeats 1    # a check, ~2 minutes
    python benchmarks/cloudmask.py --repeats 3                # 4096 x 4096, the figures
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from batch import tree_rss  # benchmarks/ is on sys.path when a script of it runs

CACHE = Path(os.environ.get("SATDASK_BENCH_CACHE", Path(__file__).parent / ".cache"))
PY = [sys.executable, "-c"]
SPEEDUP_TARGET = 1.5  # satdask's throughput over the reference's, at least
RSS_TARGET = 0.5  # satdask's peak RSS over the reference's, at most

# argv: scene, mode (efficient | documented), params JSON, dn_offset, [keep folder]
REFERENCE = """
import json, sys, time
import numpy as np, rasterio, s2cloudless
from satdask.models.s2cloudless import reflectance
scene, mode, params, offset = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
keep = sys.argv[5] if len(sys.argv) > 5 else None
t = [time.perf_counter()]
with rasterio.open(scene) as src:
    dn = src.read()
t.append(time.perf_counter())
data = np.moveaxis(reflectance(dn, dn_offset=offset), 0, -1)[None]
del dn
t.append(time.perf_counter())
detector = s2cloudless.S2PixelCloudDetector(all_bands=True, **params)
probability = detector.get_cloud_probability_maps(data)
t.append(time.perf_counter())
if mode == "efficient":
    mask = detector.get_mask_from_prob(probability)
else:
    mask = detector.get_cloud_masks(data)
t.append(time.perf_counter())
done = time.time()
if keep:
    np.save(keep + "/probability.npy", probability[0])
    np.save(keep + "/mask.npy", mask[0])
steps = ["read_s", "reflectance_s", "probability_s", "mask_s"]
print(json.dumps({"done": done, **{k: b - a for k, a, b in zip(steps, t, t[1:])}}))
"""

SATDASK = """
import json, sys, time
import satdask
from satdask.models.s2cloudless import CloudMaskModel
scene, out, scheduler, params = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
run = satdask.run_batch(scene, CloudMaskModel.installed(**params), out, scheduler=scheduler)
print(json.dumps({"done": time.time(), **run.attrs["timings"]}))
"""


@dataclass
class Command:
    name: str
    argv: list[str]
    out: Path | None = None  # a store removed before each run
    seconds: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    rss: list[int] = field(default_factory=list)
    reported: list[dict[str, float]] = field(default_factory=list)


def measure(command: Command, *, env: dict[str, str], extra: list[str] | None = None) -> None:
    """Run a command once; append its wall time to the end of its work, CPU and RSS."""
    if command.out is not None:
        shutil.rmtree(command.out, ignore_errors=True)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.time()
        proc = subprocess.Popen([*command.argv, *(extra or [])], stdout=out, stderr=err, env=env)
        tree = 0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            tree = max(tree, tree_rss(proc.pid))
            time.sleep(0.02)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{command.name} failed:\n{stderr}")
    reported = json.loads(stdout.strip().splitlines()[-1])
    command.seconds.append(reported.pop("done") - start)
    command.cpu.append(usage.ru_utime + usage.ru_stime)
    command.rss.append(max(usage.ru_maxrss * 1024, tree))
    command.reported.append(reported)


def scene_path(size: int) -> Path:
    """A 13-band mixed (land, cumulus, cirrus, haze) L1C COG, generated once."""
    from satdask.io.sample_s2 import write_s2_scene

    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"s2-mixed-{size}.tif"
    if not path.exists():
        print(f"generating {path} ...", flush=True)
        write_s2_scene(path, width=size, height=size, kind="mixed", seed=0)
    return path


def equality(store: Path, kept: Path) -> str:
    """The store's mask and probabilities against the reference's, every pixel."""
    import zarr

    group = zarr.open_group(store, mode="r")
    mask, probability = np.load(kept / "mask.npy"), np.load(kept / "probability.npy")
    ours_mask = np.asarray(group["pixels/prediction"][:])
    ours_prob = np.asarray(group["pixels/cloud_probability"][:])
    same_mask = np.array_equal(ours_mask, mask)
    same_prob = np.array_equal(ours_prob, probability)
    differ = int(np.count_nonzero(ours_mask != mask)) + int(
        np.count_nonzero(ours_prob != probability)
    )
    verdict = "EQUAL" if same_mask and same_prob else f"DIFFERENT ({differ:,} values differ)"
    return (
        f"outputs: prediction == reference mask: {same_mask}; cloud_probability == "
        f"reference probabilities: {same_prob} ({mask.size:,} px, cloud cover "
        f"{mask.mean():.1%}) -> {verdict}"
    )


def run(args: argparse.Namespace) -> None:
    from satdask.io.s2_inputs import s2_inputs

    scene = scene_path(args.size)
    params = {
        "threshold": args.threshold,
        "average_over": args.average_over,
        "dilation_size": args.dilation_size,
    }
    offset = s2_inputs(scene).dn_offset
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp_name:  # the store on the scene's disk
        tmp = Path(tmp_name)
        env = os.environ | {
            "SATDASK_CACHE_DIR": str(tmp / "cache"),
            "DASK_NUM_WORKERS": str(args.workers),
        }
        store = tmp / "run.zarr"
        p = json.dumps(params)
        ref = [*PY, REFERENCE, str(scene)]
        todo = [
            Command("reference", [*ref, "efficient", p, str(offset)]),
            Command("satdask threads", [*PY, SATDASK, str(scene), str(store), "threads", p], store),
        ]
        documented = Command("reference, documented calls", [*ref, "documented", p, str(offset)])
        if args.local:
            todo.append(
                Command(
                    f"satdask LocalCluster ({args.workers} threads)",
                    [*PY, SATDASK, str(scene), str(store), "local", p],
                    store,
                )
            )
        subprocess.run([*PY, "import satdask"], check=True, env=env)  # warm imports
        print(
            f"{scene.name}: {args.size} x {args.size} px x 13 bands, parameters {params}, "
            f"{args.workers} cores, {args.repeats} repeats alternated",
            flush=True,
        )
        kept = tmp / "kept"
        kept.mkdir()
        for r in range(args.repeats):
            for c in todo:
                keep = [str(kept)] if r == 0 and c is todo[0] else []
                measure(c, env=env, extra=keep)
                print(f"  repeat {r + 1}: {c.name} {c.seconds[-1]:.1f} s", flush=True)
                if r == 0 and c is todo[1]:
                    print(equality(store, kept), flush=True)
            if r < args.documented_repeats:
                measure(documented, env=env)
                print(f"  repeat {r + 1}: {documented.name} {documented.seconds[-1]:.1f} s")
        report(args.size, [todo[0], documented, *todo[1:]])
        breakdown(scene, params, tmp, blocks=args.profile_blocks, workers=args.workers)
        floor(scene, offset, mpx=args.floor_mpx)


def spread(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}"


def report(size: int, todo: list[Command]) -> None:
    mpx = size * size / 1e6
    ref = todo[0]
    print(f"\n{mpx:.1f} Mpx, median (min-max) of {len(ref.seconds)} repeats")
    print(
        "| command | wall s | Mpx/s | throughput x reference | CPU s | peak RSS MiB | "
        "RSS / reference |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    )
    for c in todo:
        n = min(len(c.seconds), len(ref.seconds))
        speed = [r / s for r, s in zip(ref.seconds[:n], c.seconds[:n], strict=True)]
        rss = [s / r for r, s in zip(ref.rss[:n], c.rss[:n], strict=True)]
        print(
            f"| {c.name} | {statistics.median(c.seconds):.1f} ({spread(c.seconds)}) | "
            f"{mpx / statistics.median(c.seconds):.3f} | {statistics.median(speed):.2f} "
            f"({spread(speed)}) | {statistics.median(c.cpu):.1f} | "
            f"{statistics.median(c.rss) / 2**20:.0f} ({spread([x / 2**20 for x in c.rss])}) | "
            f"{statistics.median(rss):.2f} ({spread(rss)}) |"
        )
    sat = todo[2]
    speed = [r / s for r, s in zip(ref.seconds, sat.seconds, strict=True)]
    rss = [s / r for r, s in zip(ref.rss, sat.rss, strict=True)]
    print(
        "targets, satdask threads against the reference: throughput "
        f"{statistics.median(speed):.2f}x "
        f"(target >= {SPEEDUP_TARGET}x: {'met' if min(speed) >= SPEEDUP_TARGET else 'NOT met'}, "
        f"margin {statistics.median(speed) / SPEEDUP_TARGET:.2f}x, worst repeat "
        f"{min(speed) / SPEEDUP_TARGET:.2f}x); peak RSS {statistics.median(rss):.2f}x "
        f"(target <= {RSS_TARGET}: {'met' if max(rss) <= RSS_TARGET else 'NOT met'}, margin "
        f"{RSS_TARGET / statistics.median(rss):.2f}x, worst repeat {RSS_TARGET / max(rss):.2f}x)"
    )
    for c in todo:
        steps = {k: statistics.median(x[k] for x in c.reported) for k in c.reported[0]}
        print(
            f"{c.name}, in process (median s): "
            + ", ".join(f"{k} {v:.2f}" for k, v in steps.items())
        )


def timed(
    pieces: dict[str, list[float]],
    label: str,
    fn: Callable[..., Any],
    *args: Any,
    times: int = 3,
    cold: Callable[[], None] | None = None,
    **kwargs: Any,
) -> Any:
    """Call `fn` `times` times; keep the fastest, in seconds, under `label`; return its value."""
    best, value = float("inf"), None
    for _ in range(times):
        if cold is not None:
            cold()
        t0 = time.perf_counter()
        value = fn(*args, **kwargs)
        best = min(best, time.perf_counter() - t0)
    pieces.setdefault(label, []).append(best)
    return value


class TimedScores:
    """A pixel model whose `scores` calls are timed, to split `pixel_block`'s time."""

    def __init__(self, model: Any) -> None:
        self.model, self.seconds = model, 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def scores(self, batch: np.ndarray, **kwargs: Any) -> np.ndarray:
        t0 = time.perf_counter()
        try:
            return np.asarray(self.model.scores(batch, **kwargs))
        finally:
            self.seconds += time.perf_counter() - t0


def features_of(region: np.ndarray, offset: int) -> np.ndarray:
    """(band, y, x) digital numbers -> (pixels, band) reflectances, as `scores` lays them."""
    from satdask.models.s2cloudless import reflectance

    return np.moveaxis(reflectance(region, dn_offset=offset), 0, -1).reshape(-1, region.shape[0])


def breakdown(scene: Path, params: dict[str, Any], tmp: Path, *, blocks: int, workers: int) -> None:
    """Where a satdask block's time goes, in this process on one thread.

    Each piece runs the function a run calls (or, for the convolution and dilation,
    the OpenCV calls `CloudMaskModel.scores` makes); reads on a fresh handle, so every
    read decodes.
    """
    import cv2

    from satdask.io import store
    from satdask.io.halo import pixel_block, read_region
    from satdask.models.s2cloudless import (
        CloudMaskModel,
        classify,
        disk,
        load_classifier,
    )
    from satdask.pipeline.batch import _create_pixel_arrays, plan_run

    plan = plan_run(scene, CloudMaskModel.installed(**params), hash_scene=False)
    assert plan.pixel is not None and isinstance(plan.model, CloudMaskModel)
    model, layout, source, grid = plan.model, plan.pixel.layout, plan.source, plan.grid
    staging = tmp / "profile.zarr"
    _create_pixel_arrays(plan, staging)
    classifier = load_classifier(model.sha256)
    step = max(1, len(plan.blocks) // blocks)
    chosen = plan.blocks[step // 2 :: step][:blocks]

    def fresh() -> None:
        source._forget()  # type: ignore[attr-defined]

    def neighbourhood(prob: np.ndarray) -> np.ndarray:
        """The OpenCV part of `CloudMaskModel.scores`, as it calls it."""
        if model.average_over:
            kernel = disk(model.average_over)
            smooth = cv2.filter2D(prob, -1, kernel / np.sum(kernel), borderType=cv2.BORDER_REFLECT)
            mask = (smooth > model.threshold).astype(np.uint8)
        else:
            mask = (prob > model.threshold).astype(np.uint8)
        return cv2.dilate(mask, disk(model.dilation_size)) if model.dilation_size else mask

    pieces: dict[str, list[float]] = {}
    pixels = []
    common: dict[str, Any] = {
        "height": grid.height,
        "width": grid.width,
        "padding": plan.pixel.padding,
        "nodata": plan.raster.info.nodata,
    }
    for b in chosen:
        w = b.window
        rows = layout.read_span(w.row_off, w.row_off + w.height)
        cols = layout.read_span(w.col_off, w.col_off + w.width)
        region, _ = timed(pieces, "decode", read_region, source, rows, cols, cold=fresh, **common)
        features = timed(pieces, "reflectance", features_of, region, model.dn_offset)
        prob = timed(pieces, "classify", classify, classifier, features, times=1)
        timed(pieces, "neighbourhood", neighbourhood, prob.reshape(region.shape[1:]))
        timed_model = TimedScores(model)
        result = timed(
            pieces, "pixel_block", pixel_block, source, w, model=timed_model, layout=layout,
            table=plan.pixel.table, times=1, cold=fresh, **common,
        )  # fmt: skip
        pieces.setdefault("scores", []).append(timed_model.seconds)
        timed(
            pieces, "write", store.write_pixel_block, staging, w.toslices(),
            classes=result.classes, scores=None, layers=result.layers,
        )  # fmt: skip
        pixels.append(region.shape[1] * region.shape[2])
    shutil.rmtree(staging)
    ms = {k: statistics.median(v) * 1000 for k, v in pieces.items()}
    total = ms["pixel_block"] + ms["write"]
    rows_out = [
        ("decode: ten bands with the halo (read_region)", ms["decode"]),
        ("reflectance and pixel layout", ms["reflectance"]),
        ("LightGBM (classify)", ms["classify"]),
        ("convolution + threshold + dilation (OpenCV)", ms["neighbourhood"]),
        (
            "the rest of model.scores (and classify's spread between its two runs)",
            ms["scores"] - sum(ms[k] for k in ("reflectance", "classify", "neighbourhood")),
        ),
        (
            "the rest of pixel_block (validity, padding, classes, layers)",
            ms["pixel_block"] - ms["scores"] - ms["decode"],
        ),
        ("zarr write: mask + probabilities (write_pixel_block)", ms["write"]),
    ]
    n = len(plan.blocks)
    px = statistics.fmean(pixels)
    print(
        f"\nwhere satdask's time goes: {len(chosen)} of {n} blocks of "
        f"{plan.raster.chunks[0][0]} px (halo {layout.halo} px), one thread, median ms per "
        f"block; 'run' = that x {n} blocks / {workers} threads"
    )
    print("| piece | ms per block | share | run, s |\n| --- | ---: | ---: | ---: |")
    for label, value in rows_out:
        print(f"| {label} | {value:.1f} | {value / total:.1%} | {value * n / workers / 1000:.2f} |")
    run_s = total * n / workers / 1000
    print(f"| block total: pixel_block + write | {total:.1f} | 100% | {run_s:.2f} |")
    print(
        f"{px / 1e6:.2f} Mpx a block with its halo; LightGBM (classify) "
        f"{1e3 * px / ms['classify'] / 1e6:.3f} Mpx/s a thread; model.scores inside "
        f"pixel_block {ms['scores']:.1f} ms"
    )


def floor(scene: Path, offset: int, *, mpx: float) -> None:
    """Decoding plus LightGBM's own predict on the scene's pixels: the speed of any run
    that decodes the bands and hands every pixel to LightGBM."""
    import lightgbm
    import rasterio
    from rasterio.windows import Window

    from satdask.models.s2cloudless import MODEL_BANDS, S2_BANDS, model_file, reflectance

    booster = lightgbm.Booster(model_file=str(model_file()))  # as the reference loads it
    bands = [S2_BANDS.index(b) + 1 for b in MODEL_BANDS]
    with rasterio.open(scene) as src:
        rows = src.height if mpx <= 0 else min(src.height, max(1, int(mpx * 1e6 / src.width)))
        t0 = time.perf_counter()
        dn = src.read(bands, window=Window(0, 0, src.width, rows))
        decode = time.perf_counter() - t0
    features = np.ascontiguousarray(
        np.moveaxis(reflectance(dn, dn_offset=offset), 0, -1).reshape(-1, len(bands))
    )
    del dn
    t0 = time.perf_counter()
    booster.predict(features, num_threads=2)
    lgbm = time.perf_counter() - t0
    p = features.shape[0] / 1e6
    print(
        f"\nfloor on {p:.1f} Mpx ({'the whole scene' if mpx <= 0 else f'the first {rows} rows'}): "
        f"decoding ten bands, one thread, {decode:.2f} s ({p / decode:.1f} Mpx/s); LightGBM "
        f"predict, num_threads=2, one call, {lgbm:.2f} s ({p / lgbm:.3f} Mpx/s); together "
        f"{p / (decode + lgbm):.3f} Mpx/s"
    )


def main() -> None:
    p = argparse.ArgumentParser(
        description=textwrap.dedent(__doc__ or ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--size", type=int, default=4096, help="scene side in px (1024: a check)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="--size 1024 --repeats 1")
    p.add_argument("--local", action="store_true", help="also satdask on a LocalCluster")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="dask threads")
    p.add_argument("--threshold", type=float, default=0.4)
    p.add_argument("--average-over", type=int, default=4, help="s2cloudless's README value")
    p.add_argument("--dilation-size", type=int, default=2, help="s2cloudless's README value")
    p.add_argument(
        "--documented-repeats",
        type=int,
        default=1,
        help="repeats of the documented two calls (each classifies twice; default 1)",
    )
    p.add_argument("--profile-blocks", type=int, default=2, help="blocks timed piece by piece")
    p.add_argument(
        "--floor-mpx", type=float, default=4.0, help="Mpx LightGBM's floor runs on (0: all)"
    )
    args = p.parse_args()
    if args.quick:
        args.size, args.repeats = 1024, 1
    run(args)


if __name__ == "__main__":
    main()
