"""STAC items as scenes, on a real local pystac catalog of single-band COGs.

The catalog's items point at COGs split band by band from the shared
`RGB.byte.tif` and from a generated sample scene, so every stacked item has a
multi-band original to equal pixel for pixel and run for run.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import dask
import numpy as np
import pystac
import pytest
import rasterio
import rasterio.shutil
import xarray as xr
from affine import Affine
from pystac.extensions.eo import EOExtension
from rasterio.io import MemoryFile
from rasterio.windows import Window
from support import SCENES_DIR, CountingScheduler, assert_same_arrays, write_geotiff

from satdask import (
    ModelRegistry,
    SceneError,
    open_run,
    open_scene,
    read_tile,
    run_batch,
    scene_grid,
    train,
    validate,
)
from satdask.io.lineage import file_sha256
from satdask.views.scene import scene_source

SATDASK = Path(sys.executable).parent / "satdask"
TIMEOUT = 180  # seconds per CLI command; never reached normally
RGB_TIME = datetime(2026, 6, 1, 10, 30, tzinfo=UTC)
SAMPLE_TIME = datetime(2026, 7, 2, 9, 15, 30, tzinfo=UTC)
RGB_NAMES = ("red", "green", "blue")
SAMPLE_NAMES = ("blue", "green", "red", "nir")


# ---------------------------------------------------------------------------
# Building a catalog: real single-band COGs and pystac items
# ---------------------------------------------------------------------------


def split_into_cogs(source: Path, folder: Path) -> list[Path]:
    """One single-band COG per band of `source`, with its CRS, transform and nodata."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    with rasterio.open(source) as src:
        profile = {**src.profile, "count": 1, "driver": "GTiff"}
        for band in range(1, src.count + 1):
            path = folder / f"band{band}.tif"
            write_cog(path, src.read(band)[None], profile)
            out.append(path)
    return out


def write_cog(path: Path, data: np.ndarray, profile: dict[str, object]) -> Path:
    with MemoryFile() as mem:
        with mem.open(**profile) as dst:
            dst.write(data)
        with mem.open() as tmp:
            rasterio.shutil.copy(tmp, path, driver="COG", blocksize=256, compress="deflate")
    return path


def raster_asset(
    path: Path, name: str | None = None, *, eo_name: str = "", roles: Sequence[str] = ("data",)
) -> pystac.Asset:
    """A COG asset; with `name`, one eo:bands entry with that common name."""
    band = {"name": eo_name or (name or "").upper(), "common_name": name}
    extra = {"eo:bands": [band]} if name else None
    return pystac.Asset(
        str(path), media_type=pystac.MediaType.COG, roles=list(roles), extra_fields=extra
    )


def band_assets(prefix: str, cogs: Sequence[Path], names: Sequence[str]) -> dict[str, pystac.Asset]:
    """Keys prefix1, prefix2, ... with eo:bands common names."""
    pairs = enumerate(zip(cogs, names, strict=True), start=1)
    return {f"{prefix}{i}": raster_asset(p, name, eo_name=f"{prefix}{i}") for i, (p, name) in pairs}


def make_item(item_id: str, when: datetime, assets: dict[str, pystac.Asset]) -> pystac.Item:
    item = pystac.Item(item_id, geometry=None, bbox=None, datetime=when, properties={})
    for key, asset in assets.items():
        item.add_asset(key, asset)
    EOExtension.add_to(item)
    return item


def save_item(item: pystac.Item, path: Path) -> Path:
    """Write one item JSON at `path` (asset hrefs as they are: absolute)."""
    item.set_self_href(str(path))
    item.save_object(include_self_link=False)
    return path


@dataclass(frozen=True)
class Catalog:
    root: Path
    rgb_item: Path  # assets B1, B2, B3 (red, green, blue) + a PNG thumbnail
    sample_item: Path  # assets b1..b4 (blue, green, red, nir)
    rgb_tif: Path
    sample_tif: Path


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory, sample_tif: Path) -> Catalog:
    """A self-contained catalog: items at ROOT/ID/ID.json, COGs beside them, relative hrefs."""
    rgb_tif = SCENES_DIR / "RGB.byte.tif"
    if not rgb_tif.exists():
        pytest.skip(f"shared scene RGB.byte.tif not found under {SCENES_DIR}")
    root = tmp_path_factory.mktemp("stac")
    staging = tmp_path_factory.mktemp("cogs")
    rgb_cogs = split_into_cogs(rgb_tif, staging / "rgb-byte")
    sample_cogs = split_into_cogs(sample_tif, staging / "sample")
    thumb = staging / "rgb-byte" / "thumb.png"
    thumb.write_bytes(b"\x89PNG\r\n\x1a\n")
    rgb = make_item(
        "rgb-byte",
        RGB_TIME,
        {
            **band_assets("B", rgb_cogs, RGB_NAMES),
            "thumbnail": pystac.Asset(str(thumb), media_type="image/png", roles=["thumbnail"]),
        },
    )
    sample = make_item(
        "sample",
        SAMPLE_TIME,
        band_assets("b", sample_cogs, SAMPLE_NAMES),
    )
    cat = pystac.Catalog("satdask-test", "items split band by band from multi-band scenes")
    cat.add_items([rgb, sample])
    cat.normalize_hrefs(str(root))
    for item in (rgb, sample):  # the COGs move in beside their item JSON
        folder = Path(item.get_self_href()).parent
        folder.mkdir(parents=True, exist_ok=True)
        for asset in item.assets.values():
            target = folder / Path(asset.href).name
            shutil.copy(asset.href, target)
            asset.href = str(target)
    cat.make_all_asset_hrefs_relative()
    cat.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    rgb_json = root / "rgb-byte" / "rgb-byte.json"
    assert json.loads(rgb_json.read_text())["assets"]["B1"]["href"] == "./band1.tif"
    return Catalog(root, rgb_json, root / "sample" / "sample.json", rgb_tif, sample_tif)


@pytest.fixture(scope="module")
def rgb_registry(tmp_path_factory: pytest.TempPathFactory, catalog: Catalog) -> Path:
    """A model trained on RGB.byte.tif itself, so its tiles split into bright and dark."""
    directory = tmp_path_factory.mktemp("rgb-registry")
    model = train([catalog.rgb_tif], scheduler="threads", edge="pad")
    ModelRegistry(directory).save(model)
    return directory


# ---------------------------------------------------------------------------
# open_scene on an item
# ---------------------------------------------------------------------------


def test_common_names_stack_assets_in_the_given_order_pixel_for_pixel(catalog: Catalog) -> None:
    item = open_scene(catalog.rgb_item, bands=["blue", "green", "red"])
    original = open_scene(catalog.rgb_tif, bands=[3, 2, 1])
    assert list(item["asset"].values) == ["B3", "B2", "B1"]
    assert list(item["band"].values) == [3, 2, 1] == list(original["band"].values)
    np.testing.assert_array_equal(item.values, original.values)


def test_asset_keys_pick_the_stack_and_the_default_is_every_data_asset(catalog: Catalog) -> None:
    picked = open_scene(catalog.rgb_item, assets=["B2", "B1"])
    assert list(picked["asset"].values) == ["B2", "B1"]
    np.testing.assert_array_equal(picked.values, open_scene(catalog.rgb_tif, bands=[2, 1]).values)
    # the PNG thumbnail is no band; band numbers index the stack like a file's bands
    default = open_scene(catalog.sample_item)
    assert list(default["asset"].values) == ["b1", "b2", "b3", "b4"]
    np.testing.assert_array_equal(default.values, open_scene(catalog.sample_tif).values)
    numbered = open_scene(catalog.sample_item, bands=[4, 1])
    assert list(numbered["asset"].values) == ["b4", "b1"]
    np.testing.assert_array_equal(
        numbered.values, open_scene(catalog.sample_tif, bands=[4, 1]).values
    )


def test_an_item_scene_is_lazy_and_tile_aligned(catalog: Catalog) -> None:
    counter = CountingScheduler()
    with dask.config.set(scheduler=counter):
        scene = open_scene(catalog.sample_item, tiles_per_chunk=1)
        derived = (scene.sel(band=[1, 3]) * 2).mean("band")
        assert counter.calls == 0
        derived.isel(y=slice(0, 10), x=slice(0, 10)).compute()
    assert counter.calls == 1
    assert scene.chunks == ((4,), (256,) * 4, (256,) * 4)
    default = open_scene(catalog.sample_item)
    assert all(c % 256 == 0 for c in default.chunks[1][:-1] + default.chunks[2][:-1])
    assert default.chunks[1:] == open_scene(catalog.sample_tif).chunks[1:]


def test_georeferencing_comes_from_the_assets_and_time_from_the_item(catalog: Catalog) -> None:
    item = open_scene(catalog.rgb_item)
    original = open_scene(catalog.rgb_tif)
    assert item.rio.crs == original.rio.crs and item.rio.crs.to_epsg() == 32618
    assert item.rio.transform() == original.rio.transform()
    assert item.rio.nodata == 0
    assert item.attrs["acquisition_time"] == "2026-06-01T10:30:00+00:00"
    assert item.attrs["source"] == str(catalog.rgb_item)
    assert item.attrs["stac"]["id"] == "rgb-byte"
    assert item.attrs["stac"]["self_href"] == str(catalog.rgb_item)
    override = open_scene(catalog.rgb_item, acquisition_time="2020-01-02T03:04:05")
    assert override.attrs["acquisition_time"] == "2020-01-02T03:04:05"
    report = validate(item)
    assert (report.bands, report.crs, report.width, report.height) == (3, "EPSG:32618", 791, 718)
    assert report.acquisition_time == "2026-06-01T10:30:00+00:00"
    assert report.warnings == (  # RGB.byte.tif is 791 x 718 px: skip leaves 31% out
        "edge skip leaves 174,722 of 567,938 pixels (30.8%) uninferred: the last 206 rows and "
        "23 cols; --edge pad infers them",
    )
    assert validate(catalog.sample_item).bands == 4


def test_read_tile_and_a_pickled_source_read_what_dask_reads(catalog: Catalog) -> None:
    scene = open_scene(catalog.sample_item, bands=["nir", "red"])
    grid = scene_grid(scene)
    expected = scene[:, 256:512, 512:768].values
    np.testing.assert_array_equal(read_tile(scene, 1, 2, grid=grid), expected)
    source = pickle.loads(pickle.dumps(scene_source(scene)))  # what a worker process gets
    np.testing.assert_array_equal(source.read(Window(512, 256, 256, 256)), expected)
    subset = scene.isel(band=[1])
    np.testing.assert_array_equal(
        scene_source(subset).read(Window(0, 0, 300, 200)), subset[:, :200, :300].values
    )
    assert dask.base.tokenize(scene_source(scene)) == dask.base.tokenize(
        scene_source(open_scene(catalog.sample_item, bands=["nir", "red"]))
    )


def test_a_pystac_item_object_opens_too(catalog: Catalog) -> None:
    loaded = pystac.Item.from_file(str(catalog.rgb_item))
    scene = open_scene(loaded, bands=["red"])
    np.testing.assert_array_equal(scene.values, open_scene(catalog.rgb_tif, bands=[1]).values)
    # built in memory and never saved: absolute hrefs, no self href
    folder = catalog.rgb_item.parent
    unsaved = make_item("unsaved", RGB_TIME, {"r": raster_asset(folder / "band1.tif", "red")})
    scene = open_scene(unsaved)
    assert scene.attrs["source"] == "stac-item:unsaved"
    assert scene.attrs["stac"]["self_href"] is None
    np.testing.assert_array_equal(scene.values, open_scene(catalog.rgb_tif, bands=[1]).values)


# ---------------------------------------------------------------------------
# Batch runs and lineage
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("item_attr", "tif_attr", "bands", "tif_bands", "registry"),
    [
        ("rgb_item", "rgb_tif", ["blue", "green", "red"], [3, 2, 1], "rgb_registry"),
        ("sample_item", "sample_tif", None, None, "sample_registry"),
    ],
)
def test_run_batch_over_an_item_equals_the_multiband_original(
    request: pytest.FixtureRequest,
    catalog: Catalog,
    tmp_path: Path,
    item_attr: str,
    tif_attr: str,
    bands: list[str] | None,
    tif_bands: list[int] | None,
    registry: str,
) -> None:
    artifact = ModelRegistry(request.getfixturevalue(registry)).load("latest")
    options = {"scheduler": "threads", "edge": "pad"}
    stacked = run_batch(
        getattr(catalog, item_attr), artifact, tmp_path / "item.zarr", bands=bands, **options
    )
    plain = run_batch(
        getattr(catalog, tif_attr), artifact, tmp_path / "tif.zarr", bands=tif_bands, **options
    )
    assert_same_arrays(stacked.path, plain.path)
    assert stacked.counts == plain.counts
    assert stacked.counts["tiles_inferred"] > 0
    assert stacked.attrs["config"]["bands"] == plain.attrs["config"]["bands"]
    assert stacked.dataset().rio.crs == plain.dataset().rio.crs


def test_lineage_records_the_item_and_each_assets_sha256(
    catalog: Catalog, rgb_registry: Path, tmp_path: Path
) -> None:
    item_dir = tmp_path / "item"
    shutil.copytree(catalog.rgb_item.parent, item_dir)
    item_json = item_dir / "rgb-byte.json"
    artifact = ModelRegistry(rgb_registry).load("latest")
    run = run_batch(
        item_json,
        artifact,
        tmp_path / "a.zarr",
        bands=["red", "blue"],
        scheduler="threads",
        allow_model_mismatch=True,  # the model learned 3 bands; the lineage is what is tested
    )
    scene = open_run(run.path).attrs["scene"]
    assert scene["uri"] == str(item_json)
    assert scene["sha256"] == file_sha256(item_json)
    assert scene["acquisition_time"] == "2026-06-01T10:30:00+00:00"
    assert scene["stac"]["id"] == "rgb-byte"
    assert scene["stac"]["self_href"] == str(item_json)
    assert scene["stac"]["assets"] == [
        {
            "band": 1,
            "key": "B1",
            "href": str(item_dir / "band1.tif"),
            "sha256": file_sha256(item_dir / "band1.tif"),
        },
        {
            "band": 3,
            "key": "B3",
            "href": str(item_dir / "band3.tif"),
            "sha256": file_sha256(item_dir / "band3.tif"),
        },
    ]
    # a band rewritten in place, item JSON untouched: the lineage changes with it
    with rasterio.open(item_dir / "band3.tif") as src:
        profile, data = src.profile, src.read()
    write_cog(item_dir / "band3.tif", data // 2, {**profile, "driver": "GTiff"})
    again = run_batch(
        item_json,
        artifact,
        tmp_path / "b.zarr",
        bands=["red", "blue"],
        scheduler="threads",
        allow_model_mismatch=True,
    )
    scene2 = again.attrs["scene"]
    assert scene2["sha256"] == scene["sha256"]
    assert scene2["stac"]["assets"][0] == scene["stac"]["assets"][0]
    assert scene2["stac"]["assets"][1]["sha256"] == file_sha256(item_dir / "band3.tif")
    assert scene2["stac"]["assets"][1]["sha256"] != scene["stac"]["assets"][1]["sha256"]
    # a model trained on the item records the same
    model = train([item_json], scheduler="threads", bands=["red", "blue"])
    trained = model.lineage["scenes"][0]
    assert trained["uri"] == str(item_json) and trained["stac"] == scene2["stac"]


# ---------------------------------------------------------------------------
# Refusals
# ---------------------------------------------------------------------------

BASE = np.arange(512 * 512, dtype=np.uint8).reshape(1, 512, 512)
MISMATCHES: dict[str, tuple[str, dict[str, object]]] = {
    "crs": ("different CRS", {"crs": "EPSG:32618"}),
    "resolution": ("different resolution", {"transform": Affine(20, 0, 500000, 0, -20, 5000000)}),
    "shape": ("different shape", {"data": BASE[:, :384, :]}),
    "origin": ("different transform", {"transform": Affine(10, 0, 500100, 0, -10, 5000000)}),
    "dtype": ("different dtype", {"data": BASE.astype(np.uint16)}),
    "nodata": ("different nodata", {"nodata": 255}),
}


@pytest.mark.parametrize("case", list(MISMATCHES))
def test_assets_on_different_grids_are_refused(tmp_path: Path, case: str) -> None:
    problem, change = MISMATCHES[case]
    good = write_geotiff(tmp_path / "good.tif", BASE, nodata=0)
    options = {"nodata": 0, **change}
    odd = write_geotiff(tmp_path / "odd.tif", options.pop("data", BASE), **options)
    item = make_item("mixed", RGB_TIME, {"A1": raster_asset(good), "Z9": raster_asset(odd)})
    path = save_item(item, tmp_path / "mixed.json")
    with pytest.raises(SceneError) as info:
        open_scene(path)
    message = str(info.value)
    assert message.startswith(f"{path}: assets have different"), message
    assert problem in message and "A1" in message and "Z9" in message
    assert "resampling is not supported" in message
    # one of them alone is fine
    assert open_scene(path, assets=["Z9"]).sizes["band"] == 1
    with pytest.raises(SceneError, match=problem):
        validate(path)


def _bad_item(tmp_path: Path, assets: dict[str, pystac.Asset]) -> Path:
    return save_item(make_item("bad", RGB_TIME, assets), tmp_path / "bad.json")


SELECTIONS: dict[str, tuple[Callable[[Catalog], object], Sequence[str]]] = {
    "unknown asset key": (
        lambda c: open_scene(c.rgb_item, assets=["B1", "B9"]),
        ("'B9'", "rgb-byte", "B1, B2, B3"),
    ),
    "non-raster asset": (
        lambda c: open_scene(c.rgb_item, assets=["thumbnail"]),
        ("'thumbnail'", "not a GeoTIFF", "image/png"),
    ),
    "unknown common name": (
        lambda c: open_scene(c.rgb_item, bands=["red", "swir16"]),
        ("no asset has the band name 'swir16'", "1=B1 (red/B1)", "3=B3 (blue/B3)"),
    ),
    "band number out of range": (
        lambda c: open_scene(c.rgb_item, bands=[1, 4]),
        ("band 4 does not exist", "1..3"),
    ),
    "empty asset list": (
        lambda c: open_scene(c.rgb_item, assets=[]),
        ("assets must be a non-empty list",),
    ),
    "assets on a GeoTIFF": (
        lambda c: open_scene(c.rgb_tif, assets=["B1"]),
        ("RGB.byte.tif", "STAC item only"),
    ),
}


@pytest.mark.parametrize("case", list(SELECTIONS))
def test_bad_selections_name_the_item_and_the_assets(catalog: Catalog, case: str) -> None:
    call, names = SELECTIONS[case]
    with pytest.raises(SceneError) as info:
        call(catalog)
    message = str(info.value)
    assert message.startswith(str(catalog.rgb_item if "GeoTIFF" not in case else catalog.rgb_tif))
    for name in names:
        assert name in message, message


def test_bad_items_are_scene_errors_naming_the_file(tmp_path: Path, catalog: Catalog) -> None:
    cases: list[tuple[Path, str]] = []
    no_raster = _bad_item(tmp_path, {"meta": pystac.Asset("m.xml", media_type="application/xml")})
    cases.append((no_raster, "item bad has no GeoTIFF/COG asset (assets: meta (application/xml))"))
    multi = save_item(
        make_item("multi", RGB_TIME, {"rgb": raster_asset(catalog.rgb_tif)}), tmp_path / "m.json"
    )
    cases.append((multi, "asset rgb has 3 bands; only single-band assets stack"))
    gone = tmp_path / "gone.json"
    save_item(make_item("gone", RGB_TIME, {"x": raster_asset(tmp_path / "nothing.tif")}), gone)
    cases.append((gone, f"asset x: {tmp_path / 'nothing.tif'}: no such file"))
    collection = tmp_path / "collection.json"
    collection.write_text(json.dumps({"type": "Collection", "id": "c"}))
    cases.append((collection, "not a STAC item (type is 'Collection', expected 'Feature')"))
    broken = tmp_path / "broken.json"
    broken.write_text('{"type": "Feature", ')
    cases.append((broken, "not a STAC item (invalid JSON"))
    cases.append((tmp_path / "missing.json", "no such file"))
    for path, problem in cases:
        with pytest.raises(SceneError) as info:
            open_scene(path)
        assert str(info.value).startswith(f"{path}: "), info.value
        assert problem in str(info.value), info.value


# ---------------------------------------------------------------------------
# Over HTTP (loopback), on the CLI, without pystac
# ---------------------------------------------------------------------------


def test_an_item_and_its_cogs_over_http(
    catalog: Catalog, http_root: tuple[str, Path], rgb_registry: Path, tmp_path: Path
) -> None:
    base, root = http_root
    shutil.copytree(catalog.rgb_item.parent, root / "rgb-byte")
    url = f"{base}/rgb-byte/rgb-byte.json"
    remote = open_scene(url, bands=["blue", "green", "red"])
    assert remote.attrs["source"] == url
    assert remote.attrs["stac"]["assets"]["B1"] == f"{base}/rgb-byte/band1.tif"
    local = open_scene(catalog.rgb_item, bands=["blue", "green", "red"])
    np.testing.assert_array_equal(remote.values, local.values)
    artifact = ModelRegistry(rgb_registry).load("latest")
    run = run_batch(url, artifact, tmp_path / "remote.zarr", scheduler="threads", bands=[3, 2, 1])
    plain = run_batch(
        catalog.rgb_tif, artifact, tmp_path / "tif.zarr", scheduler="threads", bands=[3, 2, 1]
    )
    assert_same_arrays(run.path, plain.path)
    scene = run.attrs["scene"]
    assert scene["uri"] == url and scene["sha256"] is None  # remote: no full download
    assert scene["stac"]["self_href"] == url
    assert [x["sha256"] for x in scene["stac"]["assets"]] == [None, None, None]
    with pytest.raises(SceneError, match=r"missing\.json: cannot fetch the STAC item \(HTTP 404"):
        open_scene(f"{base}/rgb-byte/missing.json")
    # a STAC API's item URL has no .json: /collections/ID/items/ID
    api = root / "collections" / "landsat" / "items"
    shutil.copytree(root / "rgb-byte", api)
    (api / "rgb-byte.json").rename(api / "rgb-byte")
    from_api = open_scene(f"{base}/collections/landsat/items/rgb-byte", bands=["red"])
    assert from_api.attrs["stac"]["assets"]["B1"] == f"{base}/collections/landsat/items/band1.tif"
    np.testing.assert_array_equal(from_api.values, local.sel(band=[1]).values)


def satdask(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SATDASK), *map(str, args)], capture_output=True, text=True, timeout=TIMEOUT
    )


def test_cli_train_and_infer_take_an_item_json(catalog: Catalog, tmp_path: Path) -> None:
    registry, out = tmp_path / "registry", tmp_path / "run.zarr"
    trained = satdask(
        "train", catalog.sample_item, "--registry", registry, "--scheduler", "threads"
    )
    assert trained.returncode == 0, trained.stderr
    assert trained.stdout.startswith("model ") and "on 16 tiles" in trained.stdout
    checked = satdask("validate", catalog.sample_item)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.splitlines() == [
        f"ok {catalog.sample_item}: 4 bands x 1024 rows x 1024 cols uint16, EPSG:32633, "
        "nodata=0.0, acquired=2026-07-02T09:15:30+00:00; "
        "4 rows x 4 cols of 256 px tiles (edge skip)"
    ]
    inferred = satdask(
        "infer",
        catalog.sample_item,
        "--model",
        registry,
        "--out",
        out,
        "--scheduler",
        "threads",
        "--bands",
        "3,4",
        "--allow-model-mismatch",  # trained on all 4 bands; the band names are what is tested
    )
    assert inferred.returncode == 0, inferred.stderr
    assert (
        f"scene  {catalog.sample_item} (2 bands x 1024 rows x 1024 cols, EPSG:32633)"
        in inferred.stdout
    )
    attrs = open_run(out).attrs
    assert attrs["scene"]["stac"]["id"] == "sample"
    assert [a["key"] for a in attrs["scene"]["stac"]["assets"]] == ["b3", "b4"]
    artifact = ModelRegistry(registry).load("latest")
    direct = run_batch(
        catalog.sample_tif,
        artifact,
        tmp_path / "d.zarr",
        bands=[3, 4],
        scheduler="threads",
        allow_model_mismatch=True,
    )
    assert_same_arrays(out, direct.path)
    failed = satdask(
        "infer",
        catalog.rgb_item,
        "--model",
        registry,
        "--out",
        tmp_path / "x.zarr",
        "--bands",
        "1,7",
    )
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    assert failed.stderr.splitlines() == [
        f"satdask: error: {catalog.rgb_item}: band 7 does not exist; item rgb-byte stacks "
        "bands 1..3: 1=B1 (red/B1), 2=B2 (green/B2), 3=B3 (blue/B3)"
    ]
    assert not (tmp_path / "x.zarr").exists()


def test_satdask_imports_without_pystac_and_names_the_extra(catalog: Catalog) -> None:
    script = f"""
import sys
sys.modules["pystac"] = None  # as if it were not installed
import satdask
print(satdask.open_scene({str(catalog.rgb_tif)!r}).shape)
try:
    satdask.open_scene({str(catalog.rgb_item)!r})
except satdask.SceneError as exc:
    print(exc)
"""
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    lines = out.stdout.splitlines()
    assert lines[0] == "(3, 718, 791)"
    assert "pip install 'satdask[stac]'" in lines[1]


def test_quicklook_of_an_item_matches_its_original(catalog: Catalog) -> None:
    from satdask import plot

    stacked = plot.quicklook(open_scene(catalog.rgb_item))
    with xr.set_options(keep_attrs=True):  # same attrs, but no plain file read: coarsen too
        original = plot.quicklook(open_scene(catalog.rgb_tif) + 0)
    assert stacked.attrs["method"] == original.attrs["method"] == "coarsen"
    np.testing.assert_allclose(stacked.attrs["extent"], original.attrs["extent"], rtol=1e-12)
    np.testing.assert_array_equal(stacked.values, original.values)


@pytest.mark.slow
def test_a_stack_runs_on_worker_processes_as_on_threads(
    catalog: Catalog, sample_registry: Path, tmp_path: Path
) -> None:
    """The StackSource is pickled to a separate worker process and reads the same there."""
    from distributed import Client, LocalCluster

    artifact = ModelRegistry(sample_registry).load("latest")
    threads = run_batch(catalog.sample_item, artifact, tmp_path / "t.zarr", scheduler="threads")
    with (
        LocalCluster(
            n_workers=1,
            threads_per_worker=2,
            processes=True,
            dashboard_address=None,
            host="127.0.0.1",
        ) as cluster,
        Client(cluster) as client,
    ):
        remote = run_batch(catalog.sample_item, artifact, tmp_path / "p.zarr", client=client)
    assert_same_arrays(threads.path, remote.path)
    assert remote.attrs["scene"]["stac"] == threads.attrs["scene"]["stac"]


def test_stac_1_1_band_metadata_and_a_hand_written_item(catalog: Catalog, tmp_path: Path) -> None:
    """`bands` with `eo:common_name` (STAC 1.1), an asset-level common name, eo band names."""
    folder = catalog.rgb_item.parent
    doc = {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": "hand-written",
        "geometry": None,
        "properties": {"datetime": None, "start_datetime": "2026-05-01T00:00:00Z",
                       "end_datetime": "2026-05-02T00:00:00Z"},
        "links": [],
        "assets": {
            "r": {"href": str(folder / "band1.tif"), "roles": ["data"],
                  "bands": [{"name": "B04", "eo:common_name": "red"}]},
            "g": {"href": str(folder / "band2.tif"), "roles": ["data"], "eo:common_name": "green"},
            "b": {"href": str(folder / "band3.tif"), "roles": ["data"]},  # no type: by suffix
        },
    }  # fmt: skip
    path = tmp_path / "hand.json"
    path.write_text(json.dumps(doc))
    scene = open_scene(path, bands=["green", "B04", "b"])
    assert list(scene["asset"].values) == ["g", "r", "b"]
    np.testing.assert_array_equal(scene.values, open_scene(catalog.rgb_tif, bands=[2, 1, 3]).values)
    assert scene.attrs["acquisition_time"] == "2026-05-01T00:00:00+00:00"  # the range's start


def test_what_counts_as_an_item_reference() -> None:
    from satdask.io.stac import is_item

    items = [
        "a/item.json",
        Path("ITEM.JSON"),
        "https://h/x/item.json?token=1",
        "https://h/v1/collections/s2/items/S2A_1",
        pystac.Item("i", None, None, RGB_TIME, {}),
    ]
    others = ["scene.tif", "https://h/v1/items/scene.tif", "https://h/a.json.tif", 3]
    assert [is_item(ref) for ref in items] == [True] * len(items)
    assert [is_item(ref) for ref in others] == [False] * len(others)


def test_an_item_collection_runs_as_many_scenes(
    catalog: Catalog, rgb_registry: Path, tmp_path: Path
) -> None:
    """A FeatureCollection of items: a store per item, asset hrefs relative to the file."""
    features = []
    for item_json in (catalog.rgb_item, catalog.sample_item):
        item = json.loads(item_json.read_text())
        for asset in item["assets"].values():  # "./band1.tif" beside the item -> "ID/band1.tif"
            asset["href"] = f"{item_json.parent.name}/{Path(asset['href']).name}"
        features.append(item)
    collection = catalog.root / "collection.json"
    collection.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    out = tmp_path / "runs"

    proc = satdask(  # the collection mixes the 3-band uint8 item and a 4-band uint16 one
        "infer",
        collection,
        "--model",
        rgb_registry,
        "--out",
        out,
        "--edge",
        "pad",
        "--allow-model-mismatch",
    )

    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert [(s["scene"], s["status"]) for s in manifest["scenes"]] == [
        ("rgb-byte", "complete"),
        ("sample", "complete"),
    ]
    single = tmp_path / "single.zarr"
    assert (
        satdask(
            "infer", catalog.rgb_item, "--model", rgb_registry, "--out", single, "--edge", "pad"
        ).returncode
        == 0
    )
    assert_same_arrays(out / "rgb-byte.zarr", single)


def test_train_over_mixed_crs_needs_allow_mixed_crs(catalog: Catalog, tmp_path: Path) -> None:
    utm33 = write_geotiff(  # 3 uint8 bands like RGB.byte.tif, which is in EPSG:32618
        tmp_path / "utm33.tif", np.full((3, 300, 300), 50, dtype=np.uint8), crs="EPSG:32633"
    )
    scenes = [catalog.rgb_tif, utm33]
    refused = satdask("train", *scenes, "--registry", tmp_path / "a", "--scheduler", "threads")
    assert refused.returncode == 1 and "different CRS" in refused.stderr
    assert not (tmp_path / "a").exists()
    allowed = satdask(
        "train",
        *scenes,
        "--registry",
        tmp_path / "b",
        "--scheduler",
        "threads",
        "--allow-mixed-crs",
    )
    assert allowed.returncode == 0, allowed.stderr
    assert len(ModelRegistry(tmp_path / "b").list()) == 1
