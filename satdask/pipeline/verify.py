"""Re-reading a finished run store and checking it against what it says it is.

Each check passes, fails, or is skipped when what it needs cannot be reached (a
remote scene, a registry that is not there): a skip is never counted as a pass.
The store is opened without its consolidated metadata, so an array whose folder
was deleted shows as missing rather than as a listing that reads back fill values.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
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
from satdask.errors import GridError, RegistryError, RunError
from satdask.io import store
from satdask.io.lineage import file_sha256

Outcome = Literal["pass", "fail", "skip"]

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
    arrays = dict(_arrays(group, attrs, checks))
    checks.append(_counts(arrays, attrs))
    checks.append(_crs(group, attrs))
    checks += _scene(attrs)
    checks.append(_model(attrs, registry))
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


def _arrays(
    group: zarr.Group, attrs: Mapping[str, Any], checks: list[Check]
) -> Iterator[tuple[str, np.ndarray]]:
    """One check per schema array; yields the arrays that passed, read in full."""
    shape = _expected_shape(attrs)
    for name, dtype in SCHEMA.items():
        label = f"array {name}"
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
        checks.append(
            Check(label, "pass", f"{dtype} {size_text(array.shape[0], array.shape[1])} of tiles")
        )
        yield name, values


def _counts(arrays: Mapping[str, np.ndarray], attrs: Mapping[str, Any]) -> Check:
    """The recorded counts, and status agreeing with prediction and features per tile.

    A chunk that is missing reads back as the fill value, so a lost chunk shows
    here as tiles whose arrays disagree, not as a missing file.
    """
    if set(arrays) != set(SCHEMA):
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
        | (ok & ~np.isin(prediction, (0, 1)))
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


def _model(attrs: Mapping[str, Any], registry: str | os.PathLike[str] | None) -> Check:
    from satdask.io.registry import ModelRegistry

    label = "model sha256"
    model = attrs.get("model", {})
    model_id, recorded, uri = model.get("id"), model.get("sha256"), model.get("uri")
    if model_id is None:
        return Check(label, "skip", "skipped: the run used a model that is not in a registry")
    directory = Path(registry) if registry is not None else Path(uri).parent if uri else None
    if directory is None or not directory.is_dir():
        return Check(label, "skip", f"skipped: registry {directory} is not reachable")
    try:
        artifact = ModelRegistry(directory).load(str(model_id))
    except RegistryError as exc:
        return Check(label, "fail", str(exc))
    if artifact.sha256 != recorded:
        return Check(
            label,
            "fail",
            f"{artifact.uri} has sha256 {artifact.sha256[:12]}, the run recorded "
            f"{str(recorded)[:12]}",
        )
    return Check(label, "pass", f"{model_id} in {directory} matches {artifact.sha256[:12]}")
