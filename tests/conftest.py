"""Shared fixtures: real GeoTIFFs written with rasterio, and the shared CC0 scenes."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support import S3, SCENES_DIR, RangeHandler, serving, stop_process, write_geotiff


@pytest.fixture(scope="session", autouse=True)
def private_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Keep the hash cache of test runs (and their subprocesses) out of the user's home."""
    with pytest.MonkeyPatch.context() as mp:
        cache = tmp_path_factory.mktemp("cache")
        mp.setenv("SATDASK_CACHE_DIR", str(cache))
        yield cache


@pytest.fixture
def geotiff(tmp_path: Path) -> Callable[..., Path]:
    """Factory: geotiff(data, name="scene.tif", **options) -> path."""

    def make(data: np.ndarray, name: str = "scene.tif", **options: Any) -> Path:
        return write_geotiff(tmp_path / name, data, **options)

    return make


@pytest.fixture
def real_scene() -> Callable[[str], Path]:
    """Path of a shared CC0 scene; skips (with the reason) where shared/ is absent."""

    def get(name: str) -> Path:
        path = SCENES_DIR / name
        if not path.exists():
            pytest.skip(f"shared scene {name} not found under {SCENES_DIR}")
        return path

    return get


@pytest.fixture(scope="session")
def sample_tif(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1024 x 1024 x 4 uint16 sample COG: 16 tiles with bright and dark regions."""
    from satdask.io.sample import write_sample

    return write_sample(tmp_path_factory.mktemp("sample") / "sample.tif", size=1024, bands=4)


@pytest.fixture(scope="session")
def sample_registry(tmp_path_factory: pytest.TempPathFactory, sample_tif: Path) -> Path:
    """A registry holding one model trained on the sample scene."""
    from satdask import ModelRegistry, train

    directory = tmp_path_factory.mktemp("registry")
    ModelRegistry(directory).save(train([sample_tif], scheduler="threads"))
    return directory


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A loopback HTTP server with Range support: yields (base URL, served folder)."""
    root = tmp_path / "www"
    root.mkdir()
    with serving(RangeHandler, root) as base:
        yield base, root


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3]:
    s3fs = pytest.importorskip("s3fs", reason="the s3 extra (s3fs) is part of .[dev]")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(endpoint, timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        env = {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint,
        }
        fs = s3fs.S3FileSystem(
            key="testing", secret="testing", client_kwargs={"endpoint_url": endpoint}
        )
        fs.mkdir("satdask-test")
        yield S3(env, fs, "satdask-test")
    finally:
        stop_process(proc)
