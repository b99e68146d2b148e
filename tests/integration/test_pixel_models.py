"""Pixel models end to end: a real ONNX network over a real GeoTIFF, into a real Zarr store.

The oracle is onnxruntime run directly on the whole scene, with the scaling the
metadata declares applied by hand here; satdask must give the same class at every
pixel a halo away from the scene's edge, whatever the chunking or scheduler.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import rasterio
import zarr
from dask.core import flatten
from support import write_geotiff

import satdask
from satdask.errors import ModelError
from satdask.io.sample import write_sample
from satdask.io.sample_model import segmentation_model, window_classifier
from satdask.models.onnx import OnnxModel


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """700 x 900 px: chunk and tile borders fall inside it, and its edges are partial tiles."""
    sample = write_sample(tmp_path_factory.mktemp("pixel") / "sample.tif", size=1024, seed=3)
    with rasterio.open(sample) as src:
        data, profile = src.read()[:, :700, :900], src.profile
    out = sample.with_name("scene.tif")
    profile.update(width=900, height=700, tiled=True, blockxsize=256, blockysize=256)
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(data)
    return out


@pytest.fixture(scope="module")
def seg() -> tuple[OnnxModel, bytes, dict[str, Any]]:
    model_bytes, meta = segmentation_model(bands=4, classes=3, layers=3, kernel=3)
    return OnnxModel.load(model_bytes, meta, name="seg.onnx"), model_bytes, meta


def _oracle_scores(model_bytes: bytes, meta: dict[str, Any], pixels: np.ndarray) -> np.ndarray:
    """The network on the whole scene at once, scaled as its metadata says (x / value)."""
    scaling = meta["mlm:input"][0]["value_scaling"]
    assert [s["type"] for s in scaling] == ["scale"]
    x = (pixels.astype(np.float32) / np.float32(scaling[0]["value"]))[None]
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0][0]


def _pixels(out: Path) -> np.ndarray:
    return zarr.open_group(out, mode="r")["pixels/prediction"][...]


def test_prediction_equals_the_network_on_the_whole_scene(
    scene: Path, seg: tuple[OnnxModel, bytes, dict[str, Any]], tmp_path: Path
) -> None:
    model, model_bytes, meta = seg
    run = satdask.run_batch(scene, model, tmp_path / "run.zarr", scheduler="threads")
    got = _pixels(run.path)
    with rasterio.open(scene) as src:
        pixels, nodata = src.read(), src.nodata
    scores = _oracle_scores(model_bytes, meta, pixels)
    expected = scores.argmax(axis=0)
    valid = (pixels != nodata).any(axis=0)
    fill = zarr.open_group(run.path, mode="r")["pixels/prediction"].fill_value
    assert 0 < valid.mean() < 1, "the sample's nodata collar is in the scene"
    assert np.all(got[~valid] == fill)
    _assert_same_classes(got, scores, valid, halo=model.halo)
    h = model.halo
    assert len(np.unique(expected[h:-h, h:-h][valid[h:-h, h:-h]])) == 3, "every class occurs"


def _assert_same_classes(
    got: np.ndarray, scores: np.ndarray, valid: np.ndarray, *, halo: int
) -> None:
    """The oracle's classes on valid pixels a halo inside the scene; a difference only
    where its two best scores tie exactly."""
    inner = (slice(halo, -halo), slice(halo, -halo))
    differ = (got[inner] != scores.argmax(axis=0)[inner]) & valid[inner]
    top2 = np.sort(scores[(slice(None), *inner)], axis=0)[-2:]
    assert np.all(top2[0][differ] == top2[1][differ]), f"{differ.sum()} pixels differ"


def test_pixels_are_bit_identical_across_chunkings_and_schedulers(
    scene: Path, seg: tuple[OnnxModel, bytes, dict[str, Any]], tmp_path: Path
) -> None:
    model = seg[0]
    runs = {
        name: _pixels(
            satdask.run_batch(
                scene, model, tmp_path / f"{name}.zarr", scheduler=scheduler, tiles_per_chunk=k
            ).path
        )
        for name, k, scheduler in [
            ("one", 1, "threads"),
            ("two", 2, "threads"),
            ("default", None, "threads"),
            ("again", None, "threads"),
            ("local", 2, "local"),
        ]
    }
    first = runs.pop("one")
    assert first.shape == (700, 900) and first.dtype == np.uint8
    for name, other in runs.items():
        assert np.array_equal(first, other), name


def test_the_lazy_dataset_equals_the_store(
    scene: Path, seg: tuple[OnnxModel, bytes, dict[str, Any]], tmp_path: Path
) -> None:
    model = seg[0]
    ds = satdask.predict(scene, model, tiles_per_chunk=1, keep_scores=True)
    assert ds["prediction"].dims == ("y", "x") and ds["prediction"].chunks is not None
    # the blocks stay in the graph dask culls for the pixels (they did not, by hash order)
    data = ds["prediction"].data
    culled = data.__dask_graph__().cull(set(flatten(data.__dask_keys__())))
    assert any(str(k).startswith("('satdask-blocks-") for k in culled)
    assert ds.rio.crs is not None
    with rasterio.open(scene) as src:
        assert ds.rio.transform() == src.transform
    run = satdask.run_batch(scene, model, tmp_path / "run.zarr", keep_scores=True)
    store = zarr.open_group(run.path, mode="r")
    assert np.array_equal(ds["prediction"].values, store["pixels/prediction"][...])
    assert np.array_equal(ds["scores"].values, store["pixels/scores"][...], equal_nan=True)
    summary = satdask.open_run(run.path).dataset()
    assert summary["class_fraction"].dims == ("class", "y", "x")
    ok = summary["status"].values == 0
    sums = summary["class_fraction"].sum("class").values[ok]
    assert np.allclose(sums, 1.0)


def test_masked_and_nodata_pixels_get_no_class(
    seg: tuple[OnnxModel, bytes, dict[str, Any]], tmp_path: Path
) -> None:
    rng = np.random.default_rng(0)
    data = rng.integers(1, 60000, size=(4, 300, 300), dtype=np.uint16)
    data[:, 100:150, 40:90] = 0  # nodata in every band
    path = write_geotiff(tmp_path / "nodata.tif", data, nodata=0)
    run = satdask.run_batch(path, seg[0], tmp_path / "run.zarr", tile_size=128)
    got = _pixels(run.path)
    fill = zarr.open_group(run.path, mode="r")["pixels/prediction"].fill_value
    assert np.all(got[100:150, 40:90] == fill)
    assert np.all(got[:100] != fill)


def test_fixed_window_model_and_window_classifier(scene: Path, tmp_path: Path) -> None:
    fixed_bytes, fixed_meta = segmentation_model(bands=4, classes=3, layers=8, window=64)
    fixed = OnnxModel.load(fixed_bytes, fixed_meta, name="fixed.onnx")
    assert (fixed.window, fixed.halo) == (64, 8)
    a = _pixels(satdask.run_batch(scene, fixed, tmp_path / "a.zarr", tiles_per_chunk=1).path)
    b = _pixels(satdask.run_batch(scene, fixed, tmp_path / "b.zarr", tiles_per_chunk=3).path)
    assert np.array_equal(a, b)
    # the same weights with dynamic H and W: the oracle runs it on the whole scene
    twin_bytes, twin_meta = segmentation_model(bands=4, classes=3, layers=8)
    with rasterio.open(scene) as src:
        pixels, nodata = src.read(), src.nodata
    scores = _oracle_scores(twin_bytes, twin_meta, pixels)
    _assert_same_classes(a, scores, (pixels != nodata).any(axis=0), halo=8)

    clf_bytes, clf_meta = window_classifier(bands=4, classes=2, window=64)
    clf = OnnxModel.load(clf_bytes, clf_meta, name="clf.onnx")
    run = satdask.run_batch(scene, clf, tmp_path / "clf.zarr")
    ds = run.dataset()
    assert ds.sizes == {"y": 700 // 64, "x": 900 // 64}
    assert "pixels" not in zarr.open_group(run.path, mode="r")
    session = ort.InferenceSession(clf_bytes, providers=["CPUExecutionProvider"])
    with rasterio.open(scene) as src:
        window = src.read(window=((64, 128), (128, 192))).astype(np.float32)
    scale = np.float32(clf_meta["mlm:input"][0]["value_scaling"][0]["value"])
    expected = session.run(None, {session.get_inputs()[0].name: (window / scale)[None]})[0]
    assert int(ds["prediction"].values[1, 2]) == int(expected.argmax())


@pytest.mark.parametrize("shape", [(200, 300), (300, 200), (200, 200), (300, 700)])
def test_scenes_smaller_than_a_tile_get_every_pixel(
    shape: tuple[int, int], seg: tuple[OnnxModel, bytes, dict[str, Any]], tmp_path: Path
) -> None:
    data = np.random.default_rng(1).integers(1, 60000, size=(4, *shape), dtype=np.uint16)
    path = write_geotiff(tmp_path / "small.tif", data)
    for edge in ("skip", "pad"):
        if edge == "skip" and min(shape) < 256:
            continue  # no whole tile: refused, as for every model
        run = satdask.run_batch(path, seg[0], tmp_path / f"{edge}.zarr", edge=edge)
        got = _pixels(run.path)
        assert got.shape == shape and not np.any(got == 255)


def test_a_band_count_the_model_cannot_read_is_refused_with_nothing_written(
    scene: Path, seg: tuple[OnnxModel, bytes, dict[str, Any]], tmp_path: Path
) -> None:
    out = tmp_path / "run.zarr"
    with pytest.raises(ModelError, match=r"reads 4 bands, the scene gives 3 bands") as info:
        satdask.run_batch(scene, seg[0], out, bands=[1, 2, 3])
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []
