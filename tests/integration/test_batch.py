from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rioxarray  # noqa: F401  (the .rio accessor: a run over a file never imports it)
import xarray as xr
from affine import Affine
from support import assert_same_arrays, corrupt_block, store_arrays

from satdask import ModelRegistry, RunError, ThresholdModel, open_run, open_scene, run_batch
from satdask.core.features import STATUS_FAILED, STATUS_OK
from satdask.core.grid import TileGrid
from satdask.core.schema import VARIABLES
from satdask.io.store import ATTRS_KEY, FILL_VALUES, decode_attrs, encode_attrs
from satdask.pipeline.runs import RunResult
from satdask.views.tiles import tile_dataset


@pytest.fixture
def artifact(sample_registry: Path):
    return ModelRegistry(sample_registry).load()


@pytest.fixture
def threaded_run(sample_tif: Path, artifact, tmp_path: Path) -> RunResult:
    return run_batch(sample_tif, artifact, tmp_path / "run.zarr", scheduler="threads")


def test_run_store_is_a_georeferenced_tile_grid(threaded_run: RunResult, sample_tif: Path) -> None:
    ds = xr.open_zarr(threaded_run.path, decode_coords="all")
    scene = open_scene(sample_tif)
    assert ds.rio.crs == scene.rio.crs
    assert ds.rio.transform() == scene.rio.transform() @ __import__("affine").Affine.scale(256)
    assert dict(ds.sizes) == {"y": 4, "x": 4}
    assert ds["prediction"].dtype == np.int8 and ds["status"].dtype == np.uint8
    assert ds["valid_fraction"].dtype == np.float32
    # tile centres in the scene's CRS
    assert float(ds.x[0]) == float(scene.x[0]) - 5.0 + 1280.0


@pytest.mark.filterwarnings("ignore:Consolidated metadata:UserWarning")  # xarray's own write
def test_the_store_reads_back_as_xarray_and_rioxarray_would_write_it(
    threaded_run: RunResult, tmp_path: Path
) -> None:
    """The store is written with zarr alone; here xarray writes the same tile grid."""
    stored = xr.open_zarr(threaded_run.path, decode_coords="all")
    grid = TileGrid(
        height=stored.sizes["y"] * 256,
        width=stored.sizes["x"] * 256,
        transform=stored.rio.transform() * Affine.scale(1 / 256),
        tile_size=256,
    )
    reference = tile_dataset(
        {name: stored[name].values for name in VARIABLES}, grid=grid, crs=stored.rio.crs
    )
    reference.attrs[ATTRS_KEY] = encode_attrs(threaded_run.attrs)
    for name, fill in FILL_VALUES.items():
        reference[name].encoding["fill_value"] = fill
    for name in VARIABLES:  # spatial_ref a coordinate of each, as satdask writes it
        reference[name].encoding["coordinates"] = "spatial_ref"
    reference.to_zarr(tmp_path / "xarray.zarr", zarr_format=3, consolidated=True)
    for decode in ("all", True):
        got = xr.open_zarr(threaded_run.path, decode_coords=decode)
        want = xr.open_zarr(tmp_path / "xarray.zarr", decode_coords=decode)
        xr.testing.assert_identical(got, want)
        for name in got.variables:  # how each reads back: fill values, chunks, dtypes
            np.testing.assert_equal(_encoding(got[name]), _encoding(want[name]), err_msg=name)
    assert got.rio.crs == want.rio.crs and got.rio.transform() == want.rio.transform()


def _encoding(array: xr.DataArray) -> dict:
    return {k: v for k, v in array.encoding.items() if k != "source"}


def test_attrs_trace_the_run(threaded_run: RunResult, sample_tif: Path, artifact) -> None:
    from satdask.io.lineage import file_sha256

    a = threaded_run.attrs
    assert a["complete"] is True
    assert a["model"] == {"id": artifact.id, "sha256": artifact.sha256, "uri": artifact.uri}
    assert a["scene"]["sha256"] == file_sha256(sample_tif)
    assert a["scene"]["crs"] == "EPSG:32633"
    assert a["scene"]["acquisition_time"] == "2026-06-01T10:30:00"
    assert a["config"]["tile_size"] == 256 and a["config"]["edge"] == "skip"
    assert {"satdask", "dask", "zarr", "gdal"} <= set(a["versions"])
    assert a["counts"] == {
        "tiles_total": 16,
        "tiles_inferred": 16,
        "tiles_skipped": 0,
        "tiles_failed": 0,
    }
    assert {"compute_s", "total_s", "hash_s"} <= set(a["timings"])
    assert a["monitoring"]["latency"]["blocks"] == a["config"]["blocks"]
    assert a["health"]["drift_detected"] is False  # the training scene itself
    assert threaded_run.should_retrain() is False
    json.dumps(a, allow_nan=False)  # strict JSON, no NaN


def test_satdask_infer_over_a_file_never_imports_xarray(
    sample_tif: Path, sample_registry: Path, tmp_path: Path
) -> None:
    """xarray and pandas are 0.3 s of a run's start; a file needs neither (see plan_run)."""
    heavy = ("xarray", "pandas", "rioxarray", "dask.array", "distributed", "matplotlib")
    script = (
        "import sys\n"
        "from satdask.cli import main\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))\n"
    )
    out = tmp_path / "run.zarr"
    argv = ["infer", str(sample_tif), "--model", str(sample_registry), "--out", str(out)]
    done = subprocess.run(
        [sys.executable, "-c", script, *argv, "--scheduler", "threads"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert open_run(out).counts["tiles_total"] == 16


def test_predictions_follow_the_threshold(threaded_run: RunResult, artifact) -> None:
    out = store_arrays(threaded_run.path)
    ok = out["status"] == STATUS_OK
    expected = (out["mean_intensity"] > artifact.model.threshold).astype(np.int8)
    np.testing.assert_array_equal(out["prediction"][ok], expected[ok])
    assert 0 < out["prediction"].sum() < ok.sum()  # both classes occur in the sample


def test_existing_output_is_refused_and_left_untouched(
    threaded_run: RunResult, sample_tif: Path, artifact
) -> None:
    before = {p: p.read_bytes() for p in threaded_run.path.rglob("*") if p.is_file()}
    with pytest.raises(RunError, match="already exists; pass overwrite=True"):
        run_batch(sample_tif, artifact, threaded_run.path, scheduler="threads")
    after = {p: p.read_bytes() for p in threaded_run.path.rglob("*") if p.is_file()}
    assert before == after


def test_overwrite_replaces_a_store_atomically(threaded_run: RunResult, sample_tif, artifact):
    again = run_batch(sample_tif, artifact, threaded_run.path, scheduler="threads", overwrite=True)
    assert again.run_id != threaded_run.run_id
    assert open_run(threaded_run.path).run_id == again.run_id
    leftovers = [p.name for p in threaded_run.path.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_readers_refuse_an_incomplete_store(threaded_run: RunResult) -> None:
    import zarr

    group = zarr.open_group(threaded_run.path, mode="r+")
    group.attrs[ATTRS_KEY] = {**decode_attrs(group.attrs[ATTRS_KEY]), "complete": False}
    with pytest.raises(RunError, match="incomplete"):
        open_run(threaded_run.path)


def test_predictions_are_identical_across_chunking_schedulers_and_runs(
    sample_tif: Path, artifact, tmp_path: Path
) -> None:
    runs = {
        "default": run_batch(sample_tif, artifact, tmp_path / "a.zarr", scheduler="threads"),
        "k1": run_batch(
            sample_tif, artifact, tmp_path / "b.zarr", scheduler="threads", tiles_per_chunk=1
        ),
        "k2": run_batch(
            sample_tif, artifact, tmp_path / "c.zarr", scheduler="threads", tiles_per_chunk=2
        ),
        "again": run_batch(sample_tif, artifact, tmp_path / "d.zarr", scheduler="threads"),
        "local": run_batch(
            sample_tif, artifact, tmp_path / "e.zarr", scheduler="local", tiles_per_chunk=2
        ),
    }
    assert runs["k1"].attrs["config"]["blocks"] == 16
    assert runs["k2"].attrs["config"]["blocks"] == 4
    assert runs["local"].attrs["config"]["scheduler"] == "local"
    for name, run in runs.items():
        assert_same_arrays(runs["default"].path, run.path)
        assert run.run_id != runs["default"].run_id or name == "default"


@pytest.mark.parametrize("tiles_per_chunk", [1, 3])
def test_an_undecodable_block_fails_only_its_tile(
    geotiff, tmp_path: Path, tiles_per_chunk: int
) -> None:
    rng = np.random.default_rng(0)
    path = geotiff(rng.integers(1, 1000, (3, 768, 768)).astype(np.uint16), nodata=0)
    corrupt_block(path, x=2, y=1)  # tile row 1, col 2
    model = ThresholdModel(threshold=500.0)
    run = run_batch(
        path, model, tmp_path / "run.zarr", scheduler="threads", tiles_per_chunk=tiles_per_chunk
    )
    out = store_arrays(run.path)
    failed = np.zeros((3, 3), bool)
    failed[1, 2] = True
    np.testing.assert_array_equal(out["status"] == STATUS_FAILED, failed)
    assert out["prediction"][1, 2] == -1 and np.isnan(out["mean_intensity"][1, 2])
    assert (out["status"][~failed] == STATUS_OK).all()
    assert run.counts["tiles_failed"] == 1 and run.counts["tiles_inferred"] == 8
    assert [e["tile"] for e in run.errors] == [[1, 2]]
    assert "TIFFReadEncodedTile" in run.errors[0]["message"]
    assert run.monitoring["counts"]["failed"] == 1
    assert run.health["status"] == "degraded"  # 1 of 9 tiles failed > 2%
