"""A pixel model's run under faults, for real: SIGKILLed midway, and on `dask scheduler` and
`dask worker` processes. Each must equal an undisturbed threaded run, pixel for pixel."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest
import zarr
from procs import dask_cluster
from support import assert_same_arrays
from test_faults import (
    TIMEOUT,
    launch,
    one_line_error,
    resume_counts,
    satdask,
    succeeded,
    wait_for_segments,
)

from satdask import ModelRegistry
from satdask.io._journal import journal_path
from satdask.io.sample import write_sample
from satdask.io.sample_model import segmentation_model, write_model

BLOCKS = 64  # a 2048 px scene at one tile per block


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sample(tmp_path_factory.mktemp("pixel-faults") / "scene.tif", size=2048)


@pytest.fixture(scope="module")
def model_ref(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("pixel-model")
    model_path, meta_path = write_model(root, *segmentation_model(layers=3), name="seg")
    artifact = ModelRegistry(root / "registry").import_onnx(model_path, metadata_path=meta_path)
    return f"{root / 'registry'}:{artifact.id}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, scene: Path, model_ref: str) -> Path:
    out = tmp_path_factory.mktemp("pixel-reference") / "run.zarr"
    succeeded(satdask("infer", scene, *_args(model_ref, out, "--scheduler", "threads")))
    return out


def _args(model_ref: str, out: Path, *extra: object) -> list[object]:
    return ["--model", model_ref, "--out", out, "--tiles-per-chunk", 1, *extra]


def assert_same_pixels(a: Path, b: Path) -> None:
    """The tile grid bit for bit, and every full-resolution pixel."""
    assert_same_arrays(a, b)
    x, y = (zarr.open_group(p, mode="r")["pixels/prediction"][...] for p in (a, b))
    assert x.shape == (2048, 2048) and np.array_equal(x, y)


def test_killed_pixel_run_resumes_to_the_same_store(
    scene: Path, reference: Path, model_ref: str, tmp_path: Path
) -> None:
    out = tmp_path / "run.zarr"
    proc = launch("infer", scene, *_args(model_ref, out))
    wait_for_segments(out, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()
    assert (journal_path(out) / "store.zarr" / "pixels" / "prediction").is_dir()

    message = one_line_error(satdask("infer", scene, *_args(model_ref, out)))
    assert "--resume" in message
    succeeded(satdask("infer", scene, *_args(model_ref, out, "--resume")))
    counts = resume_counts(out)
    assert counts["blocks_reused"] >= 1 and counts["blocks_computed"] >= 1
    assert counts["blocks_reused"] + counts["blocks_computed"] == BLOCKS
    assert_same_pixels(out, reference)
    assert not journal_path(out).exists()


@pytest.mark.cluster
def test_dask_worker_processes_write_the_same_pixels(
    scene: Path, reference: Path, model_ref: str, tmp_path: Path
) -> None:
    out = tmp_path / "run.zarr"
    with dask_cluster(tmp_path / "cluster", workers=2) as cluster:
        succeeded(satdask("infer", scene, *_args(model_ref, out, "--scheduler", cluster.address)))
    assert_same_pixels(out, reference)


def test_the_run_records_the_onnx_file_sha256(reference: Path) -> None:
    import hashlib

    from satdask.io.store import decode_attrs

    record = decode_attrs(zarr.open_group(reference, mode="r").attrs["satdask"])
    assert record is not None
    model_bytes, _ = segmentation_model(layers=3)
    assert record["model"]["file_sha256"] == hashlib.sha256(model_bytes).hexdigest()
    assert record["model"]["sha256"] != record["model"]["file_sha256"]  # the artifact's
