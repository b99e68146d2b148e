"""Re-reading a finished run store and checking it against what it says it is.

Each check passes, fails, or is skipped when what it needs cannot be reached (a
remote scene, a registry that is not there): a skip is never counted as a pass.
The store is opened without its consolidated metadata, so an array whose folder
was deleted shows as missing rather than as a listing that reads back fill values.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import zarr
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import CRSError

from satdask.core.features import STATUS_FAILED, STATUS_NODATA, STATUS_OK
from satdask.core.grid import TileGrid, size_text
from satdask.core.pixels import ClassTable, flag_name, tile_summary
from satdask.errors import GridError, ModelError, RegistryError, RunError
from satdask.io import store
from satdask.io.lineage import file_sha256
from satdask.models.base import Model, ModelClass, PixelModel

Outcome = Literal["pass", "fail", "skip"]
_PIECE = 2048  # px a side of the pieces of a pixel run's classes read at a time

# The run store's arrays (DESIGN.md, README "The run store"): name -> dtype.
SCHEMA: dict[str, np.dtype] = {
    "prediction": np.dtype("int8"),
    "mean_intensity": np.dtype("float64"),
    "std_intensity": np.dtype("float64"),
    "valid_fraction": np.dtype("float32"),
    "status": np.dtype("uint8"),
}


@dataclass(frozen=True)
class Check:
    name: str
    outcome: Outcome
    detail: str

    def line(self) -> str:
        return f"{self.outcome:<4}  {self.name:<24} {self.detail}"


@dataclass(frozen=True)
class VerifyReport:
    path: store.Destination
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        """True when nothing failed; skipped checks do not make a store verified."""
        return not self.failed

    @property
    def failed(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.outcome == "fail")

    @property
    def skipped(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.outcome == "skip")

    def summary(self) -> str:
        passed = len(self.checks) - len(self.failed) - len(self.skipped)
        return (
            f"{self.path}: {passed} passed, {len(self.failed)} failed, {len(self.skipped)} skipped"
        )

    def lines(self) -> list[str]:
        return [c.line() for c in self.checks]

    def __getitem__(self, name: str) -> Check:
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(name)


def verify_run(
    path: str | os.PathLike[str], *, registry: str | os.PathLike[str] | None = None
) -> VerifyReport:
    """Check a run store: complete, arrays as the schema, counts, CRS, scene and model.

    `registry` is where to find the model artifact; by default the folder of the
    artifact URI the run recorded. Raises RunError only when `path` is no satdask
    run store at all; every other problem is a failed check in the report.
    """
    path = store.destination(path)  # a URL (s3://...) stays a string
    group = _open_group(path)
    try:
        attrs = store.read_attrs(path)
    except RunError as exc:
        rest = "skipped: the store is not complete"
        checks = [Check("complete", "fail", str(exc))]
        checks += [Check(name, "skip", rest) for name in ("arrays", "scene", "model")]
        return VerifyReport(path, tuple(checks))
    checks = [Check("complete", "pass", f"run {attrs.get('run_id')} is marked complete")]
    model_check, model = _model(attrs, registry)
    kind = _run_kind(group, attrs, model)
    classes = _expected_classes(group, kind, model)
    expected = {name: (dtype, lead) for name, dtype, lead in _expected_arrays(kind, classes)}
    arrays = dict(_arrays(group, attrs, checks, expected))
    checks.append(_counts(arrays, attrs, values=[c[0] for c in classes]))
    checks.append(_crs(group, attrs))
    if kind != "tile":
        checks.append(_classes(group, kind, classes, from_model=model is not None))
    if kind == "pixel":
        checks += _pixels(group, attrs, classes, arrays)
    checks += _scene(attrs)
    checks.append(model_check)
    return VerifyReport(path, tuple(checks))


def _open_group(path: store.Destination) -> zarr.Group:
    if isinstance(path, Path) and not path.exists():
        raise RunError(f"{path}: does not exist", uri=str(path))
    try:
        group = zarr.open_group(os.fspath(path), mode="r", use_consolidated=False)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, ValueError):
        raise RunError(f"{path}: not a run store") from None
    if store.decode_attrs(dict(group.attrs).get(store.ATTRS_KEY)) is None:
        raise RunError(f"{path}: not a satdask run store (no '{store.ATTRS_KEY}' attributes)")
    return group


def _expected_shape(attrs: Mapping[str, Any]) -> tuple[int, int] | None:
    try:
        _, height, width = attrs["scene"]["shape"]
        config = attrs["config"]
        grid = TileGrid(height, width, Affine.identity(), config["tile_size"], config["edge"])
    except (KeyError, TypeError, ValueError, GridError):
        return None
    return grid.shape


RunKind = Literal["tile", "window", "pixel"]
# (value, name) of a model's classes, names as CF's flag_meanings spell them
Classes = list[tuple[int, str]]
THRESHOLD_CLASSES: Classes = [(0, "dark"), (1, "bright")]


def _run_kind(group: zarr.Group, attrs: Mapping[str, Any], model: Model | None) -> RunKind:
    """A tile model's run, a window classifier's (tile grid only) or a pixel model's (with
    a pixels group); without the model, told from the record and the store."""
    if isinstance(model, PixelModel):
        return model.output
    if model is not None or "window" not in attrs.get("config", {}):
        return "tile"
    return "pixel" if store.PIXELS in group or "class_fraction" in group else "window"


def _expected_classes(group: zarr.Group, kind: RunKind, model: Model | None) -> Classes:
    """The model's classes; without the model, those the tile grid's flags name."""
    if kind == "tile":
        return THRESHOLD_CLASSES
    if isinstance(model, PixelModel):
        return [(c.value, flag_name(c.name)) for c in model.classes]
    values, meanings = _flags(group, "prediction")
    return [(v, m) for v, m in zip(values, meanings, strict=False) if v != -1]


def _flags(group: zarr.Group, path: str) -> tuple[list[int], list[str]]:
    """An array's CF flag_values and flag_meanings; empty when it has none."""
    try:
        attrs: dict[str, Any] = dict(group[path].attrs)
        values = [int(v) for v in attrs.get("flag_values", [])]
    except (KeyError, TypeError, ValueError):
        return [], []
    return values, str(attrs.get("flag_meanings", "")).split()


def _expected_arrays(kind: RunKind, classes: Classes) -> Iterator[tuple[str, np.dtype, int]]:
    """(name, dtype, leading class dim or 0) of every tile-grid array the run must hold."""
    for name, dtype in SCHEMA.items():
        yield name, dtype, 0
    if kind == "pixel":
        yield "class_fraction", np.dtype("float32"), len(classes)


def _arrays(
    group: zarr.Group,
    attrs: Mapping[str, Any],
    checks: list[Check],
    expected: Mapping[str, tuple[np.dtype, int]] | None = None,
) -> Iterator[tuple[str, np.ndarray]]:
    """One check per tile-grid array; yields the arrays that passed, read in full.

    `expected` is name -> (dtype, leading class count or 0); the schema's by default.
    """
    grid = _expected_shape(attrs)
    for name, (dtype, lead) in (expected or {n: (d, 0) for n, d in SCHEMA.items()}).items():
        label = f"array {name}"
        shape = None if grid is None else ((lead, *grid) if lead else grid)
        try:
            array = group[name]
        except KeyError:
            checks.append(Check(label, "fail", "missing from the store"))
            continue
        if not isinstance(array, zarr.Array):
            checks.append(Check(label, "fail", "is a group, not an array"))
            continue
        problems = []
        if array.dtype != dtype:
            problems.append(f"dtype {array.dtype}, expected {dtype}")
        if shape is None:
            problems.append("scene shape or config missing from the attributes")
        elif array.shape != shape:
            problems.append(f"shape {array.shape}, expected {shape} tiles")
        if problems:
            checks.append(Check(label, "fail", "; ".join(problems)))
            continue
        try:
            values = np.asarray(array[...])
        except Exception as exc:  # a corrupt chunk: codec errors have no common base
            checks.append(Check(label, "fail", f"cannot be read ({type(exc).__name__}: {exc})"))
            continue
        classes = f"{lead} classes x " if lead else ""
        rows, cols = array.shape[-2:]
        checks.append(Check(label, "pass", f"{dtype} {classes}{size_text(rows, cols)} of tiles"))
        yield name, values


def _counts(
    arrays: Mapping[str, np.ndarray], attrs: Mapping[str, Any], *, values: Sequence[int] = (0, 1)
) -> Check:
    """The recorded counts, and status agreeing with prediction and features per tile.

    `values` are the classes an ok tile may hold (the model's). A chunk that is
    missing reads back as the fill value, so a lost chunk shows here as tiles whose
    arrays disagree, not as a missing file.
    """
    if not set(SCHEMA) <= set(arrays):
        return Check("counts", "skip", "skipped: not every array could be read")
    status, prediction = arrays["status"], arrays["prediction"]
    mean = arrays["mean_intensity"]
    counted = {
        "tiles_total": int(status.size),
        "tiles_inferred": int((status == STATUS_OK).sum()),
        "tiles_skipped": int((status == STATUS_NODATA).sum()),
        "tiles_failed": int((status == STATUS_FAILED).sum()),
    }
    recorded = attrs.get("counts", {})
    wrong = [
        f"{k} {v} (recorded {recorded.get(k)})" for k, v in counted.items() if recorded.get(k) != v
    ]
    ok = status == STATUS_OK
    bad_tiles = (
        ~np.isin(status, (STATUS_OK, STATUS_NODATA, STATUS_FAILED))
        | (ok & ~np.isin(prediction, values))
        | (ok & ~np.isfinite(mean))
        | (~ok & (prediction != -1))
    )
    if bad_tiles.any():
        row, col = (int(i) for i in np.argwhere(bad_tiles)[0])
        wrong.append(
            f"{int(bad_tiles.sum())} tile(s) whose status, prediction and mean disagree, "
            f"first ({row}, {col})"
        )
    if wrong:
        return Check("counts", "fail", "; ".join(wrong))
    c = counted
    return Check(
        "counts",
        "pass",
        f"{c['tiles_total']} tiles: {c['tiles_inferred']} ok, {c['tiles_skipped']} nodata, "
        f"{c['tiles_failed']} failed, as recorded",
    )


def _crs(group: zarr.Group, attrs: Mapping[str, Any]) -> Check:
    recorded = attrs.get("scene", {}).get("crs")
    try:
        wkt = dict(group["spatial_ref"].attrs)["crs_wkt"]
        found = CRS.from_wkt(wkt)
    except (KeyError, CRSError):
        return Check("crs", "fail", "no readable CRS in spatial_ref")
    try:
        expected = CRS.from_user_input(recorded)
    except (CRSError, TypeError):
        return Check("crs", "fail", f"recorded scene CRS {recorded!r} is not a CRS")
    if found != expected:
        return Check("crs", "fail", f"spatial_ref is {found.to_string()}, recorded {recorded}")
    return Check("crs", "pass", f"{recorded} in spatial_ref, as recorded")


def _scene(attrs: Mapping[str, Any]) -> list[Check]:
    scene = attrs.get("scene", {})
    if "pixels" in scene:  # computed from an array: no file holds them
        origin = scene.get("derived_from") or "an array in memory"
        detail = f"skipped: the pixels were derived from {origin}, not read from a file"
        return [Check("scene sha256", "skip", detail)]
    checks = [_file_hash("scene sha256", scene.get("uri"), scene.get("sha256"))]
    for asset in scene.get("stac", {}).get("assets", []):
        label = f"scene asset {asset.get('key')} sha256"
        checks.append(_file_hash(label, asset.get("href"), asset.get("sha256")))
    return checks


def _file_hash(label: str, uri: object, recorded: object) -> Check:
    from satdask._uri import is_remote

    if not isinstance(uri, str) or not uri:
        return Check(label, "fail", "no scene URI recorded")
    if recorded is None:
        return Check(label, "skip", f"skipped: no sha256 recorded for {uri} (remote at run time)")
    if is_remote(uri):
        return Check(label, "skip", f"skipped: {uri} is remote and is not downloaded to check")
    if not os.path.isfile(uri):
        return Check(label, "skip", f"skipped: {uri} is not reachable")
    try:
        actual = file_sha256(uri)
    except OSError as exc:
        return Check(label, "skip", f"skipped: {uri} cannot be read ({exc.strerror})")
    if actual != recorded:
        return Check(
            label,
            "fail",
            f"{uri} has sha256 {actual[:12]}, the run recorded {str(recorded)[:12]}: "
            "the scene changed since the run",
        )
    return Check(label, "pass", f"{uri} matches {actual[:12]}")


def _model(
    attrs: Mapping[str, Any], registry: str | os.PathLike[str] | None
) -> tuple[Check, Model | None]:
    """The model's check, and the model when it loads and matches what the run recorded.

    Loading an ONNX model's artifact checks its blob against the blob's sha256 too.
    """
    from satdask.io.registry import ModelRegistry

    label = "model sha256"
    model = attrs.get("model", {})
    model_id, recorded, uri = model.get("id"), model.get("sha256"), model.get("uri")
    if model_id is None:
        return Check(label, "skip", "skipped: the run used a model that is not in a registry"), None
    directory = Path(registry) if registry is not None else Path(uri).parent if uri else None
    if directory is None or not directory.is_dir():
        return Check(label, "skip", f"skipped: registry {directory} is not reachable"), None
    try:
        artifact = ModelRegistry(directory).load(str(model_id))
    except RegistryError as exc:
        return Check(label, "fail", str(exc)), None
    if artifact.sha256 != recorded:
        detail = (
            f"{artifact.uri} has sha256 {artifact.sha256[:12]}, the run recorded "
            f"{str(recorded)[:12]}"
        )
        return Check(label, "fail", detail), None
    detail = f"{model_id} in {directory} matches {artifact.sha256[:12]}"
    return Check(label, "pass", detail), artifact.model


# --------------------------------------------------------------------------- pixel runs


def _classes(group: zarr.Group, kind: RunKind, classes: Classes, *, from_model: bool) -> Check:
    """The tile grid's (and a pixel run's pixels') flags name the model's classes."""
    expected = ([-1, *(v for v, _ in classes)], ["none", *(n for _, n in classes)])
    places = {"prediction": expected}
    if kind == "pixel" and store.PIXELS in group:
        places[f"{store.PIXELS}/prediction"] = ([v for v, _ in classes], [n for _, n in classes])
    problems = []
    for path, (values, meanings) in places.items():
        found = _flags(group, path)
        if found[0] != values:
            problems.append(f"{path} flag_values {found[0]}, expected {values}")
        elif found[1] != meanings:
            problems.append(f"{path} flag_meanings {' '.join(found[1])!r}, expected {meanings}")
    if problems:
        return Check("classes", "fail", "; ".join(problems))
    source = "the model's" if from_model else "the tile grid's (model not loaded)"
    names = ", ".join(n for _, n in classes)
    return Check("classes", "pass", f"{len(classes)} classes ({names}) as {source}")


def _pixels(
    group: zarr.Group, attrs: Mapping[str, Any], classes: Classes, arrays: Mapping[str, np.ndarray]
) -> list[Check]:
    """A pixel run's full-resolution arrays: there, on the scene's grid, with the dtype
    and fill value its classes need, and agreeing with the tile grid's class fractions."""
    label = f"{store.PIXELS} prediction"
    if store.PIXELS not in group:
        detail = f"the {store.PIXELS} group is missing: a pixel model's run writes one"
        return [Check(label, "fail", detail)]
    pixels = group[store.PIXELS]
    if not isinstance(pixels, zarr.Group):
        return [Check(label, "fail", f"{store.PIXELS} is an array, not a group")]
    try:
        _, height, width = (int(n) for n in attrs["scene"]["shape"])
    except (KeyError, TypeError, ValueError):
        return [Check(label, "fail", "scene shape missing from the attributes")]
    try:
        table = ClassTable.of(tuple(ModelClass(v, n) for v, n in classes))
    except (ModelError, ValueError):  # no classes, or values no pixel array can hold
        return [Check(label, "fail", f"no class table for the classes {classes}")]
    checks = [_pixel_prediction(pixels, (height, width), table)]
    config = attrs.get("config", {})
    if config.get("keep_scores"):
        checks.append(_pixel_scores(pixels, (len(classes), height, width)))
    array = pixels.get("prediction")
    if checks[0].outcome == "pass" and isinstance(array, zarr.Array):
        checks.append(_pixel_summary(array, table, config, arrays))
    else:
        checks.append(Check(f"{store.PIXELS} summary", "skip", f"skipped: {label} failed"))
    return checks


def _pixel_prediction(pixels: zarr.Group, shape: tuple[int, int], table: ClassTable) -> Check:
    label = f"{store.PIXELS} prediction"
    try:
        array = pixels["prediction"]
    except KeyError:
        return Check(label, "fail", "missing from the store")
    if not isinstance(array, zarr.Array):
        return Check(label, "fail", "is a group, not an array")
    problems = []
    if array.shape != shape:
        problems.append(f"shape {array.shape}, expected the scene's {shape}")
    if array.dtype != table.dtype:
        problems.append(f"dtype {array.dtype}, expected {table.dtype} for its classes")
    cf_fill = array.attrs.get("_FillValue")
    if array.fill_value != table.fill or cf_fill != table.fill:
        problems.append(
            f"fill value {array.fill_value} (_FillValue {cf_fill}), expected {table.fill}"
        )
    if problems:
        return Check(label, "fail", "; ".join(problems))
    size = size_text(*shape)
    return Check(label, "pass", f"{table.dtype} {size} of pixels, fill {table.fill}")


def _pixel_scores(pixels: zarr.Group, shape: tuple[int, int, int]) -> Check:
    label = f"{store.PIXELS} scores"
    try:
        array = pixels["scores"]
    except KeyError:
        return Check(label, "fail", "missing, but the run recorded keep_scores")
    if not isinstance(array, zarr.Array):
        return Check(label, "fail", "is a group, not an array")
    problems = []
    if array.shape != shape:
        problems.append(f"shape {array.shape}, expected {shape} (class, rows, cols)")
    if array.dtype != np.float16:
        problems.append(f"dtype {array.dtype}, expected float16")
    if problems:
        return Check(label, "fail", "; ".join(problems))
    return Check(label, "pass", f"float16 {shape[0]} classes x {size_text(*shape[1:])}")


def _pixel_summary(
    array: zarr.Array, table: ClassTable, config: Mapping[str, Any], arrays: Mapping[str, Any]
) -> Check:
    """Every ok tile's class fractions and majority class counted again from its pixels.

    Read a piece of tiles at a time, so memory stays bounded whatever the scene. A lost
    or altered chunk of pixels shows here, where its fill values read back as data.
    """
    label = f"{store.PIXELS} summary"
    if not {"class_fraction", "prediction", "status"} <= set(arrays):
        return Check(label, "skip", "skipped: the tile grid's arrays could not all be read")
    fraction, prediction = arrays["class_fraction"], arrays["prediction"]
    ok = arrays["status"] == STATUS_OK
    t = int(config.get("tile_size", 0))
    rows, cols = prediction.shape
    if t <= 0:
        return Check(label, "fail", "tile_size missing from the config")
    step = max(1, _PIECE // t)
    bad = np.zeros(prediction.shape, dtype=bool)
    try:
        for r0 in range(0, rows, step):
            for c0 in range(0, cols, step):
                nr, nc = min(step, rows - r0), min(step, cols - c0)
                classes = np.asarray(array[r0 * t : (r0 + nr) * t, c0 * t : (c0 + nc) * t])
                got, majority = tile_summary(classes, table=table, tile_size=t, rows=nr, cols=nc)
                tiles = (slice(r0, r0 + nr), slice(c0, c0 + nc))
                differ = ~np.isclose(got, fraction[(slice(None), *tiles)], rtol=0, atol=1e-6)
                bad[tiles] = differ.any(axis=0) | (majority != prediction[tiles])
    except Exception as exc:  # a corrupt chunk: codec errors have no common base
        return Check(label, "fail", f"cannot be read ({type(exc).__name__}: {exc})")
    bad &= ok
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        return Check(
            label,
            "fail",
            f"{int(bad.sum())} ok tile(s) whose pixels disagree with their class fractions "
            f"and class, first ({row}, {col}): pixels lost or changed since the run",
        )
    return Check(label, "pass", f"the pixels of {int(ok.sum())} ok tiles give their summaries")
