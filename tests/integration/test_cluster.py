"""Batch inference on a real dask cluster: one scheduler and two worker processes on 127.0.0.1.

The design promises identical `prediction` and feature arrays, bit for bit, on the
threaded scheduler and on a distributed cluster. These tests run the same scene
both ways, through the CLI and through `run_batch(client=...)`, and compare.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import zarr
from procs import BIN, START_TIMEOUT, Cluster, dask_cluster
from support import assert_same_arrays

from satdask import ModelRegistry, open_run, run_batch
from satdask.io._gdal import GDAL_OPTIONS
from satdask.io.store import decode_attrs

pytestmark = pytest.mark.cluster

SATDASK = BIN / "satdask"
RUN_TIMEOUT = 180  # seconds per satdask command; never reached normally


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """`dask scheduler` plus two single-threaded `dask worker` processes on loopback."""
    with dask_cluster(tmp_path_factory.mktemp("cluster")) as running:
        yield running


def satdask(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SATDASK), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )


def infer(scene: Path, registry: Path, out: Path, scheduler: str) -> Path:
    proc = satdask(
        "infer",
        scene,
        "--model",
        registry,
        "--out",
        out,
        "--scheduler",
        scheduler,
        "--tiles-per-chunk",
        1,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    return out


def executed(address: str) -> dict[str, int]:
    """Tasks each worker has executed so far, by worker name."""
    from distributed import Client

    with Client(address, timeout=START_TIMEOUT) as client:
        counts = client.run(
            lambda dask_worker: (dask_worker.name, dask_worker.state.executed_count)
        )
    return dict(counts.values())


@pytest.fixture(scope="module")
def threaded(
    tmp_path_factory: pytest.TempPathFactory, sample_tif: Path, sample_registry: Path
) -> Path:
    """The reference: the same run on the in-process threaded scheduler."""
    out = tmp_path_factory.mktemp("threads") / "B.zarr"
    return infer(sample_tif, sample_registry, out, "threads")


def test_cli_on_a_distributed_scheduler_matches_threads(
    cluster: Cluster, threaded: Path, sample_tif: Path, sample_registry: Path, tmp_path: Path
) -> None:
    before = executed(cluster.address)
    distributed = infer(sample_tif, sample_registry, tmp_path / "A.zarr", cluster.address)
    after = executed(cluster.address)

    assert_same_arrays(distributed, threaded)
    a = decode_attrs(zarr.open_group(distributed, mode="r").attrs["satdask"])
    b = decode_attrs(zarr.open_group(threaded, mode="r").attrs["satdask"])
    assert a["config"]["scheduler"] == cluster.address
    assert b["config"]["scheduler"] == "threads"
    assert a["config"]["blocks"] == b["config"]["blocks"] == 16  # --tiles-per-chunk 1
    assert a["counts"] == b["counts"]
    assert a["run_id"] != b["run_id"]
    assert {k: v for k, v in a["config"].items() if k != "scheduler"} == {
        k: v for k, v in b["config"].items() if k != "scheduler"
    }

    # satdask's GDAL settings reached both worker processes (started without any GDAL_*).
    from distributed import Client

    with Client(cluster.address, timeout=START_TIMEOUT) as client:
        seen = client.run(lambda: {k: os.environ.get(k) for k in GDAL_OPTIONS})
    assert list(seen.values()) == [GDAL_OPTIONS, GDAL_OPTIONS]

    # One task per block, shared by both workers (queuing hands each idle worker work).
    done = {name: after[name] - before.get(name, 0) for name in after}
    assert set(done) == {"w0", "w1"}, done
    assert sum(done.values()) == 16, done
    assert all(n >= 1 for n in done.values()), done


def test_run_batch_with_a_client_matches_threads(
    cluster: Cluster, threaded: Path, sample_tif: Path, sample_registry: Path, tmp_path: Path
) -> None:
    from distributed import Client

    artifact = ModelRegistry(sample_registry).load()
    with Client(cluster.address, timeout=START_TIMEOUT) as client:
        result = run_batch(
            sample_tif, artifact, tmp_path / "C.zarr", client=client, tiles_per_chunk=1
        )
        assert client.status == "running"  # a caller's client is left open
    assert result.attrs["config"]["scheduler"] == f"client:{cluster.address}"
    assert result.attrs["config"]["blocks"] == 16
    assert open_run(result.path).run_id == result.run_id
    assert_same_arrays(result.path, threaded)
