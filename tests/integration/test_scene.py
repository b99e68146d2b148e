from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dask
import numpy as np
import pytest
from support import CountingScheduler

import satdask.io._gdal
from satdask import SceneError, ValidationError, open_scene, read_tile, scene_grid, validate


def test_open_scene_is_lazy_until_computed(sample_tif: Path) -> None:
    counter = CountingScheduler()
    with dask.config.set(scheduler=counter):
        scene = open_scene(sample_tif, tiles_per_chunk=1)
        subset = (scene.sel(band=[1, 2]) * 2).mean("band")
        assert counter.calls == 0
        subset.isel(y=slice(0, 10), x=slice(0, 10)).compute()
    assert counter.calls == 1


def test_scene_carries_georeferencing_nodata_and_time(sample_tif: Path) -> None:
    scene = open_scene(sample_tif)
    assert scene.dims == ("band", "y", "x") and scene.shape == (4, 1024, 1024)
    assert scene.rio.crs.to_epsg() == 32633
    assert scene.rio.transform().a == 10.0
    assert scene.rio.nodata == 0
    assert scene.attrs["acquisition_time"] == "2026-06-01T10:30:00"
    assert list(scene["band"].values) == [1, 2, 3, 4]


def test_chunks_are_whole_tiles(sample_tif: Path) -> None:
    one = open_scene(sample_tif, tiles_per_chunk=1)
    assert one.chunks[1] == (256,) * 4 and one.chunks[2] == (256,) * 4
    default = open_scene(sample_tif)
    assert all(c % 256 == 0 for c in default.chunks[1] + default.chunks[2])
    assert default.chunks[0] == (4,)


def test_default_chunks_target_tens_of_megabytes(geotiff) -> None:
    data = np.zeros((4, 4096, 4096), dtype=np.uint16)
    scene = open_scene(geotiff(data), tile_size=256)
    nbytes = 4 * scene.chunks[1][0] * scene.chunks[2][0] * 2
    assert 8 * 2**20 <= nbytes <= 64 * 2**20


def test_band_selection_and_missing_bands(sample_tif: Path) -> None:
    scene = open_scene(sample_tif, bands=[3, 1])
    assert list(scene["band"].values) == [3, 1]
    full = open_scene(sample_tif)
    np.testing.assert_array_equal(scene[:, :5, :5].values, full.sel(band=[3, 1])[:, :5, :5].values)
    with pytest.raises(SceneError, match=r"band\(s\) 9 do not exist; the scene has bands 1..4"):
        open_scene(sample_tif, bands=[1, 9])


def test_read_tile_equals_the_lazy_array(sample_tif: Path) -> None:
    scene = open_scene(sample_tif)
    grid = scene_grid(scene)
    np.testing.assert_array_equal(
        read_tile(scene, 2, 3, grid=grid), scene[:, 512:768, 768:1024].values
    )


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "missing.tif", "no such file"),
        (lambda p: p, "is a directory"),
        (lambda p: write(p / "empty.tif", b""), "file is empty"),
        (lambda p: write(p / "text.tif", b"hello"), "not a readable raster"),
    ],
)
def test_unopenable_sources_name_the_file(tmp_path: Path, make, message: str) -> None:
    path = make(tmp_path)
    with pytest.raises(SceneError, match=message) as info:
        open_scene(path)
    assert str(path.name) in str(info.value)


def test_validation_reports_and_fatal_errors(geotiff, tmp_path: Path) -> None:
    ok = geotiff(np.ones((2, 300, 300), np.uint8), tags={"TIFFTAG_DATETIME": "2024:01:02 03:04:05"})
    report = validate(ok)
    assert report.acquisition_time == "2024-01-02T03:04:05"
    assert report.warnings[0] == "no nodata value: every pixel counts as valid"
    assert report.warnings[1].startswith("edge skip leaves 24,464 of 90,000 pixels (27.2%)")
    no_time = geotiff(np.ones((1, 300, 300), np.uint8), name="b.tif", nodata=0)
    assert any("no acquisition time" in w for w in validate(no_time).warnings)
    assert validate(no_time, acquisition_time="2024-05-01T00:00:00", edge="pad").warnings == ()
    no_crs = geotiff(np.ones((1, 300, 300), np.uint8), name="c.tif", crs=None)
    with pytest.raises(ValidationError, match=r"c\.tif: no CRS"):
        validate(no_crs)
    cplx = geotiff(np.ones((1, 300, 300), np.complex64), name="d.tif", compress=None)
    with pytest.raises(ValidationError, match="dtype complex64 is not supported"):
        open_scene(cplx)


def test_rotated_transforms_are_refused(geotiff) -> None:
    from affine import Affine

    rotated = Affine.rotation(10) @ Affine(10.0, 0.0, 0.0, 0.0, -10.0, 0.0)
    path = geotiff(np.ones((1, 300, 300), np.uint8), transform=rotated)
    with pytest.raises(ValidationError, match="rotated or sheared"):
        open_scene(path)


def test_mixed_crs_is_refused_unless_allowed(geotiff) -> None:
    from satdask import validate_many

    a = geotiff(np.ones((1, 300, 300), np.uint8), name="a.tif")
    b = geotiff(np.ones((1, 300, 300), np.uint8), name="b.tif", crs="EPSG:4326")
    with pytest.raises(ValidationError, match="different CRS") as info:
        validate_many([a, b])
    assert "a.tif" in str(info.value) and "b.tif" in str(info.value)
    assert len(validate_many([a, b], allow_mixed_crs=True)) == 2


def test_a_cog_over_http_opens_lazily_and_reads_the_same_pixels(
    http_root, sample_tif: Path
) -> None:
    import shutil

    base, root = http_root
    shutil.copy(sample_tif, root / "scene.tif")
    remote = open_scene(f"{base}/scene.tif")
    local = open_scene(sample_tif)
    assert remote.attrs["source"] == f"{base}/scene.tif"
    assert remote.rio.crs == local.rio.crs and remote.shape == local.shape
    grid = scene_grid(remote)
    np.testing.assert_array_equal(
        read_tile(remote, 1, 2, grid=grid), read_tile(local, 1, 2, grid=grid)
    )


def test_a_missing_url_is_a_scene_error(http_root) -> None:
    base, _ = http_root
    with pytest.raises(SceneError, match=r"missing\.tif: not a readable raster"):
        open_scene(f"{base}/missing.tif")


def test_gdal_settings_reach_every_reading_thread(sample_tif: Path) -> None:
    """Batch reads run on dask's worker threads; rasterio's config there is thread-local."""
    script = f"""
import os, threading
import rasterio.env
import satdask
os.environ.pop("GDAL_CACHEMAX", None)
satdask.open_scene({str(sample_tif)!r}).isel(x=slice(0, 256), y=slice(0, 256)).compute(
    scheduler="threads"
)
seen = []
worker = threading.Thread(target=lambda: seen.append(rasterio.env.get_gdal_config("GDAL_CACHEMAX")))
worker.start(); worker.join()
print(seen[0], os.environ["VSI_CACHE"])
"""
    env = {k: v for k, v in os.environ.items() if k not in satdask.io._gdal.GDAL_OPTIONS}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    cache_bytes, vsi_cache = out.stdout.split()
    assert (int(cache_bytes), vsi_cache) == (64 * 2**20, "TRUE")
