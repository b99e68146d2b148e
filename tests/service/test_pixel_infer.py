"""POST /infer with a pixel model: class counts, a colour PNG and a GeoTIFF of one tile,
each exactly the batch run store's `pixels/prediction` over the tile's window.

A real ONNX network (satdask.io.sample_model) is imported into a real registry, run by
`run_batch` over a 700 x 900 px scene with one tile per chunk (every tile border is a
chunk border), and served by the app under Litestar's TestClient, as the other route
tests do (in process, so the test can see the model's onnxruntime session). The tiles
asked for: the upper-left one (the scene's nodata collar, padding at two edges), two
inner ones, and the partial one at the right and bottom edges (188 x 132 px).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import zarr
from affine import Affine
from litestar import Litestar
from litestar.testing import TestClient
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile
from svc_support import write_tif

import satdask
from satdask import ModelRegistry
from satdask.io.registry import ModelArtifact
from satdask.io.sample import write_sample
from satdask.io.sample_model import segmentation_model, window_classifier, write_model
from satdask.models import onnx as onnx_models
from service import Settings, create_app
from service.images import palette, png

Client = TestClient[Litestar]
TILES = [(0, 0), (1, 1), (1, 2), (2, 3)]  # collar corner, inner, inner, partial corner
FILL = 255


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scene.tif: 700 x 900 x 4 uint16, 256 px blocks; rgb.tif: 3 bands; small.tif."""
    base = tmp_path_factory.mktemp("pixel-infer")
    sample = write_sample(base / "sample.tif", size=1024, seed=3)
    root = base / "root"
    root.mkdir()
    with rasterio.open(sample) as src:
        data, profile = src.read(), src.profile
    profile.update(width=900, height=700, tiled=True, blockxsize=256, blockysize=256)
    with rasterio.open(root / "scene.tif", "w", **profile) as dst:
        dst.write(data[:, :700, :900])
    profile.update(width=400, height=300)
    with rasterio.open(root / "small.tif", "w", **profile) as dst:
        dst.write(data[:, 100:400, 150:550])
    rng = np.random.default_rng(0)
    write_tif(root / "rgb.tif", rng.integers(1, 255, (3, 512, 512), dtype=np.uint8))
    return root


def _import(base: Path, model_bytes: bytes, meta: dict[str, Any], name: str) -> Path:
    files = base / "files"
    files.mkdir(exist_ok=True)
    model_path, meta_path = write_model(files, model_bytes, meta, name=name)
    registry = base / name
    ModelRegistry(registry).import_onnx(model_path, metadata_path=meta_path)
    return registry


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry holding a 3-class segmentation network with a 3 px halo."""
    model_bytes, meta = segmentation_model(bands=4, classes=3, layers=3, kernel=3)
    return _import(tmp_path_factory.mktemp("seg"), model_bytes, meta, "seg")


@pytest.fixture(scope="module")
def artifact(registry: Path) -> ModelArtifact:
    return ModelRegistry(registry).load()


@pytest.fixture(scope="module")
def stores(
    root: Path, artifact: ModelArtifact, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """Run stores: reflect (the default) with a tile per chunk, zeros with the default
    chunking, and the small scene."""
    out = tmp_path_factory.mktemp("runs")
    scene = root / "scene.tif"
    runs = {
        "reflect": satdask.run_batch(
            scene, artifact, out / "reflect.zarr", scheduler="threads", tiles_per_chunk=1
        ),
        "zeros": satdask.run_batch(
            scene, artifact, out / "zeros.zarr", scheduler="threads", padding="zeros"
        ),
        "small": satdask.run_batch(
            root / "small.tif", artifact, out / "small.zarr", scheduler="threads", edge="pad"
        ),
    }
    return {name: run.path for name, run in runs.items()}


def _pixels(store: Path) -> np.ndarray:
    return zarr.open_group(store, mode="r")["pixels/prediction"][...]


def _tile(pixels: np.ndarray, row: int, col: int, t: int = 256) -> np.ndarray:
    return pixels[row * t : (row + 1) * t, col * t : (col + 1) * t]


@pytest.fixture(scope="module")
def client(root: Path, registry: Path) -> Iterator[Client]:
    """The service over the pixel model, with edge pad: partial edge tiles are tiles."""
    with TestClient(create_app(Settings(data_root=root, model=str(registry), edge="pad"))) as c:
        yield c


def _ask(client: Client, row: int, col: int, accept: str | None = None, **extra: Any) -> Any:
    headers = {"Accept": accept} if accept else {}
    body = {"scene": "scene.tif", "row": row, "col": col, **extra}
    return client.post("/infer", json=body, headers=headers)


@contextmanager
def _png(data: bytes) -> Iterator[Any]:
    """A PNG opened with rasterio (a picture: no georeferencing to warn about)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with MemoryFile(data) as memory, memory.open() as src:
            yield src


def _decode_png(data: bytes, artifact: ModelArtifact) -> np.ndarray:
    """A PNG back to class values through its colours alone (transparent: no class)."""
    with _png(data) as src:
        assert src.driver == "PNG" and src.count == 1  # a palette PNG
        index = src.read(1)
        cmap = src.colormap(1)
    by_colour = {(0, 0, 0, 0): FILL}
    for c in artifact.model.classes:
        assert c.color is not None
        rgb = tuple(int(c.color.lstrip("#")[i : i + 2], 16) for i in (0, 2, 4))
        by_colour[(*rgb, 255)] = c.value
    assert len(by_colour) == len(artifact.model.classes) + 1, "colours tell classes apart"
    lut = np.full(256, 254, dtype=np.uint8)  # 254: a colour of no class
    for i, rgba in cmap.items():
        lut[i] = by_colour.get(tuple(rgba), 254)
    return lut[index]


def test_json_counts_are_the_stores_pixels(
    client: Client, stores: dict[str, Path], artifact: ModelArtifact
) -> None:
    pixels = _pixels(stores["reflect"])
    assert pixels.shape == (700, 900)
    summary = satdask.open_run(stores["reflect"]).dataset()  # edge skip: 2 x 3 tiles
    names = {c.value: c.name for c in artifact.model.classes}
    for row, col in TILES:
        r = _ask(client, row, col)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("application/json")
        body = r.json()
        expected = _tile(pixels, row, col)
        values, counts = np.unique(expected, return_counts=True)
        found = dict(zip(values.tolist(), counts.tolist(), strict=True))
        assert body["counts"] == {name: found.get(v, 0) for v, name in names.items()}
        assert body["nodata"] == found.get(FILL, 0)
        assert (body["height"], body["width"]) == expected.shape
        assert (body["row"], body["col"], body["scene"]) == (row, col, "scene.tif")
        assert body["model_id"] == artifact.id and body["model_sha256"] == artifact.sha256
        assert (body["window"], body["halo"], body["padding"]) == (262, 3, "reflect")
        if row < 2 and col < 3:  # a whole tile: the run's tile grid has its class
            assert body["prediction"] == int(summary["prediction"].values[row, col])
    assert _ask(client, 2, 3).json()["bounds"] == [  # the partial tile's own pixels
        500000.0 + 768 * 10, 5000000.0 - 700 * 10, 500000.0 + 900 * 10, 5000000.0 - 512 * 10
    ]  # fmt: skip
    corner = _ask(client, 0, 0).json()
    assert 0 < corner["nodata"] < 256 * 256, "the sample's nodata collar is in the tile"
    assert sum(corner["counts"].values()) + corner["nodata"] == 256 * 256


def test_png_pixels_are_the_stores_pixels(
    client: Client, stores: dict[str, Path], artifact: ModelArtifact
) -> None:
    pixels = _pixels(stores["reflect"])
    seen: set[int] = set()
    for row, col in TILES:
        r = _ask(client, row, col, "image/png")
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "image/png"
        decoded = _decode_png(r.content, artifact)
        expected = _tile(pixels, row, col)
        assert decoded.shape == expected.shape
        assert np.array_equal(decoded, expected), (row, col)
        seen |= set(np.unique(expected).tolist())
    assert seen == {0, 1, 2, FILL}, "every class and no class were compared"


def test_geotiff_is_the_stores_pixels_on_the_scenes_grid(
    client: Client, stores: dict[str, Path], artifact: ModelArtifact, root: Path
) -> None:
    pixels = _pixels(stores["reflect"])
    with rasterio.open(root / "scene.tif") as src:
        crs, transform = src.crs, src.transform
    for row, col in TILES:
        r = _ask(client, row, col, "image/tiff")
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "image/tiff; application=geotiff"
        with MemoryFile(r.content) as memory, memory.open() as tif:
            assert tif.driver == "GTiff" and tif.count == 1 and tif.dtypes[0] == "uint8"
            assert tif.crs == crs
            assert tif.transform == transform * Affine.translation(col * 256, row * 256)
            assert tif.nodata == FILL
            got = tif.read(1)
            cmap = tif.colormap(1)
            tags, band = tif.tags(), tif.tags(1)
        assert np.array_equal(got, _tile(pixels, row, col)), (row, col)
        assert cmap[FILL][3] == 0
        for c in artifact.model.classes:
            assert c.color is not None
            assert "#{:02x}{:02x}{:02x}".format(*cmap[c.value][:3]) == c.color.lower()
        assert tags["satdask_model_id"] == artifact.id
        assert band["flag_values"] == "0 1 2"


def test_padding_names_the_runs_padding(client: Client, stores: dict[str, Path]) -> None:
    reflect, zeros = _pixels(stores["reflect"]), _pixels(stores["zeros"])
    for row, col in [(0, 3), (2, 3)]:  # at the scene's edges, where padding shows
        assert not np.array_equal(_tile(reflect, row, col), _tile(zeros, row, col))
        for padding, store in (("zeros", zeros), ("reflect", reflect)):
            r = _ask(client, row, col, "image/tiff", padding=padding)
            assert r.status_code == 200, r.text
            with MemoryFile(r.content) as memory, memory.open() as tif:
                assert np.array_equal(tif.read(1), _tile(store, row, col)), (padding, row, col)
        assert _ask(client, row, col, padding="zeros").json()["padding"] == "zeros"
    r = _ask(client, 1, 1, padding="wrap")
    assert r.status_code == 400, r.text
    assert r.json()["extra"] == [
        {"message": "Invalid enum value 'wrap'", "key": "padding", "source": "body"}
    ]


def test_tile_path_is_the_run_over_the_small_raster(
    client: Client, stores: dict[str, Path]
) -> None:
    expected = _pixels(stores["small"])
    r = client.post("/infer", json={"tile_path": "small.tif"}, headers={"Accept": "image/tiff"})
    assert r.status_code == 200, r.text
    with MemoryFile(r.content) as memory, memory.open() as tif:
        assert tif.shape == (300, 400)
        assert np.array_equal(tif.read(1), expected)
    body = client.post("/infer", json={"tile_path": "small.tif"}).json()
    assert sum(body["counts"].values()) + body["nodata"] == 300 * 400
    assert (body["height"], body["width"]) == (300, 400)


def test_accept_what_is_not_offered_is_406(client: Client) -> None:
    for accept in ("text/html", "image/webp", "application/xml"):
        r = _ask(client, 1, 1, accept)
        assert r.status_code == 406, r.text
        body = r.json()
        assert body["status_code"] == 406
        assert body["detail"].startswith(f"Accept: '{accept}' names no type")
    assert _ask(client, 1, 1, "*/*").headers["content-type"].startswith("application/json")
    assert _ask(client, 1, 1, "image/*").headers["content-type"] == "image/png"


def test_a_threshold_model_answers_json_only(make_client: Any, sample_registry: Path) -> None:
    client = make_client()
    model_id = ModelRegistry(sample_registry).load().id
    tile = {"scene": "sample.tif", "row": 0, "col": 0}
    for accept in ("image/png", "image/tiff"):
        r = client.post("/infer", json=tile, headers={"Accept": accept})
        assert r.status_code == 406, r.text
        assert r.json()["detail"] == (
            f"Accept: model {model_id} is a threshold model, which gives one class per tile "
            "and no per-pixel classes: it is answered as application/json only"
        )
    ok = client.post("/infer", json=tile, headers={"Accept": "application/json, image/png"})
    assert ok.status_code == 200 and set(ok.json()) >= {"prediction", "mean_intensity"}
    padded = client.post("/infer", json={**tile, "padding": "zeros"})  # a tile model has none
    assert padded.status_code == 200, padded.text
    assert {k: v for k, v in padded.json().items() if k != "latency_ms"} == {
        k: v for k, v in ok.json().items() if k != "latency_ms"
    }


def test_a_scene_of_other_bands_is_422_naming_model_and_scene(
    client: Client, artifact: ModelArtifact
) -> None:
    for accept in (None, "image/png"):
        r = client.post(
            "/infer",
            json={"scene": "rgb.tif", "row": 0, "col": 0},
            headers={"Accept": accept} if accept else {},
        )
        assert r.status_code == 422, r.text
        assert r.json()["detail"] == (
            f"rgb.tif: model {artifact.id} reads 4 bands, the scene has 3 bands; serve a "
            "model made for such scenes"
        )


def test_outside_the_grid_is_404(client: Client) -> None:
    r = _ask(client, 3, 0, "image/png")
    assert r.status_code == 404, r.text
    assert "outside the scene's grid of 3 rows x 4 cols" in r.json()["detail"]


def test_the_session_is_made_once_and_reused(client: Client) -> None:
    runtime = client.app.state.runtime
    tiles = runtime.pixels
    model = tiles.model
    session = model.session.session
    sessions = len(onnx_models._SESSIONS)
    for accept in (None, "image/png", "image/tiff", None):
        for row, col in TILES:
            assert _ask(client, row, col, accept).status_code == 200
    assert runtime.pixels is tiles and runtime.artifact.model is model
    assert model.session.session is session
    assert len(onnx_models._SESSIONS) == sessions
    assert onnx_models._SESSIONS[model.sha256].session is session


def test_a_window_classifier_answers_its_tiles_class(
    root: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    model_bytes, meta = window_classifier(bands=4, classes=2, window=64)
    registry = _import(tmp_path_factory.mktemp("window"), model_bytes, meta, "windows")
    artifact = ModelRegistry(registry).load()
    assert artifact.model.batch_size == 16  # a tile is one window: a short batch, padded
    out = tmp_path_factory.mktemp("window-run") / "run.zarr"
    run = satdask.run_batch(root / "scene.tif", artifact, out, scheduler="threads")
    grid = run.dataset()["prediction"].values
    assert grid.shape == (700 // 64, 900 // 64) and set(np.unique(grid)) >= {0, 1}
    settings = Settings(data_root=root, model=str(registry), tile_size=64)
    with TestClient(create_app(settings)) as client:
        for row, col in [(0, 0), (3, 5), (9, 13), (6, 2)]:
            r = client.post("/infer", json={"scene": "scene.tif", "row": row, "col": col})
            assert r.status_code == 200, r.text
            assert r.json()["prediction"] == int(grid[row, col]), (row, col)
            assert r.json()["counts"] == {}
        r = client.post(
            "/infer",
            json={"scene": "scene.tif", "row": 1, "col": 1},
            headers={"Accept": "image/png"},
        )
        assert r.status_code == 406, r.text
        assert "is a window classifier" in r.json()["detail"]
    other = Settings(data_root=root, model=str(registry), tile_size=128)
    with TestClient(create_app(other)) as client:
        r = client.post("/infer", json={"scene": "scene.tif", "row": 0, "col": 0})
        assert r.status_code == 422, r.text
        assert "serve it with --tile-size 64" in r.json()["detail"]


def test_class_values_past_a_byte_make_an_rgba_png(artifact: ModelArtifact) -> None:
    """A uint16 class table cannot be a palette: the PNG is RGBA from the same colours."""
    from satdask.core.pixels import ClassTable
    from satdask.models.base import ModelClass

    classes = (ModelClass(3, "a", "#102030"), ModelClass(300, "b", None))
    table = ClassTable.of(classes)
    assert table.dtype == np.uint16
    values = np.array([[3, 300], [table.fill, 3]], dtype=np.uint16)
    colours = palette(table, classes)
    with _png(png(values, table, colours)) as src:
        rgba = src.read()
    assert rgba.shape == (4, 2, 2)
    assert rgba[:, 0, 0].tolist() == [0x10, 0x20, 0x30, 255]
    assert rgba[:, 0, 1].tolist() == list(colours[300])
    assert rgba[3, 1, 0] == 0  # no class: transparent


def test_the_schema_documents_the_images(client: Client) -> None:
    schema = client.get("/schema/openapi.json").json()
    responses = schema["paths"]["/infer"]["post"]["responses"]
    assert set(responses["200"]["content"]) == {"application/json", "image/png", "image/tiff"}
    assert "406" in responses


@pytest.mark.parametrize("k", [3, 8, 9, 40])
def test_class_counts_by_comparison_or_bincount(k: int) -> None:
    from satdask.core.pixels import ClassTable, class_counts
    from satdask.models.base import ModelClass

    table = ClassTable.of(tuple(ModelClass(2 * i + 1, f"c{i}") for i in range(k)))
    rng = np.random.default_rng(k)
    classes = rng.choice([*table.values.tolist(), table.fill], size=(256, 200)).astype(table.dtype)
    values, counts = np.unique(classes, return_counts=True)
    found = dict(zip(values.tolist(), counts.tolist(), strict=True))
    got = class_counts(classes, table=table, tile_size=256)[:, 0, 0]
    assert got.tolist() == [found.get(v, 0) for v in table.values.tolist()]
    assert got.sum() + found.get(table.fill, 0) == classes.size
