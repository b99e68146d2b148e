"""The service refuses a scene unlike those the loaded model was trained on, as batch does.

A threshold on the mean of 4 uint16 bands in 256 px tiles says nothing about 3 uint8
bands: batch refuses such a run (`ModelError`, unless `allow_model_mismatch`), and the
service answers such a request 422, naming the scene by the client's path and the
mismatch in the same words (`satdask.models.base.input_mismatches`).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from litestar import Litestar
from litestar.testing import TestClient
from svc_support import DataRoot, write_tif

from satdask import ModelRegistry, run_batch
from satdask.errors import ModelError

Client = TestClient[Litestar]


@pytest.fixture(scope="module")
def root(data: DataRoot, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sample.tif and tile.tif as the model's training scene; rgb.tif: 3 uint8 bands."""
    root = tmp_path_factory.mktemp("model-check")
    shutil.copy(data.root / "sample.tif", root / "sample.tif")
    shutil.copy(data.root / "sub" / "tile.tif", root / "tile.tif")
    rng = np.random.default_rng(1)
    write_tif(root / "rgb.tif", rng.integers(1, 255, (3, 512, 512), dtype=np.uint8))
    write_tif(root / "gray.tif", rng.integers(1, 255, (1, 512, 512), dtype=np.uint8))
    return root


@pytest.fixture
def client(make_client: Callable[..., Client], root: Path) -> Client:
    return make_client(data_root=root, allow_model_mismatch=False)


def tile(scene: str, row: int = 0, col: int = 0) -> dict[str, object]:
    return {"scene": scene, "row": row, "col": col}


def model_id(registry: Path) -> str:
    return ModelRegistry(registry).load().id


def test_a_scene_of_other_bands_and_dtype_is_refused_by_name(
    client: Client, sample_registry: Path
) -> None:
    for name, bands in (("rgb.tif", "3 bands"), ("gray.tif", "1 band")):
        for r in (
            client.post("/infer", json=tile(name)),
            client.post("/infer", json=tile(name)),  # the second: the scene is cached
        ):
            assert r.status_code == 422, r.text
            assert r.json()["detail"] == (
                f"{name}: model {model_id(sample_registry)} was trained on 4 bands of uint16 "
                f"in 256 px tiles, this scene has {bands} of uint8 in 256 px tiles "
                f"(4 bands became {bands}; dtype uint16 became uint8); serve a model "
                "trained on such scenes, or set SATDASK_ALLOW_MODEL_MISMATCH=true"
            )
    # the scene itself is fine: its metadata is still served
    assert client.get("/scenes/info", params={"path": "rgb.tif"}).status_code == 200


def test_a_tile_size_other_than_the_models_is_refused(
    make_client: Callable[..., Client], root: Path
) -> None:
    client = make_client(data_root=root, tile_size=128, allow_model_mismatch=False)
    r = client.post("/infer", json=tile("sample.tif"))
    assert r.status_code == 422, r.text
    assert "(256 px tiles became 128 px)" in r.json()["detail"]
    assert r.json()["detail"].startswith("sample.tif: model ")


def test_tile_path_compares_the_whole_raster_as_the_tile(client: Client) -> None:
    """The tile_path form infers the raster as one tile of its longer side."""
    assert client.post("/infer", json={"tile_path": "tile.tif"}).status_code == 200
    r = client.post("/infer", json={"tile_path": "sample.tif"})
    assert r.status_code == 422, r.text
    assert "(256 px tiles became 1024 px)" in r.json()["detail"]


def test_the_setting_lets_a_mismatch_through(
    make_client: Callable[..., Client], root: Path
) -> None:
    client = make_client(data_root=root, allow_model_mismatch=True)
    assert client.post("/infer", json=tile("rgb.tif")).status_code == 200
    assert client.post("/infer", json={"tile_path": "sample.tif"}).status_code == 200


def test_batch_and_service_name_the_same_mismatch(
    client: Client, root: Path, sample_registry: Path, tmp_path: Path
) -> None:
    artifact = ModelRegistry(sample_registry).load()
    with pytest.raises(ModelError) as caught:
        run_batch(root / "rgb.tif", artifact, tmp_path / "run.zarr", scheduler="threads")
    batch = re.search(r"\(([^()]*became[^()]*)\)", str(caught.value))
    served = re.search(
        r"\(([^()]*became[^()]*)\)", client.post("/infer", json=tile("rgb.tif")).text
    )
    assert batch and served and batch.group(1) == served.group(1)
