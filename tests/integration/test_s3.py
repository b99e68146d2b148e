"""Scenes read from, and run stores written to, S3: a real moto server on 127.0.0.1.

Credentials and the endpoint reach satdask through the usual AWS environment
variables only; GDAL's own names for them are derived in one place.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import xarray as xr
from support import S3, assert_same_arrays

from satdask.io._journal import journal_path
from satdask.io.sample import write_sample
from satdask.io.store import decode_attrs

s3fs = pytest.importorskip("s3fs", reason="the s3 extra (s3fs) is part of .[dev]")

BIN = Path(sys.executable).parent
TIMEOUT = 180


def satdask(s3: S3, *args: object) -> subprocess.CompletedProcess[str]:
    """The CLI with only the standard AWS variables added (none of GDAL's own)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "GDAL_"))}
    return subprocess.run(
        [str(BIN / "satdask"), *map(str, args)],
        env={**env, **s3.env},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def run_attrs(s3: S3, url: str) -> dict:
    return decode_attrs(xr.open_zarr(s3.fs.get_mapper(url)).attrs["satdask"])


def test_a_scene_on_s3_runs_into_a_store_on_s3(
    moto_s3: S3, sample_tif: Path, sample_registry: Path, tmp_path: Path
) -> None:
    s3 = moto_s3
    s3.fs.put(str(sample_tif), f"{s3.bucket}/scenes/sample.tif")
    scene, out = f"s3://{s3.bucket}/scenes/sample.tif", f"s3://{s3.bucket}/runs/sample.zarr"
    model = ["--model", sample_registry, "--scheduler", "threads"]

    local = satdask(s3, "infer", sample_tif, *model, "--out", tmp_path / "local.zarr")
    assert local.returncode == 0, local.stderr
    remote = satdask(s3, "infer", scene, *model, "--out", out)
    assert remote.returncode == 0, remote.stderr

    assert_same_arrays(s3.fs.get_mapper(out), tmp_path / "local.zarr")
    attrs = run_attrs(s3, out)
    assert attrs["complete"] is True and attrs["scene"]["uri"] == scene
    remote_crs = xr.open_zarr(s3.fs.get_mapper(out), decode_coords="all").rio.crs
    assert remote_crs == xr.open_zarr(tmp_path / "local.zarr", decode_coords="all").rio.crs

    shown = satdask(s3, "runs", "show", out)
    assert shown.returncode == 0 and attrs["run_id"] in shown.stdout, shown.stderr
    verified = satdask(s3, "runs", "verify", out)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "skip  scene sha256" in verified.stdout  # remote: not re-hashed, and not "pass"
    assert "pass  model sha256" in verified.stdout

    again = satdask(s3, "infer", scene, *model, "--out", out)
    assert again.returncode == 1 and again.stderr.strip() == (
        f"satdask: error: {out}: already exists; pass overwrite=True (--overwrite) to replace it"
    )
    replaced = satdask(s3, "infer", scene, *model, "--out", out, "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    assert run_attrs(s3, out)["run_id"] != attrs["run_id"]


def test_a_killed_run_leaves_nothing_complete_on_s3_and_resumes(
    moto_s3: S3, sample_registry: Path, tmp_path: Path
) -> None:
    """Object storage has no rename: `complete: true`, written last, is the only mark."""
    s3 = moto_s3
    local = write_sample(tmp_path / "big.tif", size=2048, bands=4)
    s3.fs.put(str(local), f"{s3.bucket}/scenes/big.tif")
    scene, out = f"s3://{s3.bucket}/scenes/big.tif", f"s3://{s3.bucket}/runs/big.zarr"
    args = ["infer", scene, "--model", sample_registry, "--out", out, "--tiles-per-chunk", 1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "GDAL_"))}
    proc = subprocess.Popen(
        [str(BIN / "satdask"), *map(str, [*args, "--scheduler", "threads"])],
        env={**env, **s3.env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    segments = journal_path(out) / "segments"
    deadline = time.monotonic() + TIMEOUT
    while not list(segments.glob("*.npz")):
        assert proc.poll() is None, "the run ended before any block was durable"
        assert time.monotonic() < deadline
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=TIMEOUT)

    shown = satdask(s3, "runs", "show", out)
    assert shown.returncode == 1 and out in shown.stderr  # absent or incomplete: never finished

    resumed = satdask(s3, *args, "--scheduler", "threads", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    attrs = run_attrs(s3, out)
    assert attrs["complete"] is True and attrs["resume"]["blocks_reused"] >= 1
    assert attrs["resume"]["blocks_reused"] + attrs["resume"]["blocks_computed"] == 64
    assert not journal_path(out).exists()
