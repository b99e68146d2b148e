"""Batch inference against the alternatives a user would pick instead.

Each method runs as its own process, so a figure is whole-process wall time
(imports and cluster start included) and peak RSS summed over the process tree
(LocalCluster workers included), sampled from /proc. Methods alternate
(A B C A B C ...) so drift in the machine's state hits them all alike.

    python benchmarks/batch.py --quick            # 4096 x 4096, under a minute
    python benchmarks/batch.py --sizes 8192 16384 --repeats 3
"""

from __future__ import annotations

import argparse
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

CACHE = Path(os.environ.get("SATDASK_BENCH_CACHE", Path(__file__).parent / ".cache"))
BIN = Path(sys.executable).parent
SATDASK = [str(BIN / "satdask")]
PY = [sys.executable, "-c"]

FLOOR = """
import os, sys, threading
from concurrent.futures import ThreadPoolExecutor
import numpy as np, rasterio
from rasterio.windows import Window
path, step = sys.argv[1], 1024
local = threading.local()
def handle():
    if not hasattr(local, "ds"):
        local.ds = rasterio.open(path)  # one handle per thread
    return local.ds
with rasterio.Env(GDAL_CACHEMAX=64 * 2**20), rasterio.open(path) as src:
    h, w = src.height, src.width
    wins = [Window(c, r, min(step, w - c), min(step, h - r))
            for r in range(0, h, step) for c in range(0, w, step)]
    with ThreadPoolExecutor(int(os.environ["BENCH_WORKERS"])) as pool:
        total = sum(pool.map(lambda win: int(handle().read(window=win).sum(dtype=np.uint64)), wins))
print(total)
"""

COARSEN = """
import os, sys
import dask, rioxarray
da = rioxarray.open_rasterio(sys.argv[1], chunks={"band": -1, "y": 2048, "x": 2048}, lock=False)
with dask.config.set(scheduler="threads"):
    means = da.coarsen(y=256, x=256, boundary="trim").mean().compute()
print(float(means.mean()))
"""

COARSEN_LOCAL = COARSEN.replace(
    'with dask.config.set(scheduler="threads"):',
    "from distributed import Client, LocalCluster\n"
    "with LocalCluster(n_workers=int(os.environ['BENCH_WORKERS']), threads_per_worker=1,"
    " dashboard_address=None) as c, "
    "Client(c):",
)

# The reference pipeline: cut every tile to its own GeoTIFF, then validate, read and
# average each one in a sequential loop.
REFERENCE = """
import sys, tempfile
from pathlib import Path
import numpy as np, rasterio
from rasterio.windows import Window
path, tile = sys.argv[1], 256
with tempfile.TemporaryDirectory() as tmp, rasterio.open(path) as src:
    profile = src.profile | {"width": tile, "height": tile, "tiled": False}
    profile.pop("blockxsize", None); profile.pop("blockysize", None)
    tiles = []
    for r in range(src.height // tile):
        for c in range(src.width // tile):
            win = Window(c * tile, r * tile, tile, tile)
            out = Path(tmp) / f"tile_{r}_{c}.tif"
            meta = profile | {"transform": src.window_transform(win)}
            with rasterio.open(out, "w", **meta) as dst:
                dst.write(src.read(window=win))
            tiles.append(out)
    means = []
    for t in tiles:
        with rasterio.open(t) as ds:
            assert ds.crs is not None and ds.count > 0 and ds.width == tile
            means.append(float(ds.read().mean()))
print(len(means), float(np.mean(means)))
"""


@dataclass
class Method:
    name: str
    command: list[str]
    seconds: list[float] = field(default_factory=list)
    rss: list[int] = field(default_factory=list)


def tree_rss(root: int) -> int:
    """Resident bytes of a process and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
            rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


def measure(command: list[str], *, env: dict[str, str]) -> tuple[float, int]:
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(proc.pid))
        time.sleep(0.02)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise SystemExit(f"{' '.join(command[:3])} failed:\n{err}")
    return seconds, peak


def scenes(size: int) -> tuple[Path, Path]:
    """Compressed (DEFLATE COG) and uncompressed copies, generated once."""
    import rasterio.shutil

    from satdask.io.sample import write_sample

    CACHE.mkdir(parents=True, exist_ok=True)
    deflate = CACHE / f"sample-{size}-deflate.tif"
    raw = CACHE / f"sample-{size}-raw.tif"
    if not deflate.exists():
        print(f"generating {deflate} ...", flush=True)
        write_sample(deflate, size=size, bands=4, dtype="uint16", seed=0)
    if not raw.exists():
        tmp = raw.with_suffix(".partial.tif")
        rasterio.shutil.copy(
            deflate, tmp, driver="GTiff", tiled=True, blockxsize=256, blockysize=256, BIGTIFF="YES"
        )
        os.replace(tmp, raw)
    return deflate, raw


def methods(scene: Path, registry: Path, out: Path, *, workers: int, full: bool) -> list[Method]:
    def infer(*extra: str) -> list[str]:
        return [*SATDASK, "infer", str(scene), "--model", str(registry), "--out", str(out), *extra]

    found = [
        Method(f"floor ({workers} threads)", [*PY, FLOOR, str(scene)]),
        Method("satdask threads", infer("--scheduler", "threads")),
        Method(
            f"satdask LocalCluster (1 worker, {workers} threads)", infer("--scheduler", "local")
        ),
        Method("xarray coarsen, threads", [*PY, COARSEN, str(scene)]),
        Method(
            f"xarray coarsen, LocalCluster ({workers} workers)", [*PY, COARSEN_LOCAL, str(scene)]
        ),
        Method("chunk == tile, threads", infer("--scheduler", "threads", "--tiles-per-chunk", "1")),
    ]
    if full:
        found += [
            Method(
                "chunk == tile, LocalCluster",
                infer("--scheduler", "local", "--tiles-per-chunk", "1"),
            ),
            Method("reference: tile files + loop", [*PY, REFERENCE, str(scene)]),
        ]
    return found


def run(size: int, *, repeats: int, workers: int, full: bool, compressed_only: bool) -> None:
    deflate, raw = scenes(size)
    pixels = size * size
    for scene in [deflate] if compressed_only else [deflate, raw]:
        with tempfile.TemporaryDirectory() as tmp:
            registry = Path(tmp) / "models"
            # every method gets `workers` threads or workers (dask reads DASK_NUM_WORKERS)
            env = os.environ | {
                "SATDASK_CACHE_DIR": str(Path(tmp) / "cache"),
                "DASK_NUM_WORKERS": str(workers),
                "BENCH_WORKERS": str(workers),
            }
            subprocess.run(
                [
                    *SATDASK,
                    "train",
                    str(scene),
                    "--registry",
                    str(registry),
                    "--scheduler",
                    "threads",
                ],
                check=True,
                capture_output=True,
                env=env,
            )
            warm = [*PY, FLOOR, str(scene)]
            subprocess.run(warm, check=True, capture_output=True, env=env)  # the page cache
            out = Path(tmp) / "run.zarr"
            todo = methods(scene, registry, out, workers=workers, full=full)
            for _ in range(repeats):
                for m in todo:
                    shutil.rmtree(out, ignore_errors=True)
                    seconds, peak = measure(m.command, env=env)
                    m.seconds.append(seconds)
                    m.rss.append(peak)
            report(scene, pixels, todo)


def report(scene: Path, pixels: int, todo: list[Method]) -> None:
    floor = statistics.median(todo[0].seconds)
    print(f"\n{scene.name}: {pixels / 1e6:.0f} Mpx x 4 bands, median of {len(todo[0].seconds)}")
    print(
        "| method | wall s | Mpx/s | x floor | peak RSS MiB |\n| --- | ---: | ---: | ---: | ---: |"
    )
    for m in todo:
        s = statistics.median(m.seconds)
        print(
            f"| {m.name} | {s:.2f} | {pixels / s / 1e6:.0f} | {s / floor:.2f} | "
            f"{max(m.rss) / 2**20:.0f} |"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=textwrap.dedent(__doc__ or ""))
    p.add_argument("--quick", action="store_true", help="4096 x 4096 only, compressed")
    p.add_argument("--sizes", type=int, nargs="+", default=[8192, 16384])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="threads (or workers) for every method: the scaling knob",
    )
    p.add_argument("--compressed-only", action="store_true")
    p.add_argument(
        "--no-slow",
        action="store_true",
        help="skip chunk==tile on a cluster and the reference loop",
    )
    args = p.parse_args()
    if args.quick:
        run(4096, repeats=args.repeats, workers=args.workers, full=True, compressed_only=True)
        return
    for size in args.sizes:
        run(
            size,
            repeats=args.repeats,
            workers=args.workers,
            full=not args.no_slow,
            compressed_only=args.compressed_only,
        )


if __name__ == "__main__":
    main()
