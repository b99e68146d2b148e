"""The service honours GDAL's masks as batch does: an RGBA file's alpha, an internal mask.

Pixels under the mask are bright (250) and the others dark, so a service that read the
alpha band as data, or ignored a mask, would answer differently from the run store.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
from litestar import Litestar
from litestar.testing import TestClient
from rasterio.enums import ColorInterp
from svc_support import TRANSFORM

from satdask import ModelRegistry, run_batch
from satdask.core.features import STATUS_NAMES

Client = TestClient[Litestar]
T, H, W = 64, 128, 192  # 2 x 3 tiles; the left half masked


@pytest.fixture(scope="module")
def masked_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, np.ndarray]:
    root = tmp_path_factory.mktemp("masked")
    valid = np.ones((H, W), dtype=bool)
    valid[:, : W // 2] = False
    data = np.random.default_rng(3).integers(10, 60, (3, H, W), dtype=np.uint8)
    data[:, ~valid] = 250
    profile = {
        "driver": "GTiff",
        "width": W,
        "height": H,
        "dtype": "uint8",
        "crs": "EPSG:32633",
        "transform": TRANSFORM,
        "tiled": True,
        "blockxsize": T,
        "blockysize": T,
    }
    with rasterio.open(root / "rgba.tif", "w", count=4, **profile) as dst:
        dst.write(data, [1, 2, 3])
        dst.write(np.where(valid, 255, 0).astype(np.uint8), 4)
        dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]
    with (
        rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True),
        rasterio.open(root / "internal.tif", "w", count=3, **profile) as dst,
    ):
        dst.write(data)
        dst.write_mask(valid)
    return root, data, valid


@pytest.mark.parametrize("scene", ["rgba.tif", "internal.tif"])
def test_every_masked_tile_matches_the_batch_run_store(
    make_client: Callable[..., Client],
    masked_root: tuple[Path, np.ndarray, np.ndarray],
    sample_registry: Path,
    tmp_path: Path,
    scene: str,
) -> None:
    root, data, valid = masked_root
    artifact = ModelRegistry(sample_registry).load()
    run = run_batch(
        root / scene,
        artifact,
        tmp_path / "run.zarr",
        tile_size=T,
        scheduler="threads",
        allow_model_mismatch=True,
    )
    ds = run.dataset()
    client = make_client(data_root=root, tile_size=T)
    info = client.get("/scenes/info", params={"path": scene}).json()
    assert info["bands"] == 3 and (info["grid"]["rows"], info["grid"]["cols"]) == (2, 3)
    for row in range(2):
        for col in range(3):
            body = client.post("/infer", json={"scene": scene, "row": row, "col": col}).json()
            assert body["prediction"] == int(ds["prediction"].values[row, col]), (row, col)
            assert body["status"] == STATUS_NAMES[int(ds["status"].values[row, col])]
            assert body["valid_fraction"] == float(ds["valid_fraction"].values[row, col])
            mean = float(ds["mean_intensity"].values[row, col])
            assert body["mean_intensity"] == (None if math.isnan(mean) else mean), (row, col)
    left = client.post("/infer", json={"scene": scene, "row": 1, "col": 0}).json()
    assert (left["status"], left["prediction"]) == ("nodata", -1)  # masked whole
    half = client.post("/infer", json={"scene": scene, "row": 0, "col": 1}).json()
    window = np.s_[:T, T : 2 * T]
    expected = data[(slice(None), *window)][:, valid[window]].astype(np.float64).mean()
    assert half["valid_fraction"] == 0.5
    assert half["mean_intensity"] == pytest.approx(expected, rel=1e-12)


def test_the_whole_raster_form_honours_the_mask(
    make_client: Callable[..., Client], masked_root: tuple[Path, np.ndarray, np.ndarray]
) -> None:
    root, data, valid = masked_root
    client = make_client(data_root=root, tile_size=T)
    body = client.post("/infer", json={"tile_path": "rgba.tif"}).json()
    expected = data[:, valid].astype(np.float64).mean()
    assert body["mean_intensity"] == pytest.approx(expected, rel=1e-12)
