"""A pixel model over a whole scene: satdask's run against a hand-written floor.

The floor is what one would write by hand: rasterio decodes the same blocks as
satdask (its chunks, each with the model's halo, padded by reflection at the
scene's edge), one onnxruntime session shared by the threads runs the same
network on the same 256 px tiles-plus-halo windows, and the argmax is kept in
one array in memory. satdask does that and also checks the model, hashes the
scene (cached after the warm-up), computes the tile summary and writes every
pixel's class to the Zarr store.

Each configuration runs as its own process: whole-process wall time (imports
included), CPU time and peak RSS from wait4(2), and the threads in state R
sampled from /proc every 20 ms (oversubscription shows as more running threads
than cores). Configurations alternate within each repeat (floor, satdask, floor,
satdask, ...) and the per-repeat ratios are reported as a min-max spread.

Threads: dask runs BENCH_WORKERS threads (DASK_NUM_WORKERS), onnxruntime one
intra-op and one inter-op thread per session (SATDASK_ORT_THREADS=1, satdask's
default; the floor sets the same), GDAL decodes on the calling thread.

    python benchmarks/pixel.py --quick                # 2048 px, a smoke run
    python benchmarks/pixel.py --sizes 8192 --repeats 3
    python benchmarks/pixel.py --sizes 8192 16384 --repeats 3
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

CACHE = Path(os.environ.get("SATDASK_BENCH_CACHE", Path(__file__).parent / ".cache"))
PY = [sys.executable, "-c"]
TILE = 256
LAYERS, KERNEL = 3, 3  # a few convolutions: halo = LAYERS * (KERNEL // 2) = 3 px

FLOOR = """
import json, os, sys, threading
from concurrent.futures import ThreadPoolExecutor
import numpy as np, onnxruntime as ort, rasterio
from rasterio.windows import Window
path, model, scale = sys.argv[1], sys.argv[2], float(sys.argv[3])
halo, tile = int(sys.argv[4]), int(sys.argv[5])
rows, cols = json.loads(sys.argv[6])  # satdask's chunks: the same blocks
keep = sys.argv[7] if len(sys.argv) > 7 else None
options = ort.SessionOptions()
options.intra_op_num_threads = 1
options.inter_op_num_threads = 1
options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
session = ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
name = session.get_inputs()[0].name
local = threading.local()
def handle():
    if not hasattr(local, "ds"):
        local.ds = rasterio.open(path)  # one handle per thread
    return local.ds
with rasterio.Env(GDAL_CACHEMAX=64 * 2**20), rasterio.open(path) as src:
    H, W, nodata = src.height, src.width, src.nodata
out = np.empty((H, W), dtype=np.uint8)  # the classes, kept in memory
def block(b):
    y0, x0, h, w = b
    r0, r1 = max(y0 - halo, 0), min(y0 + h + halo, H)
    c0, c1 = max(x0 - halo, 0), min(x0 + w + halo, W)
    data = handle().read(window=Window(c0, r0, c1 - c0, r1 - r0))
    pad = ((0, 0), (r0 - y0 + halo, y0 + h + halo - r1), (c0 - x0 + halo, x0 + w + halo - c1))
    if any(pad[1] + pad[2]):
        data = np.pad(data, pad, mode="reflect")
    valid = (data != nodata).any(axis=0) if nodata is not None else np.ones(data.shape[1:], bool)
    x = np.where(valid, data, 0).astype(np.float32)
    x /= np.float32(scale)
    for ty in range(0, h, tile):
        for tx in range(0, w, tile):
            th, tw = min(tile, h - ty), min(tile, w - tx)
            win = np.ascontiguousarray(x[None, :, ty : ty + th + 2 * halo, tx : tx + tw + 2 * halo])
            scores = session.run(None, {name: win})[0][0, :, halo : halo + th, halo : halo + tw]
            out[y0 + ty : y0 + ty + th, x0 + tx : x0 + tx + tw] = scores.argmax(axis=0)
    mine = out[y0 : y0 + h, x0 : x0 + w]
    mine[~valid[halo : halo + h, halo : halo + w]] = 255
blocks = []
y = 0
for h in rows:
    x = 0
    for w in cols:
        blocks.append((y, x, h, w))
        x += w
    y += h
with rasterio.Env(GDAL_CACHEMAX=64 * 2**20):
    with ThreadPoolExecutor(int(os.environ["BENCH_WORKERS"])) as pool:
        list(pool.map(block, blocks))
if keep:
    np.save(keep, out)
print(len(blocks))
"""

SATDASK = """
import json, sys
from pathlib import Path
import satdask
from satdask.models.onnx import OnnxModel
scene, model, out, scheduler = sys.argv[1:5]
model = Path(model)
onnx = OnnxModel.load(
    model.read_bytes(), json.loads(model.with_suffix(".json").read_text()), name=model.name
)
run = satdask.run_batch(scene, onnx, out, scheduler=scheduler)
print(json.dumps(run.attrs["timings"]))
"""

IMPORTS = {
    "floor": "import numpy, rasterio, onnxruntime",
    "satdask": "import satdask, satdask.pipeline.batch, satdask.models.onnx, onnxruntime; "
    "satdask.run_batch",
}


@dataclass
class Config:
    name: str
    command: list[str]
    out: Path | None = None  # a store to remove before each run
    seconds: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    rss: list[int] = field(default_factory=list)
    running: list[float] = field(default_factory=list)  # mean threads in state R
    over: list[float] = field(default_factory=list)  # fraction of samples with > workers R
    other: list[float] = field(default_factory=list)  # cores used by other processes meanwhile
    threads: list[int] = field(default_factory=list)  # most threads the process had at once
    timings: list[dict[str, float]] = field(default_factory=list)


def running_threads(pid: int) -> tuple[int, int]:
    """Threads of `pid` in state R (running or runnable) right now, and all its threads."""
    count = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0, 0
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "R":
                    count += 1
        except (OSError, IndexError):
            continue
    return count, len(tasks)


def busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (/proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:9]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


def measure(config: Config, *, env: dict[str, str], workers: int) -> None:
    """Run one configuration once; append its figures."""
    if config.out is not None:
        shutil.rmtree(config.out, ignore_errors=True)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start, busy = time.perf_counter(), busy_seconds()
        proc = subprocess.Popen(config.command, stdout=out, stderr=err, env=env)
        samples: list[int] = []
        threads = 0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            running, alive = running_threads(proc.pid)
            samples.append(running)
            threads = max(threads, alive)
            time.sleep(0.02)
        seconds = time.perf_counter() - start
        busy = busy_seconds() - busy
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if proc.returncode != 0:
        raise SystemExit(f"{config.name} failed:\n{stderr}")
    config.seconds.append(seconds)
    cpu = usage.ru_utime + usage.ru_stime
    config.cpu.append(cpu)
    config.other.append(max(0.0, busy - cpu) / seconds)
    config.rss.append(usage.ru_maxrss * 1024)
    config.running.append(statistics.fmean(samples) if samples else 0.0)
    config.threads.append(threads)
    config.over.append(sum(s > workers for s in samples) / max(len(samples), 1))
    last = stdout.strip().splitlines()[-1] if stdout.strip() else ""
    if last.startswith("{"):
        config.timings.append(json.loads(last))


def scene_path(size: int) -> Path:
    """The DEFLATE COG batch.py also uses, generated once."""
    from satdask.io.sample import write_sample

    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"sample-{size}-deflate.tif"
    if not path.exists():
        print(f"generating {path} ...", flush=True)
        write_sample(path, size=size, bands=4, dtype="uint16", seed=0)
    return path


def write_models(folder: Path) -> dict[str, Path]:
    """The network, and the very same network whose metadata declares halo 0.

    Same bytes, same convolutions per pixel: what differs is only what satdask
    reads (no halo) and how much the windows overlap (256 px windows, not 262).
    Its predictions differ near window borders; it exists to price the halo.
    """
    from satdask.io.sample_model import segmentation_model, write_model

    data, meta = segmentation_model(bands=4, classes=3, layers=LAYERS, kernel=KERNEL)
    halo0 = json.loads(json.dumps(meta))
    halo0["mlm:hyperparameters"]["satdask:halo"] = 0
    halo0["mlm:name"] += "-halo0"
    return {
        "seg": write_model(folder, data, meta, name="seg")[0],
        "halo0": write_model(folder, data, halo0, name="seg-halo0")[0],
    }


def configs(
    scene: Path,
    models: dict[str, Path],
    chunks: tuple[tuple[int, ...], tuple[int, ...]],
    out: Path,
    *,
    workers: int,
    local: bool,
) -> list[Config]:
    halo = LAYERS * (KERNEL // 2)
    grid = json.dumps([list(chunks[0]), list(chunks[1])])

    def floor(h: int) -> list[str]:
        return [*PY, FLOOR, str(scene), str(models["seg"]), "10000", str(h), str(TILE), grid]

    def satdask(model: str, scheduler: str = "threads") -> list[str]:
        return [*PY, SATDASK, str(scene), str(models[model]), str(out), scheduler]

    found = [
        Config(f"floor ({workers} threads, halo {halo})", floor(halo)),
        Config("satdask threads", satdask("seg"), out),
        Config("floor, halo 0", floor(0)),
        Config("satdask threads, halo 0", satdask("halo0"), out),
    ]
    if local:
        found.append(
            Config(f"satdask LocalCluster ({workers} threads)", satdask("seg", "local"), out)
        )
    return found


def agreement(scene: Path, models: dict[str, Path], chunks: Any, tmp: Path, env: dict) -> str:
    """Warm-up runs (page cache, scene hash) that also check both give the same classes."""
    import zarr

    kept, out = tmp / "floor.npy", tmp / "check.zarr"
    halo = LAYERS * (KERNEL // 2)
    grid = json.dumps([list(chunks[0]), list(chunks[1])])
    floor = [*PY, FLOOR, str(scene), str(models["seg"]), "10000", str(halo), str(TILE), grid]
    subprocess.run([*floor, str(kept)], check=True, capture_output=True, env=env)
    run = [*PY, SATDASK, str(scene), str(models["seg"]), str(out), "threads"]
    subprocess.run(run, check=True, capture_output=True, env=env)
    a = np.load(kept, mmap_mode="r")
    b = zarr.open_group(out, mode="r")["pixels/prediction"]
    same = total = 0
    for y in range(0, a.shape[0], 2048):  # in strips: never both whole scenes in memory
        x, z = np.asarray(a[y : y + 2048]), b[y : y + 2048]
        same += int(np.count_nonzero(x == z))
        total += x.size
    kept.unlink()
    shutil.rmtree(out)
    return f"floor and satdask give the same class at {same:,} of {total:,} pixels"


def run(size: int, *, repeats: int, workers: int, local: bool, blocks: int) -> list[Config]:
    from satdask.io.open import open_source

    scene = scene_path(size)
    chunks = open_source(scene, tile_size=TILE).chunks
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp_name:  # the store on the scene's disk
        tmp = Path(tmp_name)
        models = write_models(tmp)
        env = os.environ | {
            "SATDASK_CACHE_DIR": str(tmp / "cache"),  # the scene's sha256, cached by warm-up
            "DASK_NUM_WORKERS": str(workers),
            "BENCH_WORKERS": str(workers),
            "SATDASK_ORT_THREADS": "1",
        }
        print(
            f"\n{scene.name}: chunks {chunks[0][0]} px ({len(chunks[0]) * len(chunks[1])} blocks)"
        )
        print(agreement(scene, models, chunks, tmp, env), flush=True)
        todo = configs(scene, models, chunks, tmp / "run.zarr", workers=workers, local=local)
        for _ in range(repeats):
            for c in todo:
                measure(c, env=env, workers=workers)
        report(scene, size, todo, workers=workers)
        profile(scene, models, tmp, blocks=blocks, workers=workers, env=env)
    return todo


def spread(a: Config, b: Config) -> str:
    ratios = [x / y for x, y in zip(a.seconds, b.seconds, strict=True)]
    return f"{min(ratios):.2f}-{max(ratios):.2f}"


def report(scene: Path, size: int, todo: list[Config], *, workers: int) -> None:
    floor = todo[0]
    f = statistics.median(floor.seconds)
    print(f"\n{scene.name}: {size * size / 1e6:.0f} Mpx x 4 bands, median of {len(floor.seconds)}")
    print(
        "| config | wall s | x floor | per-repeat x floor | CPU s | R threads | > cores | "
        "threads | peak RSS MiB | other load |\n" + "| --- " + "| ---: " * 9 + "|"
    )
    for c in todo:
        s = statistics.median(c.seconds)
        print(
            f"| {c.name} | {s:.2f} | {s / f:.2f} | {spread(c, floor)} | "
            f"{statistics.median(c.cpu):.1f} | {statistics.fmean(c.running):.2f} | "
            f"{100 * statistics.fmean(c.over):.0f}% | {max(c.threads)} | "
            f"{max(c.rss) / 2**20:.0f} | {max(c.other):.2f} |"
        )
    sat, h0 = todo[1], todo[3]
    print(
        f"halo {LAYERS * (KERNEL // 2)} px against halo 0, same network: satdask "
        f"{statistics.median(sat.seconds) / statistics.median(h0.seconds):.3f}x "
        f"(per repeat {spread(sat, h0)}), floor "
        f"{f / statistics.median(todo[2].seconds):.3f}x (per repeat {spread(floor, todo[2])})"
    )
    for c in todo:
        if c.timings:
            t = {k: statistics.median(x[k] for x in c.timings) for k in c.timings[0]}
            print(
                f"{c.name}: run_batch {t['total_s']:.2f} s = prepare {t['prepare_s']:.2f} + "
                f"hash {t['hash_s']:.2f} + blocks {t['compute_s']:.2f} + tile grid and store "
                f"{t['total_s'] - t['prepare_s'] - t['hash_s'] - t['compute_s']:.2f}"
            )


class TimedModel:
    """A PixelModel whose `scores` calls (scaling and onnxruntime) are timed."""

    def __init__(self, model: Any) -> None:
        self.model, self.seconds = model, 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def scores(self, batch: np.ndarray, *, inside: np.ndarray | None = None) -> np.ndarray:
        t0 = time.perf_counter()
        try:
            return self.model.scores(batch, inside=inside)
        finally:
            self.seconds += time.perf_counter() - t0


def profile(
    scene: Path, models: dict[str, Path], tmp: Path, *, blocks: int, workers: int, env: dict
) -> None:
    """Where a block's time goes, in this process on one thread.

    Pieces are timed around the functions a run calls (the block's task, its block
    function, its read, the model's calls, the store write), best of 3 per block,
    each read on a fresh handle (GDAL's block cache is per handle), so every read
    decodes. The floor's pieces are its own code. Figures are thread-seconds.
    """
    import rasterio
    from rasterio.windows import Window

    from satdask.io import store
    from satdask.io.halo import pixel_block, read_region
    from satdask.models.onnx import OnnxModel
    from satdask.pipeline.batch import _create_pixel_arrays, plan_run
    from satdask.pipeline.pixel_run import run_pixel_block

    path = models["seg"]
    model = OnnxModel.load(
        path.read_bytes(), json.loads(path.with_suffix(".json").read_text()), name=path.name
    )
    plan = plan_run(scene, model, hash_scene=False)
    assert plan.pixel is not None
    staging = tmp / "profile.zarr"
    _create_pixel_arrays(plan, staging)
    layout, table, grid = plan.pixel.layout, plan.pixel.table, plan.grid
    nodata, source = plan.raster.info.nodata, plan.source
    step = max(1, len(plan.blocks) // blocks)
    chosen = plan.blocks[step // 2 :: step][:blocks]
    session = model.session.session
    name = session.get_inputs()[0].name
    h, t = layout.halo, grid.tile_size
    pieces: dict[str, list[float]] = {}
    timed_model = TimedModel(model)

    def timed(label: str, fn: Any, *args: Any, cold: Any = None, **kwargs: Any) -> Any:
        best, value = float("inf"), None
        for _ in range(3):
            if cold is not None:
                cold()
            timed_model.seconds = 0.0
            t0 = time.perf_counter()
            value = fn(*args, **kwargs)
            seconds = time.perf_counter() - t0
            if seconds < best:
                best, model_s = seconds, timed_model.seconds
        pieces.setdefault(label, []).append(best)
        if model_s:
            pieces.setdefault(f"{label}: model.scores", []).append(model_s)
        return value

    def fresh_satdask() -> None:
        source._forget()  # type: ignore[attr-defined]
        source._dataset()  # type: ignore[attr-defined]

    handles: list[Any] = []

    def fresh_floor() -> None:
        for old in handles:
            old.close()
        handles[:] = [rasterio.open(scene)]

    def floor_read(window: Window) -> np.ndarray:
        return handles[0].read(window=window)

    def floor_scale(region: np.ndarray, valid: np.ndarray) -> np.ndarray:
        x = np.where(valid, region, 0).astype(np.float32)
        x /= np.float32(10000)
        return x

    def floor_scores(x: np.ndarray, height: int, width: int) -> list[np.ndarray]:
        return [
            session.run(
                None, {name: np.ascontiguousarray(x[None, :, y : y + t + 2 * h, c : c + t + 2 * h])}
            )[0][0, :, h : h + t, h : h + t]
            for y in range(0, height, t)
            for c in range(0, width, t)
        ]

    def floor_argmax(scores: list[np.ndarray], out: np.ndarray, valid: np.ndarray) -> None:
        per_row = -(-out.shape[1] // t)
        for i, s in enumerate(scores):
            y, c = (i // per_row) * t, (i % per_row) * t
            out[y : y + t, c : c + t] = s.argmax(axis=0)
        out[~valid] = 255

    common = {"model": timed_model, "layout": layout, "table": table}
    for b in chosen:
        w = b.window
        rows = layout.read_span(w.row_off, w.row_off + w.height)
        cols = layout.read_span(w.col_off, w.col_off + w.width)
        timed(
            "task",
            run_pixel_block,
            source,
            b,
            model=timed_model,
            plan=plan.pixel,
            grid=grid,
            nodata=nodata,
            edge=grid.edge,
            staging=staging,
            cold=fresh_satdask,
        )
        result = timed(
            "pixel_block",
            pixel_block,
            source,
            w,
            **common,
            height=grid.height,
            width=grid.width,
            padding=plan.pixel.padding,
            nodata=nodata,
            cold=fresh_satdask,
        )
        region, valid = timed(
            "read_region",
            read_region,
            source,
            rows,
            cols,
            height=grid.height,
            width=grid.width,
            padding=plan.pixel.padding,
            nodata=nodata,
            cold=fresh_satdask,
        )
        timed("read alone", source.read, w, cold=fresh_satdask)
        timed(
            "zarr write",
            store.write_pixel_block,
            staging,
            w.toslices(),
            classes=result.classes,
            scores=None,
        )
        r0, r1 = max(rows[0], 0), min(rows[1], grid.height)
        c0, c1 = max(cols[0], 0), min(cols[1], grid.width)
        timed("floor: read", floor_read, Window(c0, r0, c1 - c0, r1 - r0), cold=fresh_floor)
        x = timed("floor: scale", floor_scale, region, valid)
        scores = timed("floor: ORT", floor_scores, x, w.height, w.width)
        out = np.empty((w.height, w.width), dtype=np.uint8)
        dy, dx = w.row_off - rows[0], w.col_off - cols[0]
        timed(
            "floor: argmax", floor_argmax, scores, out, valid[dy : dy + w.height, dx : dx + w.width]
        )
    for old in handles:
        old.close()
    shutil.rmtree(staging)
    ms = {k: statistics.median(v) * 1000 for k, v in pieces.items()}
    rows_out = [
        ("satdask: the block's task (run_pixel_block)", ms["task"], ""),
        ("  pixel_block: read, model, classes", ms["pixel_block"], "  "),
        ("    read + decode with halo, mask, padding (read_region)", ms["read_region"], "    "),
        ("      of which the block alone, no halo (source.read)", ms["read alone"], "      "),
        ("    model.scores: scaling + onnxruntime", ms["pixel_block: model.scores"], "    "),
        (
            "    the rest: cut windows, best class, join, nodata",
            ms["pixel_block"] - ms["read_region"] - ms["pixel_block: model.scores"],
            "    ",
        ),
        ("  zarr write of the classes (write_pixel_block)", ms["zarr write"], "  "),
        (
            "  the rest: tile features and class fractions",
            ms["task"] - ms["pixel_block"] - ms["zarr write"],
            "  ",
        ),
        ("floor: the block", sum(ms[k] for k in ms if k.startswith("floor: ")), ""),
        ("  read + decode with halo (rasterio)", ms["floor: read"], "  "),
        ("  invalid pixels to 0, scale", ms["floor: scale"], "  "),
        ("  onnxruntime, window by window", ms["floor: ORT"], "  "),
        ("  argmax into the scene's array", ms["floor: argmax"], "  "),
    ]
    px = statistics.fmean(b.window.height * b.window.width for b in chosen)
    n = len(plan.blocks)
    print(
        f"\nwhere a block's time goes: {len(chosen)} blocks of {plan.raster.chunks[0][0]} px, "
        f"one thread, median ms per block; 'run' = that x {n} blocks / {workers} threads"
    )
    print("| piece | ms per block | ns per px | run, s |\n| --- | ---: | ---: | ---: |")
    for label, value, _ in rows_out:
        shown = label.replace("  ", "\u00a0\u00a0")  # keeps the indent in rendered Markdown
        print(
            f"| {shown} | {value:.1f} | {value * 1e6 / px:.1f} | {value * n / workers / 1000:.2f} |"
        )
    for who, code in IMPORTS.items():
        best = min(_timed_import(code, env) for _ in range(3))
        print(f"python start + imports, {who}: {best:.2f} s")


def _timed_import(code: str, env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run([*PY, code], check=True, env=env)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(
        description=textwrap.dedent(__doc__ or ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="2048 x 2048 only: a smoke run")
    p.add_argument("--sizes", type=int, nargs="+", default=[8192, 16384])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="threads, everywhere")
    p.add_argument("--local", action="store_true", help="also satdask on a LocalCluster")
    p.add_argument("--profile-blocks", type=int, default=4, help="blocks timed piece by piece")
    args = p.parse_args()
    sizes = [2048] if args.quick else args.sizes
    peaks = {}
    for size in sizes:
        todo = run(
            size,
            repeats=args.repeats,
            workers=args.workers,
            local=args.local,
            blocks=args.profile_blocks,
        )
        peaks[size] = max(todo[1].rss)
    if len(peaks) > 1:
        first, last = min(peaks), max(peaks)
        print(
            f"\nsatdask threads peak RSS: {peaks[first] / 2**20:.0f} MiB at {first} px, "
            f"{peaks[last] / 2**20:.0f} MiB at {last} px ({peaks[last] / peaks[first]:.2f}x)"
        )


if __name__ == "__main__":
    main()
