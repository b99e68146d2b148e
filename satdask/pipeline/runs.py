"""A finished run, as its store describes it: what `run_batch` returns and `open_run` reads."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import zarr

from satdask.core._html import run_html
from satdask.core.features import STATUS_OK
from satdask.core.health import HealthPolicy, health_checks, should_retrain
from satdask.core.pixels import flag_name
from satdask.core.schema import (
    HealthReport,
    Monitoring,
    RunCounts,
    RunRecord,
    TileError,
    missing_sections,
)
from satdask.errors import MonitoringError, RunError
from satdask.io import store

if TYPE_CHECKING:
    import xarray as xr


@dataclass(frozen=True)
class RunResult:
    """A finished run: where it is and what its attributes say.

    `attrs` is the store's attribute as written; `record` is the same, typed, with
    what a store from an older satdask lacks (the health checks) filled in.
    """

    path: store.Destination
    attrs: Mapping[str, Any]

    @cached_property
    def record(self) -> RunRecord:
        return read_record(self.attrs)

    @property
    def run_id(self) -> str:
        return str(self.record["run_id"])

    @property
    def counts(self) -> RunCounts:
        return self.record["counts"]

    @property
    def monitoring(self) -> Monitoring:
        return self.record["monitoring"]

    @property
    def health(self) -> HealthReport:
        return self.record["health"]

    @property
    def errors(self) -> Sequence[TileError]:
        return self.record["errors"]

    def should_retrain(self) -> bool:
        return should_retrain(self.health)

    def dataset(self) -> xr.Dataset:
        return store.open_store(self.path)

    def classes(self) -> tuple[RunClass, ...]:
        """A pixel or window model's classes, in the model's order, with their ok tiles and
        (a pixel model's) share of the valid pixels; () for a threshold model's run.

        Read from the tile grid with zarr alone, so `infer` and `runs show` stay light.
        """
        if "window" not in self.record["config"]:
            return ()
        group = zarr.open_group(os.fspath(self.path), mode="r")
        flags: dict[str, Any] = dict(_array(group, "prediction").attrs)
        values = [int(v) for v in flags.get("flag_values", [])]
        meanings = str(flags.get("flag_meanings", "")).split()
        colors: list[str | None] = list(flags.get("flag_colors") or [None] * len(values))
        if not (len(values) == len(meanings) == len(colors)) or values[:1] != [-1]:
            raise RunError(
                f"{self.path}: prediction's flag_values, flag_meanings and flag_colors "
                "do not describe the same classes",
                uri=str(self.path),
            )
        status = np.asarray(_array(group, "status")[...])
        prediction = np.asarray(_array(group, "prediction")[...])
        ok = status == STATUS_OK
        shares = _shares(group, ok, classes=len(values) - 1)
        # flag_meanings spell a space as '_': the monitoring's names give them back
        named = self.monitoring["predictions"].get("classes") or {}
        real = {flag_name(name): name for name in named}
        return tuple(
            RunClass(
                value=value,
                name=real.get(meaning, meaning),
                color=color,
                tiles=int(np.count_nonzero(ok & (prediction == value))),
                share=None if shares is None else shares[i],
            )
            for i, (value, meaning, color) in enumerate(
                zip(values[1:], meanings[1:], colors[1:], strict=True)
            )
        )

    def pixel_cover(self) -> dict[str, float] | None:
        """Each class's share of all the scene's valid pixels (those in no tile too),
        counted over `pixels/prediction` a row of chunks at a time; None for a run with
        no pixels (s2cloudless's cloud cover is the share of `cloud`)."""
        classes = self.classes()
        root = zarr.open_group(os.fspath(self.path), mode="r")
        pixels = root[store.PIXELS] if classes and store.PIXELS in root else None
        if not isinstance(pixels, zarr.Group):
            return None
        array = _array(pixels, "prediction")
        counts = np.zeros(int(np.iinfo(array.dtype).max) + 1, dtype=np.int64)
        step = array.chunks[0]
        for row in range(0, array.shape[0], step):
            values = np.asarray(array[row : row + step]).ravel()
            counts += np.bincount(values, minlength=counts.size)
        total = sum(int(counts[c.value]) for c in classes)
        return {c.name: int(counts[c.value]) / total for c in classes} if total else {}

    def __repr__(self) -> str:
        """One line: which run, where, what became of its tiles, and its health."""
        c = self.counts
        uncovered = ""
        coverage = self.record.get("coverage")
        if coverage and coverage["pixels_uncovered"]:
            uncovered = f", {100 * coverage['fraction_uncovered']:.2g}% of pixels in no tile"
        return (
            f"<RunResult {self.run_id[:8]} at {self.path}: {c['tiles_total']} tiles, "
            f"{c['tiles_inferred']} inferred, {c['tiles_skipped']} nodata, "
            f"{c['tiles_failed']} failed{uncovered}; {self.health['status']}>"
        )

    def _repr_html_(self) -> str:
        return run_html(self.record, path=str(self.path))


@dataclass(frozen=True)
class RunClass:
    """One class of a pixel or window model's run.

    `tiles` counts the ok tiles whose class (a pixel model's majority class) it is;
    `share` is its fraction of the valid pixels of the ok tiles, None for a window
    model, which classifies whole windows.
    """

    value: int
    name: str
    color: str | None
    tiles: int
    share: float | None


def _array(group: zarr.Group, name: str) -> zarr.Array:
    node = group[name]
    if not isinstance(node, zarr.Array):
        raise RunError(f"{group.store}: {name} is a group, not an array")
    return node


def _shares(group: zarr.Group, ok: np.ndarray, *, classes: int) -> list[float | None] | None:
    """The ok tiles' class fractions weighted by their valid fractions (a tile's valid
    pixels over its full size), so each class's share of the valid pixels they hold."""
    if "class_fraction" not in group:
        return None
    fraction = np.asarray(_array(group, "class_fraction")[...], dtype=np.float64)
    if fraction.shape[0] != classes:
        return None
    valid = np.asarray(_array(group, "valid_fraction")[...], dtype=np.float64)
    weight = np.where(ok, valid, 0.0)
    fraction = np.where(ok & np.isfinite(fraction), fraction, 0.0)
    total = weight.sum()
    if total <= 0:
        return [None] * classes
    return [float((f * weight).sum() / total) for f in fraction]


def read_record(attrs: Mapping[str, Any]) -> RunRecord:
    """A store's attributes as a `RunRecord`, with the health checks of an older store.

    A store written before health reports had `checks` gets them from its own
    monitoring figures and recorded policy, by the same rules, so every reader can
    draw the rows; the status it recorded is kept as it was.
    """
    record = cast(RunRecord, dict(attrs))
    health = record["health"]
    if "checks" not in health:
        checks = health_checks(record["monitoring"], policy=_policy(health.get("policy")))
        record["health"] = {**health, "checks": checks}
    return record


def _policy(recorded: Mapping[str, Any] | None) -> HealthPolicy:
    """The recorded policy (fields it does not know left out), or the default one."""
    names = {f.name for f in dataclasses.fields(HealthPolicy)}
    try:
        return HealthPolicy(**{k: v for k, v in (recorded or {}).items() if k in names})
    except MonitoringError:
        return HealthPolicy()


def open_run(path: str | os.PathLike[str]) -> RunResult:
    """Open a complete run store; refuses a missing or unfinished one, or one not a run's."""
    attrs = store.read_attrs(path)
    missing = missing_sections(attrs)
    if missing:
        raise RunError(
            f"{path}: not a satdask run record (missing {', '.join(missing)})", uri=str(path)
        )
    return RunResult(store.destination(path), attrs)
