"""Invalid pixels from GDAL's mask flags: an alpha band, an internal mask, a .msk sidecar.

Every read path honours them alike: a batch run, the lazy feature map, `read_tile` with
`infer_block`, a DataArray derived from a scene, and a STAC stack of masked assets.
Pixels under the mask are bright (250) and the others dark, so a mask that is ignored
changes the means and the threshold model's answers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import zarr
from rasterio.enums import ColorInterp
from support import UTM_10M, assert_same_arrays, store_arrays

from satdask import (
    ThresholdModel,
    infer_block,
    open_scene,
    read_tile,
    run_batch,
    scene_grid,
    tile_features,
)
from satdask.core.features import STATUS_NODATA, STATUS_OK
from satdask.core.grid import Window
from satdask.io.geotiff import RasterSource, open_raster, probe
from satdask.io.source import check_scene
from satdask.io.stac import stack_source

T = 64  # tile size: scenes are 2 x 3 tiles
H, W = 2 * T, 3 * T
MODEL = ThresholdModel(threshold=100.0)  # dark valid pixels -> 0, bright masked ones -> 1
FEATURES = ("mean_intensity", "std_intensity", "valid_fraction", "status")


def half_mask() -> np.ndarray:
    """Valid (True) on the right half: tile column 0 masked whole, column 1 half, 2 none."""
    valid = np.ones((H, W), dtype=bool)
    valid[:, : W // 2] = False
    return valid


def pixels(valid: np.ndarray, *, bands: int = 3, seed: int = 0) -> np.ndarray:
    """Dark data (10..60) where valid, bright (250) where masked."""
    rng = np.random.default_rng(seed)
    data = rng.integers(10, 60, (bands, H, W), dtype=np.uint8)
    data[:, ~valid] = 250
    return data


def profile(bands: int, dtype: Any = "uint8") -> dict[str, Any]:
    return {
        "driver": "GTiff",
        "width": W,
        "height": H,
        "count": bands,
        "dtype": dtype,
        "crs": "EPSG:32633",
        "transform": UTM_10M,
        "tiled": True,
        "blockxsize": T,
        "blockysize": T,
        "compress": "deflate",
    }


def write_rgba(path: Path, data: np.ndarray, alpha: np.ndarray) -> Path:
    with rasterio.open(path, "w", **profile(4)) as dst:
        dst.write(data, [1, 2, 3])
        dst.write(alpha, 4)
        dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]
    return path


def write_masked(path: Path, data: np.ndarray, valid: np.ndarray, *, internal: bool) -> Path:
    with (
        rasterio.Env(GDAL_TIFF_INTERNAL_MASK=internal),
        rasterio.open(path, "w", **profile(data.shape[0], data.dtype)) as dst,
    ):
        dst.write(data)
        dst.write_mask(valid)
    return path


@pytest.fixture
def rgba(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """An RGBA file whose left half is transparent; some opaque pixels are half-transparent."""
    valid = half_mask()
    alpha = np.where(valid, 255, 0).astype(np.uint8)
    alpha[T:, -T:] = 128  # partly opaque is valid, as GDAL's mask says
    data = pixels(valid)
    return write_rgba(tmp_path / "rgba.tif", data, alpha), data, valid


def tile_means(data: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """numpy's own mean of each tile's unmasked pixels over every band (NaN if none)."""
    out = np.full((H // T, W // T), np.nan)
    for r in range(H // T):
        for c in range(W // T):
            window = np.s_[r * T : (r + 1) * T, c * T : (c + 1) * T]
            kept = data[(slice(None), *window)][:, valid[window]]
            if kept.size:
                out[r, c] = kept.astype(np.float64).mean()
    return out


def check_masked_run(path: Path, data: np.ndarray, valid: np.ndarray, out: Path) -> Any:
    """A run over a half-masked scene: the left tiles nodata, means of the unmasked only."""
    run = run_batch(path, MODEL, out, tile_size=T, tiles_per_chunk=1, scheduler="threads")
    ds = run.dataset()
    status, prediction = ds["status"].values, ds["prediction"].values
    assert (status[:, 0] == STATUS_NODATA).all() and (prediction[:, 0] == -1).all()
    assert (status[:, 1:] == STATUS_OK).all() and (prediction[:, 1:] == 0).all()
    np.testing.assert_allclose(ds["mean_intensity"].values, tile_means(data, valid), rtol=1e-12)
    np.testing.assert_array_equal(ds["valid_fraction"].values[:, 1:], [[0.5, 1.0], [0.5, 1.0]])
    assert run.counts["tiles_skipped"] == 2 and run.counts["tiles_inferred"] == 4
    return run


def check_views_agree(path: Path, run: Any) -> None:
    """tile_features and read_tile + infer_block give the run store's answers exactly."""
    stored = store_arrays(run.path)
    scene = open_scene(path, tile_size=T)
    lazy = tile_features(scene).compute()
    for name in FEATURES:
        np.testing.assert_array_equal(lazy[name].values, stored[name], err_msg=name)
    grid = scene_grid(scene)
    for row in range(grid.rows):
        for col in range(grid.cols):
            tile = read_tile(scene, row, col, grid=grid)
            out = infer_block(tile, model=MODEL, tile_size=T, nodata=None)
            for name in ("prediction", "mean_intensity", "status"):
                np.testing.assert_array_equal(
                    out[name][0, 0], stored[name][row, col], err_msg=f"{name} {row} {col}"
                )


def test_an_alpha_band_is_the_mask_not_a_default_band(rgba) -> None:
    path, _, valid = rgba
    info = probe(path)
    assert (info.count, info.mask, info.alpha_band) == (4, "alpha", 4)
    assert open_raster(path, tile_size=T).source.bands == (1, 2, 3)
    scene = open_scene(path, tile_size=T)
    assert scene.sizes["band"] == 3 and list(scene["band"].values) == [1, 2, 3]
    np.testing.assert_array_equal(scene["valid"].values, valid)
    # a mask marks the invalid pixels: no warning that every pixel counts as valid
    assert not any("nodata" in w for w in check_scene(info))


def test_a_transparent_tile_is_nodata_in_a_threshold_run_and_every_view_agrees(
    rgba, tmp_path: Path
) -> None:
    path, data, valid = rgba
    run = check_masked_run(path, data, valid, tmp_path / "run.zarr")
    check_views_agree(path, run)


def test_a_masked_run_is_the_same_whatever_the_chunking(rgba, tmp_path: Path) -> None:
    path, _, _ = rgba
    one = run_batch(
        path, MODEL, tmp_path / "one.zarr", tile_size=T, tiles_per_chunk=1, scheduler="threads"
    )
    whole = run_batch(
        path, MODEL, tmp_path / "whole.zarr", tile_size=T, tiles_per_chunk=3, scheduler="threads"
    )
    assert_same_arrays(one.path, whole.path)


def test_naming_the_alpha_band_reads_it_as_data(rgba, tmp_path: Path) -> None:
    path, data, _ = rgba
    scene = open_scene(path, tile_size=T, bands=[1, 2, 3, 4])
    assert scene.sizes["band"] == 4 and "valid" not in scene.coords
    assert RasterSource.of(str(path), [1, 2, 3, 4]).read_mask(Window(0, 0, W, H)) is None
    run = run_batch(
        path, MODEL, tmp_path / "run.zarr", tile_size=T, bands=[1, 2, 3, 4], scheduler="threads"
    )
    ds = run.dataset()
    assert (ds["status"].values == STATUS_OK).all()  # nothing is masked: alpha is data
    with rasterio.open(path) as src:
        everything = src.read()
    np.testing.assert_allclose(
        ds["mean_intensity"].values, tile_means(everything, np.ones((H, W), bool)), rtol=1e-12
    )
    assert (
        tile_means(everything, np.ones((H, W), bool))[0, 0] != tile_means(data, half_mask())[0, 0]
    )


@pytest.mark.parametrize("internal", [True, False], ids=["internal", "msk-sidecar"])
def test_a_per_dataset_mask_is_honoured(tmp_path: Path, internal: bool) -> None:
    valid = half_mask()
    data = pixels(valid, bands=2, seed=1)
    path = write_masked(tmp_path / "masked.tif", data, valid, internal=internal)
    assert (tmp_path / "masked.tif.msk").exists() != internal
    info = probe(path)
    assert (info.mask, info.alpha_band, info.count) == ("per-dataset", None, 2)
    np.testing.assert_array_equal(
        RasterSource.of(str(path), [1, 2]).read_mask(Window(T, 0, T, T)), valid[:T, T : 2 * T]
    )
    run = check_masked_run(path, data, valid, tmp_path / "run.zarr")
    check_views_agree(path, run)


def test_the_mean_of_a_half_masked_tile_is_that_of_its_unmasked_pixels(tmp_path: Path) -> None:
    """An irregular mask over 16-bit and float data: every band's sums skip the same pixels."""
    rng = np.random.default_rng(7)
    valid = rng.random((H, W)) > 0.5
    for dtype in ("uint16", "float32"):
        data = rng.integers(0, 60000, (3, H, W)).astype(dtype)
        path = write_masked(tmp_path / f"{dtype}.tif", data, valid, internal=True)
        run = run_batch(path, MODEL, tmp_path / f"{dtype}.zarr", tile_size=T, scheduler="threads")
        ds = run.dataset()
        np.testing.assert_allclose(ds["mean_intensity"].values, tile_means(data, valid), rtol=1e-12)
        expected = [
            [valid[r * T : (r + 1) * T, c * T : (c + 1) * T].mean() for c in range(W // T)]
            for r in range(H // T)
        ]
        np.testing.assert_allclose(ds["valid_fraction"].values, expected, rtol=1e-6)
        tile = data[:, :T, :T][:, valid[:T, :T]].astype(np.float64)
        assert ds["std_intensity"].values[0, 0] == pytest.approx(tile.std(), rel=1e-9)


def test_a_derived_array_and_a_subset_keep_the_mask_in_step(rgba, tmp_path: Path) -> None:
    path, data, valid = rgba
    scene = open_scene(path, tile_size=T)
    derived = scene + 0  # arithmetic: run_batch computes the array, not the file
    run = run_batch(derived, MODEL, tmp_path / "derived.zarr", scheduler="threads")
    assert run.record["scene"]["sha256"] is None  # it did go through the array
    ds = run.dataset()
    assert (ds["status"].values[:, 0] == STATUS_NODATA).all()
    np.testing.assert_allclose(ds["mean_intensity"].values, tile_means(data, valid), rtol=1e-12)
    subset = scene.isel(x=slice(T, None))  # the half-masked column becomes the first
    lazy = tile_features(subset).compute()
    np.testing.assert_array_equal(lazy["valid_fraction"].values, [[0.5, 1.0], [0.5, 1.0]])
    np.testing.assert_allclose(
        lazy["mean_intensity"].values, tile_means(data, valid)[:, 1:], rtol=1e-12
    )


def test_a_stack_of_masked_assets_is_valid_where_every_asset_is(tmp_path: Path) -> None:
    left, top = half_mask(), np.ones((H, W), dtype=bool)
    top[H // 2 :] = False
    a = write_masked(tmp_path / "a.tif", pixels(left, bands=1)[:1], left, internal=True)
    b = write_masked(tmp_path / "b.tif", pixels(top, bands=1)[:1], top, internal=False)
    plain = tmp_path / "plain.tif"
    with rasterio.open(plain, "w", **profile(1)) as dst:
        dst.write(pixels(np.ones((H, W), bool), bands=1))
    item = {"id": "x", "self_href": None, "datetime": None}
    assets = {"a": str(a), "b": str(b), "plain": str(plain)}
    stack = stack_source("x.json", [1, 2], item={**item, "assets": assets}, keys=["a", "b"])
    np.testing.assert_array_equal(stack.read_mask(Window(0, 0, W, H)), left & top)
    alone = stack_source("x.json", [1], item={**item, "assets": assets}, keys=["plain"])
    assert alone.read_mask(Window(0, 0, W, H)) is None


@pytest.mark.parametrize("kind", ["alpha", "internal", "sidecar"])
def test_masked_pixels_get_no_class_from_a_pixel_model(kind: str, tmp_path: Path) -> None:
    from satdask.io.sample_model import segmentation_model
    from satdask.models.onnx import OnnxModel

    valid = half_mask()
    data = pixels(valid)
    if kind == "alpha":
        path = write_rgba(tmp_path / "rgba.tif", data, np.where(valid, 255, 0).astype(np.uint8))
    else:
        path = write_masked(tmp_path / "m.tif", data, valid, internal=kind == "internal")
    model_bytes, meta = segmentation_model(bands=3, classes=3, layers=2, dtype="uint8")
    model = OnnxModel.load(model_bytes, meta, name="seg.onnx")
    run = run_batch(path, model, tmp_path / "run.zarr", tile_size=T, tiles_per_chunk=1)
    classes = zarr.open_group(run.path, mode="r")["pixels/prediction"][...]
    assert np.all(classes[~valid] == 255)
    assert not np.any(classes[valid] == 255)
    ds = run.dataset()
    assert ds["status"].values[:, 0].tolist() == [STATUS_NODATA] * (H // T)  # masked whole
    assert (ds["prediction"].values[:, 0] == -1).all()
