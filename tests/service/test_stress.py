"""The service under stress, over loopback against a real `satdask serve` (one worker).

- Load: 20,000 `POST /infer` at concurrency 64 over keep-alive connections
  (service/loadgen.py). Every request's status is known in advance and checked; no 5xx,
  no connection lost, the server's own counters agree, and its peak RSS (VmHWM) stays
  under a stated bound.
- Traversal: every variant of the corpus (traversal.py) through every route that takes a
  path, refused with the answer of a missing file (or 400 when malformed), no server path
  in any body. Proof that nothing outside the root was opened: the server's
  `satdask_scene_opens_total` does not move, and inotify on the folder outside the root
  (whose `secret.tif` the symlinks and VRTs in the corpus aim at) sees no open or read.

The server is this module's own, so its counters and peak memory belong to these tests.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import random
import re
import shutil
import struct
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from svc_support import (
    API_KEY,
    DataRoot,
    LiveServer,
    running_server,
    vrt_xml,
)
from traversal import corpus, send_refused

from service.loadgen import LoadResult, post_json, run_load

REQUESTS = 20_000
CONCURRENCY = 64
# Peak RSS of the server process (VmHWM) over its whole life: start-up, this module's
# tests and 20,000 requests. Measured at 210-212 MB (Linux x86-64, Python 3.11, the GDAL
# of the rasterio wheels): 150 MB once ready (numpy, xarray, rasterio, dask, Litestar),
# about 207 MB once every scene of the data root is open and its tiles decoded into
# GDAL's block cache, and 3-5 MB more during the 20,000 requests. The bound leaves room
# for other library builds; growth with the number of requests is bounded separately,
# by GROWTH_BOUND_MB: a leak of 2 KB per request would cross it.
PEAK_RSS_BOUND_MB = 260
GROWTH_BOUND_MB = 40


@pytest.fixture(scope="module")
def server(
    data: DataRoot, sample_registry: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    log = tmp_path_factory.mktemp("stress") / "server.log"
    with running_server(data.root, sample_registry, log) as live:
        yield live


def proc_status_kb(pid: int, key: str) -> int:
    """A `kB` line of /proc/<pid>/status: VmRSS now, VmHWM its peak so far."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def child_pids(pid: int) -> list[int]:
    return [
        int(child)
        for task in Path(f"/proc/{pid}/task").iterdir()
        for child in (task / "children").read_text().split()
    ]


def metric(text: str, name: str, **labels: str) -> float:
    """One sample of a Prometheus text exposition (0 when absent)."""
    for line in text.splitlines():
        series, _, value = line.rpartition(" ")
        if series.split("{")[0] != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', series))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(value)
    return 0.0


# ---------------------------------------------------------------------------
# Load
# ---------------------------------------------------------------------------


def request_mix(http: httpx.Client, data: DataRoot) -> list[tuple[bytes, int]]:
    """REQUESTS (request bytes, status it deserves), drawn from a fixed seed: nine in ten
    are tiles of real scenes, the rest every kind of client error."""
    key = {"X-API-Key": API_KEY}

    def infer(body: object) -> bytes:
        return post_json("/infer", json.dumps(body).encode(), headers=key)

    # every tile of every listed scene that answers 200 alone (truncated.tif has tiles
    # that cannot be decoded, nocrs.tif and the like no tiles at all)
    good: list[bytes] = [infer({"tile_path": "sub/tile.tif"}), infer({"tile_path": "small.tif"})]
    for scene in http.get("/scenes").json()["scenes"]:
        info = http.get("/scenes/info", params={"path": scene})
        if info.status_code != 200:
            continue
        grid = info.json()["grid"]
        for r in range(grid["rows"]):
            for c in range(grid["cols"]):
                tile = {"scene": scene, "row": r, "col": c}
                if http.post("/infer", json=tile).status_code == 200:
                    good.append(infer(tile))
    assert len(good) >= 80  # sample.tif has 16 tiles, big.tif 64 (without the shared scenes)
    bad = [
        (infer({"scene": "sample.tif", "row": 4, "col": 0}), 404),  # outside the grid
        (infer({"scene": "missing.tif", "row": 0, "col": 0}), 404),
        (infer({"scene": f"../{data.outside.name}/{data.secret.name}", "row": 0, "col": 0}), 404),
        (infer({"tile_path": "escape.tif"}), 404),
        (infer({"scene": "notraster.tif", "row": 0, "col": 0}), 422),
        (infer({"tile_path": "truncated.tif"}), 422),
        (infer({"scene": "sample.tif", "row": -1, "col": 0}), 400),
        (post_json("/infer", b'{"scene": "sample.tif", "row": 0', headers=key), 400),
        (post_json("/infer", b'{"scene": "\xc0\xae.tif", "row": 0, "col": 0}', headers=key), 400),
        (post_json("/infer", b"{}"), 401),  # no API key
    ]
    rng = random.Random(0)
    mix = []
    for _ in range(REQUESTS):
        if rng.random() < 0.9:
            mix.append((rng.choice(good), 200))
        else:
            mix.append(rng.choice(bad))
    return mix


async def load_with_rss(port: int, pid: int, requests: list[bytes]) -> tuple[LoadResult, int]:
    """The load, with the server's VmRSS sampled meanwhile: (result, largest sample in kB)."""
    samples = [proc_status_kb(pid, "VmRSS")]
    task = asyncio.create_task(run_load(port, requests, concurrency=CONCURRENCY, timeout=60))
    while not task.done():
        samples.append(proc_status_kb(pid, "VmRSS"))
        await asyncio.wait([task], timeout=0.25)
    return task.result(), max(samples)


@pytest.mark.slow
def test_20000_requests_at_concurrency_64(server: LiveServer, data: DataRoot) -> None:
    pid = server.process.pid
    assert child_pids(pid) == []  # one worker, in this process: its VmHWM is the server's
    rss_ready = proc_status_kb(pid, "VmRSS")
    with server.client() as http:
        mix = request_mix(http, data)
        before = http.get("/metrics").text
    rss_start = proc_status_kb(pid, "VmRSS")

    result, rss_sampled = asyncio.run(load_with_rss(server.port, pid, [r for r, _ in mix]))
    peak_mb = proc_status_kb(pid, "VmHWM") / 1024

    counts = result.counts
    print(
        f"\n{len(result.statuses)} requests at concurrency {CONCURRENCY} in "
        f"{result.elapsed:.1f} s ({len(result.statuses) / result.elapsed:.0f} req/s), "
        f"{result.connections} connections, statuses {dict(sorted(counts.items()))}; "
        f"server RSS {rss_ready / 1024:.0f} MB ready, {rss_start / 1024:.0f} MB with every "
        f"scene open, {rss_sampled / 1024:.0f} MB largest "
        f"sample, peak (VmHWM) {peak_mb:.0f} MB; bounds {PEAK_RSS_BOUND_MB} MB peak, "
        f"{GROWTH_BOUND_MB} MB growth"
    )
    # every request answered, on the connections opened at the start (none dropped)
    assert result.errors == []
    assert result.connections == CONCURRENCY
    assert result.answered == REQUESTS == len(result.statuses)
    # each answer is the one its request deserves: so no 5xx either
    assert result.statuses == [want for _, want in mix]
    assert not [s for s in counts if s >= 500]
    assert server.process.poll() is None
    with server.client() as http:
        assert http.get("/ready").status_code == 200
        after = http.get("/metrics").text
    # the server counted what the client saw
    for status, n in counts.items():
        route = {"route": "/infer", "method": "POST", "status": str(status)}
        served = metric(after, "satdask_http_requests_total", **route)
        assert served - metric(before, "satdask_http_requests_total", **route) == n, status
    assert peak_mb < PEAK_RSS_BOUND_MB
    assert peak_mb - rss_start / 1024 < GROWTH_BOUND_MB


# ---------------------------------------------------------------------------
# Traversal
# ---------------------------------------------------------------------------

IN_ACCESS, IN_OPEN = 0x1, 0x20
_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (then name)


class OpenWatch:
    """inotify on a folder: the names of its files (or "" for the folder itself) that any
    process opened or read since the last call to `events`."""

    def __init__(self, folder: Path) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        if libc.inotify_add_watch(self.fd, os.fsencode(folder), IN_ACCESS | IN_OPEN) < 0:
            os.close(self.fd)
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {folder}")

    def events(self) -> list[str]:
        names: list[str] = []
        while True:
            try:
                buffer = os.read(self.fd, 65536)
            except BlockingIOError:
                return names
            offset = 0
            while offset < len(buffer):
                _, _, _, length = _EVENT.unpack_from(buffer, offset)
                start = offset + _EVENT.size
                names.append(buffer[start : start + length].rstrip(b"\0").decode())
                offset = start + length

    def close(self) -> None:
        os.close(self.fd)


def opens(http: httpx.Client) -> dict[str, float]:
    text = http.get("/metrics").text
    outcomes = ("ok", "empty", "not_tiff", "unreadable")
    return {o: metric(text, "satdask_scene_opens_total", outcome=o) for o in outcomes}


def test_traversal_corpus_opens_nothing_outside_the_root(
    server: LiveServer, data: DataRoot
) -> None:
    variants = corpus(data)
    assert len(variants) >= 50
    # files this server has never seen, for the control step (removed at the end)
    control = data.root / "control"
    control.mkdir()
    shutil.copy(data.root / "sub" / "tile.tif", control / "fresh.tif")
    (control / "disguised.tif").write_text(vrt_xml(data.secret))
    watch = OpenWatch(data.outside)
    try:
        # control: the watch sees an open, and the counter counts one inside the root
        with open(data.secret, "rb") as f:
            f.read(1)
        assert data.secret.name in watch.events()
        with server.client() as http:
            start = opens(http)
            info = http.get("/scenes/info", params={"path": "control/fresh.tif"})
            assert info.status_code == 200
            # a VRT named .tif that points at the secret: sniffed, refused, never parsed
            vrt = http.post("/infer", json={"tile_path": "control/disguised.tif"})
            assert vrt.status_code == 422
            before = opens(http)
            assert before == {**start, "ok": start["ok"] + 1, "not_tiff": start["not_tiff"] + 1}

            leaks = (str(data.root.parent), "/etc", "/proc", "/dev", "/vsi")
            answers = send_refused(http, variants, leaks=leaks)
            assert opens(http) == before  # nothing was opened for any of them
        assert watch.events() == []  # nothing outside the root was opened or read
    finally:
        watch.close()
        shutil.rmtree(control)
    assert answers == 4 * len(variants)
    assert Counter(type(v) for v in variants)[bytes] >= 5
