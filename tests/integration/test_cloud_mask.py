"""s2cloudless through satdask equals s2cloudless itself, on every pixel.

The oracle is the installed `s2cloudless.S2PixelCloudDetector(all_bands=True)` run on
the whole scene in memory (`get_cloud_probability_maps`, `get_cloud_masks`), fed the
reflectances satdask documents: (DN + offset) / 10000 in float32. satdask runs the
same LightGBM file and OpenCV calls block by block with a halo, so its probabilities
(float32, as the reference's) and masks must be equal, bit for bit, at every pixel:
at the scene's edges (reflected convolution, clear beyond for the dilation) and
across chunk borders (`tiles_per_chunk=1` puts one at every tile). The scenes are
synthetic Sentinel-2 L1C (satdask.io.sample_s2), as real COGs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import s2cloudless  # the oracle: the dev extra installs it
import xarray as xr
from procs import dask_cluster

import satdask
from satdask.errors import SatdaskError, SceneError
from satdask.io.registry import ModelRegistry
from satdask.io.sample_s2 import write_s2_item, write_s2_scene
from satdask.models.s2cloudless import CloudMaskModel, model_file, reflectance

FILL = 255
DEFAULT = {"threshold": 0.4, "average_over": 1, "dilation_size": 1}
WIDER = {"threshold": 0.4, "average_over": 4, "dilation_size": 2}


def reference(dn: np.ndarray, *, dn_offset: int = 0, **params: float) -> dict[str, np.ndarray]:
    """The reference's probabilities and masks of a (13, y, x) scene, on the whole array."""
    detector = s2cloudless.S2PixelCloudDetector(all_bands=True, **params)
    data = np.moveaxis(reflectance(dn, dn_offset=dn_offset), 0, -1)[None]
    probability = detector.get_cloud_probability_maps(data)[0]
    return {"probability": probability, "mask": detector.get_cloud_masks(data)[0]}


def pixels(store: Path) -> xr.Dataset:
    return xr.open_zarr(store, group="pixels", decode_coords="all", mask_and_scale=False).load()


def assert_equal_to_reference(store: Path, expected: dict[str, np.ndarray], valid: np.ndarray):
    ds = pixels(store)
    assert ds.prediction.dtype == np.uint8 and ds.cloud_probability.dtype == np.float32
    prediction, probability = ds.prediction.values, ds.cloud_probability.values
    np.testing.assert_array_equal(prediction[valid], expected["mask"][valid])
    np.testing.assert_array_equal(probability[valid], expected["probability"][valid])
    assert (prediction[~valid] == FILL).all() and np.isnan(probability[~valid]).all()


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("s2")
    return {
        "mixed": write_s2_scene(base / "mixed.tif", width=1500, height=1300, seed=1),
        "clear": write_s2_scene(base / "clear.tif", width=520, height=400, kind="clear", seed=2),
        "cloudy": write_s2_scene(base / "cloudy.tif", width=520, height=400, kind="cloudy"),
        "collar": write_s2_scene(base / "collar.tif", width=600, height=500, collar=37, seed=4),
    }


@pytest.fixture(scope="module")
def mixed_reference(scenes: dict[str, Path]) -> dict[str, dict[str, np.ndarray]]:
    """The reference on the mixed scene, for both parameter sets. Its probabilities do not
    depend on them, and `get_cloud_masks` is `get_mask_from_prob` of them (the reference's
    own code), so the classifier runs once here; the smaller scenes call both."""
    with rasterio.open(scenes["mixed"]) as src:
        dn = src.read()
    data = np.moveaxis(reflectance(dn), 0, -1)[None]
    probability = s2cloudless.S2PixelCloudDetector(all_bands=True).get_cloud_probability_maps(data)
    return {
        name: {
            "probability": probability[0],
            "mask": s2cloudless.S2PixelCloudDetector(all_bands=True, **params).get_mask_from_prob(
                probability
            )[0],
        }
        for name, params in {"default": DEFAULT, "wider": WIDER}.items()
    }


@pytest.mark.parametrize(
    ("params", "tiles_per_chunk", "scheduler"),
    [("default", 1, "threads"), ("wider", None, "local")],
)
def test_the_mixed_scene_equals_the_reference(
    scenes: dict[str, Path],
    mixed_reference: dict[str, dict[str, np.ndarray]],
    tmp_path: Path,
    params: str,
    tiles_per_chunk: int | None,
    scheduler: str,
) -> None:
    model = CloudMaskModel.installed(**(DEFAULT if params == "default" else WIDER))
    store = tmp_path / "run.zarr"
    satdask.run_batch(
        scenes["mixed"], model, store, tiles_per_chunk=tiles_per_chunk, scheduler=scheduler
    )
    expected = mixed_reference[params]
    mask = expected["mask"]
    assert 0.05 < mask.mean() < 0.95, "the mixed scene has clouds and clear sky"
    assert mask[0].any() and mask[:, 0].any(), "clouds reach the scene's edges"
    assert_equal_to_reference(store, expected, np.ones(mask.shape, bool))


@pytest.mark.parametrize("kind", ["clear", "cloudy"])
def test_clear_and_clouded_scenes_equal_the_reference(
    scenes: dict[str, Path], tmp_path: Path, kind: str
) -> None:
    with rasterio.open(scenes[kind]) as src:
        dn = src.read()
    expected = reference(dn, **WIDER)
    cover = expected["mask"].mean()
    assert cover < 0.05 if kind == "clear" else cover > 0.95
    store = tmp_path / "run.zarr"
    model = CloudMaskModel.installed(**WIDER)
    satdask.run_batch(scenes[kind], model, store, tiles_per_chunk=1, scheduler="threads")
    assert_equal_to_reference(store, expected, np.ones(dn.shape[1:], bool))
    fraction = satdask.open_run(store).dataset().class_fraction.sel(**{"class": 1}).values
    assert np.nanmean(fraction) == pytest.approx(cover, abs=0.05)


def test_nodata_gets_no_prediction_and_the_rest_equals_the_reference(
    scenes: dict[str, Path], tmp_path: Path
) -> None:
    with rasterio.open(scenes["collar"]) as src:
        dn = src.read()
    valid = dn.any(axis=0)
    assert not valid[:37].any() and valid[37:-37, 37:-37].all()
    store = tmp_path / "run.zarr"
    satdask.run_batch(scenes["collar"], CloudMaskModel.installed(**WIDER), store)
    assert_equal_to_reference(store, reference(dn, **WIDER), valid)


def test_a_stac_item_of_13_cogs_gives_the_files_store(tmp_path: Path) -> None:
    """The item's assets are stacked by band name, and its baseline 04.00 offset applied,
    as the same pixels in one file with GDAL scale and offset."""
    options = {"width": 600, "height": 420, "seed": 5, "baseline": "04.00"}
    item = write_s2_item(tmp_path / "item", **options)
    scene = write_s2_scene(tmp_path / "scene.tif", **options)
    model = CloudMaskModel.installed(**WIDER)
    runs = {
        name: satdask.run_batch(source, model, tmp_path / f"{name}.zarr", scheduler="threads")
        for name, source in {"item": item, "file": scene}.items()
    }
    a, b = pixels(runs["item"].path), pixels(runs["file"].path)
    np.testing.assert_array_equal(a.prediction.values, b.prediction.values)
    np.testing.assert_array_equal(a.cloud_probability.values, b.cloud_probability.values)
    with rasterio.open(scene) as src:
        dn = src.read()
    assert_equal_to_reference(runs["item"].path, reference(dn, dn_offset=-1000, **WIDER), dn.any(0))
    assert runs["item"].record["config"]["dn_offset"] == -1000


def test_the_lazy_predict_equals_the_store(scenes: dict[str, Path], tmp_path: Path) -> None:
    model = CloudMaskModel.installed()
    lazy = satdask.predict(scenes["clear"], model)
    assert lazy.cloud_probability.chunks is not None, "nothing computed yet"
    store = satdask.run_batch(scenes["clear"], model, tmp_path / "run.zarr", scheduler="threads")
    stored = pixels(store.path)
    np.testing.assert_array_equal(lazy.prediction.values, stored.prediction.values)
    np.testing.assert_array_equal(lazy.cloud_probability.values, stored.cloud_probability.values)


def test_cli_imports_runs_shows_and_exports(scenes: dict[str, Path], tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    out = _cli("models", "import", "s2cloudless", "--registry", registry, "--average-over", "4")
    assert out.startswith("model ") and "average_over 4" in out
    artifact = ModelRegistry(registry).load()
    assert artifact.model.to_dict()["sha256"] == _sha256(model_file())
    assert artifact.lineage["source"]["license"] == "CC BY-SA 4.0"
    store = tmp_path / "run.zarr"
    _cli("infer", scenes["cloudy"], "--model", registry, "--out", store, "--scheduler", "threads")
    shown = _cli("runs", "show", store)
    cover = float(shown.split("cloud ")[-1].split("%")[0])
    mask = pixels(store).prediction.values
    assert cover == pytest.approx(100 * mask.mean(), abs=0.05)
    tif = tmp_path / "mask.tif"
    _cli("export", store, "--format", "cog", "--out", tif)
    with rasterio.open(tif) as src:
        np.testing.assert_array_equal(src.read(1), mask)
    assert "passed, 0 failed" in _cli("runs", "verify", store, "--registry", registry)


# --- refused in one line, with nothing written ------------------------------------------


def test_twelve_bands_are_refused(scenes: dict[str, Path], tmp_path: Path) -> None:
    with rasterio.open(scenes["clear"]) as src:
        profile, data = src.profile, src.read()
    profile.update(count=12, driver="GTiff")
    path = tmp_path / "twelve.tif"
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data[:12])
    store = tmp_path / "run.zarr"
    with pytest.raises(SceneError, match=r"13 Sentinel-2 L1C bands.*has 12 bands") as err:
        satdask.run_batch(path, CloudMaskModel.installed(), store)
    assert "\n" not in str(err.value) and str(path) in str(err.value)
    assert not store.exists()


def test_an_item_without_b10_is_refused_naming_it(tmp_path: Path) -> None:
    item = write_s2_item(tmp_path / "item", width=300, height=260)
    text = item.read_text().replace('"B10"', '"X10"')
    item.write_text(text)
    store = tmp_path / "run.zarr"
    with pytest.raises(SceneError, match="needs B10, which is missing") as err:
        satdask.run_batch(item, CloudMaskModel.installed(), store)
    assert "\n" not in str(err.value)
    assert not store.exists()


def test_s2cloudless_missing_names_the_extra(tmp_path: Path) -> None:
    """The import system as where s2cloudless is not installed: find_spec finds nothing."""
    hide = (
        "import sys\n"
        "class Hide:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 's2cloudless': raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Hide())\n"
        "from satdask.cli import main\n"
        "sys.exit(main())\n"
    )
    registry = tmp_path / "registry"
    done = subprocess.run(
        [sys.executable, "-c", hide, "models", "import", "s2cloudless", "--registry", registry],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0
    assert done.stderr.strip().count("\n") == 0
    assert "pip install 'satdask[cloudmask]'" in done.stderr
    assert not registry.exists()


def test_a_tampered_model_file_is_refused(scenes: dict[str, Path], tmp_path: Path) -> None:
    """A copy of the s2cloudless package first on the path, its model file changed by a
    byte: the artifact recorded the real file's sha256, so loading it is refused."""
    registry = tmp_path / "registry"
    ModelRegistry(registry).import_s2cloudless()
    copy = tmp_path / "site" / "s2cloudless"
    shutil.copytree(model_file().parents[1], copy)
    tampered = copy / "models" / model_file().name
    tampered.write_bytes(tampered.read_bytes().replace(b"threshold=0.", b"threshold=1.", 1))
    store = tmp_path / "run.zarr"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(copy.parent), *sys.path])}
    done = subprocess.run(
        [sys.executable, "-m", "satdask.cli", "infer", scenes["clear"], "--model", registry,
         "--out", store, "--scheduler", "threads"],
        capture_output=True, text=True, check=False, env=env,
    )  # fmt: skip
    assert done.returncode != 0
    assert "does not match its checksum" in done.stderr and str(tampered) in done.stderr
    assert done.stderr.strip().count("\n") == 0
    assert not store.exists()


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(SatdaskError, match="average_over 6 is over 5"):
        CloudMaskModel.installed(average_over=6)
    with pytest.raises(SatdaskError, match=r"threshold must be within 0\.\.1"):
        CloudMaskModel.installed(threshold=1.5)


def _cli(*args: object) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "satdask.cli", *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_model_loads_without_importing_s2cloudless() -> None:
    """Its import pulls in sentinelhub; satdask only finds the package's model file."""
    code = (
        "import sys\n"
        "from satdask.models.s2cloudless import CloudMaskModel\n"
        "model = CloudMaskModel.installed()\n"
        "top = {m.split('.')[0] for m in sys.modules}\n"
        "print(sorted(top & {'s2cloudless', 'sentinelhub'}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_an_opened_scene_is_refused_naming_why(scenes: dict[str, Path], tmp_path: Path) -> None:
    """The bands and the offset are found from the file or item by name, not guessed."""
    store = tmp_path / "run.zarr"
    with pytest.raises(SatdaskError, match="reads a scene by name") as err:
        satdask.run_batch(satdask.open_scene(scenes["clear"]), CloudMaskModel.installed(), store)
    assert "\n" not in str(err.value)
    assert not store.exists()


@pytest.mark.cluster
def test_dask_worker_processes_give_the_same_store(scenes: dict[str, Path], tmp_path: Path) -> None:
    """Real `dask scheduler` and `dask worker` processes on loopback: each worker loads
    and checks the classifier itself, and the store equals a threads run, bit for bit."""
    model = CloudMaskModel.installed(**WIDER)
    threads = satdask.run_batch(
        scenes["collar"], model, tmp_path / "threads.zarr", scheduler="threads"
    )
    with dask_cluster(tmp_path / "cluster", workers=2) as cluster:
        workers = satdask.run_batch(
            scenes["collar"], model, tmp_path / "workers.zarr", scheduler=cluster.address,
            tiles_per_chunk=1,
        )  # fmt: skip
    a, b = pixels(threads.path), pixels(workers.path)
    np.testing.assert_array_equal(a.prediction.values, b.prediction.values)
    np.testing.assert_array_equal(a.cloud_probability.values, b.cloud_probability.values)
    assert (a.prediction.values == 1).any() and (a.prediction.values == 0).any()
