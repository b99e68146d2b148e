"""`verify_run` and `satdask runs verify` on real run stores, good and damaged.

Every test makes its own scene, registry and run (a 512 x 512 x 2 uint16 scene with
one all-nodata tile, so status holds both ok and nodata), damages one thing the way
it happens for real (a file edited, a folder deleted, an array rewritten) and checks
that exactly the check that should notice it fails, with its reason.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import zarr
from rasterio.crs import CRS
from support import write_geotiff
from test_cli import EXIT_ERROR, one_line_error, satdask

from satdask import (
    ModelArtifact,
    ModelRegistry,
    RunError,
    ThresholdModel,
    VerifyReport,
    run_batch,
    verify_run,
)
from satdask.core.schema import VARIABLES
from satdask.io.lineage import canonical_sha256
from satdask.io.store import ATTRS_KEY, decode_attrs
from satdask.pipeline.verify import SCHEMA

CHECKS = [
    "complete",
    *(f"array {name}" for name in VARIABLES),
    "counts",
    "crs",
    "scene sha256",
    "model sha256",
]


@dataclass(frozen=True)
class Run:
    scene: Path
    registry: Path
    artifact: ModelArtifact
    store: Path

    @property
    def model_file(self) -> Path:
        return self.registry / f"{self.artifact.id}.json"


@pytest.fixture
def run(tmp_path: Path) -> Run:
    data = np.random.default_rng(3).integers(1, 1000, (2, 512, 512)).astype(np.uint16)
    data[:, :256, :256] = 0  # tile (0, 0) is all nodata
    scene = write_geotiff(tmp_path / "scene.tif", data, nodata=0)
    registry = tmp_path / "models"
    artifact = ModelRegistry(registry).save(ThresholdModel(threshold=500.0))
    store = tmp_path / "run.zarr"
    run_batch(scene, artifact, store, scheduler="threads")
    return Run(scene, registry, artifact, store)


def outcomes(report: VerifyReport) -> dict[str, str]:
    return {c.name: c.outcome for c in report.checks}


def only_failure(report: VerifyReport, name: str, *words: str) -> None:
    """`name` failed, naming each of `words`, and no other check did."""
    assert not report.ok
    assert [c.name for c in report.failed] == [name], report.lines()
    for word in words:
        assert word in report[name].detail, (word, report[name].detail)


def cli_fails(store: Path, *names: str) -> list[str]:
    """The CLI prints the report on stdout and one error line naming the failed checks."""
    proc = satdask("runs", "verify", store)
    report = proc.stdout.splitlines()
    assert report[-1].startswith(f"{store}: ") and "failed" in report[-1], proc.stdout
    proc.stdout = ""  # one_line_error checks stderr alone
    one_line_error(proc, store, "verification failed", *names, code=EXIT_ERROR)
    return report


def rewrite_array(store: Path, name: str, values: np.ndarray) -> None:
    """Replace an array with `values` (another dtype, say), keeping its attributes."""
    group = zarr.open_group(store, mode="r+", use_consolidated=False)
    old = group[name]
    attrs, dims = dict(old.attrs), old.metadata.dimension_names
    group.create_array(name, data=values, dimension_names=dims, attributes=attrs, overwrite=True)


def edit_attrs(store: Path, **changes: object) -> None:
    group = zarr.open_group(store, mode="r+", use_consolidated=False)
    group.attrs[ATTRS_KEY] = {**decode_attrs(group.attrs[ATTRS_KEY]), **changes}


# ---------------------------------------------------------------------------


def test_the_schema_is_the_run_stores_variables() -> None:
    assert tuple(SCHEMA) == VARIABLES


def test_a_good_run_passes_every_check(run: Run) -> None:
    report = verify_run(run.store)
    assert [c.name for c in report.checks] == CHECKS
    assert set(outcomes(report).values()) == {"pass"}, report.lines()
    assert report.ok and not report.skipped
    assert "3 ok, 1 nodata, 0 failed" in report["counts"].detail

    proc = satdask("runs", "verify", run.store)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split()[0] for line in lines[:-1]] == ["pass"] * len(CHECKS)
    assert lines[-1] == f"{run.store}: {len(CHECKS)} passed, 0 failed, 0 skipped"


def test_a_deleted_array_is_missing(run: Run) -> None:
    shutil.rmtree(run.store / "status")
    report = verify_run(run.store)
    only_failure(report, "array status", "missing")
    assert report["counts"].outcome == "skip"  # cannot compare without status
    cli_fails(run.store, "array status")


def test_a_lost_chunk_shows_as_tiles_that_disagree(run: Run) -> None:
    """A missing chunk reads back as the fill value (NaN here): the arrays disagree."""
    chunks = [p for p in (run.store / "mean_intensity").rglob("*") if p.is_file()]
    chunks = [p for p in chunks if p.name != "zarr.json"]
    assert len(chunks) == 1
    chunks[0].unlink()
    only_failure(verify_run(run.store), "counts", "3 tile(s)", "disagree", "first (0, 1)")
    cli_fails(run.store, "counts")


def test_a_lost_status_chunk_reads_as_no_status_at_all(run: Run) -> None:
    """Zarr's fill value for status is 255, not 0 ("ok"): the loss cannot pass for data."""
    chunks = [p for p in (run.store / "status").rglob("*") if p.is_file()]
    chunks = [p for p in chunks if p.name != "zarr.json"]
    assert len(chunks) == 1
    chunks[0].unlink()
    status = zarr.open_group(run.store, mode="r")["status"][:]
    assert status.dtype == np.uint8 and (status == 255).all()
    only_failure(verify_run(run.store), "counts", "disagree")
    cli_fails(run.store, "counts")


def test_a_wrong_dtype_is_named(run: Run) -> None:
    values = zarr.open_array(run.store / "valid_fraction", mode="r")[...]
    rewrite_array(run.store, "valid_fraction", values.astype(np.float64))
    report = verify_run(run.store)
    only_failure(report, "array valid_fraction", "dtype float64, expected float32")
    cli_fails(run.store, "array valid_fraction")


def test_a_wrong_shape_is_named(run: Run) -> None:
    values = zarr.open_array(run.store / "prediction", mode="r")[...]
    rewrite_array(run.store, "prediction", values[:1])
    report = verify_run(run.store)
    only_failure(report, "array prediction", "shape (1, 2), expected (2, 2) tiles")


def test_counts_that_disagree_with_the_arrays(run: Run) -> None:
    counts = decode_attrs(zarr.open_group(run.store, mode="r").attrs[ATTRS_KEY])["counts"]
    edit_attrs(run.store, counts={**counts, "tiles_failed": 2})
    only_failure(verify_run(run.store), "counts", "tiles_failed 0 (recorded 2)")


def test_an_edited_scene_fails_its_checksum(run: Run) -> None:
    raw = bytearray(run.scene.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # one bit pattern flipped mid-file, same size
    run.scene.write_bytes(bytes(raw))
    report = verify_run(run.store)
    only_failure(report, "scene sha256", str(run.scene), "changed since the run")
    cli_fails(run.store, "scene sha256")


def test_a_tampered_model_fails_its_checksum(run: Run) -> None:
    body = json.loads(run.model_file.read_text())
    body["parameters"]["threshold"] = 1.0
    run.model_file.write_text(json.dumps(body))
    only_failure(verify_run(run.store), "model sha256", "checksum mismatch")
    cli_fails(run.store, "model sha256")


def test_a_rehashed_model_is_not_the_one_the_run_used(run: Run) -> None:
    """An artifact rewritten with a self-consistent checksum still differs from the record."""
    body = json.loads(run.model_file.read_text())
    body["parameters"]["threshold"] = 1.0
    content = {k: v for k, v in body.items() if k != "sha256"}
    run.model_file.write_text(json.dumps(content | {"sha256": canonical_sha256(content)}))
    only_failure(verify_run(run.store), "model sha256", "the run recorded")


def test_a_store_without_complete_fails_and_checks_nothing_else(run: Run) -> None:
    edit_attrs(run.store, complete=False)
    report = verify_run(run.store)
    assert outcomes(report) == {
        "complete": "fail",
        "arrays": "skip",
        "scene": "skip",
        "model": "skip",
    }
    assert "incomplete" in report["complete"].detail
    lines = cli_fails(run.store, "complete")
    assert lines[0].startswith("fail  complete")


def test_unreachable_inputs_are_skipped_not_passed(run: Run, tmp_path: Path) -> None:
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    run.scene.rename(moved / "scene.tif")
    run.registry.rename(moved / "models")
    report = verify_run(run.store)
    assert report.ok  # nothing is known to be wrong...
    assert [c.name for c in report.skipped] == ["scene sha256", "model sha256"]  # ...or right
    assert "not reachable" in report["scene sha256"].detail
    assert "not reachable" in report["model sha256"].detail

    proc = satdask("runs", "verify", run.store)
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout.splitlines()[-1].endswith("8 passed, 0 failed, 2 skipped")

    # the registry given explicitly is checked again
    report = verify_run(run.store, registry=moved / "models")
    assert report["model sha256"].outcome == "pass"
    proc = satdask("runs", "verify", run.store, "--registry", moved / "models")
    assert "pass  model sha256" in proc.stdout


def test_a_model_from_no_registry_is_skipped(tmp_path: Path, run: Run) -> None:
    store = tmp_path / "adhoc.zarr"
    run_batch(run.scene, ThresholdModel(threshold=500.0), store, scheduler="threads")
    report = verify_run(store)
    assert report["model sha256"].outcome == "skip"
    assert "not in a registry" in report["model sha256"].detail
    assert report.ok


def test_a_changed_crs_is_named(run: Run) -> None:
    group = zarr.open_group(run.store, mode="r+", use_consolidated=False)
    group["spatial_ref"].attrs["crs_wkt"] = CRS.from_epsg(4326).to_wkt()
    only_failure(verify_run(run.store), "crs", "EPSG:4326", "recorded EPSG:32633")


def test_something_that_is_no_run_store_is_an_error(tmp_path: Path) -> None:
    folder = tmp_path / "folder.zarr"
    folder.mkdir()
    with pytest.raises(RunError, match="not a run store"):
        verify_run(folder)
    one_line_error(satdask("runs", "verify", folder), folder, "not a run store")
    plain = zarr.open_group(tmp_path / "plain.zarr", mode="w")
    plain.attrs["other"] = 1
    with pytest.raises(RunError, match="not a satdask run store"):
        verify_run(tmp_path / "plain.zarr")
