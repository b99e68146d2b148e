"""The synthetic sample scene: deterministic, georeferenced, with a nodata collar."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st

from satdask.errors import SatdaskError
from satdask.io import sample as sample_module
from satdask.io.lineage import file_sha256
from satdask.io.sample import write_sample

DTYPES = ["uint8", "uint16", "int16", "uint32", "int32", "float32", "float64"]


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


def _collar(size: int, tile_size: int) -> int:
    return max(tile_size // 4, size // 64)


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sample(tmp_path_factory.mktemp("sample") / "scene.tif", size=1024, bands=3)


def test_returns_the_path_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    target = tmp_path / "s.tif"
    assert write_sample(target, size=300, bands=1) == target
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.tif"]


def test_same_arguments_give_identical_bytes(tmp_path: Path) -> None:
    a = write_sample(tmp_path / "a.tif", size=512, bands=2, seed=7)
    b = write_sample(tmp_path / "b.tif", size=512, bands=2, seed=7)
    assert file_sha256(a) == file_sha256(b)


def test_another_seed_gives_other_pixels(tmp_path: Path) -> None:
    a = write_sample(tmp_path / "a.tif", size=512, bands=2, seed=1)
    b = write_sample(tmp_path / "b.tif", size=512, bands=2, seed=2)
    assert file_sha256(a) != file_sha256(b)
    assert not np.array_equal(_read(a), _read(b))


def test_bytes_do_not_depend_on_threads_or_gdal_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = file_sha256(write_sample(tmp_path / "ref.tif", size=768, bands=2))
    with rasterio.Env(GDAL_CACHEMAX=512 * 1024 * 1024):
        big_cache = file_sha256(write_sample(tmp_path / "cache.tif", size=768, bands=2))
    monkeypatch.setattr(sample_module, "_COG_THREADS", "1")
    one_thread = file_sha256(write_sample(tmp_path / "one.tif", size=768, bands=2))
    assert big_cache == reference
    assert one_thread == reference


def test_georeferencing_tags_and_layout(scene: Path) -> None:
    with rasterio.open(scene) as src:
        assert src.driver == "GTiff"
        assert (src.width, src.height, src.count) == (1024, 1024, 3)
        assert src.crs.to_epsg() == 32633
        assert src.transform == Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 5000000.0)
        assert src.nodata == 0
        assert src.dtypes == ("uint16",) * 3
        assert src.block_shapes == [(256, 256)] * 3
        assert src.tags()["TIFFTAG_DATETIME"] == "2026:06:01 10:30:00"
        structure = src.tags(ns="IMAGE_STRUCTURE")
        assert structure["LAYOUT"] == "COG"
        assert structure["COMPRESSION"] == "DEFLATE"
        assert src.overviews(1) == [2, 4]


@pytest.mark.parametrize(("size", "tile_size"), [(512, 256), (1024, 16), (200, 64)])
def test_collar_is_nodata_and_everything_else_is_valid(
    tmp_path: Path, size: int, tile_size: int
) -> None:
    data = _read(write_sample(tmp_path / "s.tif", size=size, bands=2, tile_size=tile_size))
    c = _collar(size, tile_size)
    valid = np.zeros((size, size), dtype=bool)
    valid[c : size - c, c : size - c] = True
    assert (data[:, ~valid] == 0).all()
    assert (data[:, valid] >= 1).all()


def test_tile_means_split_into_bright_and_dark(tmp_path: Path) -> None:
    for seed in (0, 1, 2):
        data = _read(write_sample(tmp_path / f"s{seed}.tif", size=2048, bands=1, seed=seed))
        tiles = data[0].reshape(8, 256, 8, 256).swapaxes(1, 2).astype(np.float64)
        valid = tiles > 0
        means = (tiles * valid).sum(axis=(2, 3)) / valid.sum(axis=(2, 3))
        above = (means > means.mean()).mean()
        assert 0.2 <= above <= 0.8, f"seed {seed}: {above:.2f} of tiles above the mean"
        # Bright tiles are several times brighter than dark ones, not a faint ripple.
        assert np.percentile(means, 90) > 3 * np.percentile(means, 10), f"seed {seed}"


def test_bands_are_offset_from_each_other(scene: Path) -> None:
    data = _read(scene)[:, 64:-64, 64:-64].astype(np.float64)
    band_means = data.mean(axis=(1, 2))
    assert np.all(np.diff(band_means) > 100)


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_dtype(tmp_path: Path, dtype: str) -> None:
    path = write_sample(tmp_path / "s.tif", size=320, bands=2, dtype=dtype)
    with rasterio.open(path) as src:
        assert src.dtypes == (dtype, dtype)
        assert src.nodata == 0
        data = src.read()
    assert data.dtype == np.dtype(dtype)
    interior = data[:, 64:-64, 64:-64]
    assert np.isfinite(interior).all()
    assert interior.min() >= 1
    assert interior.max() <= (250 if dtype == "uint8" else 10000)
    assert interior.std() > 0.05 * interior.max()  # real structure, not a constant


@given(
    size=st.integers(min_value=1, max_value=300),
    tile_size=st.sampled_from([16, 32, 64]),
    bands=st.integers(min_value=1, max_value=3),
)
@settings(max_examples=15, deadline=None)
def test_any_size_has_the_right_shape_and_collar(size: int, tile_size: int, bands: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = write_sample(Path(tmp) / "s.tif", size=size, bands=bands, tile_size=tile_size)
        with rasterio.open(path) as src:
            data = src.read()
        assert sorted(p.name for p in Path(tmp).iterdir()) == ["s.tif"]
    assert data.shape == (bands, size, size)
    c = _collar(size, tile_size)
    inner = data[:, c : size - c, c : size - c]
    assert (inner >= 1).all()
    assert int((data > 0).sum()) == inner.size


def test_replaces_an_existing_file_only_when_complete(tmp_path: Path) -> None:
    target = tmp_path / "s.tif"
    target.write_bytes(b"not a raster")
    write_sample(target, size=256, bands=1)
    with rasterio.open(target) as src:
        assert src.count == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.tif"]


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"size": 0}, "--size"),
        ({"size": 2.5}, "--size"),
        ({"bands": 0}, "--bands"),
        ({"dtype": "complex64"}, "--dtype 'complex64'"),
        ({"dtype": "int8"}, "--dtype 'int8'"),
        ({"tile_size": 100}, "--tile-size"),
        ({"tile_size": 0}, "--tile-size"),
        ({"seed": -1}, "--seed"),
    ],
)
def test_bad_arguments_name_the_argument(tmp_path: Path, kwargs: dict, named: str) -> None:
    with pytest.raises(SatdaskError, match=r"^sample: ") as info:
        write_sample(tmp_path / "s.tif", **{"size": 64, **kwargs})
    assert named in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_unsupported_dtype_lists_the_supported_ones(tmp_path: Path) -> None:
    with pytest.raises(SatdaskError) as info:
        write_sample(tmp_path / "s.tif", dtype="complex64")
    assert all(name in str(info.value) for name in DTYPES)


def test_missing_output_directory(tmp_path: Path) -> None:
    with pytest.raises(SatdaskError, match="does not exist"):
        write_sample(tmp_path / "nope" / "s.tif", size=64)
