"""POST /infer with the built-in s2cloudless model: a tile's cloud fraction as JSON and
its cloud mask as a PNG, each exactly the batch run store's pixels.

A synthetic 13-band Sentinel-2 L1C scene (satdask.io.sample_s2) with a nodata collar,
the model imported into a real registry, a run with one tile per chunk (every tile
border a chunk border), and the app under Litestar's TestClient, as the other pixel
route tests do.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import zarr
from litestar import Litestar
from litestar.testing import TestClient
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile

import satdask
from satdask import ModelRegistry
from satdask.core import mercator
from satdask.io.sample_s2 import write_s2_scene
from service import Settings, create_app

Client = TestClient[Litestar]
TILES = [(0, 0), (1, 1), (2, 3)]  # the collar's corner, an inner tile, the partial corner
FILL = 255


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, np.ndarray]:
    base = tmp_path_factory.mktemp("clouds")
    root = base / "root"
    root.mkdir()
    scene = write_s2_scene(root / "l1c.tif", width=900, height=700, collar=20, seed=3)
    registry = base / "models"
    ModelRegistry(registry).import_s2cloudless(average_over=2, dilation_size=1)
    run = satdask.run_batch(
        scene, ModelRegistry(registry).load(), base / "run.zarr", tiles_per_chunk=1,
        scheduler="threads",
    )  # fmt: skip
    pixels = zarr.open_group(run.path, mode="r")["pixels/prediction"][...]
    return root, registry, np.asarray(pixels)


@pytest.fixture(scope="module")
def client(setup: tuple[Path, Path, np.ndarray]) -> Iterator[Client]:
    root, registry, _ = setup
    with TestClient(create_app(Settings(data_root=root, model=str(registry), edge="pad"))) as c:
        yield c


def _tile(pixels: np.ndarray, row: int, col: int, t: int = 256) -> np.ndarray:
    return pixels[row * t : (row + 1) * t, col * t : (col + 1) * t]


def test_json_gives_the_tiles_cloud_fraction(
    client: Client, setup: tuple[Path, Path, np.ndarray]
) -> None:
    pixels = setup[2]
    assert 0.05 < (pixels == 1).sum() / (pixels != FILL).sum() < 0.95, "clouds and clear sky"
    for row, col in TILES:
        r = client.post("/infer", json={"scene": "l1c.tif", "row": row, "col": col})
        assert r.status_code == 200, r.text
        body = r.json()
        tile = _tile(pixels, row, col)
        clear, cloud = int((tile == 0).sum()), int((tile == 1).sum())
        assert body["counts"] == {"clear": clear, "cloud": cloud}
        assert body["nodata"] == int((tile == FILL).sum())
        assert body["fractions"]["cloud"] == pytest.approx(cloud / (clear + cloud))
        assert (body["halo"], body["padding"]) == (3, "symmetric")
    assert client.post("/infer", json={"scene": "l1c.tif", "row": 0, "col": 0}).json()["nodata"]


def test_png_is_the_stores_mask(client: Client, setup: tuple[Path, Path, np.ndarray]) -> None:
    pixels = setup[2]
    model = ModelRegistry(setup[1]).load().model
    colours = {
        (*tuple(int(c.color.lstrip("#")[i : i + 2], 16) for i in (0, 2, 4)), 255): c.value
        for c in model.classes
        if c.color
    }
    colours[(0, 0, 0, 0)] = FILL
    for row, col in TILES:
        r = client.post(
            "/infer",
            json={"scene": "l1c.tif", "row": row, "col": col},
            headers={"Accept": "image/png"},
        )
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with MemoryFile(r.content) as memory, memory.open() as src:
                index, cmap = src.read(1), src.colormap(1)
        lut = np.full(256, 254, dtype=np.uint8)
        for i, rgba in cmap.items():
            lut[i] = colours.get(tuple(rgba), 254)
        assert np.array_equal(lut[index], _tile(pixels, row, col)), (row, col)


def test_the_mask_and_probability_are_map_layers(setup: tuple[Path, Path, np.ndarray]) -> None:
    """The run's folder as the runs root: its layers in the catalog, with the classes'
    colours, and a tile of the probability at the scene's native zoom."""
    root, registry, _ = setup
    settings = Settings(data_root=root, model=str(registry), runs_root=root.parent)
    with TestClient(create_app(settings)) as c:
        catalog = c.get("/tiles/catalog.json").json()
        run = next(r for r in catalog["runs"] if r["name"] == "run")
        layers = {layer["name"]: layer for layer in run["layers"]}
        assert set(layers) == {"prediction", "cloud_probability"}
        model = ModelRegistry(registry).load().model
        assert layers["prediction"]["legend"] == [
            {"value": m.value, "name": m.name, "color": m.color} for m in model.classes
        ]
        assert layers["cloud_probability"]["kind"] == "continuous"
        doc = c.get(layers["cloud_probability"]["tilejson"]).json()
        lon, lat = doc["center"][:2]
        tile = mercator.tile_of(*mercator.to_mercator(lon, lat), doc["maxzoom"])
        r = c.get(f"/tiles/runs/run/cloud_probability/{tile.z}/{tile.x}/{tile.y}.png")
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert r.headers["etag"]


def test_another_padding_is_refused(client: Client) -> None:
    r = client.post("/infer", json={"scene": "l1c.tif", "row": 1, "col": 1, "padding": "zeros"})
    assert 400 <= r.status_code < 500
    assert "pads symmetric as its reference does" in r.json()["detail"]
