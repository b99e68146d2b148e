"""Map tiles: a UTM scene and real run stores served as web-mercator PNGs, TileJSON, catalog.

A 1024 px sample COG (EPSG:32633, 10 m, a nodata collar) is the scene. A real ONNX
segmentation network (satdask.io.sample_model) runs over it with `run_batch` into
`runs/run.zarr`, and a threshold model into `runs/grid/tiles.zarr`, so the pixel layer
and the tile grid are drawn from stores satdask wrote. The service runs in process under
Litestar's TestClient, as the other route tests do. References are computed here with
`rasterio.warp.reproject` from the whole scene or the whole store.
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import zarr
from affine import Affine
from litestar import Litestar
from litestar.testing import TestClient
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile
from rasterio.warp import reproject, transform
from svc_support import write_tif

import satdask
from satdask import ModelRegistry
from satdask.core import mercator
from satdask.io.registry import ModelArtifact
from satdask.io.sample import write_sample
from satdask.io.sample_model import segmentation_model, write_model
from satdask.io.store import decode_attrs, encode_attrs
from service import Settings, create_app
from service.tile_images import RAMP

Client = TestClient[Litestar]
WEB = CRS.from_epsg(3857)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiles")


@pytest.fixture(scope="module")
def root(base: Path) -> Path:
    """scene.tif (the sample, 4 x uint16) and ovr.tif, whose overviews differ from its
    full resolution on purpose: 50 in the overviews, 200 at full resolution."""
    root = base / "root"
    (root / "sub").mkdir(parents=True)
    write_sample(root / "scene.tif", size=1024, seed=3)
    shutil.copy(root / "scene.tif", root / "sub" / "copy.tif")
    data = np.full((1, 2048, 2048), 50, dtype=np.uint8)
    path = write_tif(
        root / "ovr.tif", data, tiled=True, blockxsize=256, blockysize=256,
        transform=Affine(10, 0, 500000, 0, -10, 5000000), crs="EPSG:32633",
    )  # fmt: skip
    with rasterio.open(path, "r+") as dst:
        dst.build_overviews([2, 4, 8, 16], Resampling.nearest)
    with rasterio.open(path, "r+") as dst:
        dst.write(np.full((1, 2048, 2048), 200, dtype=np.uint8))  # overviews keep 50
    return root


@pytest.fixture(scope="module")
def registry(base: Path) -> Path:
    """A registry holding a 3-class segmentation network (classes with colours)."""
    model_bytes, meta = segmentation_model(bands=4, classes=3, layers=3, kernel=3)
    (base / "files").mkdir()
    model_path, meta_path = write_model(base / "files", model_bytes, meta, name="seg")
    ModelRegistry(base / "seg").import_onnx(model_path, metadata_path=meta_path)
    return base / "seg"


@pytest.fixture(scope="module")
def artifact(registry: Path) -> ModelArtifact:
    return ModelRegistry(registry).load()


@pytest.fixture(scope="module")
def runs(
    base: Path, root: Path, artifact: ModelArtifact, sample_registry: Path, sample_tif: Path
) -> Path:
    """run.zarr (pixel model), grid/tiles.zarr (threshold model), unfinished.zarr, a
    store with a float layer (prob.zarr), and escape.zarr, a symlink out of the root."""
    runs = base / "runs"
    (runs / "grid").mkdir(parents=True)
    satdask.run_batch(root / "scene.tif", artifact, runs / "run.zarr", scheduler="threads")
    satdask.run_batch(
        root / "scene.tif", artifact, runs / "scored.zarr", scheduler="threads", keep_scores=True
    )
    threshold = ModelRegistry(sample_registry).load()
    satdask.run_batch(sample_tif, threshold, runs / "grid" / "tiles.zarr", scheduler="threads")
    shutil.copytree(runs / "run.zarr", runs / "unfinished.zarr")
    group = zarr.open_group(runs / "unfinished.zarr", mode="r+")
    attrs = decode_attrs(group.attrs["satdask"])
    assert attrs is not None
    group.attrs["satdask"] = encode_attrs({**attrs, "complete": False})
    _consolidate(runs / "unfinished.zarr")
    shutil.copytree(runs / "run.zarr", runs / "prob.zarr")
    pixels = zarr.open_group(runs / "prob.zarr" / "pixels", mode="r+")
    shape = pixels["prediction"].shape
    ramp = np.broadcast_to(np.linspace(0, 1, shape[1], dtype=np.float32), shape)
    pixels.create_array("probability", data=ramp.copy(), dimension_names=["y", "x"])
    _consolidate(runs / "prob.zarr")
    outside = base / "outside"
    shutil.copytree(runs / "run.zarr", outside / "secret.zarr")
    (runs / "escape.zarr").symlink_to(outside / "secret.zarr", target_is_directory=True)
    return runs


def _consolidate(store: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", zarr.errors.ZarrUserWarning)  # as io.store does
        zarr.consolidate_metadata(store)


@pytest.fixture(scope="module")
def client(root: Path, runs: Path, registry: Path) -> Iterator[Client]:
    settings = Settings(data_root=root, model=str(registry), runs_root=runs)
    with TestClient(create_app(settings)) as c:
        yield c


def _rgba(data: bytes) -> np.ndarray:
    """A PNG's (4, y, x) RGBA."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # a picture, not a map
        with MemoryFile(data) as memory, memory.open() as src:
            assert src.count == 4
            return src.read()


def _tile_at(lon: float, lat: float, z: int) -> mercator.Tile:
    return mercator.tile_of(*mercator.to_mercator(lon, lat), z)


def _centre_lonlat(path: Path) -> tuple[float, float]:
    with rasterio.open(path) as src:
        b = src.bounds
        xs, ys = transform(src.crs, "EPSG:4326", [(b.left + b.right) / 2], [(b.top + b.bottom) / 2])
    return xs[0], ys[0]


def _tile_transform(tile: mercator.Tile) -> Affine:
    b = mercator.tile_bounds(*tile)
    return Affine((b.east - b.west) / 256, 0, b.west, 0, -(b.north - b.south) / 256, b.north)


def _reference(
    data: np.ndarray, src_transform: Affine, crs: Any, tile: mercator.Tile, fill: float
) -> np.ndarray:
    out = np.full((data.shape[0], 256, 256), fill, dtype=data.dtype)
    reproject(
        data, out, src_transform=src_transform, src_crs=crs, src_nodata=fill,
        dst_transform=_tile_transform(tile), dst_crs=WEB, dst_nodata=fill,
        resampling=Resampling.nearest,
    )  # fmt: skip
    return out


# ── scenes ──────────────────────────────────────────────────────────────────────────────


def test_a_scene_tile_is_the_reference_reprojection(client: Client, root: Path) -> None:
    lon, lat = _centre_lonlat(root / "scene.tif")
    tile = _tile_at(lon, lat, 14)  # the scene's native zoom (10 m at 45 N)
    r = client.get(
        f"/tiles/scenes/scene.tif/{tile.z}/{tile.x}/{tile.y}.png?bands=3,2,1&rescale=0,3000"
    )
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/png"
    got = _rgba(r.content)
    assert got.shape == (4, 256, 256)
    with rasterio.open(root / "scene.tif") as src:
        data = src.read([3, 2, 1]).astype(np.float32)
        valid = (src.dataset_mask() > 0).astype(np.float32)
        ref = _reference(np.concatenate([data, valid[None]]), src.transform, src.crs, tile, 0)
    expected = np.clip(ref[:3] * (255 / 3000) + 0.5, 0, 255).astype(np.uint8)
    opaque = ref[3] > 0
    assert opaque.mean() > 0.5
    assert np.array_equal(got[3] == 255, opaque)
    close = np.abs(got[:3].astype(int) - expected.astype(int)) <= 1
    assert close[:, opaque].mean() > 0.99


def test_the_collar_and_beyond_the_scene_are_transparent(client: Client, root: Path) -> None:
    with rasterio.open(root / "scene.tif") as src:
        corner = src.xy(64, 64)  # where the 64 px nodata collar meets the data
        (lon,), (lat,) = transform(src.crs, "EPSG:4326", [corner[0]], [corner[1]])
        valid = (src.dataset_mask() > 0).astype(np.uint8)
        tile = _tile_at(lon, lat, 14)
        ref = _reference(valid[None], src.transform, src.crs, tile, 0)[0]
    got = _rgba(client.get(f"/tiles/scenes/scene.tif/{tile.z}/{tile.x}/{tile.y}.png").content)
    assert (got[3] == 0).any() and (got[3] == 255).any()
    assert np.array_equal(got[3] == 255, ref == 1)
    assert not got[:3, got[3] == 0].any()  # clear pixels are black too
    far = client.get("/tiles/scenes/scene.tif/14/0/0.png")
    assert far.status_code == 200
    assert not _rgba(far.content)[3].any()


def test_low_zoom_reads_the_overviews(client: Client) -> None:
    """ovr.tif's overviews hold 50 and its full resolution 200: a tile at the scene's
    thumbnail zoom shows the overviews, one at its native zoom the full resolution."""
    doc = client.get("/tiles/scenes/ovr.tif/tilejson.json").json()
    lon, lat = doc["center"][:2]
    low = _tile_at(lon, lat, doc["minzoom"])
    high = _tile_at(lon, lat, doc["maxzoom"])
    shown = {}
    for tile in (low, high):
        got = _rgba(client.get(f"/tiles/scenes/ovr.tif/{tile.z}/{tile.x}/{tile.y}.png").content)
        shown[tile.z] = set(np.unique(got[0, got[3] == 255]).tolist())
    assert shown[low.z] == {50}
    assert shown[high.z] == {200}


def test_scene_names_hold_slashes_and_bands_are_checked(client: Client) -> None:
    assert client.get("/tiles/scenes/sub/copy.tif/14/8877/5886.png").status_code == 200
    r = client.get("/tiles/scenes/scene.tif/14/8877/5886.png?bands=9")
    assert r.status_code == 400 and "bands" in r.json()["detail"]
    r = client.get("/tiles/scenes/scene.tif/14/8877/5886.png?rescale=1")
    assert r.status_code == 400 and "rescale" in r.json()["detail"]


# ── runs ────────────────────────────────────────────────────────────────────────────────


def _store_grid(
    path: Path, group: str = "pixels"
) -> tuple[np.ndarray, Affine, CRS, dict[str, Any]]:
    g = zarr.open_group(path, mode="r")
    sub = g[group] if group else g
    ref = dict(sub["spatial_ref"].attrs)
    tf = Affine.from_gdal(*(float(v) for v in str(ref["GeoTransform"]).split()))
    array = sub["prediction"]
    return np.asarray(array[...]), tf, CRS.from_wkt(ref["crs_wkt"]), dict(array.attrs)


def test_prediction_tiles_draw_the_class_colours(
    client: Client, runs: Path, root: Path, artifact: ModelArtifact
) -> None:
    classes, tf, crs, _ = _store_grid(runs / "run.zarr")
    colours = {c.value: c.color for c in artifact.model.classes}
    assert all(colours.values())
    with rasterio.open(root / "scene.tif") as src:
        (lon,), (lat,) = transform(
            src.crs, "EPSG:4326", [src.bounds.left + 800], [src.bounds.top - 800]
        )
    for z in (14, 12):  # native, and two zooms out (2.7 px a tile's pixel: every 2nd read)
        tile = _tile_at(lon, lat, z)
        r = client.get(f"/tiles/runs/run/prediction/{tile.z}/{tile.x}/{tile.y}.png")
        assert r.status_code == 200
        got = _rgba(r.content)
        step = 1 if z == 14 else 2
        ref = _reference(
            classes[None, ::step, ::step].astype(np.int16), tf * Affine.scale(step), crs, tile, 255
        )[0]
        assert (ref == 255).any() and (ref != 255).any()  # the collar and classes both
        assert np.array_equal(got[3] == 0, ref == 255)  # no class: transparent
        for value, colour in colours.items():
            rgb = [int(colour.lstrip("#")[i : i + 2], 16) for i in (0, 2, 4)]
            where = ref == value
            assert where.any()
            assert (rgb == got[:3, where].T).all()
            assert (got[3, where] == 255).all()


def test_a_tile_models_grid_is_drawn_as_cells(client: Client, runs: Path) -> None:
    doc = client.get("/tiles/runs/grid/tiles/prediction/tilejson.json").json()
    colours = {e["value"]: e["color"] for e in doc["legend"]}
    assert set(colours) == {0, 1}
    grid, tf, crs, _ = _store_grid(runs / "grid" / "tiles.zarr", group="")
    lon, lat = doc["center"][:2]
    tile = _tile_at(lon, lat, doc["maxzoom"] - 2)
    got = _rgba(
        client.get(f"/tiles/runs/grid/tiles/prediction/{tile.z}/{tile.x}/{tile.y}.png").content
    )
    ref = _reference(grid[None].astype(np.int16), tf, crs, tile, -128)[0]
    for value, colour in colours.items():
        rgb = [int(colour.lstrip("#")[i : i + 2], 16) for i in (0, 2, 4)]
        where = ref == value
        assert where.any()
        assert (rgb == got[:3, where].T).all()
    assert (got[3][ref < 0] == 0).all()


def test_a_float_layer_is_drawn_on_the_ramp(client: Client, runs: Path) -> None:
    catalog = client.get("/tiles/catalog.json").json()
    run = next(r for r in catalog["runs"] if r["name"] == "prob")
    layer = next(x for x in run["layers"] if x["name"] == "probability")
    assert layer["kind"] == "continuous" and layer["range"] == [0.0, 1.0]
    assert layer["colors"][0] != layer["colors"][-1]
    probability = np.asarray(zarr.open_group(runs / "prob.zarr", mode="r")["pixels/probability"])
    _, tf, crs, _ = _store_grid(runs / "prob.zarr")
    doc = client.get("/tiles/runs/prob/probability/tilejson.json").json()
    lon, lat = doc["center"][:2]
    tile = _tile_at(lon, lat, doc["maxzoom"])
    got = _rgba(client.get(f"/tiles/runs/prob/probability/{tile.z}/{tile.x}/{tile.y}.png").content)
    ref = _reference(probability[None], tf, crs, tile, np.nan)[0]
    inside = np.isfinite(ref)
    assert inside.mean() > 0.5
    assert np.array_equal(got[3] == 255, inside)
    expected = RAMP[np.round(np.where(inside, ref, 0) * 255).astype(int)]
    assert (np.abs(got[:3, inside].T.astype(int) - expected[inside, :3]) <= 3).all()
    half = inside & (np.abs(ref - 0.5) < 0.002)
    assert half.any()
    mid = [int(layer["colors"][2][i : i + 2], 16) for i in (1, 3, 5)]
    assert (np.abs(got[:3, half].T.astype(int) - mid) <= 3).all()


def test_scores_show_the_winning_class_score(client: Client, runs: Path) -> None:
    catalog = client.get("/tiles/catalog.json").json()
    run = next(r for r in catalog["runs"] if r["name"] == "scored")
    assert [x["name"] for x in run["layers"]] == ["prediction", "scores"]
    scores = np.asarray(zarr.open_group(runs / "scored.zarr", mode="r")["pixels/scores"])
    best = np.where(np.isfinite(scores).any(0), np.nanmax(scores, axis=0), np.nan)
    _, tf, crs, _ = _store_grid(runs / "scored.zarr")
    doc = client.get("/tiles/runs/scored/scores/tilejson.json").json()
    finite = best[np.isfinite(best)].astype(np.float64)
    low, high = doc["range"]  # scores may be logits: the range is the data's
    assert finite.min() <= low < high <= finite.max()
    tile = _tile_at(*doc["center"][:2], doc["maxzoom"])
    got = _rgba(client.get(f"/tiles/runs/scored/scores/{tile.z}/{tile.x}/{tile.y}.png").content)
    ref = _reference(best.astype(np.float32)[None], tf, crs, tile, np.nan)[0]
    inside = np.isfinite(ref)
    assert inside.any() and np.array_equal(got[3] == 255, inside)
    scaled = np.clip((np.where(inside, ref, low) - low) / (high - low), 0, 1)
    expected = RAMP[np.round(scaled * 255).astype(int)]
    assert (np.abs(got[:3, inside].T.astype(int) - expected[inside, :3]) <= 3).all()


# ── bad input ───────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("url", "status", "words"),
    [
        ("/tiles/scenes/scene.tif/1/2/0.png", 404, "x: 2 is outside"),
        ("/tiles/scenes/scene.tif/1/0/5.png", 404, "y: 5 is outside"),
        ("/tiles/scenes/scene.tif/31/0/0.png", 404, "z: zoom 31"),
        ("/tiles/scenes/scene.tif/-1/0/0.png", 404, "z: zoom -1"),
        ("/tiles/scenes/scene.tif/1/a/0.png", 404, "x: 'a' is not an integer"),
        ("/tiles/scenes/scene.tif/1/0/1.5.png", 404, "y: '1.5' is not an integer"),
        ("/tiles/runs/run/prediction/z/0/0.png", 404, "z: 'z' is not an integer"),
        ("/tiles/scenes/scene.tif/1/0/0.jpg", 404, "path"),
        ("/tiles/runs/run/nope/1/0/0.png", 404, "no layer 'nope'"),
        ("/tiles/runs/nope/prediction/1/0/0.png", 404, "run 'nope'"),
        ("/tiles/runs/nope/prediction/tilejson.json", 404, "run 'nope'"),
        ("/tiles/runs/unfinished/prediction/1/0/0.png", 404, "not finished"),
        ("/tiles/runs/escape/prediction/1/0/0.png", 404, "no such run"),
        ("/tiles/runs/..%2Foutside%2Fsecret/prediction/1/0/0.png", 404, ""),
        ("/tiles/runs/.hidden/prediction/1/0/0.png", 404, ""),
        ("/tiles/runs/%2Fetc/prediction/1/0/0.png", 404, ""),
        ("/tiles/scenes/..%2Foutside.tif/1/0/0.png", 404, ""),
        ("/tiles/scenes/%2Fetc%2Fpasswd.tif/1/0/0.png", 404, ""),
        ("/tiles/scenes/nothere.tif/1/0/0.png", 404, ""),
    ],
)
def test_bad_input_answers_json_naming_the_field(
    client: Client, url: str, status: int, words: str
) -> None:
    r = client.get(url)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert words in r.json()["detail"]


def test_runs_without_a_runs_root_are_refused(root: Path) -> None:
    with TestClient(create_app(Settings(data_root=root))) as c:
        r = c.get("/tiles/runs/run/prediction/1/0/0.png")
        assert r.status_code == 404 and "--runs-root" in r.json()["detail"]
        assert c.get("/tiles/catalog.json").json()["runs"] == []


# ── ETags, TileJSON, catalog ────────────────────────────────────────────────────────────


def test_etags_answer_304_and_follow_the_query(client: Client) -> None:
    url = "/tiles/scenes/scene.tif/14/8877/5886.png"
    first = client.get(url)
    tag = first.headers["etag"]
    assert tag.startswith('"') and first.headers["cache-control"] == "no-cache"
    again = client.get(url)
    assert again.headers["etag"] == tag and again.content == first.content
    assert client.get(url, headers={"If-None-Match": tag}).status_code == 304
    assert client.get(url, headers={"If-None-Match": '"other"'}).status_code == 200
    other = client.get(url + "?rescale=0,1000")
    assert other.headers["etag"] != tag
    run = client.get("/tiles/runs/run/prediction/14/8877/5886.png")
    assert run.headers["etag"] not in (tag, other.headers["etag"])
    assert (
        client.get(
            "/tiles/runs/run/prediction/14/8877/5886.png",
            headers={"If-None-Match": run.headers["etag"]},
        ).status_code
        == 304
    )


def test_tilejson_describes_the_scene(client: Client, root: Path) -> None:
    doc = client.get("/tiles/scenes/scene.tif/tilejson.json?bands=3,2,1&rescale=0,3000").json()
    assert doc["tilejson"] == "3.0.0"
    assert doc["tiles"] == [
        "http://testserver.local/tiles/scenes/scene.tif/{z}/{x}/{y}.png?bands=3%2C2%2C1&rescale=0%2C3000"
    ]
    assert doc["maxzoom"] == 14 and 0 <= doc["minzoom"] <= 14
    assert doc["attribution"]
    with rasterio.open(root / "scene.tif") as src:
        b = src.bounds
        lons, lats = transform(src.crs, "EPSG:4326", [b.left, b.right], [b.top, b.bottom])
    west, south, east, north = doc["bounds"]
    assert west == pytest.approx(min(lons), abs=1e-3) and east == pytest.approx(max(lons), abs=1e-3)
    assert south <= min(lats) + 1e-3 and north >= max(lats) - 1e-3
    lon, lat, zoom = doc["center"]
    assert west < lon < east and south < lat < north and doc["minzoom"] <= zoom <= doc["maxzoom"]


def test_tilejson_of_a_run_layer_has_its_legend(client: Client, artifact: ModelArtifact) -> None:
    doc = client.get("/tiles/runs/run/prediction/tilejson.json").json()
    assert doc["tilejson"] == "3.0.0" and doc["maxzoom"] == 14
    assert doc["tiles"] == ["http://testserver.local/tiles/runs/run/prediction/{z}/{x}/{y}.png"]
    assert doc["legend"] == [
        {"value": c.value, "name": c.name, "color": c.color} for c in artifact.model.classes
    ]


def test_the_catalog_lists_scenes_and_finished_runs(client: Client) -> None:
    catalog = client.get("/tiles/catalog.json").json()
    names = [s["name"] for s in catalog["scenes"]]
    assert {"scene.tif", "ovr.tif", "sub/copy.tif"} <= set(names)
    scene = next(s for s in catalog["scenes"] if s["name"] == "sub/copy.tif")
    assert scene["tilejson"] == "/tiles/scenes/sub/copy.tif/tilejson.json"
    runs = {r["name"]: r for r in catalog["runs"]}
    assert set(runs) == {"run", "scored", "grid/tiles", "prob"}  # not unfinished nor escape
    run = runs["run"]
    assert run["kind"] == "pixel" and run["scene"] == "scene.tif"
    assert [x["name"] for x in run["layers"]] == ["prediction"]
    layer = run["layers"][0]
    assert layer["tilejson"] == "/tiles/runs/run/prediction/tilejson.json"
    assert layer["tiles"] == "/tiles/runs/run/prediction/{z}/{x}/{y}.png"
    assert [e["name"] for e in layer["legend"]] == ["water", "vegetation", "built"]
    assert runs["grid/tiles"]["kind"] == "tile" and runs["grid/tiles"]["scene"] is None
    assert [x["name"] for x in runs["prob"]["layers"]] == ["prediction", "probability"]
