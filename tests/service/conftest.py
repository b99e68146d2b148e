"""Fixtures for the HTTP service: a data root full of good, bad and hostile files."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from litestar import Litestar
from litestar.testing import TestClient
from support import SCENES_DIR
from svc_support import (
    SHARED_SCENES,
    DataRoot,
    LiveServer,
    running_server,
    vrt_xml,
    write_tif,
)

from service import Settings, create_app


@pytest.fixture(scope="session")
def data(tmp_path_factory: pytest.TempPathFactory, sample_tif: Path) -> DataRoot:
    base = tmp_path_factory.mktemp("service")
    root, outside = base / "root", base / "outside"
    root.mkdir()
    outside.mkdir()
    rng = np.random.default_rng(0)
    secret = write_tif(outside / "secret.tif", rng.integers(1, 255, (1, 256, 256), dtype=np.uint8))

    shutil.copy(sample_tif, root / "sample.tif")
    has_rgb = (SCENES_DIR / "RGB.byte.tif").exists()
    for name in SHARED_SCENES:
        if (SCENES_DIR / name).exists():
            shutil.copy(SCENES_DIR / name, root / name)
    (root / "sub").mkdir()
    write_tif(root / "sub" / "tile.tif", rng.integers(1, 60000, (4, 256, 256), dtype=np.uint16))
    write_tif(root / "wide.tif", rng.integers(1, 255, (2, 100, 300), dtype=np.uint8))
    write_tif(root / "small.tif", rng.integers(1, 255, (1, 100, 100), dtype=np.uint8))
    write_tif(root / "nocrs.tif", rng.integers(1, 255, (1, 256, 256), dtype=np.uint8), crs=None)
    write_tif(
        root / "big.tif",
        np.ones((1, 2048, 2048), dtype=np.uint8),
        tiled=True,
        blockxsize=256,
        blockysize=256,
        compress="deflate",
    )
    (root / "notraster.tif").write_text("this is not a raster\n")
    (root / "empty.tif").write_bytes(b"")
    (root / "disguised.tif").write_text(vrt_xml(secret))
    (root / "evil.vrt").write_text(vrt_xml(secret))
    shutil.copy(root / "sub" / "tile.tif", root / ".hidden.tif")
    shutil.copy(root / "sub" / "tile.tif", root / "percent%2e.tif")
    (root / "link-inside.tif").symlink_to(root / "sub" / "tile.tif")
    (root / "escape.tif").symlink_to(secret)
    (root / "linkdir").symlink_to(outside, target_is_directory=True)
    # more ways out for the traversal corpus (traversal.py)
    (root / "chain.tif").symlink_to("escape.tif")
    (root / "sub" / "up.tif").symlink_to(Path("..", "..", outside.name, secret.name))
    (root / "rootfs").symlink_to("/", target_is_directory=True)
    (root / "passwd.tif").symlink_to("/etc/passwd")
    (root / "loop.tif").symlink_to("loop.tif")
    (root / "dir.tif").mkdir()

    # A COG cut short: it opens (header and IFD first) but its last tiles are gone.
    from satdask.io.sample import write_sample

    whole = write_sample(base / "whole.tif", size=512, bands=1, dtype="uint8")
    blob = whole.read_bytes()
    (root / "truncated.tif").write_bytes(blob[: int(len(blob) * 0.7)])
    return DataRoot(root=root, outside=outside, secret=secret, has_rgb=has_rgb)


@pytest.fixture
def make_client(
    data: DataRoot, sample_registry: Path
) -> Iterator[Callable[..., TestClient[Litestar]]]:
    """Factory: make_client(**settings) -> a started TestClient (lifespan run)."""
    clients: list[TestClient[Litestar]] = []

    def make(**overrides: Any) -> TestClient[Litestar]:
        # The corpus holds scenes of every band count and dtype, all served with the sample
        # model (4 bands of uint16): the model check is tested in test_model_check.py.
        options: dict[str, Any] = {
            "data_root": data.root,
            "model": str(sample_registry),
            "allow_model_mismatch": True,
        }
        options.update(overrides)
        client = TestClient(create_app(Settings(**options)))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in reversed(clients):
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient[Litestar]]) -> TestClient[Litestar]:
    return make_client()


# ---------------------------------------------------------------------------
# A real `satdask serve` process
# ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def live_server(
    data: DataRoot, sample_registry: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """`satdask serve` on 127.0.0.1 with an API key, shared by the session."""
    log = tmp_path_factory.mktemp("server") / "server.log"
    with running_server(data.root, sample_registry, log) as server:
        yield server
