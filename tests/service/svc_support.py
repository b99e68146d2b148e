"""Helpers shared by the service tests (imported by name: this folder is on sys.path)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote_from_bytes

import httpx
import numpy as np
import rasterio
from affine import Affine
from support import stop_process

# Shared CC0 scenes copied into the test data root when present
SHARED_SCENES = ("RGB.byte.tif", "shade.tif", "RGBA.uint16.tif")
API_KEY = "test-key-0123456789"
NOT_FOUND = {"status_code": 404, "detail": "no such scene under the data root"}
JSON = {"content-type": "application/json"}
TRANSFORM = Affine(10.0, 0.0, 400000.0, 0.0, -10.0, 6000000.0)


def write_tif(
    path: Path, data: np.ndarray, *, crs: str | None = "EPSG:32633", **extra: Any
) -> Path:
    bands, height, width = data.shape
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": bands,
        "dtype": data.dtype,
        "crs": crs,
        "transform": TRANSFORM,
        "nodata": 0,
        **extra,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def vrt_xml(source: Path) -> str:
    """A VRT that would read `source` (outside the root) if GDAL were allowed to open it."""
    return (
        '<VRTDataset rasterXSize="256" rasterYSize="256">'
        '<VRTRasterBand dataType="Byte" band="1"><SimpleSource>'
        f'<SourceFilename relativeToVRT="0">{source}</SourceFilename>'
        "<SourceBand>1</SourceBand></SimpleSource></VRTRasterBand></VRTDataset>"
    )


@dataclass(frozen=True)
class DataRoot:
    root: Path
    outside: Path  # a folder beside the root holding a perfectly valid GeoTIFF
    secret: Path  # outside / "secret.tif"
    has_rgb: bool


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "satdask.cli", "serve", *args]


def wait_until_ready(
    url: str, proc: subprocess.Popen[bytes], log: Path, *, headers: dict[str, str] | None = None
) -> None:
    """Poll GET {url}/ready until 200; fail with the server's log if it exits or takes > 60 s."""
    import time

    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"satdask serve exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/ready", headers=headers or {}).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"satdask serve not ready within 60 s:\n{log.read_text()}")
        time.sleep(0.1)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SATDASK_")}
    env.update(extra)
    return env


@dataclass(frozen=True)
class LiveServer:
    url: str
    log: Path
    process: subprocess.Popen[bytes]

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def client(self, *, key: str | None = API_KEY) -> httpx.Client:
        headers = {"X-API-Key": key} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


@contextmanager
def running_server(
    data_root: Path | str, registry: Path, log: Path, *, env: dict[str, str] | None = None
) -> Iterator[LiveServer]:
    """`satdask serve` (one worker, API_KEY) on 127.0.0.1; bounded wait for /ready, stopped
    at the end. `data_root` is a folder or a remote URL prefix; `env` adds variables. Its
    output goes to `log`."""
    port = free_port()
    cmd = serve_command(
        "--data-root", str(data_root), "--model", str(registry), "--port", str(port)
    )
    # the corpora serve scenes of other bands than the sample model's (test_model_check.py)
    variables = clean_env(
        SATDASK_API_KEY=API_KEY, SATDASK_ALLOW_MODEL_MISMATCH="true", **(env or {})
    )
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=variables, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, proc, log, headers={"X-API-Key": API_KEY})
        yield LiveServer(url=url, log=log, process=proc)
    finally:
        stop_process(proc)


def json_body(field: str, variant: str | bytes) -> bytes:
    """A POST /infer body naming `variant`: JSON-escaped text, or raw bytes as they are."""
    if isinstance(variant, str):
        text = json.dumps(variant)  # ASCII, with \uXXXX escapes (a lone surrogate too)
        encoded = text.encode()
    else:
        encoded = b'"' + variant + b'"'  # corpus bytes hold no quote, backslash or control
    rest = b"}" if field == "tile_path" else b', "row": 0, "col": 0}'
    return b'{"' + field.encode() + b'": ' + encoded + rest


def query_targets(variant: str | bytes) -> list[str]:
    """GET /scenes/info targets: every byte percent-encoded, and only what must be."""
    raw = variant if isinstance(variant, bytes) else variant.encode("utf-8", "surrogatepass")
    return [
        "/scenes/info?path=" + quote_from_bytes(raw, safe=""),
        "/scenes/info?path=" + quote_from_bytes(raw, safe="/:~@!$'()*,;"),
    ]
