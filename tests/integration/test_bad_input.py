"""Bad input, as one table: every row is refused by the library and by the CLI, and
nothing on disk changes.

Each row gives the library call that must raise its `SatdaskError` subclass with a
one-line message naming the file or field and the problem, and the `satdask` command
that must exit non-zero with exactly one line on stderr and no traceback. Before
either call, every file and folder the row can reach (its own scenes, output folder
and registries, and the module's scene, registry and finished run store) is
recorded by name, size, mtime and sha256; after both calls the record is the same.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine
from support import UTM_10M, BadPaths, corrupt_block, write_geotiff
from test_cli import EXIT_ERROR, EXIT_USAGE, one_line_error, satdask

from satdask import (
    GridError,
    ModelArtifact,
    ModelError,
    ModelRegistry,
    RegistryError,
    RunError,
    SatdaskError,
    SceneError,
    ThresholdModel,
    ValidationError,
    open_run,
    open_scene,
    run_batch,
    tile_features,
    train,
    validate,
    validate_many,
)
from satdask.io.lineage import canonical_sha256
from satdask.io.source import SceneInfo
from satdask.views.checks import check_scene

SIZE = 512  # the good scene: 512 x 512 x 2 uint16, four 256 px tiles
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


def pixels(*, bands: int = 2, size: int = SIZE, dtype: str = "uint16", seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, 1000, (bands, size, size)).astype(dtype)


@dataclass(frozen=True)
class Shared:
    """Made once per module: a good scene, a registry with one model, a finished run."""

    root: Path
    scene: Path
    registry: Path
    artifact: ModelArtifact
    store: Path


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Shared:
    root = tmp_path_factory.mktemp("bad-input")
    scene = write_geotiff(root / "scene.tif", pixels(), nodata=0)
    artifact = ModelRegistry(root / "registry").save(ThresholdModel(threshold=500.0))
    store = root / "existing.zarr"
    run_batch(scene, artifact, store, scheduler="threads")
    assert open_run(store).attrs["complete"] is True
    return Shared(root, scene, root / "registry", artifact, store)


@dataclass
class Env(BadPaths):
    """Inputs of one row, made on first use inside the test's own folder."""

    tmp: Path
    shared: Shared
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    def tif(self, name: str, data: np.ndarray | None = None, **options: Any) -> Path:
        """Written on the first call; later calls with the same name return it as it is."""
        path = self.tmp / name
        if path.exists():
            return path
        return write_geotiff(path, pixels() if data is None else data, **options)

    @property
    def scene(self) -> Path:
        return self.shared.scene

    @property
    def model(self) -> ModelArtifact:
        return self.shared.artifact

    @property
    def out(self) -> Path:
        """Where a run would go: must still not exist after the row."""
        return self.tmp / "out.zarr"

    @cached_property
    def empty(self) -> Path:
        path = self.tmp / "empty.tif"
        path.write_bytes(b"")
        return path

    @cached_property
    def truncated(self) -> Path:
        """A real GeoTIFF cut at half its size: its header still opens."""
        whole = self.tif("whole.tif", nodata=0).read_bytes()
        path = self.tmp / "truncated.tif"
        path.write_bytes(whole[: len(whole) // 2])
        with rasterio.open(path) as src:  # the trap: metadata reads fine
            assert (src.width, src.height) == (SIZE, SIZE)
        return path

    @cached_property
    def corrupt(self) -> Path:
        """Whole size, but one DEFLATE block overwritten so it cannot be decoded."""
        path = self.tif("corrupt.tif", nodata=0)
        corrupt_block(path, x=1, y=0)
        return path

    def zero_sized(self, tag: int) -> Path:
        """A 1 x 1 GeoTIFF whose ImageWidth (256) or ImageLength (257) is patched to 0.

        GDAL refuses to create a 0-sized raster, so the header is edited instead.
        """
        if (self.tmp / f"zero-{tag}.tif").exists():
            return self.tmp / f"zero-{tag}.tif"
        path = self.tif(f"zero-{tag}.tif", np.ones((1, 1, 1), np.uint8), compress=None)
        raw = bytearray(path.read_bytes())
        assert raw[:4] == b"II*\x00"
        (ifd,) = struct.unpack_from("<I", raw, 4)
        (entries,) = struct.unpack_from("<H", raw, ifd)
        for i in range(entries):
            at = ifd + 2 + 12 * i
            found, kind = struct.unpack_from("<HH", raw, at)
            if found == tag:
                struct.pack_into("<H" if kind == 3 else "<I", raw, at + 8, 0)
                break
        else:
            raise AssertionError(f"tag {tag} not in the TIFF directory")
        path.write_bytes(bytes(raw))
        return path

    @cached_property
    def trained_registry(self) -> Path:
        """A registry whose model was trained on the good scene: 2 uint16 bands, 256 px."""
        path = self.tmp / "trained"
        ModelRegistry(path).save(train([self.scene], scheduler="threads"))
        return path

    @cached_property
    def other_crs(self) -> Path:
        return self.tif("wgs84.tif", crs="EPSG:4326", nodata=0)

    def registry_with(self, edit: Callable[[dict[str, Any]], dict[str, Any] | str]) -> Path:
        """A copy of the module's registry whose artifact text is replaced by `edit(body)`."""
        path = self.tmp / "registry"
        if path.exists():  # one edit per row: the CLI and the library share it
            return path
        shutil.copytree(self.shared.registry, path, symlinks=True)
        artifact = path / f"{self.model.id}.json"
        result = edit(json.loads(artifact.read_text()))
        artifact.write_text(result if isinstance(result, str) else json.dumps(result))
        return path

    @cached_property
    def renamed_registry(self) -> Path:
        """A valid artifact copied under another id's file name."""
        path = self.tmp / "renamed"
        path.mkdir()
        shutil.copy(self.shared.registry / f"{self.model.id}.json", path / f"{UNKNOWN_ID}.json")
        return path

    @cached_property
    def readonly(self) -> Path:
        """A folder nobody, root included, can write to (`chattr +i`)."""
        path = self.tmp / "readonly"
        path.mkdir()
        proc = subprocess.run(["chattr", "+i", path], capture_output=True, text=True, check=False)
        if proc.returncode == 0:
            self.cleanups.append(lambda: subprocess.run(["chattr", "-i", path], check=True))
        elif os.geteuid() != 0:
            path.chmod(0o555)
            self.cleanups.append(lambda: path.chmod(0o755))
        else:
            pytest.skip(f"cannot make a read-only folder as root here: {proc.stderr.strip()}")
        with pytest.raises(PermissionError):  # the OS itself refuses, not only our pre-check
            (path / "probe").write_text("x")
        return path


@pytest.fixture
def env(tmp_path: Path, shared: Shared) -> Iterator[Env]:
    made = Env(tmp_path, shared)
    yield made
    for cleanup in made.cleanups:
        cleanup()


def state(*roots: Path) -> dict[str, tuple[str, int, int, str]]:
    """Every entry under `roots`: kind, size, mtime (ns) and sha256 of files.

    Folder mtimes change when an entry is created or removed, so even a temporary
    file that was cleaned up shows.
    """
    out: dict[str, tuple[str, int, int, str]] = {}
    for root in roots:
        for path in [root, *sorted(root.rglob("*"))]:
            st = path.lstat()
            if path.is_symlink():
                out[str(path)] = ("link", st.st_size, st.st_mtime_ns, os.readlink(path))
            elif path.is_dir():
                out[str(path)] = ("dir", 0, st.st_mtime_ns, "")
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                out[str(path)] = ("file", st.st_size, st.st_mtime_ns, digest)
    return out


# ---------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------

Argv = tuple[object, ...]


@dataclass(frozen=True)
class Case:
    error: type[SatdaskError]
    library: Callable[[Env], object]  # must raise `error`
    cli: Callable[[Env], Argv]
    names: Callable[[Env], Argv]  # what the message holds: the file or field, and the problem
    cli_names: Callable[[Env], Argv] | None = None  # argparse words it differently
    code: int = EXIT_ERROR
    ok_lines: int = 0  # `validate` reports each scene on stdout before refusing mixed CRS


def infer(scene: object, model: object, out: object, *extra: object) -> Argv:
    return ("infer", scene, "--model", model, "--out", out, "--scheduler", "threads", *extra)


def train_cli(*scenes: object, registry: object, extra: Argv = ()) -> Argv:
    return ("train", *scenes, "--registry", registry, "--scheduler", "threads", *extra)


def batch(env: Env, scene: Path, **options: Any) -> object:
    return run_batch(scene, env.model, env.out, scheduler="threads", **options)


def fit(*scenes: Path, **options: Any) -> object:
    return train(list(scenes), scheduler="threads", **options)


def load(registry: Path, ref: str) -> object:
    return ModelRegistry(registry).load(ref)


def model_ref(registry: Path, ref: str) -> str:
    return f"{registry}:{ref}"


def rehashed(body: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """`body` with `changes` and a checksum that matches them: only the content is wrong."""
    content = {k: v for k, v in body.items() if k != "sha256"} | changes
    return content | {"sha256": canonical_sha256(content)}


def without(key: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda body: {k: v for k, v in body.items() if k != key}


ARTIFACT_EDITS: dict[str, tuple[Callable[[dict[str, Any]], dict[str, Any] | str], str]] = {
    "malformed JSON": (lambda body: json.dumps(body)[:-20], "malformed model artifact"),
    "not a JSON object": (lambda body: "[1, 2, 3]", "not a JSON object"),
    "missing fields": (without("parameters"), "missing parameters"),
    "missing checksum": (without("sha256"), "missing sha256"),
    "wrong schema version": (lambda b: b | {"schema_version": 99}, "schema_version 99"),
    "edit breaks checksum": (
        lambda b: b | {"parameters": b["parameters"] | {"threshold": 1.0}},
        "checksum mismatch",
    ),
    "rehashed with no threshold": (
        lambda b: rehashed(b, parameters={"training": {}}),
        "threshold model parameters are malformed",
    ),
    "rehashed with parameters a list": (
        lambda b: rehashed(b, parameters=[500.0]),
        "parameters must be a dict",
    ),
    "rehashed with an unknown kind": (lambda b: rehashed(b, kind="forest"), "'forest'"),
}


def artifact_case(edit: Callable[[dict[str, Any]], dict[str, Any] | str], problem: str) -> Case:
    return Case(
        RegistryError,
        lambda e: load(e.registry_with(edit), e.model.id),
        lambda e: infer(e.scene, model_ref(e.registry_with(edit), e.model.id), e.out),
        lambda e: (f"{e.model.id}.json", problem),
    )


CASES: dict[str, Case] = {
    # --- inputs unlike the model's training, and grids with nothing to infer ----------
    "infer on bands the model was not trained on": Case(
        ModelError,
        lambda e: run_batch(
            e.scene, load(e.trained_registry, "latest"), e.out, scheduler="threads", bands=[1]
        ),
        lambda e: infer(e.scene, e.trained_registry, e.out, "--bands", "1"),
        lambda e: (e.scene, "2 bands of uint16", "1 band of uint16", "allow_model_mismatch"),
        cli_names=lambda e: (e.scene, "2 bands of uint16", "--allow-model-mismatch"),
    ),
    "infer on a dtype the model was not trained on": Case(
        ModelError,
        lambda e: run_batch(
            e.tif("bytes.tif", pixels(dtype="uint8")),
            load(e.trained_registry, "latest"),
            e.out,
            scheduler="threads",
        ),
        lambda e: infer(e.tif("bytes.tif", pixels(dtype="uint8")), e.trained_registry, e.out),
        lambda e: ("bytes.tif", "dtype uint16 became uint8"),
    ),
    "train over scenes of different bands": Case(
        ValidationError,
        lambda e: fit(e.scene, e.tif("one-band.tif", pixels(bands=1))),
        lambda e: train_cli(e.scene, e.tif("one-band.tif", pixels(bands=1)), registry=e.tmp / "r"),
        lambda e: ("different bands", e.scene, "one-band.tif", "1 band of uint16"),
    ),
    "validate a scene holding no whole tile": Case(
        GridError,
        lambda e: validate(e.tif("thin.tif", pixels(size=100))),
        lambda e: ("validate", e.tif("thin.tif", pixels(size=100))),
        lambda e: ("thin.tif", "no whole 256 px tile", "--edge pad"),
    ),
    "registry that does not exist": Case(
        RegistryError,
        lambda e: load(e.tmp / "nomodels", "latest"),
        lambda e: infer(e.scene, e.tmp / "nomodels", e.out),
        lambda e: ("nomodels", "does not exist"),
    ),
    "run store that does not exist": Case(
        RunError,
        lambda e: open_run(e.tmp / "nothere.zarr"),
        lambda e: ("runs", "show", e.tmp / "nothere.zarr"),
        lambda e: ("nothere.zarr", "does not exist"),
    ),
    # --- files that are not rasters -------------------------------------------------
    "path does not exist": Case(
        SceneError,
        lambda e: open_scene(e.missing),
        lambda e: infer(e.missing, e.shared.registry, e.out),
        lambda e: (e.missing, "no such file"),
    ),
    "path is a directory": Case(
        SceneError,
        lambda e: fit(e.directory),
        lambda e: train_cli(e.directory, registry=e.shared.registry),
        lambda e: (e.directory, "is a directory"),
    ),
    "empty file": Case(
        SceneError,
        lambda e: validate(e.empty),
        lambda e: ("validate", e.empty),
        lambda e: (e.empty, "file is empty"),
    ),
    "text file named .tif": Case(
        SceneError,
        lambda e: batch(e, e.text_tif),
        lambda e: infer(e.text_tif, e.shared.registry, e.out),
        lambda e: (e.text_tif, "not a readable raster"),
    ),
    "GeoTIFF truncated at half its size: validate": Case(
        ValidationError,
        lambda e: validate(e.truncated),
        lambda e: ("validate", e.truncated),
        lambda e: (e.truncated, "file is truncated", "ends at byte"),
    ),
    "GeoTIFF truncated at half its size: train": Case(
        ValidationError,
        lambda e: fit(e.truncated),
        lambda e: train_cli(e.truncated, registry=e.shared.registry),
        lambda e: (e.truncated, "file is truncated"),
    ),
    "GeoTIFF with an undecodable block: train": Case(
        SceneError,
        lambda e: fit(e.corrupt),
        lambda e: train_cli(e.corrupt, registry=e.shared.registry),
        lambda e: (e.corrupt, "cannot be read", "TIFFReadEncodedTile"),
    ),
    "zero width (header patched)": Case(
        SceneError,
        lambda e: open_scene(e.zero_sized(256)),
        lambda e: ("validate", e.zero_sized(256)),
        lambda e: ("zero-256.tif", "not a readable raster", "zero scanline size"),
    ),
    "zero height (header patched)": Case(
        SceneError,
        lambda e: validate(e.zero_sized(257)),
        lambda e: infer(e.zero_sized(257), e.shared.registry, e.out),
        lambda e: ("zero-257.tif", "not a readable raster", "zero number of strips"),
    ),
    # --- georeferencing -----------------------------------------------------------
    "no CRS": Case(
        ValidationError,
        lambda e: open_scene(e.tif("nocrs.tif", crs=None)),
        lambda e: infer(e.tif("nocrs.tif", crs=None), e.shared.registry, e.out),
        lambda e: ("nocrs.tif", "no CRS"),
    ),
    "rotated transform": Case(
        ValidationError,
        lambda e: validate(e.tif("rot.tif", transform=Affine.rotation(15) @ UTM_10M)),
        lambda e: ("validate", e.tif("rot.tif", transform=Affine.rotation(15) @ UTM_10M)),
        lambda e: ("rot.tif", "rotated or sheared transform is not supported"),
    ),
    "sheared transform": Case(
        ValidationError,
        lambda e: batch(e, e.tif("shear.tif", transform=UTM_10M @ Affine.shear(0, 10))),
        lambda e: infer(
            e.tif("shear.tif", transform=UTM_10M @ Affine.shear(0, 10)), e.shared.registry, e.out
        ),
        lambda e: ("shear.tif", "rotated or sheared transform is not supported"),
    ),
    "different CRS in one training run": Case(
        ValidationError,
        lambda e: fit(e.scene, e.other_crs),
        lambda e: train_cli(e.scene, e.other_crs, registry=e.shared.registry),
        lambda e: ("different CRS", "EPSG:32633", e.scene, "EPSG:4326", e.other_crs),
    ),
    "different CRS in validate": Case(
        ValidationError,
        lambda e: validate_many([e.scene, e.other_crs]),
        lambda e: ("validate", "--same-crs", e.scene, e.other_crs),
        lambda e: ("different CRS", e.scene, e.other_crs),
        ok_lines=2,
    ),
    # --- dtypes ---------------------------------------------------------------------
    **{
        f"unsupported dtype {dtype}": Case(
            ValidationError,
            lambda e, d=dtype: open_scene(e.tif(f"{d}.tif", pixels(dtype=d), compress=None)),
            lambda e, d=dtype: infer(
                e.tif(f"{d}.tif", pixels(dtype=d), compress=None), e.shared.registry, e.out
            ),
            lambda e, d=dtype: (f"{d}.tif", f"dtype {d} is not supported"),
        )
        for dtype in ("complex64", "int64", "int8")
    },
    # --- bands ----------------------------------------------------------------------
    **{
        f"band {band} of 2": Case(
            SceneError,
            lambda e, b=band: open_scene(e.scene, bands=[1, b]),
            lambda e, b=band: infer(e.scene, e.shared.registry, e.out, "--bands", f"1,{b}"),
            lambda e, b=band: (e.scene, f"band(s) {b} do not exist", "1..2"),
        )
        for band in (0, -1, 3)
    },
    "no band at all": Case(
        SceneError,
        lambda e: batch(e, e.scene, bands=[]),
        lambda e: infer(e.scene, e.shared.registry, e.out, "--bands", ","),
        lambda e: (e.scene, "at least one band"),
    ),
    # --- tile size, chunking, edge policy ----------------------------------------------
    "tile size 0": Case(
        GridError,
        lambda e: open_scene(e.scene, tile_size=0),
        lambda e: infer(e.scene, e.shared.registry, e.out, "--tile-size", 0),
        lambda e: ("tile_size must be a positive integer", "got 0"),
        cli_names=lambda e: ("--tile-size", "'0'"),
        code=EXIT_USAGE,
    ),
    "tile size below 0": Case(
        GridError,
        lambda e: batch(e, e.scene, tile_size=-256),
        lambda e: train_cli(e.scene, registry=e.shared.registry, extra=("--tile-size", -256)),
        lambda e: ("tile_size must be a positive integer", "got -256"),
        cli_names=lambda e: ("--tile-size", "'-256'"),
        code=EXIT_USAGE,
    ),
    "tile size not an integer": Case(
        GridError,
        lambda e: fit(e.scene, tile_size=25.6),
        lambda e: infer(e.scene, e.shared.registry, e.out, "--tile-size", 25.6),
        lambda e: ("tile_size must be a positive integer", "got 25.6"),
        cli_names=lambda e: ("--tile-size", "'25.6'"),
        code=EXIT_USAGE,
    ),
    "tile size a string": Case(
        GridError,
        lambda e: open_scene(e.scene, tile_size="256"),
        lambda e: infer(e.scene, e.shared.registry, e.out, "--tile-size", "big"),
        lambda e: ("tile_size must be a positive integer", "got '256'"),
        cli_names=lambda e: ("--tile-size", "'big'"),
        code=EXIT_USAGE,
    ),
    "tile size larger than the scene: infer": Case(
        GridError,
        lambda e: batch(e, e.scene, tile_size=1024),
        lambda e: infer(e.scene, e.shared.registry, e.out, "--tile-size", 1024),
        lambda e: (e.scene, "512 rows x 512 cols holds no whole 1024 px tile", "--edge pad"),
    ),
    "tile size larger than the scene: train": Case(
        GridError,
        lambda e: fit(e.scene, tile_size=1024),
        lambda e: train_cli(e.scene, registry=e.shared.registry, extra=("--tile-size", 1024)),
        lambda e: (e.scene, "holds no whole 1024 px tile"),
    ),
    "tiles per chunk 0": Case(
        GridError,
        lambda e: batch(e, e.scene, tiles_per_chunk=0),
        lambda e: infer(e.scene, e.shared.registry, e.out, "--tiles-per-chunk", 0),
        lambda e: ("tiles_per_chunk must be a positive integer", "got 0"),
        cli_names=lambda e: ("--tiles-per-chunk", "'0'"),
        code=EXIT_USAGE,
    ),
    "unknown edge policy": Case(
        GridError,
        lambda e: batch(e, e.scene, edge="wrap"),
        lambda e: infer(e.scene, e.shared.registry, e.out, "--edge", "wrap"),
        lambda e: ("edge must be one of skip, pad", "'wrap'"),
        cli_names=lambda e: ("--edge", "'wrap'"),
        code=EXIT_USAGE,
    ),
    # --- model artifacts ------------------------------------------------------------
    **{
        f"artifact: {name}": artifact_case(edit, problem)
        for name, (edit, problem) in ARTIFACT_EDITS.items()
    },
    "artifact: id that does not exist": Case(
        RegistryError,
        lambda e: load(e.shared.registry, UNKNOWN_ID),
        lambda e: infer(e.scene, model_ref(e.shared.registry, UNKNOWN_ID), e.out),
        lambda e: (UNKNOWN_ID, "no such model artifact"),
    ),
    "artifact: id that is no uuid": Case(
        RegistryError,
        lambda e: load(e.shared.registry, "../../etc/passwd"),
        lambda e: infer(e.scene, model_ref(e.shared.registry, "../../etc/passwd"), e.out),
        lambda e: ("'../../etc/passwd' is not a model id",),
    ),
    "artifact: copied under another id": Case(
        RegistryError,
        lambda e: load(e.renamed_registry, UNKNOWN_ID),
        lambda e: infer(e.scene, model_ref(e.renamed_registry, UNKNOWN_ID), e.out),
        lambda e: (f"{UNKNOWN_ID}.json", e.model.id, "does not match its file name"),
    ),
    "empty registry": Case(
        RegistryError,
        lambda e: load(e.directory, "latest"),
        lambda e: infer(e.scene, e.directory, e.out),
        lambda e: (e.directory, "registry has no model yet"),
    ),
    # --- outputs and registries -----------------------------------------------------
    "output store exists": Case(
        RunError,
        lambda e: run_batch(e.scene, e.model, e.shared.store, scheduler="threads"),
        lambda e: infer(e.scene, e.shared.registry, e.shared.store),
        lambda e: (e.shared.store, "already exists", "--overwrite"),
    ),
    "output path is a file, even with overwrite": Case(
        RunError,
        lambda e: run_batch(e.scene, e.model, e.plain_file, scheduler="threads", overwrite=True),
        lambda e: infer(e.scene, e.shared.registry, e.plain_file, "--overwrite"),
        lambda e: (e.plain_file, "not a run store"),
    ),
    "output folder does not exist": Case(
        RunError,
        lambda e: run_batch(e.scene, e.model, e.tmp / "nowhere" / "run.zarr", scheduler="threads"),
        lambda e: infer(e.scene, e.shared.registry, e.tmp / "nowhere" / "run.zarr"),
        lambda e: (e.tmp / "nowhere", "output directory does not exist"),
    ),
    "output folder is read-only": Case(
        RunError,
        lambda e: run_batch(e.scene, e.model, e.readonly / "run.zarr", scheduler="threads"),
        lambda e: infer(e.scene, e.shared.registry, e.readonly / "run.zarr"),
        lambda e: (e.readonly, "output directory is not writable"),
    ),
    "registry folder is read-only: train": Case(
        RegistryError,
        lambda e: ModelRegistry(e.readonly).save(ThresholdModel(threshold=1.0)),
        lambda e: train_cli(e.scene, registry=e.readonly),
        lambda e: (e.readonly, "registry directory is not writable"),
    ),
    "registry is a file: train": Case(
        RegistryError,
        lambda e: ModelRegistry(e.plain_file),
        lambda e: train_cli(e.scene, registry=e.plain_file),
        lambda e: (e.plain_file, "not a directory"),
    ),
    "registry is a file: infer": Case(
        RegistryError,
        lambda e: load(e.plain_file, e.model.id),
        lambda e: infer(e.scene, model_ref(e.plain_file, e.model.id), e.out),
        lambda e: (e.plain_file, "not a directory"),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_refused_and_nothing_is_written(case: str, env: Env) -> None:
    row = CASES[case]
    assert row.error is not SatdaskError, "name the narrow subclass"
    argv = row.cli(env)  # makes every file the row needs, before the record below
    names = row.names(env)
    cli_names = (row.cli_names or row.names)(env)
    before = state(env.tmp, env.shared.root)

    with pytest.raises(SatdaskError) as info:
        row.library(env)
    assert type(info.value) is row.error, f"{type(info.value).__name__}: {info.value}"
    message = str(info.value)
    assert "\n" not in message and message.strip() == message, repr(message)
    for name in names:
        assert str(name) in message, f"{name!r} not named in {message!r}"
    assert state(env.tmp, env.shared.root) == before, "the library call changed files"

    proc = satdask(*argv)
    if row.ok_lines:
        lines = proc.stdout.splitlines()
        assert len([line for line in lines if line.startswith("ok ")]) == row.ok_lines, lines
        assert all(line.startswith(("ok ", "  warning: ")) for line in lines), lines
        proc = subprocess.CompletedProcess(proc.args, proc.returncode, "", proc.stderr)
    one_line_error(proc, *cli_names, code=row.code)
    assert state(env.tmp, env.shared.root) == before, "the CLI changed files"


# ---------------------------------------------------------------------------
# What the table cannot say in one row
# ---------------------------------------------------------------------------


def test_the_table_covers_every_error_class_the_input_can_cause() -> None:
    raised = {row.error for row in CASES.values()}
    assert raised == {SceneError, ValidationError, GridError, ModelError, RegistryError, RunError}


def test_a_truncated_scene_fails_on_read_with_its_name(env: Env) -> None:
    """open_scene reads metadata only, so truncation shows on compute: as a SceneError."""
    scene = open_scene(env.truncated)  # lazy: opening succeeds
    with pytest.raises(SceneError, match="cannot be read") as info:
        tile_features(scene).compute(scheduler="threads")
    assert str(env.truncated) in str(info.value) and "\n" not in str(info.value)


def test_infer_on_a_truncated_scene_fails_only_the_missing_tiles(env: Env) -> None:
    """run_batch does not validate: the design isolates undecodable tiles instead.

    The run finishes, the tiles whose bytes are gone are `failed` with GDAL's reason,
    the others are inferred, and the health report says so.
    """
    run = batch(env, env.truncated, tiles_per_chunk=2)
    counts = run.counts
    assert counts["tiles_total"] == 4
    assert 0 < counts["tiles_failed"] < 4
    assert counts["tiles_inferred"] + counts["tiles_failed"] == 4
    assert len(run.errors) == counts["tiles_failed"]
    assert run.health["status"] != "healthy"


def test_one_bit_scenes_read_as_uint8(env: Env) -> None:
    """rasterio cannot write a bool raster; GDAL's equivalent, NBITS=1, reads as uint8."""
    with pytest.raises(TypeError, match="bool"):
        env.tif("bool.tif", np.ones((1, 256, 256), dtype=bool))
    bits = (np.indices((256, 512)).sum(axis=0) % 2).astype(np.uint8)[None]
    path = env.tmp / "bits.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=512,
        height=256,
        count=1,
        dtype="uint8",
        nbits=1,
        crs="EPSG:32633",
        transform=UTM_10M,
    ) as dst:
        dst.write(bits)
    with rasterio.open(path) as src:
        assert src.tags(1, ns="IMAGE_STRUCTURE").get("NBITS") == "1"
    scene = open_scene(path)
    assert scene.dtype == np.uint8
    features = tile_features(scene).compute(scheduler="threads")
    np.testing.assert_array_equal(features.mean_intensity.values, [[0.5, 0.5]])


def test_a_zero_sized_raster_is_refused_before_any_read(env: Env) -> None:
    """libtiff already refuses a 0-sized TIFF (the table); other drivers meet this check."""
    info = SceneInfo(
        uri=str(env.tmp / "zero.vrt"),
        width=0,
        height=256,
        count=1,
        dtypes=("uint8",),
        crs=rasterio.crs.CRS.from_epsg(32633),
        transform=UTM_10M,
        nodata=None,
        block_shape=(256, 256),
        acquisition_time=None,
    )
    with pytest.raises(ValidationError, match=r"zero\.vrt: raster size 256 rows x 0 cols is empty"):
        check_scene(info)


def test_validate_accepts_every_good_real_scene(real_scene: Callable[[str], Path]) -> None:
    """The truncation check must not refuse whole files: strips, tiles, COGs, 1 to 4 bands."""
    for name in ("RGB.byte.tif", "RGBA.uint16.tif", "shade.tif", "world.rgb.tif", "all-nodata.tif"):
        # all-nodata.tif is 71 px wide: only pad gives it a tile, and validate says so
        assert validate(real_scene(name), edge="pad").uri.endswith(name)
