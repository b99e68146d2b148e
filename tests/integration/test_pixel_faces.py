"""What users see of a pixel model's run: infer's options, runs show, runs verify, the
monitoring per class and the COG export, all through the real `satdask` command.

A real ONNX segmentation network (io.sample_model) is imported into a registry with
`satdask models import`, run with `satdask infer` over a 512 px sample scene with a
nodata collar, and its store is read back with zarr, xarray and rasterio (and GDAL
itself for the category names) to check every figure the commands print or write.
One class of the model has no colour, so the COG must choose one for it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import json
import os
import shutil
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import xarray as xr
import zarr
from affine import Affine
from test_cli import one_line_error, satdask, succeeded

from satdask import open_run
from satdask.core.health import health_report, summarize
from satdask.io.sample import write_sample
from satdask.io.sample_model import segmentation_model, window_classifier, write_model
from satdask.io.store import PIXELS

NAMES = ["water", "vegetation", "built"]
UNCOLOURED = 1  # the class whose metadata gives no colour_hint


@dataclass(frozen=True)
class Setup:
    root: Path
    scene: Path
    registry: Path
    seg_id: str
    window_id: str
    store: Path  # the segmentation model's run, with --padding edge --keep-scores
    window_store: Path  # the window classifier's run: a tile grid, no pixels


def _import(root: Path, registry: Path, model: bytes, meta: dict[str, Any], name: str) -> str:
    model_path, meta_path = write_model(root, model, meta, name=name)
    proc = succeeded(
        satdask("models", "import", model_path, "--metadata", meta_path, "--registry", registry)
    )
    return proc.stdout.split()[1]  # "model <id> imported: ..."


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    root = tmp_path_factory.mktemp("faces")
    scene = write_sample(root / "scene.tif", size=512, seed=3)
    registry = root / "registry"
    seg, meta = segmentation_model(bands=4, classes=3, layers=2)
    classes = meta["mlm:output"][0]["classification:classes"]
    assert [c["name"] for c in classes] == NAMES
    del classes[UNCOLOURED]["color_hint"]
    seg_id = _import(root, registry, seg, meta, "seg")
    window_id = _import(root, registry, *window_classifier(bands=4, window=64), "clf")
    store, window_store = root / "run.zarr", root / "window.zarr"
    model = f"{registry}:{seg_id}"
    common = ("--scheduler", "threads")
    succeeded(
        satdask(
            "infer", scene, "--model", model, "--out", store, "--padding", "edge",
            "--keep-scores", *common,
        )
    )  # fmt: skip
    succeeded(
        satdask(
            "infer", scene, "--model", f"{registry}:{window_id}", "--out", window_store, *common
        )
    )
    return Setup(root, scene, registry, seg_id, window_id, store, window_store)


def _tiles(store: Path) -> xr.Dataset:
    return open_run(store).dataset().load()


def _pixels(store: Path) -> zarr.Array:
    array = zarr.open_group(store, mode="r")[f"{PIXELS}/prediction"]
    assert isinstance(array, zarr.Array)
    return array


# --------------------------------------------------------------------------- infer options


def test_infer_takes_padding_and_keep_scores(setup: Setup) -> None:
    record = open_run(setup.store).record
    assert record["config"].get("padding") == "edge"
    assert record["config"].get("keep_scores") is True
    scores = zarr.open_group(setup.store, mode="r")[f"{PIXELS}/scores"]
    assert isinstance(scores, zarr.Array)
    assert scores.shape == (3, 512, 512) and scores.dtype == np.float16
    help_text = " ".join(succeeded(satdask("infer", "--help")).stdout.split())
    assert "--padding {reflect,symmetric,edge,zeros}" in help_text
    assert "what a window sees beyond the scene's edge" in help_text
    assert "class scores (float16)" in help_text


def test_infer_refuses_keep_scores_where_no_pixel_scores_exist(setup: Setup) -> None:
    out = setup.root / "refused.zarr"
    proc = satdask(
        "infer", setup.scene, "--model", f"{setup.registry}:{setup.window_id}",
        "--out", out, "--keep-scores",
    )  # fmt: skip
    one_line_error(proc, "--keep-scores", setup.window_id, "window classifier")
    proc = satdask(
        "infer", setup.scene, setup.scene, "--model", f"{setup.registry}:{setup.seg_id}",
        "--out", out, "--padding", "zeros",
    )  # fmt: skip
    one_line_error(proc, "--padding", "one scene")
    assert not out.exists()


# --------------------------------------------------------------------------- monitoring


def test_monitoring_counts_tiles_under_the_models_class_names(setup: Setup) -> None:
    for store, names in ((setup.store, NAMES), (setup.window_store, ["dark", "bright"])):
        ds = _tiles(store)
        ok = ds["status"].values == 0
        prediction = ds["prediction"].values
        p = open_run(store).record["monitoring"]["predictions"]
        assert "bright_pct" not in p and "dark_pct" not in p
        assert sorted(p.get("classes", {})) == sorted(names)
        n_ok = int(ok.sum())
        assert n_ok > 0
        for value, name in enumerate(names):
            count = int((ok & (prediction == value)).sum())
            assert p["classes"][name] == count, name
            assert p["classes_pct"][name] == pytest.approx(100 * count / n_ok)
        assert p["none"] == n_ok - sum(p["classes"].values())
        html = open_run(store)._repr_html_()
        for name in names:
            assert f">{name}</th>" in html, name
        if "bright" not in names:
            assert ">bright</th>" not in html and ">dark</th>" not in html


def test_summarize_without_classes_is_the_threshold_models() -> None:
    status = np.array([[0, 0, 0], [0, 1, 2]], dtype=np.uint8)
    prediction = np.array([[1, 0, 1], [2, -1, -1]], dtype=np.int8)
    mean = np.array([[5.0, 1.0, 6.0], [3.0, np.nan, np.nan]])
    timing = {"block_latency_ms": [4.0], "block_tiles": [6], "run_seconds": 0.1}
    plain = summarize(
        status=status, prediction=prediction, mean_intensity=mean, training=None, **timing
    )
    assert plain["predictions"] == {
        "bright": 2,
        "dark": 1,
        "none": 1,
        "bright_pct": 50.0,
        "dark_pct": 25.0,
    }
    named = summarize(
        status=status,
        prediction=prediction,
        mean_intensity=mean,
        training=None,
        classes={0: "sea", 1: "land", 2: "land"},  # a repeated name keeps both counts
        **timing,
    )
    assert named["predictions"] == {
        "classes": {"sea": 1, "land (1)": 2, "land (2)": 1},
        "classes_pct": {"sea": 25.0, "land (1)": 50.0, "land (2)": 25.0},
        "none": 0,
    }
    assert {k: v for k, v in named.items() if k != "predictions"} == {
        k: v for k, v in plain.items() if k != "predictions"
    }
    assert json.loads(json.dumps(named)) == named
    assert health_report(named)["status"] == health_report(plain)["status"]


# --------------------------------------------------------------------------- runs show


def test_runs_show_prints_the_classes_windows_and_pixel_shares(setup: Setup) -> None:
    out = succeeded(satdask("runs", "show", setup.store)).stdout
    ds = _tiles(setup.store)
    ok = ds["status"].values == 0
    prediction = ds["prediction"].values
    n_ok = int(ok.sum())
    tiles = [int((ok & (prediction == v)).sum()) for v in range(3)]
    expected = ", ".join(
        f"{n} {name} ({100 * n / n_ok:.1f}%)" for n, name in zip(tiles, NAMES, strict=True)
    )
    assert f"  preds  {expected} tiles\n" in out
    assert "bright" not in out and "dark" not in out
    assert "  window 260 px, halo 2 px, padding edge, class scores kept\n" in out
    # each class's share of the valid pixels: fractions weighted by valid fraction
    weight = np.where(ok, ds["valid_fraction"].values, 0.0)
    fraction = np.where(ok, ds["class_fraction"].values, 0.0)
    share = (fraction * weight).sum(axis=(1, 2)) / weight.sum()
    assert share.sum() == pytest.approx(1.0)
    line = ", ".join(f"{n} {100 * s:.1f}%" for n, s in zip(NAMES, share, strict=True))
    assert f"  share  {line} of the valid pixels in ok tiles\n" in out
    # and the same shares counted from the pixels themselves (whole tiles only)
    pixels = _pixels(setup.store)[...]
    counts = np.array([(pixels == v).sum() for v in range(3)], dtype=float)
    assert np.allclose(share, counts / counts.sum(), atol=1e-6)


def test_runs_show_of_a_window_classifier_names_its_classes(setup: Setup) -> None:
    out = succeeded(satdask("runs", "show", setup.window_store)).stdout
    assert "  window 64 px, halo 0 px, padding reflect\n" in out
    assert " dark (" in out and " bright (" in out
    assert "share" not in out  # whole windows: no pixel shares


# --------------------------------------------------------------------------- runs verify


def test_runs_verify_checks_the_pixels_group(setup: Setup) -> None:
    out = succeeded(satdask("runs", "verify", setup.store)).stdout
    lines = {line[6:30].strip(): line for line in out.splitlines() if line[:4] in ("pass", "fail")}
    for name in (
        "array class_fraction",
        "counts",
        "classes",
        "pixels prediction",
        "pixels scores",
        "pixels summary",
        "model sha256",
    ):
        assert lines[name].startswith("pass"), lines.get(name)
    assert "uint8 512 rows x 512 cols of pixels, fill 255" in lines["pixels prediction"]
    assert "water, vegetation, built" in lines["classes"]
    assert out.rstrip().endswith("0 failed, 0 skipped")
    window = succeeded(satdask("runs", "verify", setup.window_store)).stdout
    assert "pass  classes" in window and "pixels" not in window


def _verify_fails(store: Path, check: str, *args: object) -> str:
    """`runs verify` prints its report, then fails with one line naming `check`."""
    proc = satdask("runs", "verify", store, *args)
    report = proc.stdout
    assert report.splitlines()[-1].startswith(f"{store}: "), report
    proc.stdout = ""  # one_line_error checks stderr alone
    one_line_error(proc, store.name, f"verification failed ({check})")
    return report


def _tampered(setup: Setup, name: str) -> Path:
    copy = setup.root / name
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(setup.store, copy)
    return copy


def test_runs_verify_fails_a_store_whose_pixels_were_lost_or_changed(setup: Setup) -> None:
    lost = _tampered(setup, "lost.zarr")
    shutil.rmtree(lost / PIXELS / "prediction" / "c")  # every shard of the classes gone
    report = _verify_fails(lost, "pixels summary")
    assert "pixels lost or changed since the run" in report

    changed = _tampered(setup, "changed.zarr")
    pixels = zarr.open_group(changed / PIXELS, mode="r+")["prediction"]
    assert isinstance(pixels, zarr.Array)
    block = pixels[:256, :256]
    pixels[:256, :256] = np.where(block == 0, 2, block)  # water turned into built
    assert (block == 0).any()
    _verify_fails(changed, "pixels summary")

    refilled = _tampered(setup, "refilled.zarr")
    meta = refilled / PIXELS / "prediction" / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["fill_value"] = 0
    meta.write_text(json.dumps(doc))
    report = _verify_fails(refilled, "pixels prediction")
    assert "fill value 0 (_FillValue 255), expected 255" in report


def test_runs_verify_fails_a_run_whose_model_blob_changed(setup: Setup) -> None:
    registry = setup.root / "registry-tampered"
    shutil.rmtree(registry, ignore_errors=True)
    shutil.copytree(setup.registry, registry, symlinks=True)
    artifact = json.loads((registry / f"{setup.seg_id}.json").read_text())
    blob = registry / artifact["parameters"]["file"]
    blob.write_bytes(blob.read_bytes() + b"\0")
    report = _verify_fails(setup.store, "model sha256", "--registry", registry)
    assert "does not match its sha256; it was modified" in report


def test_runs_verify_wants_the_classes_of_the_model(setup: Setup) -> None:
    renamed = _tampered(setup, "renamed.zarr")
    meta = renamed / PIXELS / "prediction" / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["attributes"]["flag_meanings"] = "water forest built"
    meta.write_text(json.dumps(doc))
    report = _verify_fails(renamed, "classes")
    assert "pixels/prediction flag_meanings 'water forest built'" in report


# --------------------------------------------------------------------------- export cog


def _mode_ok(full: np.ndarray, overview: np.ndarray, factor: int, nodata: int) -> np.ndarray:
    """Whether each overview pixel is a most frequent valid class of its source block
    (any of them on a tie), or nodata where the block holds no valid pixel."""
    h, w = overview.shape
    ok = np.zeros(overview.shape, dtype=bool)
    for i in range(h):
        for j in range(w):
            block = full[i * factor : (i + 1) * factor, j * factor : (j + 1) * factor].ravel()
            valid = block[block != nodata]
            if valid.size == 0:
                ok[i, j] = overview[i, j] == nodata
                continue
            values, counts = np.unique(valid, return_counts=True)
            ok[i, j] = overview[i, j] in values[counts == counts.max()]
    return ok


def test_export_cog_writes_the_classes_with_colours_overviews_and_names(setup: Setup) -> None:
    out = setup.root / "pred.tif"
    proc = succeeded(satdask("export", setup.store, "--format", "cog", "--out", out))
    assert proc.stdout.startswith(f"wrote {out} (512 rows x 512 cols, uint8, 3 classes")
    stored = _pixels(setup.store)
    flags = dict(stored.attrs)
    ref = dict(zarr.open_group(setup.store, mode="r")[f"{PIXELS}/spatial_ref"].attrs)
    with rasterio.open(out) as src:
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert (src.width, src.height, src.count, src.dtypes[0]) == (512, 512, 1, "uint8")
        full = src.read(1)
        assert np.array_equal(full, stored[...])
        assert src.nodata == stored.fill_value == 255
        assert (full == 255).any() and (full != 255).any()  # the collar and the classes
        assert src.crs == rasterio.crs.CRS.from_wkt(ref["crs_wkt"])
        assert src.transform == Affine.from_gdal(*map(float, ref["GeoTransform"].split()))
        with rasterio.open(setup.scene) as scene:
            assert src.transform == scene.transform and src.crs == scene.crs
        colormap = src.colormap(1)
        for value, color in zip(flags["flag_values"], flags["flag_colors"], strict=True):
            if color is None:
                continue
            rgb = tuple(int(color[i : i + 2], 16) for i in (1, 3, 5))
            assert colormap[value] == (*rgb, 255)
        assert flags["flag_colors"][UNCOLOURED] is None
        default = colormap[UNCOLOURED]
        others = [colormap[v] for v in (0, 2)]
        assert default[3] == 255 and default not in others and default[:3] != (0, 0, 0)
        assert colormap[255][3] == 0  # nodata transparent
        assert src.tags(1)["flag_meanings"] == "water vegetation built"
        assert src.tags(1)["flag_values"] == "0 1 2"
        assert src.descriptions == ("predicted class",)
        assert src.tags()["satdask_run_id"] == open_run(setup.store).run_id
        assert src.overviews(1) == [2]
        assert src.block_shapes == [(256, 256)]
    with rasterio.open(out, overview_level=0) as overview:
        half = overview.read(1)
        assert half.shape == (256, 256)
    # one 256 x 256 block of the overview against the mode computed by hand
    assert _mode_ok(full, half, 2, 255).all()
    assert not np.array_equal(half, full[::2, ::2]), "not a nearest-neighbour subsample"
    # GDAL reads the category names from the PAM sidecar
    sidecar = out.with_name("pred.tif.aux.xml")
    categories = [c.text for c in ET.parse(sidecar).getroot().iter("Category")]
    assert categories == NAMES
    assert _gdal_category_names(out) == NAMES


def test_export_cog_refuses_to_overwrite_and_a_run_without_pixels(setup: Setup) -> None:
    out = setup.root / "kept.tif"
    out.write_bytes(b"mine\n")
    proc = satdask("export", setup.store, "--format", "cog", "--out", out)
    one_line_error(proc, out, "already exists", "--overwrite")
    assert out.read_bytes() == b"mine\n"
    assert not out.with_name("kept.tif.aux.xml").exists()
    succeeded(satdask("export", setup.store, "--format", "cog", "--out", out, "--overwrite"))
    with rasterio.open(out) as src:
        assert np.array_equal(src.read(1), _pixels(setup.store)[...])
    leftovers = [p.name for p in setup.root.iterdir() if p.name.startswith(".kept.tif")]
    assert leftovers == []

    tiles = setup.root / "tiles.tif"
    proc = satdask("export", setup.window_store, "--format", "cog", "--out", tiles)
    one_line_error(
        proc, "window.zarr has no pixels group: its model predicts tiles", "--format json"
    )
    assert not tiles.exists()
    proc = satdask("export", setup.store, "--format", "cog")
    one_line_error(proc, "--format cog", "--out")

    report = setup.root / "tiles.json"
    report.write_bytes(b"{}\n")
    proc = satdask("export", setup.store, "--format", "json", "--out", report)
    one_line_error(proc, report, "already exists", "--overwrite")
    assert report.read_bytes() == b"{}\n"
    succeeded(satdask("export", setup.store, "--format", "json", "--out", report, "--overwrite"))
    assert len(json.loads(report.read_text())["predictions"]) == 4


# --------------------------------------------------------------------------- GDAL


def _libgdal() -> ctypes.CDLL:
    """The GDAL rasterio runs on: its wheel's copy, else the system's."""
    here = Path(rasterio.__file__).parent
    found = glob.glob(str(here.parent / "rasterio.libs" / "libgdal*.so*"))
    name = found[0] if found else ctypes.util.find_library("gdal")
    if name is None:
        pytest.skip("no libgdal to load through ctypes")
    return ctypes.CDLL(name)


def _gdal_category_names(path: Path) -> list[str]:
    """GDALGetRasterCategoryNames, which rasterio does not expose.

    GDAL's GeoTIFF driver loads the PAM sidecar on the first metadata request
    (as gdalinfo and QGIS make), so the metadata is asked for first.
    """
    gdal = _libgdal()
    handle = ctypes.c_void_p
    strings = ctypes.POINTER(ctypes.c_char_p)
    gdal.GDALAllRegister.argtypes = []
    gdal.GDALOpen.argtypes, gdal.GDALOpen.restype = [ctypes.c_char_p, ctypes.c_int], handle
    gdal.GDALGetRasterBand.argtypes = [handle, ctypes.c_int]
    gdal.GDALGetRasterBand.restype = handle
    gdal.GDALGetMetadata.argtypes, gdal.GDALGetMetadata.restype = [handle, ctypes.c_char_p], strings
    gdal.GDALGetRasterCategoryNames.argtypes = [handle]
    gdal.GDALGetRasterCategoryNames.restype = strings
    gdal.GDALClose.argtypes = [handle]
    gdal.GDALAllRegister()
    # satdask's EMPTY_DIR hides sidecars: as a config option (what an earlier read in this
    # process may have set) and as an environment variable, as QGIS would start
    with (
        pytest.MonkeyPatch.context() as env,
        rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="FALSE"),
    ):
        env.setenv("GDAL_DISABLE_READDIR_ON_OPEN", "FALSE")
        dataset = gdal.GDALOpen(os.fsencode(path), 0)
    assert dataset, f"GDAL cannot open {path}"
    try:
        gdal.GDALGetMetadata(dataset, None)
        names = gdal.GDALGetRasterCategoryNames(gdal.GDALGetRasterBand(dataset, 1))
        out: list[str] = []
        while names and names[len(out)] is not None:
            out.append(names[len(out)].decode())
        return out
    finally:
        gdal.GDALClose(dataset)
