"""HTTP API benchmark: `POST /infer` by scene, row and col, against a real server on loopback.

    python benchmarks/api.py [--seconds 8] [--workers 1] [--concurrency 1 32] [--size 4096]
    python benchmarks/api.py --map-tiles [--repeat 3] [--seconds 8] [--size 4096]

It prepares once, in `benchmarks/.cache/api/` (git-ignored, reused on later runs): a
`--size` x `--size` x 4 uint16 DEFLATE COG (`satdask.io.sample.write_sample`), a model
trained on the 4096 px sample, and the scene pre-cut into one GeoTIFF per 256 px tile
for the baseline. Then it starts each server as a subprocess on 127.0.0.1, waits for it
to be ready, and drives it with a small keep-alive HTTP/1.1 load generator (asyncio, one
connection per concurrent client, random tiles from a fixed seed per client): 1 s of
warm-up, then a fixed time per concurrency. Each line also gives the server's CPU per
request and the CPU that other processes used meanwhile (`other load`, Linux only).

- `satdask`: `satdask serve` (Litestar on uvicorn), reading each tile's window from
  the COG and running the batch block function on it;
- `baseline`: the reference pipeline's way, a plain FastAPI app on uvicorn whose
  handler validates the pre-cut tile file and reads it whole on every request.

With `--pixel` the server serves a pixel model instead: `satdask.io.sample_model`'s
segmentation network (4 bands, 3 classes, 3 conv layers of 3 x 3, a 3 px halo) imported
into a registry of its own, each tile answered per pixel (`--accept` picks JSON counts,
`image/png` or `image/tiff`); the satdask server is measured alone, and then the same
random tiles are computed in this process, one thread, with the service's block function
(`satdask.io.halo.pixel_block`: the read with its halo and the model), to give the CPU a
tile costs without HTTP, and the server's CPU per request as a multiple of it.

With `--map-tiles` the server serves map tiles (`GET /tiles/...`) with that network
loaded and a runs root holding its run over the scene (`satdask.run_batch`, made once):
for scene tiles and prediction tiles, the p50 per tile at c=1 when each tile is asked
for the first time (cold: drawn) and again (cached: the tile LRU), req/s at c=32 over
cached tiles and over cold ones one zoom out; then the p50 of `POST /infer` at c=1,
which the cold prediction tile is compared with. Each of `--repeat` servers is fresh.

Figures only, no assertion: the load generator shares the machine's cores with the
server, as wrk did for the figures in the issue. Everything runs on loopback and
stops by itself (bounded time per run, servers terminated at the end).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "benchmarks" / ".cache" / "api"
BANDS, TILE = 4, 256


def scene_name(size: int) -> str:
    return f"sample-{size}.tif"


# ---------------------------------------------------------------------------
# Preparation (cached)
# ---------------------------------------------------------------------------


def prepare(cache: Path, size: int, *, baseline: bool) -> tuple[Path, Path, Path]:
    """(data root, registry, pre-cut tile folder), each made once; the model is trained
    on the 4096 px sample whatever `size` is, so every size is served by one model."""
    from satdask.io.sample import write_sample

    data, registry, tiles = cache / "data", cache / "registry", cache / f"tiles-{size}"
    data.mkdir(parents=True, exist_ok=True)
    for n in sorted({4096, size}):
        scene = data / scene_name(n)
        if not scene.exists():
            print(f"writing {scene} ({n} x {n} x {BANDS} uint16 COG) ...", flush=True)
            write_sample(scene, size=n, bands=BANDS, dtype="uint16", seed=0)
    if not (registry / "latest.json").exists():
        from satdask import ModelRegistry, train

        print("training a model on the 4096 px sample ...", flush=True)
        ModelRegistry(registry).save(train([data / scene_name(4096)], scheduler="threads"))
    done = tiles / ".complete"
    if baseline and not done.exists():
        print("cutting one GeoTIFF per tile for the baseline ...", flush=True)
        cut_tiles(data / scene_name(size), tiles)
        done.touch()
    return data, registry, tiles


def prepare_pixel(cache: Path) -> Path:
    """A registry holding the sample segmentation network (made once)."""
    registry = cache / "registry-pixel"
    if not (registry / "latest.json").exists():
        from satdask import ModelRegistry
        from satdask.io.sample_model import segmentation_model, write_model

        print("importing the sample segmentation network ...", flush=True)
        files = cache / "pixel-model"
        files.mkdir(parents=True, exist_ok=True)
        model_bytes, meta = segmentation_model(bands=BANDS, classes=3, layers=3, kernel=3)
        model_path, meta_path = write_model(files, model_bytes, meta, name="segmentation")
        ModelRegistry(registry).import_onnx(model_path, metadata_path=meta_path)
    return registry


def in_process(scene: Path, registry: Path, size: int, tiles: int, *, seed: int = 0) -> float:
    """CPU seconds per tile of the service's block function in this process, one thread:
    the tile's read with its halo and the model (`pixel_block`), random tiles as served,
    with the server's GDAL block cache (see `main`)."""
    from satdask import ModelRegistry
    from satdask.core.pixels import ClassTable, model_layout
    from satdask.io.halo import pixel_block
    from satdask.io.open import open_source
    from satdask.models.base import PixelModel

    model = ModelRegistry(registry).load().model
    assert isinstance(model, PixelModel)
    raster = open_source(scene, tile_size=TILE)
    grid = raster.grid(edge="skip")
    layout = model_layout(model, tile_size=TILE)
    table = ClassTable.of(model.classes)
    nodata = raster.info.nodata

    def one(row: int, col: int) -> None:
        pixel_block(
            raster.source, grid.window(row, col), model=model, layout=layout,
            table=table, height=grid.height, width=grid.width, padding="reflect",
            nodata=nodata,
        )  # fmt: skip

    n = size // TILE
    for row in range(n):  # warm-up: the session, and every block into GDAL's cache
        for col in range(n):
            one(row, col)
    rng = random.Random(seed)
    picks = [(rng.randrange(n), rng.randrange(n)) for _ in range(tiles)]
    start = time.process_time()
    for row, col in picks:
        one(row, col)
    return (time.process_time() - start) / tiles


def cut_tiles(scene: Path, out: Path) -> None:
    import rasterio
    from rasterio.windows import Window
    from rasterio.windows import transform as window_transform

    out.mkdir(parents=True, exist_ok=True)
    with rasterio.open(scene) as src:
        profile = src.profile.copy()
        profile.update(
            driver="GTiff", width=TILE, height=TILE, tiled=True, blockxsize=TILE,
            blockysize=TILE, compress="deflate", predictor=2,
        )  # fmt: skip
        for row in range(src.height // TILE):
            for col in range(src.width // TILE):
                window = Window(col * TILE, row * TILE, TILE, TILE)
                profile["transform"] = window_transform(window, src.transform)
                with rasterio.open(out / f"tile_{row}_{col}.tif", "w", **profile) as dst:
                    dst.write(src.read(window=window))


# ---------------------------------------------------------------------------
# The baseline: the reference pipeline's handler, on FastAPI
# ---------------------------------------------------------------------------


def baseline_app(tiles: Path, registry: Path):  # type: ignore[no-untyped-def]
    """POST /infer {scene,row,col} -> validate the pre-cut tile file and read it whole."""
    import numpy as np
    import rasterio
    from fastapi import FastAPI, HTTPException
    from pydantic import BaseModel, Field

    model = json.loads((registry / "latest.json").read_text())
    threshold = float(model["parameters"]["threshold"])
    root = tiles.resolve()
    app = FastAPI()

    class Body(BaseModel):
        scene: str
        row: int = Field(ge=0)
        col: int = Field(ge=0)

    def infer(body: Body) -> dict:  # sync: FastAPI runs it in its thread pool
        start = time.perf_counter()
        path = (root / f"tile_{body.row}_{body.col}.tif").resolve()
        if not path.is_relative_to(root) or not path.is_file():
            raise HTTPException(404, "tile not found")
        with rasterio.open(path) as src:  # validate, then read the whole tile
            if src.crs is None or src.count < 1 or src.width != TILE or src.height != TILE:
                raise HTTPException(422, "invalid tile")
            data = src.read()
            nodata = src.nodata
        valid = data != nodata if nodata is not None else np.ones(data.shape, bool)
        mean = float(data[valid].mean()) if valid.any() else None
        return {
            "prediction": -1 if mean is None else int(mean > threshold),
            "mean_intensity": mean,
            "model_id": model["id"],
            "latency_ms": (time.perf_counter() - start) * 1000.0,
        }

    # Real annotations (this module has postponed ones, which FastAPI cannot resolve for a
    # class defined inside a function).
    infer.__annotations__ = {"body": Body, "return": dict}
    app.post("/infer")(infer)

    @app.get("/ready")
    def ready() -> dict:
        return {"status": "ready"}

    return app


def run_baseline_server(tiles: Path, registry: Path, port: int) -> None:
    import uvicorn

    uvicorn.run(
        baseline_app(tiles, registry), host="127.0.0.1", port=port, log_level="warning",
        access_log=False,
    )  # fmt: skip


# ---------------------------------------------------------------------------
# Servers as subprocesses
# ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise SystemExit(f"server exited with {proc.returncode}: {err.strip()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /ready HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return proc
        except OSError:
            pass
        time.sleep(0.1)
    stop(proc)
    raise SystemExit("server not ready within 60 s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------------------
# Load: random tiles from service/loadgen.py's keep-alive HTTP/1.1 generator
# ---------------------------------------------------------------------------


def request_bytes(scene: str, row: int, col: int, accept: str | None = None) -> bytes:
    from service.loadgen import post_json

    body = json.dumps({"scene": scene, "row": row, "col": col}).encode()
    return post_json("/infer", body, headers={"Accept": accept} if accept else None)


async def load(
    port: int,
    size: int,
    concurrency: int,
    seconds: float,
    *,
    seed: int = 0,
    accept: str | None = None,
) -> tuple[list[float], list[str], float]:
    """`concurrency` keep-alive clients for `seconds`, asking for random tiles from one
    seeded stream (service/loadgen.py): (latencies, errors, elapsed)."""
    from service.loadgen import NO_ANSWER, run_load

    grid = size // TILE
    scene = scene_name(size)
    requests = [request_bytes(scene, r, c, accept) for r in range(grid) for c in range(grid)]
    rng = random.Random(seed)
    stream = (requests[rng.randrange(len(requests))] for _ in itertools.count())
    result = await run_load(port, stream, concurrency=concurrency, seconds=seconds)
    errors = [f"HTTP {s}" for s in result.statuses if s not in (200, NO_ANSWER)]
    return result.latencies, [*result.errors, *errors], result.elapsed


async def every_tile(port: int, size: int, *, accept: str | None = None) -> None:
    """Each tile asked for once: the server's GDAL cache warmed as `in_process` warms its."""
    from service.loadgen import run_load

    grid = size // TILE
    scene = scene_name(size)
    requests = [request_bytes(scene, r, c, accept) for r in range(grid) for c in range(grid)]
    await run_load(port, requests, concurrency=4)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100.0 * len(ordered)))]


def tree_cpu_seconds(pid: int) -> float | None:
    """CPU seconds of a process and its children (uvicorn workers), from /proc; Linux only."""
    try:
        stats = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                stats[int(entry)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    except OSError:
        return None
    tree, changed = {pid}, True
    while changed:
        children = {p for p, (ppid, _) in stats.items() if ppid in tree} - tree
        changed = bool(children)
        tree |= children
    return sum(stats[p][1] for p in tree if p in stats) / os.sysconf("SC_CLK_TCK")


def busy_cpu_seconds() -> float | None:
    """CPU seconds the whole machine spent busy (all processes), from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return None
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def measure(
    name: str,
    server: subprocess.Popen[bytes],
    port: int,
    size: int,
    concurrencies: list[int],
    seconds: float,
    *,
    accept: str | None = None,
    warm_all: bool = False,
) -> list[tuple[str, float | None]]:
    """One line per concurrency, with the server's CPU seconds per request (None where
    /proc cannot tell). `server CPU` is per request; `other load` is CPU used on the
    machine by anything but the server and the load generator (it should be near 0%)."""
    lines: list[tuple[str, float | None]] = []
    if warm_all:
        asyncio.run(every_tile(port, size, accept=accept))
    for c in concurrencies:
        # warm-up: imports, scene cache
        asyncio.run(load(port, size, c, 1.0, seed=10_000, accept=accept))
        s0, b0, o0 = tree_cpu_seconds(server.pid), busy_cpu_seconds(), own_cpu_seconds()
        latencies, errors, elapsed = asyncio.run(load(port, size, c, seconds, accept=accept))
        s1, b1, o1 = tree_cpu_seconds(server.pid), busy_cpu_seconds(), own_cpu_seconds()
        n = len(latencies)
        line = (
            f"{name:<12} c={c:<3} {n:>6} req {n / elapsed:7.0f} req/s  "
            f"p50 {percentile(latencies, 50) * 1e3:6.2f} ms  "
            f"p99 {percentile(latencies, 99) * 1e3:6.2f} ms  errors {len(errors)}"
        )
        per_request = None
        if None not in (s0, s1, b0, b1):
            server_cpu = s1 - s0  # type: ignore[operator]
            per_request = server_cpu / max(n, 1)
            other = (b1 - b0) - server_cpu - (o1 - o0)  # type: ignore[operator]
            line += (
                f"  server {server_cpu / max(n, 1) * 1e3:.2f} ms CPU/req"
                f"  other load {max(other, 0.0) / elapsed * 100:3.0f}%"
            )
        if errors:
            line += f"  (first error: {errors[0]})"
        print(line, flush=True)
        lines.append((line, per_request))
    return lines


# ---------------------------------------------------------------------------
# Map tiles (--map-tiles): GET /tiles/... of the scene and of a pixel run's prediction
# ---------------------------------------------------------------------------


def prepare_run(cache: Path, scene: Path, registry: Path) -> Path:
    """A runs root holding the pixel model's run over `scene` (made once)."""
    runs = cache / "runs"
    store = runs / f"{scene.stem}.zarr"
    if not store.exists():
        import satdask
        from satdask import ModelRegistry

        print(f"running the segmentation network over {scene.name} ...", flush=True)
        runs.mkdir(parents=True, exist_ok=True)
        model = ModelRegistry(registry).load()
        satdask.run_batch(scene, model, store, scheduler="threads")
    return runs


def get_bytes(path: str, headers: dict[str, str] | None = None) -> bytes:
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode()


def tile_paths(port: int, base: str, *, zoom_offset: int = 0) -> tuple[int, list[str]]:
    """(zoom, every tile path over the layer at its native zoom + `zoom_offset`), from
    its TileJSON."""
    import urllib.request

    from satdask.core import mercator

    with urllib.request.urlopen(f"http://127.0.0.1:{port}{base}/tilejson.json") as answer:
        doc = json.load(answer)
    west, south, east, north = doc["bounds"]
    box = mercator.Bounds(*mercator.to_mercator(west, south), *mercator.to_mercator(east, north))
    z = doc["maxzoom"] + zoom_offset
    return z, [f"{base}/{t.z}/{t.x}/{t.y}.png" for t in mercator.tiles_covering(box, z)]


def measure_tiles(port: int, size: int, seconds: float) -> dict[str, float]:
    """One server's figures: p50 per tile at c=1 cold (each tile once) and cached (again),
    req/s at c=32 over cached tiles and over cold ones (one zoom out), for scene and
    prediction tiles; and p50 of POST /infer at c=1 over random tiles."""
    from service.loadgen import run_load

    scene = scene_name(size)
    out: dict[str, float] = {}
    for kind, base in (
        ("scene", f"/tiles/scenes/{scene}"),
        ("prediction", f"/tiles/runs/{Path(scene).stem}/prediction"),
    ):
        z, paths = tile_paths(port, base)
        requests = [get_bytes(p) for p in paths]
        cold = asyncio.run(run_load(port, requests, concurrency=1))
        cached = asyncio.run(run_load(port, requests, concurrency=1))
        rng = random.Random(0)
        stream = (requests[rng.randrange(len(requests))] for _ in itertools.count())
        busy = asyncio.run(run_load(port, stream, concurrency=32, seconds=seconds))
        _, outer = tile_paths(port, base, zoom_offset=-1)
        cold32 = asyncio.run(run_load(port, [get_bytes(p) for p in outer], concurrency=32))
        for result in (cold, cached, busy, cold32):
            bad = [s for s in result.statuses if s != 200]
            if bad or result.errors:
                raise SystemExit(f"{kind} tiles: {len(bad)} answers not 200, {result.errors[:1]}")
        out[f"{kind} cold p50"] = percentile(cold.latencies, 50) * 1e3
        out[f"{kind} cached p50"] = percentile(cached.latencies, 50) * 1e3
        out[f"{kind} c=32 cached req/s"] = len(busy.latencies) / busy.elapsed
        out[f"{kind} c=32 cold req/s"] = len(cold32.latencies) / cold32.elapsed
        print(
            f"  {kind:<10} z={z} {len(paths)} tiles: "
            f"c=1 cold p50 {out[f'{kind} cold p50']:.2f} ms, "
            f"cached p50 {out[f'{kind} cached p50']:.2f} ms; c=32 cached "
            f"{out[f'{kind} c=32 cached req/s']:.0f} req/s, cold (z={z - 1}, {len(outer)} tiles) "
            f"{out[f'{kind} c=32 cold req/s']:.0f} req/s",
            flush=True,
        )
    latencies, errors, _ = asyncio.run(load(port, size, 1, seconds))
    if errors:
        raise SystemExit(f"/infer: {errors[0]}")
    out["infer p50"] = percentile(latencies, 50) * 1e3
    ratio = out["prediction cold p50"] / out["infer p50"]
    print(
        f"  POST /infer c=1 p50 {out['infer p50']:.2f} ms (the pixel model's tile, JSON); "
        f"cold prediction tile = {ratio:.2f} x",
        flush=True,
    )
    return out


def map_tiles(args: argparse.Namespace, env: dict[str, str]) -> int:
    """`--map-tiles`: `--repeat` fresh servers (so cold tiles are cold), figures of each,
    then their median and range."""
    data, _, _ = prepare(CACHE, args.size, baseline=False)
    registry = prepare_pixel(CACHE)
    runs = prepare_run(CACHE, data / scene_name(args.size), registry)
    print(
        f"GET /tiles: 256 px web-mercator PNGs of a {args.size} x {args.size} x {BANDS} uint16 "
        f"DEFLATE COG (10 m, EPSG:32633) and of the segmentation network's run over it; "
        f"{args.seconds:g} s per c=32 run, {os.cpu_count()} cores, load generator on the "
        "same machine",
        flush=True,
    )
    figures: list[dict[str, float]] = []
    for i in range(args.repeat):
        port = free_port()
        cmd = [
            *(sys.executable, "-m", "satdask.cli", "serve", "--data-root", str(data)),
            *("--model", str(registry), "--runs-root", str(runs), "--port", str(port)),
        ]
        server = start(cmd, port, env)
        print(f"run {i + 1} of {args.repeat}:", flush=True)
        try:
            figures.append(measure_tiles(port, args.size, args.seconds))
        finally:
            stop(server)
    print(f"median (min-max) over {len(figures)} servers:")
    for key in figures[0]:
        values = sorted(f[key] for f in figures)
        unit = "req/s" if "req/s" in key else "ms"
        key_text = key.replace(" req/s", "")
        print(
            f"  {key_text:<28} {values[len(values) // 2]:8.2f} {unit} "
            f"({values[0]:.2f}-{values[-1]:.2f})"
        )
    ratios = sorted(f["prediction cold p50"] / f["infer p50"] for f in figures)
    print(
        f"  cold prediction tile / POST /infer: {ratios[len(ratios) // 2]:.2f} x "
        f"({ratios[0]:.2f}-{ratios[-1]:.2f})"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=8.0, help="measured time per run")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    p.add_argument("--workers", type=int, default=1, help="satdask serve --workers")
    p.add_argument("--size", type=int, default=4096, help="side of the sample scene in px")
    p.add_argument("--threads", type=int, help="SATDASK_THREADS for satdask serve")
    p.add_argument("--gdal-cachemax", type=int, help="GDAL_CACHEMAX in MB for satdask serve")
    p.add_argument("--skip-baseline", action="store_true")
    p.add_argument(
        "--pixel",
        action="store_true",
        help="serve the sample segmentation network (no baseline), and compare "
        "with its read + model in process",
    )
    p.add_argument(
        "--accept",
        default=None,
        help="Accept header of every request (--pixel: image/png, image/tiff)",
    )
    p.add_argument(
        "--tiles",
        type=int,
        default=300,
        help="--pixel: tiles computed in process after the warm-up",
    )
    p.add_argument(
        "--map-tiles",
        action="store_true",
        help="GET /tiles/... of the scene and of the pixel model's run (no baseline)",
    )
    p.add_argument("--repeat", type=int, default=3, help="--map-tiles: fresh servers measured")
    p.add_argument("--baseline-server", nargs=3, metavar=("TILES", "REGISTRY", "PORT"),
                   help=argparse.SUPPRESS)  # fmt: skip
    args = p.parse_args(argv)
    if args.baseline_server:
        tiles, registry, port = args.baseline_server
        run_baseline_server(Path(tiles), Path(registry), int(port))
        return 0

    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    if args.map_tiles:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SATDASK_", "GDAL_"))}
        return map_tiles(args, env)
    baseline = not (args.skip_baseline or args.pixel)
    if args.pixel:  # this process reads as the server does: its GDAL settings and cache
        from service.gdal import export_gdal_env

        export_gdal_env(cache_mb=args.gdal_cachemax or 256)
    data, registry, tiles = prepare(CACHE, args.size, baseline=baseline)
    if args.pixel:
        registry = prepare_pixel(CACHE)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SATDASK_", "GDAL_"))}
    if args.threads:
        env["SATDASK_THREADS"] = str(args.threads)
    if args.gdal_cachemax:
        env["GDAL_CACHEMAX"] = str(args.gdal_cachemax)
    print(
        f"POST /infer by scene/row/col, random 256 px tiles of a {args.size} x {args.size} "
        f"x {BANDS} uint16 DEFLATE COG, {args.seconds:g} s per run, {os.cpu_count()} cores, "
        f"load generator on the same machine"
        + (f"; pixel model, Accept {args.accept or '(none)'}" if args.pixel else ""),
        flush=True,
    )
    port = free_port()
    cmd = [
        *(sys.executable, "-m", "satdask.cli", "serve", "--data-root", str(data)),
        *("--model", str(registry), "--port", str(port), "--workers", str(args.workers)),
    ]
    server = start(cmd, port, env)
    name = f"{'pixel' if args.pixel else 'satdask'}/{args.workers}w"
    scene = data / scene_name(args.size)
    before = in_process(scene, registry, args.size, args.tiles) if args.pixel else 0.0
    try:
        lines = measure(
            name, server, port, args.size, args.concurrency, args.seconds,
            accept=args.accept, warm_all=args.pixel,
        )  # fmt: skip
    finally:
        stop(server)
    if args.pixel:  # before and after the server: the machine's other load moves it
        after = in_process(scene, registry, args.size, args.tiles)
        cpu = (before + after) / 2
        print(
            f"in process   read + model {cpu * 1e3:.2f} ms CPU/tile (1 thread; "
            f"{before * 1e3:.2f} before the server, {after * 1e3:.2f} after)",
            flush=True,
        )
        for line, per_request in lines:
            if per_request is not None:
                c = line.split("c=")[1].split()[0]
                print(f"  c={c:<3} server CPU/request = {per_request / cpu:.2f} x in process")
    if baseline:
        port = free_port()
        cmd = [sys.executable, __file__, "--baseline-server", str(tiles), str(registry), str(port)]
        server = start(cmd, port, env)
        try:
            measure("baseline", server, port, args.size, args.concurrency, args.seconds)
        finally:
            stop(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
