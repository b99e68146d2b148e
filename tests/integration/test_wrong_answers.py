"""Silent wrong answers a new user met: each is now computed right or refused in one line.

- run_batch computes on the array it is given (arithmetic, subsets, band selection,
  any chunking), or reads the file directly only when the array *is* the file;
- a model records what it was trained on, and a run that does not match is refused;
- the pixels an `edge=skip` run leaves out are counted and reported;
- tile_features works on the thin edge chunk that 256 px chunking leaves.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from satdask import (
    GridError,
    ModelError,
    ModelRegistry,
    ThresholdModel,
    ValidationError,
    open_scene,
    run_batch,
    tile_features,
    train,
    validate,
    verify_run,
)
from satdask.io.geotiff import RasterSource
from satdask.pipeline.batch import plan_run

RNG = np.random.default_rng(7)


@pytest.fixture
def rgb(geotiff) -> Path:
    """791 x 718 x 3 uint8, like RGB.byte.tif: 3 x 2 whole 256 px tiles, 23 cols and
    206 rows left over. Values vary per tile so a misplaced tile shows."""
    data = RNG.integers(1, 255, size=(3, 718, 791), dtype=np.uint8)
    data[:, :20, :20] = 0  # some nodata
    return geotiff(data, name="rgb.tif", nodata=0)


def features(scene: xr.DataArray) -> dict[str, np.ndarray]:
    f = tile_features(scene).compute()
    return {name: f[name].values for name in ("mean_intensity", "valid_fraction", "status")}


def stored(run) -> xr.Dataset:
    return run.dataset().load()


AD_HOC = ThresholdModel(threshold=0.5)  # no training lineage: no input check applies


# --------------------------------------------------------------------------- 1. the array


def test_arithmetic_on_the_scene_is_what_the_run_computes(rgb: Path, tmp_path: Path) -> None:
    scene = open_scene(rgb)
    scaled = scene.astype("float32") / 255
    run = run_batch(scaled, AD_HOC, tmp_path / "run.zarr", scheduler="threads")
    ds = stored(run)
    expected = features(scaled)
    np.testing.assert_array_equal(ds["mean_intensity"].values, expected["mean_intensity"])
    assert np.nanmax(ds["mean_intensity"].values) <= 1.0  # not the file's 1..254 means
    assert run.attrs["scene"]["dtype"] == "float32"


def test_a_subset_is_inferred_under_its_own_coordinates(rgb: Path, tmp_path: Path) -> None:
    scene = open_scene(rgb)
    subset = scene.isel(x=slice(100, 700), y=slice(50, 600))
    run = run_batch(subset, AD_HOC, tmp_path / "run.zarr", scheduler="threads")
    ds = stored(run)
    expected = tile_features(subset).compute()
    np.testing.assert_array_equal(ds["mean_intensity"].values, expected["mean_intensity"].values)
    np.testing.assert_array_equal(ds["x"].values, expected["x"].values)
    np.testing.assert_array_equal(ds["y"].values, expected["y"].values)
    assert ds["x"].values[0] == pytest.approx(float(subset["x"][127] + subset["x"][128]) / 2)


def test_band_selection_and_any_chunking_are_honoured(rgb: Path, tmp_path: Path) -> None:
    scene = open_scene(rgb)
    one_band = scene.isel(band=[1])
    run = run_batch(one_band, AD_HOC, tmp_path / "band.zarr", scheduler="threads")
    np.testing.assert_array_equal(
        stored(run)["mean_intensity"].values, features(one_band)["mean_intensity"]
    )
    assert run.attrs["config"]["bands"] == [2]
    # chunks that are not whole tiles: every tile is still inferred, none left as nodata
    odd = scene.chunk({"x": 300, "y": 300})
    whole = run_batch(scene, AD_HOC, tmp_path / "whole.zarr", scheduler="threads")
    rechunked = run_batch(odd, AD_HOC, tmp_path / "odd.zarr", scheduler="threads")
    for name in ("mean_intensity", "status", "prediction"):
        np.testing.assert_array_equal(stored(rechunked)[name], stored(whole)[name])


def test_the_file_is_read_directly_only_when_the_array_is_the_file(rgb: Path) -> None:
    scene = open_scene(rgb, tiles_per_chunk=1)
    assert isinstance(plan_run(scene, AD_HOC).source, RasterSource)
    assert isinstance(plan_run(scene.chunk({"x": 512}), AD_HOC).source, RasterSource)
    for derived in (scene + 1, scene.isel(x=slice(0, 600)), scene.isel(band=[0])):
        assert not isinstance(plan_run(derived, AD_HOC).source, RasterSource)


def test_lineage_and_verify_say_a_derived_array_cannot_be_traced(rgb: Path, tmp_path: Path) -> None:
    scene = open_scene(rgb)
    run = run_batch(scene * 2, AD_HOC, tmp_path / "run.zarr", scheduler="threads")
    record = run.attrs["scene"]
    assert record["sha256"] is None
    assert record["derived_from"] == str(rgb)
    assert "not read from" in record["pixels"]
    report = verify_run(tmp_path / "run.zarr")
    (check,) = [c for c in report.checks if c.name == "scene sha256"]
    assert check.outcome == "skip" and "derived" in check.detail


# --------------------------------------------------------------------------- 2. the model


@pytest.fixture
def rgb_model(rgb: Path) -> ThresholdModel:
    return train([rgb], scheduler="threads")


def test_the_model_records_what_it_was_trained_on(rgb_model: ThresholdModel) -> None:
    config = rgb_model.lineage["config"]
    assert config["bands"] == [1, 2, 3]
    assert config["dtype"] == "uint8"
    assert config["tile_size"] == 256


@pytest.mark.parametrize(
    ("data", "options", "problem"),
    [
        (None, {"bands": [1]}, "1 band"),
        (None, {"tile_size": 100}, "100 px"),
        (np.ones((1, 600, 600), dtype=np.uint8), {}, "1 band"),
        (np.ones((4, 600, 600), dtype=np.uint16), {}, "uint16"),
    ],
    ids=["--bands 1", "--tile-size 100", "1-band scene", "4-band uint16"],
)
def test_a_run_that_does_not_match_the_model_is_refused(
    rgb: Path, rgb_model: ThresholdModel, geotiff, tmp_path: Path, data, options, problem
) -> None:
    scene = rgb if data is None else geotiff(data, name="other.tif")
    with pytest.raises(ModelError, match=problem) as info:
        run_batch(scene, rgb_model, tmp_path / "run.zarr", scheduler="threads", **options)
    assert "3 bands" in str(info.value) and "allow_model_mismatch" in str(info.value)
    assert not (tmp_path / "run.zarr").exists()
    run = run_batch(
        scene,
        rgb_model,
        tmp_path / "run.zarr",
        scheduler="threads",
        allow_model_mismatch=True,
        **options,
    )
    assert run.attrs["model"]["mismatch"]


def test_the_cli_refuses_a_mismatch_in_one_line(
    rgb: Path, rgb_model: ThresholdModel, tmp_path: Path
) -> None:
    ModelRegistry(tmp_path / "models").save(rgb_model)
    cmd = [sys.executable, "-m", "satdask.cli", "infer", str(rgb), "--model"]
    cmd += [str(tmp_path / "models"), "--out", str(tmp_path / "run.zarr"), "--bands", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--allow-model-mismatch" in lines[0], proc.stderr
    ok = subprocess.run([*cmd, "--allow-model-mismatch"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr


def test_training_refuses_scenes_of_different_bands(rgb: Path, geotiff) -> None:
    one = geotiff(np.ones((1, 600, 600), dtype=np.uint8), name="one.tif")
    with pytest.raises(ValidationError, match="band"):
        train([rgb, one], scheduler="threads", allow_mixed_crs=True)


# --------------------------------------------------------------------------- 3. coverage


def test_a_skip_run_counts_the_pixels_it_leaves_out(rgb: Path, tmp_path: Path) -> None:
    run = run_batch(rgb, AD_HOC, tmp_path / "run.zarr", scheduler="threads")
    coverage = run.attrs["coverage"]
    assert coverage["rows_uncovered"] == 718 % 256 == 206
    assert coverage["cols_uncovered"] == 791 % 256 == 23
    assert coverage["pixels_total"] == 718 * 791
    assert coverage["pixels_uncovered"] == 718 * 791 - 512 * 768
    assert coverage["fraction_uncovered"] == pytest.approx(0.3076, abs=1e-4)
    padded = run_batch(rgb, AD_HOC, tmp_path / "pad.zarr", scheduler="threads", edge="pad")
    assert padded.attrs["coverage"]["pixels_uncovered"] == 0


def test_validate_reports_the_left_out_pixels_and_refuses_a_scene_with_no_tile(
    rgb: Path, geotiff
) -> None:
    report = validate(rgb)
    assert report.tiles == (2, 3)
    assert report.pixels_uncovered == 718 * 791 - 512 * 768
    assert any("30.8%" in w for w in report.warnings)
    thin = geotiff(np.ones((3, 100, 2000), dtype=np.uint8), name="thin.tif")
    with pytest.raises(GridError, match=r"no whole 256 px tile.*--edge pad"):
        validate(thin)
    assert validate(thin, edge="pad").tiles == (1, 8)


# --------------------------------------------------------------------------- 4. chunking


@pytest.mark.parametrize("chunks", [{"x": 256, "y": 256}, {"x": 512, "y": 256}])
def test_tile_features_on_ordinary_256_px_chunking(rgb: Path, chunks) -> None:
    scene = open_scene(rgb)
    expected = features(scene)
    for name, values in features(scene.chunk(chunks)).items():
        np.testing.assert_array_equal(values, expected[name])


def test_an_array_without_a_crs_is_refused_by_the_lazy_api_too(rgb: Path) -> None:
    bare = open_scene(rgb).drop_vars("spatial_ref")
    with pytest.raises(ValidationError, match="no CRS"):
        tile_features(bare)
