"""Helpers shared by the test folders: real GeoTIFFs, run-store arrays, test servers.

A plain module, not a conftest: `from conftest import ...` resolves to whichever
folder's conftest pytest imported last.
"""

from __future__ import annotations

import math
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property, partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dask
import numpy as np
import rasterio
from affine import Affine
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

SCENES_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "scenes"
UTM_10M = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 5000000.0)


def write_geotiff(
    path: Path,
    data: np.ndarray,
    *,
    crs: str | None = "EPSG:32633",
    transform: Affine = UTM_10M,
    nodata: float | None = None,
    blocksize: int = 256,
    compress: str | None = "deflate",
    interleave: str | None = None,
    tags: dict[str, str] | None = None,
) -> Path:
    """A real tiled GeoTIFF of `data` (band, y, x)."""
    bands, height, width = data.shape
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": bands,
        "dtype": data.dtype,
        "crs": crs,
        "transform": transform,
        "nodata": nodata,
    }
    if height >= blocksize and width >= blocksize:
        profile.update(tiled=True, blockxsize=blocksize, blockysize=blocksize)
    if compress:
        profile["compress"] = compress
    if interleave:
        profile["interleave"] = interleave
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if tags:
            dst.update_tags(**tags)
    return path


class CountingScheduler:
    """A dask scheduler that counts how often it is asked to compute."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, dsk, keys, **kwargs):
        self.calls += 1
        return dask.get(dsk, keys, **kwargs)


def corrupt_block(path: Path, *, x: int, y: int) -> None:
    """Overwrite the start of one compressed block so DEFLATE cannot decode it."""
    with rasterio.open(path) as src:
        offset = int(src.get_tag_item(f"BLOCK_OFFSET_{x}_{y}", "TIFF", bidx=1))
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(b"\xff" * 16)


def store_arrays(store: Any) -> dict[str, np.ndarray]:
    """The per-tile arrays of a run store (a path, URL or fsspec mapper)."""
    import xarray as xr

    from satdask.core.schema import VARIABLES

    ds = xr.open_zarr(store, decode_coords="all")
    return {name: ds[name].values for name in VARIABLES}


def assert_same_arrays(a: Any, b: Any) -> None:
    """Bit for bit (NaN included), every per-tile array of two run stores."""
    x, y = store_arrays(a), store_arrays(b)
    for name in x:
        assert x[name].dtype == y[name].dtype, name
        assert x[name].shape == y[name].shape, name
        assert x[name].tobytes() == y[name].tobytes(), name


class RangeHandler(SimpleHTTPRequestHandler):
    """Static files with HTTP Range support (what GDAL's /vsicurl/ needs), counting bytes."""

    bytes_sent = 0

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def send_head(self):  # type: ignore[no-untyped-def]
        path = Path(self.translate_path(self.path))
        header = self.headers.get("Range")
        if not path.is_file() or not header or not header.startswith("bytes="):
            return super().send_head()
        size = path.stat().st_size
        start_text, _, end_text = header[len("bytes=") :].partition("-")
        start = int(start_text)
        end = min(int(end_text) if end_text else size - 1, size - 1)
        f = open(path, "rb")  # noqa: SIM115  (closed by copyfile's caller)
        f.seek(start)
        self.send_response(206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self._remaining = end - start + 1
        return f

    def copyfile(self, source, outputfile) -> None:  # type: ignore[no-untyped-def]
        remaining = getattr(self, "_remaining", None)
        data = source.read() if remaining is None else source.read(remaining)
        type(self).bytes_sent += len(data)
        outputfile.write(data)


@dataclass(frozen=True)
class S3:
    """A real S3-compatible server (moto) on 127.0.0.1 and a bucket on it."""

    env: dict[str, str]  # the standard AWS variables, endpoint included; no GDAL names
    fs: Any  # s3fs.S3FileSystem
    bucket: str


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Terminate, and kill what does not go within 15 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


class BadPaths:
    """Inputs that are not scenes, made on first use in `self.tmp` (bad-input tests)."""

    tmp: Path

    @cached_property
    def missing(self) -> Path:
        return self.tmp / "missing.tif"

    @cached_property
    def directory(self) -> Path:
        path = self.tmp / "folder.tif"
        path.mkdir(exist_ok=True)
        return path

    @cached_property
    def text_tif(self) -> Path:
        path = self.tmp / "notes.tif"
        path.write_text("this is not a GeoTIFF\n")
        return path

    @cached_property
    def plain_file(self) -> Path:
        path = self.tmp / "registry-file"
        path.write_text("not a directory\n")
        return path


@contextmanager
def serving(handler: type[SimpleHTTPRequestHandler], directory: Path) -> Iterator[str]:
    """`directory` served on 127.0.0.1 by `handler` in a thread; yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def scene_arrays(
    *, tiles: st.SearchStrategy[int], max_tiles: int, max_int: int, floats: list[float]
) -> st.SearchStrategy[tuple[np.ndarray, int, float | None, str]]:
    """(data, tile size, nodata, edge): uint16 with nodata, or float32 with NaN and inf."""

    @st.composite
    def draw_scene(draw: st.DrawFn) -> tuple[np.ndarray, int, float | None, str]:
        t = draw(tiles)
        shape = (
            draw(st.integers(1, 3)),
            draw(st.integers(1, max_tiles)) * t + draw(st.integers(0, t - 1)),
            draw(st.integers(1, max_tiles)) * t + draw(st.integers(0, t - 1)),
        )
        if draw(st.booleans()):
            data = draw(hnp.arrays(np.uint16, shape, elements=st.integers(0, max_int)))
            nodata: float | None = draw(st.sampled_from([None, 0.0]))
        else:
            data = draw(hnp.arrays(np.float32, shape, elements=st.sampled_from(floats)))
            nodata = draw(st.sampled_from([None, 0.0, math.nan]))
        return data, t, nodata, draw(st.sampled_from(["skip", "pad"]))

    return draw_scene()
