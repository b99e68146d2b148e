"""Many scenes in one run: a store per scene, a manifest, failures reported and skipped."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import assert_same_arrays

from satdask import ModelRegistry, RunError, open_run, run_batch
from satdask.pipeline.many import run_many, store_names

SATDASK = Path(sys.executable).parent / "satdask"


@pytest.fixture
def scenes(tmp_path: Path, sample_tif: Path) -> list[Path]:
    """Two good scenes with the same file name in different folders, and a text file."""
    (tmp_path / "b").mkdir()
    copy = shutil.copy(sample_tif, tmp_path / "b" / sample_tif.name)
    bad = tmp_path / "notes.tif"
    bad.write_text("not a raster\n")
    return [sample_tif, Path(copy), bad]


def test_store_names_are_stems_made_unique_in_order() -> None:
    names = store_names(["a/x.tif", "b/x.tif", "https://h/c/y.tif?sig=1", "x.tif"])
    assert names == ["x.zarr", "x-2.zarr", "y.zarr", "x-3.zarr"]


def test_every_scene_gets_a_store_and_a_bad_one_is_reported_and_skipped(
    scenes: list[Path], sample_registry: Path, tmp_path: Path
) -> None:
    model = ModelRegistry(sample_registry).load()
    single = run_batch(scenes[0], model, tmp_path / "single.zarr", scheduler="threads")

    manifest = run_many(scenes, model, tmp_path / "out", scheduler="threads")

    first, second, bad = manifest.scenes
    assert [o.status for o in manifest.scenes] == ["complete", "complete", "failed"]
    assert Path(first.store).name == "sample.zarr" and Path(second.store).name == "sample-2.zarr"
    for outcome in (first, second):
        assert open_run(outcome.store).run_id == outcome.run_id
        assert_same_arrays(outcome.store, single.path)
    assert (
        bad.store is None and str(scenes[2]) in bad.error and "not a readable raster" in bad.error
    )
    assert manifest.failed == [bad]

    written = json.loads(manifest.path.read_text())
    assert written["model_id"] == model.id and written["failed"] == 1
    assert [s["status"] for s in written["scenes"]] == ["complete", "complete", "failed"]
    assert written["scenes"][0]["counts"] == single.counts
    assert sorted(p.name for p in manifest.path.parent.iterdir()) == [
        "manifest.json",
        "sample-2.zarr",
        "sample.zarr",
    ]


def test_an_existing_manifest_is_refused_and_resume_keeps_complete_stores(
    scenes: list[Path], sample_registry: Path, tmp_path: Path
) -> None:
    model = ModelRegistry(sample_registry).load()
    out = tmp_path / "out"
    first = run_many(scenes[:2], model, out, scheduler="threads")
    before = (out / "manifest.json").read_bytes()

    with pytest.raises(RunError, match=r"manifest\.json: already exists"):
        run_many(scenes[:2], model, out, scheduler="threads")
    assert (out / "manifest.json").read_bytes() == before

    again = run_many(scenes[:2], model, out, scheduler="threads", resume=True)
    assert [o.status for o in again.scenes] == ["kept", "kept"]
    assert [o.run_id for o in again.scenes] == [o.run_id for o in first.scenes]


def test_cli_runs_many_scenes_and_exits_non_zero_when_one_failed(
    scenes: list[Path], sample_registry: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = ["infer", *scenes, "--model", sample_registry, "--out", out, "--scheduler", "threads"]
    proc = subprocess.run(
        [str(SATDASK), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"satdask: error: 1 of 3 scenes failed; see {out / 'manifest.json'}"
    )
    assert "Traceback" not in proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"complete {scenes[0]} -> {out / 'sample.zarr'}: 16 inferred")
    assert lines[2].startswith(f"failed   {scenes[2]} -> -: {scenes[2]}: not a readable raster")
    assert json.loads((out / "manifest.json").read_text())["failed"] == 1
