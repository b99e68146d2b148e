"""The `satdask` CLI as a real subprocess: every command, its output and its exit codes.

Success paths check what was written (stores, registries, exports), not only the exit
code. Bad input must give exactly one `satdask: error: ...` line on stderr naming the
offending file or option, a non-zero exit code and no traceback (unless `--debug`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
import zarr
from affine import Affine
from support import BadPaths, store_arrays

from satdask import __version__, open_run
from satdask.core.schema import VARIABLES
from satdask.io.store import decode_attrs

SATDASK = Path(sys.executable).parent / "satdask"
TIMEOUT = 180  # seconds per command; generous for a loaded CI machine, never reached normally
EXIT_ERROR, EXIT_USAGE = 1, 2
BAD_SHA = "0" * 64


def satdask(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed console script with `args`; never raises on a non-zero exit."""
    return subprocess.run(
        [str(SATDASK), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=cwd,
        check=False,
    )


def succeeded(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stdout + proc.stderr
    return proc


def one_line_error(
    proc: subprocess.CompletedProcess[str], *names: object, code: int = EXIT_ERROR
) -> str:
    """Assert the CLI failed with one `satdask: error:` line naming each of `names`."""
    output = proc.stdout + proc.stderr
    assert proc.returncode == code, f"exit {proc.returncode}\n{output}"
    assert "Traceback" not in output, output
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{proc.stderr}"
    line = lines[0]
    assert line.startswith("satdask: error: "), line
    for name in names:
        assert str(name) in line, f"{name!r} not named in {line!r}"
    assert proc.stdout == "", proc.stdout
    return line


def snapshot(path: Path) -> dict[str, bytes]:
    """Every file under `path` (or `path` itself) with its bytes."""
    if path.is_file():
        return {"": path.read_bytes()}
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------
# Module fixtures: made through the CLI itself, shared by the tests below
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def small_scene(workdir: Path) -> Path:
    """A 512 x 512 x 4 uint16 sample scene written by `satdask sample`."""
    out = workdir / "small.tif"
    proc = succeeded(satdask("sample", out, "--size", 512))
    assert proc.stdout.startswith(f"wrote {out} (4 bands x 512 rows x 512 cols uint16: 2.0 MiB")
    return out


@dataclass(frozen=True)
class Registry:
    path: Path
    model_id: str


@pytest.fixture(scope="module")
def cli_registry(workdir: Path, small_scene: Path) -> Registry:
    """A registry with one model trained by `satdask train` on the small scene."""
    registry = workdir / "registry"
    proc = succeeded(
        satdask("train", small_scene, "--registry", registry, "--scheduler", "threads")
    )
    words = proc.stdout.split()
    assert words[0] == "model" and "threshold=" in proc.stdout, proc.stdout
    model_id = words[1].rstrip(":")
    uuid.UUID(model_id)
    assert (registry / f"{model_id}.json").is_file()
    assert (registry / "latest.json").resolve() == (registry / f"{model_id}.json").resolve()
    return Registry(registry, model_id)


@pytest.fixture(scope="module")
def threaded_run(workdir: Path, sample_tif: Path, sample_registry: Path) -> Path:
    """`satdask infer` of the 1024 px sample (16 tiles, 4 blocks) on the threaded scheduler."""
    out = workdir / "threads.zarr"
    succeeded(
        satdask(
            "infer",
            sample_tif,
            "--model",
            sample_registry,
            "--out",
            out,
            "--scheduler",
            "threads",
            "--tiles-per-chunk",
            2,
        )
    )
    return out


# ---------------------------------------------------------------------------
# sample, validate
# ---------------------------------------------------------------------------


def test_sample_writes_a_georeferenced_cog(small_scene: Path) -> None:
    with rasterio.open(small_scene) as src:
        assert (src.count, src.height, src.width) == (4, 512, 512)
        assert src.dtypes == ("uint16",) * 4
        assert src.crs.to_string() == "EPSG:32633"
        assert src.nodata == 0
        assert src.tags()["TIFFTAG_DATETIME"] == "2026:06:01 10:30:00"
        assert src.overviews(1)  # a COG: overviews built


def test_sample_options_and_determinism(small_scene: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.tif"
    succeeded(satdask("sample", again, "--size", 512, "--seed", 0))
    assert again.read_bytes() == small_scene.read_bytes()  # same arguments, same bytes

    other = tmp_path / "other.tif"
    proc = succeeded(
        satdask("sample", other, "--size", 256, "--bands", 2, "--dtype", "uint8", "--seed", 7)
    )
    assert proc.stdout.startswith(f"wrote {other} (2 bands x 256 rows x 256 cols uint8: ")
    with rasterio.open(other) as src:
        assert (src.count, src.height, src.width, src.dtypes[0]) == (2, 256, 256, "uint8")


def test_validate_reports_every_scene(small_scene: Path, sample_tif: Path) -> None:
    proc = succeeded(satdask("validate", small_scene, sample_tif))
    lines = proc.stdout.splitlines()
    assert lines == [
        f"ok {small_scene.resolve()}: 4 bands x 512 rows x 512 cols uint16, EPSG:32633, "
        "nodata=0.0, acquired=2026-06-01T10:30:00; 2 rows x 2 cols of 256 px tiles (edge skip)",
        f"ok {sample_tif.resolve()}: 4 bands x 1024 rows x 1024 cols uint16, EPSG:32633, "
        "nodata=0.0, acquired=2026-06-01T10:30:00; 4 rows x 4 cols of 256 px tiles (edge skip)",
    ]
    assert proc.stderr == ""


def test_validate_refuses_mixed_crs(small_scene: Path, real_scene: Callable[[str], Path]) -> None:
    rgb = real_scene("RGB.byte.tif")
    proc = satdask("validate", "--same-crs", small_scene, rgb)
    assert proc.returncode == EXIT_ERROR
    assert "Traceback" not in proc.stdout + proc.stderr
    [line] = proc.stderr.splitlines()
    assert line.startswith("satdask: error: ") and "different CRS" in line
    assert small_scene.name in line and rgb.name in line


# ---------------------------------------------------------------------------
# train, models list
# ---------------------------------------------------------------------------


def test_models_list_shows_every_artifact(
    cli_registry: Registry, small_scene: Path, tmp_path: Path
) -> None:
    registry = tmp_path / "registry"
    shutil.copytree(cli_registry.path, registry, symlinks=True)
    proc = succeeded(
        satdask("train", small_scene, "--registry", registry, "--scheduler", "threads")
    )
    second = proc.stdout.split()[1].rstrip(":")
    assert second != cli_registry.model_id  # artifacts are versions, never replaced

    proc = succeeded(satdask("models", "list", "--registry", registry))
    listed = [line.split()[0] for line in proc.stdout.splitlines()]
    on_disk = {p.stem for p in registry.glob("*.json") if not p.is_symlink()}
    assert listed == [cli_registry.model_id, second]  # oldest first
    assert set(listed) == on_disk
    for line in proc.stdout.splitlines():
        assert "threshold=" in line and "tiles=4" in line and "sha256=" in line


def test_models_list_of_an_empty_registry(tmp_path: Path) -> None:
    proc = succeeded(satdask("models", "list", "--registry", tmp_path))
    assert proc.stdout.strip() == f"no models in {tmp_path}"


@pytest.mark.parametrize(
    "argv",
    [
        ("models", "list", "--registry", "{tmp}/nomodels"),
        ("infer", "{tmp}/scene.tif", "--model", "{tmp}/nomodels", "--out", "{tmp}/r.zarr"),
        ("runs", "show", "{tmp}/nothere.zarr"),
        ("runs", "verify", "{tmp}/nothere.zarr"),
    ],
    ids=["models list", "infer --model", "runs show", "runs verify"],
)
def test_a_path_that_does_not_exist_is_named_so(tmp_path: Path, argv: tuple[str, ...]) -> None:
    (tmp_path / "scene.tif").write_bytes(b"")  # never reached: the model is loaded first
    proc = satdask(*(a.format(tmp=tmp_path) for a in argv))
    assert proc.returncode == 1
    assert "does not exist" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------------------
# infer, runs show, export
# ---------------------------------------------------------------------------


def test_infer_writes_a_georeferenced_complete_store(
    threaded_run: Path, sample_tif: Path, sample_registry: Path
) -> None:
    ds = xr.open_zarr(threaded_run, decode_coords="all")
    with rasterio.open(sample_tif) as src:
        assert ds.rio.crs == src.crs
        assert ds.rio.transform() == src.transform @ Affine.scale(256)
    assert dict(ds.sizes) == {"y": 4, "x": 4}
    assert set(VARIABLES) <= set(ds.data_vars)
    a = decode_attrs(zarr.open_group(threaded_run, mode="r").attrs["satdask"])
    assert a["complete"] is True
    assert a["config"]["scheduler"] == "threads"
    assert a["config"]["blocks"] == 4  # --tiles-per-chunk 2 on a 4 x 4 tile grid
    assert a["counts"]["tiles_total"] == 16
    assert a["counts"]["tiles_inferred"] + a["counts"]["tiles_skipped"] == 16
    assert a["model"]["uri"].startswith(str(sample_registry.resolve()))
    # no staging or trash directory left beside the store
    assert [p.name for p in threaded_run.parent.iterdir() if p.name.startswith(".")] == []


def test_infer_on_the_default_local_cluster_matches_threads(
    threaded_run: Path, sample_tif: Path, sample_registry: Path, tmp_path: Path
) -> None:
    out = tmp_path / "local.zarr"
    proc = succeeded(
        satdask(
            "infer", sample_tif, "--model", sample_registry, "--out", out, "--tiles-per-chunk", 2
        )
    )
    assert "LocalCluster" in proc.stderr
    assert open_run(out).attrs["config"]["scheduler"] == "local"
    local, threads = store_arrays(out), store_arrays(threaded_run)
    for name in VARIABLES:
        assert local[name].dtype == threads[name].dtype, name
        np.testing.assert_array_equal(local[name], threads[name], err_msg=name)


def test_infer_options_reach_the_store(
    small_scene: Path, cli_registry: Registry, tmp_path: Path
) -> None:
    out = tmp_path / "options.zarr"
    proc = succeeded(
        satdask(
            "infer",
            small_scene,
            "--model",
            f"{cli_registry.path}:{cli_registry.model_id}",
            "--out",
            out,
            "--scheduler",
            "threads",
            "--tile-size",
            200,
            "--tiles-per-chunk",
            1,
            "--edge",
            "pad",
            "--bands",
            "1,2",
            "--allow-model-mismatch",  # the model learned 4 bands in 256 px tiles
        )
    )
    a = open_run(out).attrs
    assert proc.stdout.startswith(f"run {a['run_id']} -> {out}\n")
    assert "9 total" in proc.stdout
    assert a["model"]["id"] == cli_registry.model_id
    assert a["config"]["tile_size"] == 200
    assert a["config"]["edge"] == "pad"
    assert a["config"]["bands"] == [1, 2]
    assert a["scene"]["shape"] == [2, 512, 512]
    assert a["counts"]["tiles_total"] == 9  # ceil(512 / 200) ** 2 with edge=pad
    ds = xr.open_zarr(out, decode_coords="all")
    assert dict(ds.sizes) == {"y": 3, "x": 3}


def test_infer_overwrite_replaces_a_store(
    threaded_run: Path, small_scene: Path, cli_registry: Registry, tmp_path: Path
) -> None:
    out = tmp_path / "run.zarr"
    shutil.copytree(threaded_run, out)
    old_id = open_run(out).run_id
    succeeded(
        satdask(
            "infer",
            small_scene,
            "--model",
            cli_registry.path,
            "--out",
            out,
            "--scheduler",
            "threads",
            "--overwrite",
        )
    )
    new = open_run(out)
    assert new.run_id != old_id
    assert new.attrs["scene"]["uri"] == str(small_scene.resolve())
    assert new.attrs["counts"]["tiles_total"] == 4
    assert [p.name for p in tmp_path.iterdir()] == ["run.zarr"]  # no staging/trash left


def test_runs_show(threaded_run: Path) -> None:
    attrs = open_run(threaded_run).attrs
    proc = succeeded(satdask("runs", "show", threaded_run, "--json"))
    shown = json.loads(proc.stdout)
    assert shown == json.loads(json.dumps(attrs))
    assert shown["complete"] is True
    uuid.UUID(shown["run_id"])
    assert shown["counts"] == attrs["counts"]

    proc = succeeded(satdask("runs", "show", threaded_run))
    assert proc.stdout.splitlines()[0] == f"run {attrs['run_id']} -> {threaded_run}"
    assert "16 total" in proc.stdout


def _expected_predictions(store: Path) -> list[dict[str, object]]:
    """The per-tile entries an export must hold, read independently with xarray."""
    ds = xr.open_zarr(store, decode_coords="all")
    names = ds["status"].attrs["flag_meanings"].split()
    pred, mean, status = (ds[v].values for v in ("prediction", "mean_intensity", "status"))
    entries = []
    for r in range(pred.shape[0]):
        for c in range(pred.shape[1]):
            m = float(mean[r, c])
            entries.append(
                {
                    "row": r,
                    "col": c,
                    "prediction": None if pred[r, c] < 0 else int(pred[r, c]),
                    "mean_intensity": m if math.isfinite(m) else None,
                    "status": names[int(status[r, c])],
                }
            )
    return entries


def test_export_json(threaded_run: Path, tmp_path: Path) -> None:
    attrs = open_run(threaded_run).attrs
    proc = succeeded(satdask("export", threaded_run, "--format", "json"))
    exported = json.loads(proc.stdout)

    meta = exported["metadata"]
    assert meta["run_id"] == attrs["run_id"]
    assert meta["model_path"] == attrs["model"]["uri"]
    assert Path(meta["model_path"]).is_file()
    assert meta["tiles_inferred"] == attrs["counts"]["tiles_inferred"]
    assert meta["tiles_failed"] == attrs["counts"]["tiles_failed"] == 0
    assert meta["monitoring"] == json.loads(json.dumps(attrs["monitoring"]))
    assert meta["health_report"] == json.loads(json.dumps(attrs["health"]))

    predictions = exported["predictions"]
    assert len(predictions) == 16
    assert len({p["tile_id"] for p in predictions}) == 16
    for entry in predictions:
        assert entry["run_id"] == attrs["run_id"]
        assert entry["model_id"] == attrs["model"]["id"]
        assert entry["tile_id"] == f"r{entry['row']}_c{entry['col']}"
    got = [
        {k: p[k] for k in ("row", "col", "prediction", "mean_intensity", "status")}
        for p in predictions
    ]
    assert got == _expected_predictions(threaded_run)

    out = tmp_path / "export.json"
    proc = succeeded(satdask("export", threaded_run, "--format", "json", "--out", out))
    assert proc.stdout.strip() == f"wrote {out}"
    assert json.loads(out.read_text()) == exported
    assert [p.name for p in tmp_path.iterdir()] == ["export.json"]  # no temp file left


# ---------------------------------------------------------------------------
# ingest, demo
# ---------------------------------------------------------------------------


def test_ingest_is_idempotent_and_checks_the_checksum(small_scene: Path, tmp_path: Path) -> None:
    sha = sha256_of(small_scene)
    out = tmp_path / "scenes"
    proc = succeeded(
        satdask("ingest", small_scene.resolve().as_uri(), "--out", out, "--sha256", sha)
    )
    target = out / small_scene.name
    assert proc.stdout.strip() == f"downloaded: {target} sha256={sha}"
    assert target.read_bytes() == small_scene.read_bytes()
    before = target.stat()

    proc = succeeded(satdask("ingest", small_scene, "--out", out, "--sha256", sha.upper()))
    assert proc.stdout.strip() == f"already present: {target} sha256={sha}"
    after = target.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert [p.name for p in out.iterdir()] == [small_scene.name]

    wrong = tmp_path / "wrong"
    line = one_line_error(satdask("ingest", small_scene, "--out", wrong, "--sha256", BAD_SHA))
    assert "checksum mismatch" in line and small_scene.name in line
    assert not wrong.exists() or list(wrong.iterdir()) == []


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    proc = succeeded(satdask("demo", "--workdir", workdir, "--size", 512))
    steps = [line.split()[0] for line in proc.stdout.splitlines()]
    assert steps == ["[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]"]
    png = workdir / "predictions.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    run = open_run(workdir / "run.zarr")  # refuses an incomplete store
    assert run.attrs["complete"] is True
    assert run.attrs["counts"]["tiles_total"] == 4
    assert run.attrs["config"]["scheduler"].startswith("client:")  # the demo's LocalCluster
    assert len([p for p in (workdir / "models").glob("*.json") if not p.is_symlink()]) == 1


# ---------------------------------------------------------------------------
# Entry points and --debug
# ---------------------------------------------------------------------------


def test_python_dash_m_entry_point() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "satdask.cli", "--version"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"satdask {__version__}"


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    missing = tmp_path / "missing.tif"
    proc = satdask("--debug", "validate", missing)
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr
    assert "SceneError" in proc.stderr and missing.name in proc.stderr


# ---------------------------------------------------------------------------
# Bad input: one line, naming the culprit, no traceback
# ---------------------------------------------------------------------------


@dataclass
class Inputs(BadPaths):
    """Paths the error cases refer to; `real` resolves a shared scene or skips."""

    tmp: Path
    scene: Path
    registry: Path
    model_id: str
    store: Path
    real: Callable[[str], Path]

    @cached_property
    def tampered_registry(self) -> Path:
        path = self.tmp / "tampered"
        shutil.copytree(self.registry, path, symlinks=True)
        artifact = path / f"{self.model_id}.json"
        body = json.loads(artifact.read_text())
        body["parameters"]["threshold"] = 1.0
        artifact.write_text(json.dumps(body))
        return path

    @cached_property
    def incomplete_store(self) -> Path:
        path = self.tmp / "incomplete.zarr"
        shutil.copytree(self.store, path)
        group = zarr.open_group(path, mode="r+")
        group.attrs["satdask"] = {**decode_attrs(group.attrs["satdask"]), "complete": False}
        return path

    def out(self) -> Path:
        return self.tmp / "out.zarr"


@pytest.fixture
def inputs(
    tmp_path: Path,
    small_scene: Path,
    cli_registry: Registry,
    threaded_run: Path,
    real_scene: Callable[[str], Path],
) -> Inputs:
    return Inputs(
        tmp_path, small_scene, cli_registry.path, cli_registry.model_id, threaded_run, real_scene
    )


def _infer(
    scene: Path, model: object, out: Path, *extra: object, scheduler: str = "threads"
) -> tuple[object, ...]:
    return ("infer", scene, "--model", model, "--out", out, "--scheduler", scheduler, *extra)


def _train(scene: Path, registry: Path, *extra: object) -> tuple[object, ...]:
    return ("train", scene, "--registry", registry, "--scheduler", "threads", *extra)


UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"

# id -> (argv builder, builder of the strings the line must contain, exit code)
ERROR_CASES: dict[
    str, tuple[Callable[[Inputs], tuple[object, ...]], Callable[[Inputs], tuple[object, ...]], int]
] = {
    "validate missing scene": (
        lambda i: ("validate", i.missing),
        lambda i: (i.missing.name, "no such file"),
        EXIT_ERROR,
    ),
    "infer directory as scene": (
        lambda i: _infer(i.directory, i.registry, i.out()),
        lambda i: (i.directory.name, "directory"),
        EXIT_ERROR,
    ),
    "train text file named .tif": (
        lambda i: _train(i.text_tif, i.tmp / "new-registry"),
        lambda i: (i.text_tif.name, "not a readable raster"),
        EXIT_ERROR,
    ),
    "validate scene without CRS": (
        lambda i: ("validate", i.real("float_nan.tif")),
        lambda i: ("float_nan.tif", "no CRS"),
        EXIT_ERROR,
    ),
    "infer unknown model id": (
        lambda i: _infer(i.scene, f"{i.registry}:{UNKNOWN_ID}", i.out()),
        lambda i: (UNKNOWN_ID, "no such model artifact"),
        EXIT_ERROR,
    ),
    "infer tampered artifact": (
        lambda i: _infer(i.scene, f"{i.tampered_registry}:{i.model_id}", i.out()),
        lambda i: (f"{i.model_id}.json", "checksum mismatch"),
        EXIT_ERROR,
    ),
    "train registry is a file": (
        lambda i: _train(i.scene, i.plain_file),
        lambda i: (i.plain_file.name, "not a directory"),
        EXIT_ERROR,
    ),
    "models list registry is a file": (
        lambda i: ("models", "list", "--registry", i.plain_file),
        lambda i: (i.plain_file.name, "not a directory"),
        EXIT_ERROR,
    ),
    "infer --out in a missing directory": (
        lambda i: _infer(i.scene, i.registry, i.tmp / "nowhere" / "out.zarr"),
        lambda i: ("nowhere", "does not exist"),
        EXIT_ERROR,
    ),
    "infer --tile-size 0": (
        lambda i: _infer(i.scene, i.registry, i.out(), "--tile-size", 0),
        lambda i: ("--tile-size", "'0'"),
        EXIT_USAGE,
    ),
    "infer --tile-size abc": (
        lambda i: _infer(i.scene, i.registry, i.out(), "--tile-size", "abc"),
        lambda i: ("--tile-size", "'abc'"),
        EXIT_USAGE,
    ),
    "infer --bands 9 on 4 bands": (
        lambda i: _infer(i.scene, i.registry, i.out(), "--bands", 9),
        lambda i: (i.scene.name, "band(s) 9", "1..4"),
        EXIT_ERROR,
    ),
    "infer --bands abc": (
        lambda i: _infer(i.scene, i.registry, i.out(), "--bands", "abc"),
        lambda i: ("--bands", "'abc'"),
        EXIT_USAGE,
    ),
    "infer --scheduler bogus": (
        lambda i: _infer(i.scene, i.registry, i.out(), scheduler="bogus"),
        lambda i: ("scheduler", "'bogus'"),
        EXIT_ERROR,
    ),
    "train scenes with no valid tile": (
        lambda i: _train(i.real("all-nodata.tif"), i.tmp / "new-registry", "--edge", "pad"),
        lambda i: ("all-nodata.tif", "no valid tile"),
        EXIT_ERROR,
    ),
    "runs show a directory that is no store": (
        lambda i: ("runs", "show", i.directory),
        lambda i: (i.directory.name, "not a run store"),
        EXIT_ERROR,
    ),
    "runs show an incomplete store": (
        lambda i: ("runs", "show", i.incomplete_store),
        lambda i: (i.incomplete_store.name, "incomplete"),
        EXIT_ERROR,
    ),
    "export --out in a missing directory": (
        lambda i: ("export", i.store, "--format", "json", "--out", i.tmp / "nowhere" / "x.json"),
        lambda i: (i.tmp / "nowhere" / "x.json",),
        EXIT_ERROR,
    ),
    "ingest missing file": (
        lambda i: ("ingest", i.missing, "--out", i.tmp / "ingested"),
        lambda i: (i.missing.name, "no such file"),
        EXIT_ERROR,
    ),
    "sample unsupported --dtype": (
        lambda i: ("sample", i.tmp / "s.tif", "--size", 64, "--dtype", "complex64"),
        lambda i: ("--dtype", "complex64"),
        EXIT_ERROR,
    ),
    "unknown subcommand": (
        lambda i: ("frobnicate",),
        lambda i: ("'frobnicate'",),
        EXIT_USAGE,
    ),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_bad_input_is_one_line(case: str, inputs: Inputs) -> None:
    argv, names, code = ERROR_CASES[case]
    args = argv(inputs)
    one_line_error(satdask(*args), *names(inputs), code=code)


def test_existing_out_store_is_left_untouched(inputs: Inputs) -> None:
    before = snapshot(inputs.store)
    proc = satdask(*_infer(inputs.scene, inputs.registry, inputs.store))
    one_line_error(proc, inputs.store.name, "already exists", "--overwrite")
    assert snapshot(inputs.store) == before
    assert [p.name for p in inputs.store.parent.iterdir() if p.name.startswith(".")] == []


def test_infer_refuses_to_replace_a_file_even_with_overwrite(inputs: Inputs) -> None:
    target = inputs.tmp / "precious.zarr"
    target.write_bytes(b"keep me\n")
    proc = satdask(*_infer(inputs.scene, inputs.registry, target, "--overwrite"))
    one_line_error(proc, target.name, "not a run store")
    assert target.read_bytes() == b"keep me\n"


def test_export_never_replaces_a_file(inputs: Inputs) -> None:
    target = inputs.tmp / "report.json"
    target.write_bytes(b'{"precious": true}\n')
    mtime = target.stat().st_mtime_ns
    proc = satdask("export", inputs.store, "--format", "json", "--out", target)
    one_line_error(proc, target.name, "already exists")
    assert target.read_bytes() == b'{"precious": true}\n'
    assert target.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in inputs.tmp.iterdir()) == ["report.json"]


# ---------------------------------------------------------------------------
# help, usage and defaults
# ---------------------------------------------------------------------------


def test_every_option_has_help_and_shows_its_default() -> None:
    from satdask.cli import build_parser

    def parsers(p: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
        yield p
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for child in action.choices.values():
                    yield from parsers(child)

    top = build_parser()
    assert "inference over every tile" in top.format_help()
    for parser in parsers(top):
        text = parser.format_help()
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            assert action.help, f"{parser.prog} {action.option_strings or action.dest}: no help"
            if action.option_strings and action.default not in (None, argparse.SUPPRESS):
                assert f"(default: {action.default})" in " ".join(text.split()), (
                    f"{parser.prog} {action.option_strings[0]} hides its default"
                )


@pytest.mark.parametrize("group", ["runs", "models"])
def test_a_command_group_alone_prints_its_usage(group: str) -> None:
    proc = satdask(group)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"usage: satdask {group}") and "required" not in proc.stderr


def test_sample_refuses_to_overwrite_and_says_how_large(tmp_path: Path) -> None:
    out = tmp_path / "s.tif"
    out.write_bytes(b"mine")
    proc = satdask("sample", out, "--size", 64)
    assert proc.returncode == 1
    assert "--overwrite" in proc.stderr and "MiB uncompressed" in proc.stderr
    assert out.read_bytes() == b"mine"
    succeeded(satdask("sample", out, "--size", 64, "--overwrite"))
    assert out.stat().st_size > 4


def test_validate_warns_on_different_crs_unless_asked_to_fail(small_scene: Path, geotiff) -> None:
    other = geotiff(np.ones((1, 300, 300), dtype=np.uint8), name="wgs.tif", crs="EPSG:4326")
    proc = succeeded(satdask("validate", small_scene, other))
    assert "warning: the scenes have different CRS" in proc.stdout
    assert "--same-crs" in proc.stdout
    failed = satdask("validate", "--same-crs", small_scene, other)
    assert failed.returncode == 1 and "--allow-mixed-crs" in failed.stderr


def test_validate_reports_the_tile_grid_and_the_left_out_pixels(geotiff) -> None:
    scene = geotiff(np.ones((3, 300, 600), dtype=np.uint8), name="odd.tif")
    proc = succeeded(satdask("validate", scene))
    assert "3 bands x 300 rows x 600 cols uint8" in proc.stdout
    assert "1 row x 2 cols of 256 px tiles (edge skip)" in proc.stdout
    assert "pixels (27.2%) uninferred" in proc.stdout
    padded = succeeded(satdask("validate", scene, "--edge", "pad"))
    assert "2 rows x 3 cols of 256 px tiles (edge pad)" in padded.stdout
    assert "uninferred" not in padded.stdout
