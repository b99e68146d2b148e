"""The shared CC0 scenes: real files with real quirks (collars, nodata, no CRS)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.enums import ColorInterp

from satdask import (
    GridError,
    ThresholdModel,
    ValidationError,
    open_scene,
    run_batch,
    scene_grid,
    tile_features,
    train,
    validate,
)
from satdask.core.features import STATUS_NODATA


def numpy_tile_means(path: Path, tile: int, edge: str) -> np.ndarray:
    """Independent reference: read the whole file, mask nodata and GDAL's dataset mask (an
    alpha band is the mask, not data), average each window."""
    with rasterio.open(path) as src:
        alpha = [b for b, c in enumerate(src.colorinterp, start=1) if c == ColorInterp.alpha]
        data = src.read([b for b in range(1, src.count + 1) if b not in alpha]).astype(np.float64)
        nodata = src.nodata
        mask = src.dataset_mask() != 0
    _, h, w = data.shape
    rows = h // tile if edge == "skip" else -(-h // tile)
    cols = w // tile if edge == "skip" else -(-w // tile)
    out = np.full((rows, cols), np.nan)
    for r in range(rows):
        for c in range(cols):
            window = np.s_[r * tile : (r + 1) * tile, c * tile : (c + 1) * tile]
            t = data[(slice(None), *window)]
            valid = t[(t != nodata) & mask[window]]
            if valid.size:
                out[r, c] = valid.mean()
    return out


@pytest.mark.parametrize("edge, shape", [("skip", (2, 3)), ("pad", (3, 4))])
def test_rgb_byte_grid_and_means_match_numpy(real_scene, edge: str, shape, tmp_path: Path) -> None:
    path = real_scene("RGB.byte.tif")
    scene = open_scene(path)
    assert scene_grid(scene, edge=edge).shape == shape
    expected = numpy_tile_means(path, 256, edge)
    lazy = tile_features(scene, edge=edge).mean_intensity.values
    np.testing.assert_allclose(lazy, expected, rtol=1e-12)
    run = run_batch(
        path, ThresholdModel(threshold=50.0), tmp_path / "r.zarr", edge=edge, scheduler="threads"
    )
    assert run.counts["tiles_total"] == shape[0] * shape[1]
    stored = run.dataset()["mean_intensity"].values
    np.testing.assert_allclose(stored, expected, rtol=1e-12)
    if edge == "pad":
        frac = run.dataset()["valid_fraction"].values
        assert (frac[-1, :] < 1).all() and (frac[:, -1] < 1).all()


def test_float_nan_is_refused_for_its_missing_crs(real_scene) -> None:
    path = real_scene("float_nan.tif")
    with pytest.raises(ValidationError, match=r"float_nan\.tif: no CRS"):
        validate(path)
    with pytest.raises(ValidationError, match="no CRS"):
        open_scene(path)


def test_all_nodata_has_no_full_tile_under_skip_and_all_nodata_under_pad(
    real_scene, tmp_path: Path
) -> None:
    path = real_scene("all-nodata.tif")
    scene = open_scene(path)
    assert scene.attrs["acquisition_time"]  # carries TIFFTAG_DATETIME
    with pytest.raises(
        GridError, match=r"all-nodata\.tif: 2475 rows x 71 cols holds no whole 256 px"
    ):
        scene_grid(scene)
    run = run_batch(
        path, ThresholdModel(threshold=1.0), tmp_path / "r.zarr", edge="pad", scheduler="threads"
    )
    status = run.dataset()["status"].values
    assert status.shape == (10, 1) and (status == STATUS_NODATA).all()
    assert run.counts["tiles_skipped"] == 10 and run.counts["tiles_inferred"] == 0


@pytest.mark.parametrize(
    "name, bands, dtype, epsg",
    [
        ("RGBA.uint16.tif", 3, "uint16", 32612),  # the alpha band is its mask
        ("shade.tif", 1, "uint8", 3857),
        ("world.rgb.tif", 3, "uint8", 4326),
    ],
)
def test_other_real_scenes_open_and_infer(
    real_scene, tmp_path: Path, name: str, bands: int, dtype: str, epsg: int
) -> None:
    path = real_scene(name)
    scene = open_scene(path)
    assert scene.sizes["band"] == bands and scene.dtype == dtype
    assert scene.rio.crs.to_epsg() == epsg
    model = train([path], scheduler="threads")
    run = run_batch(path, model, tmp_path / "r.zarr", scheduler="threads")
    ds = run.dataset()
    assert ds.rio.crs.to_epsg() == epsg
    expected = numpy_tile_means(path, 256, "skip")
    np.testing.assert_allclose(ds["mean_intensity"].values, expected, rtol=1e-12)
