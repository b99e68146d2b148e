"""The runs root: finished run stores named by their path without `.zarr`, and their layers.

A run's name is its store's path relative to `--runs-root` (SATDASK_RUNS_ROOT) without
the `.zarr` suffix: `run.zarr` is `run`, `2024/a.zarr` is `2024/a`. Names go through the
data root's rules (`service.paths.check_relative`, with `.zarr` for the suffix) and are
looked up under a descriptor of the root (`service.files.Directory.look`), so `..`,
absolute paths, hidden names and symlinks leading out are refused alike: 404, as for a
scene. Only a store whose run record says `complete: true` is served.

A store is opened with zarr alone (no xarray), as `satdask.export.write_cog` reads it:
its CRS and geotransform come from the `spatial_ref` grid mapping beside the arrays.
Opened stores are cached by (device, inode, mtime) of their `zarr.json`, so a store
replaced by a new run at the same path is opened again.

Layers. A pixel model's run: `prediction` (pixels/prediction, the class values drawn in
the model's class colours, the fill value clear), `scores` if stored (the winning
class's score on the ramp, over the data's own range: scores may be logits) and every
other float array (y, x) of `pixels` (such as a cloud probability), on the ramp over its
`valid_min`..`valid_max` or 0..1. A tile
model's run: `prediction`, the root's tile grid, each tile a cell of its class.

Reads go through whole decoded chunks, kept in the same cache as the levels: a chunk
(a batch block, 1536 px a side by default) holds dozens of tiles, which a map asks for
together. Low zooms read downsampled: a window of at most `DIRECT_PIXELS` store pixels is
cut from the chunks with a step (every 2nd, 4th, ... pixel, nearest); a larger one comes from a
level, the whole array at that step, built once chunk by chunk (or from a finer level
already built) and kept in a process-wide cache of at most `LEVEL_BYTES`. Memory stays
bounded by a chunk, the window, and the cache, whatever the zoom.
"""

from __future__ import annotations

import math
import os
import stat
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import zarr
from affine import Affine
from rasterio.crs import CRS

from satdask.core.pixels import flag_name
from satdask.errors import RunError, SatdaskError
from satdask.export import cog_classes
from satdask.io.store import GRID_MAPPING, PIXELS
from satdask.pipeline.runs import open_run
from service.errors import NotFoundError
from service.files import Directory, RefusedError
from service.paths import check_relative
from service.tile_images import class_lut, hex_rgba

SUFFIX = ".zarr"
DIRECT_PIXELS = 2048 * 2048  # a window up to this many store pixels is read directly
LEVEL_BYTES = 256 * 1024 * 1024  # all runs' downsampled levels together
LIST_MAX_RUNS = 1000
LIST_MAX_DEPTH = 4


class RunNotFoundError(NotFoundError):
    """No finished run of that name under the runs root (or one that may not be read)."""

    def __init__(self, name: object, why: str = "no such run under the runs root") -> None:
        shown = name if isinstance(name, str) and len(name) <= 200 else "that name"
        SatdaskError.__init__(self, f"run {shown!r}: {why}")


class LayerNotFoundError(NotFoundError):
    def __init__(self, run: str, layer: str, known: list[str]) -> None:
        shown = layer if len(layer) <= 100 else layer[:97] + "..."
        SatdaskError.__init__(
            self, f"run {run!r}: no layer {shown!r}; its layers: {', '.join(known) or 'none'}"
        )


@dataclass(frozen=True)
class LegendEntry:
    value: int
    name: str
    color: str


@dataclass
class Layer:
    """One drawable array of a run store, on its own grid (pixels, or the tile grid)."""

    name: str
    kind: str  # "classes" or "continuous"
    array: zarr.Array
    transform: Affine
    crs: CRS
    fill: float | None = None  # classes: the value with no class (drawn clear)
    legend: tuple[LegendEntry, ...] = ()
    lut: np.ndarray | None = None  # classes: RGBA by value + offset
    offset: int = 0
    range: tuple[float, float] | None = (0.0, 1.0)  # continuous: what the ramp spans; None:
    # from the data (`value_range`)
    reduce_max: bool = False  # (class, y, x) scores: the winning class's score
    key: tuple[Any, ...] = ()  # identity for the level cache
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def value_range(self) -> tuple[float, float]:
        """What the ramp spans: the given range, or else (scores, which may be logits or
        probabilities) the 2nd and 98th percentiles of a read at most 512 px a side."""
        if self.range is not None:
            return self.range
        height, width = self.shape
        step = step_for(max(height, width) / 512)
        values = self.read((0, height), (0, width), step)
        finite = values[np.isfinite(values)].astype(np.float64)
        found = (0.0, 1.0)
        if finite.size:
            low, high = (float(v) for v in np.percentile(finite, [2, 98]))
            found = (low, high if high > low else low + 1.0)
        self.range = found
        return found

    @property
    def shape(self) -> tuple[int, int]:
        height, width = self.array.shape[-2:]
        return int(height), int(width)

    def read(self, rows: tuple[int, int], cols: tuple[int, int], step: int) -> np.ndarray:
        """(y, x) values of rows/cols (starts multiples of `step`) at every `step`th pixel."""
        (r0, r1), (c0, c1) = rows, cols
        if step == 1 or (r1 - r0) * (c1 - c0) <= DIRECT_PIXELS:
            data = self._from_chunks(r0, r1, c0, c1, step)
        else:
            level = self.level(step)
            data = level[..., r0 // step : -(-r1 // step), c0 // step : -(-c1 // step)]
        return self._reduce(data)

    def _from_chunks(self, r0: int, r1: int, c0: int, c1: int, step: int) -> np.ndarray:
        """The window at every `step`th pixel, cut from whole decoded chunks, which are
        cached: a chunk holds many tiles' pixels, and neighbouring tiles come together."""
        ch, cw = (int(c) for c in self.array.chunks[-2:])
        height, width = self.shape
        lead = tuple(self.array.shape[:-2])
        out = np.empty(
            (*lead, len(range(r0, r1, step)), len(range(c0, c1, step))), dtype=self.array.dtype
        )
        for i in range(r0 // ch, (r1 - 1) // ch + 1):
            top, bottom = max(r0, i * ch), min(r1, (i + 1) * ch)
            first_row = r0 + -(-(top - r0) // step) * step  # the first row taken in the chunk
            if first_row >= bottom:
                continue
            for j in range(c0 // cw, (c1 - 1) // cw + 1):
                left, right = max(c0, j * cw), min(c1, (j + 1) * cw)
                first_col = c0 + -(-(left - c0) // step) * step
                if first_col >= right:
                    continue
                chunk = self._chunk(i, j, ch, cw, height, width)
                part = chunk[
                    ..., first_row - i * ch : bottom - i * ch : step,
                    first_col - j * cw : right - j * cw : step,
                ]  # fmt: skip
                y, x = (first_row - r0) // step, (first_col - c0) // step
                out[..., y : y + part.shape[-2], x : x + part.shape[-1]] = part
        return out

    def _chunk(self, i: int, j: int, ch: int, cw: int, height: int, width: int) -> np.ndarray:
        key = (*self.key, "chunk", i, j)
        found = _LEVELS.get(key)
        if found is None:
            rows = slice(i * ch, min((i + 1) * ch, height))
            cols = slice(j * cw, min((j + 1) * cw, width))
            found = np.asarray(self.array[(..., rows, cols)])
            _LEVELS.put(key, found)
        return found

    def _reduce(self, data: np.ndarray) -> np.ndarray:
        if self.reduce_max:
            finite = np.isfinite(data)
            return np.where(
                finite.any(axis=0), np.nanmax(np.where(finite, data, -np.inf), 0), np.nan
            )
        return data

    def level(self, step: int) -> np.ndarray:
        """The whole array at every `step`th pixel (from (0, 0)), built once and cached."""
        found = _LEVELS.get((*self.key, step))
        if found is not None:
            return found
        with self._lock:  # one build per layer at a time
            found = _LEVELS.get((*self.key, step))
            if found is not None:
                return found
            finer = [s for s in _LEVELS.steps(self.key) if step % s == 0 and s < step]
            if finer:
                k = max(finer)
                source = _LEVELS.get((*self.key, k))
                if source is not None:
                    level = np.ascontiguousarray(source[..., :: step // k, :: step // k])
                    _LEVELS.put((*self.key, step), level)
                    return level
            level = self._build(step)
            _LEVELS.put((*self.key, step), level)
            return level

    def _build(self, step: int) -> np.ndarray:
        height, width = self.shape
        lead = tuple(self.array.shape[:-2])
        out = np.empty((*lead, -(-height // step), -(-width // step)), dtype=self.array.dtype)
        ch, cw = (int(c) for c in self.array.chunks[-2:])
        bh, bw = max(ch, step) // step * step, max(cw, step) // step * step
        bh, bw = max(bh, ch), max(bw, cw)
        for r in range(0, height, bh):
            for c in range(0, width, bw):
                rows, cols = slice(r, min(r + bh, height), step), slice(c, min(c + bw, width), step)
                block = np.asarray(self.array[(..., rows, cols)])
                out[
                    ...,
                    r // step : r // step + block.shape[-2],
                    c // step : c // step + block.shape[-1],
                ] = block
        return out


class _LevelCache:
    """Downsampled levels of all layers, least recently used dropped past LEVEL_BYTES."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: OrderedDict[tuple[Any, ...], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> np.ndarray | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def steps(self, key: tuple[Any, ...]) -> list[int]:
        with self._lock:
            return [k[-1] for k in self._items if k[:-1] == key and isinstance(k[-1], int)]

    def put(self, key: tuple[Any, ...], value: np.ndarray) -> None:
        with self._lock:
            self._items[key] = value
            while sum(v.nbytes for v in self._items.values()) > self.limit and len(self._items) > 1:
                self._items.popitem(last=False)


_LEVELS = _LevelCache(LEVEL_BYTES)


@dataclass(frozen=True)
class RunStore:
    """A finished run store under the runs root, opened, with its layers."""

    name: str  # relative to the runs root, without .zarr
    path: Path
    stamp: tuple[int, ...]
    record: dict[str, Any]
    kind: str  # "pixel" or "tile"
    layers: dict[str, Layer]

    @property
    def model_id(self) -> str:
        return str(self.record.get("model", {}).get("id", ""))

    def layer(self, name: str) -> Layer:
        found = self.layers.get(name)
        if found is None:
            raise LayerNotFoundError(self.name, name, list(self.layers))
        return found

    def scene_name(self, data_root: object) -> str | None:
        """The run's scene relative to the data root, when it lies under it."""
        uri = str(self.record.get("scene", {}).get("uri", ""))
        if not uri or not isinstance(data_root, Path) or "://" in uri:
            return None
        try:
            rel = Path(os.path.realpath(uri)).relative_to(data_root)
        except ValueError:
            return None
        return rel.as_posix()


class RunsRoot:
    """Run stores by name, opened once per version and kept in a small cache."""

    def __init__(self, root: Path, *, capacity: int = 64) -> None:
        self.root = root
        self.capacity = capacity
        self._directory: Directory | None = None
        self._stores: OrderedDict[str, RunStore] = OrderedDict()
        self._lock = threading.Lock()

    def _root(self) -> Directory:
        with self._lock:
            if self._directory is None:
                self._directory = Directory(self.root)
            return self._directory

    def locate(self, name: object) -> tuple[str, Path, tuple[int, ...]]:
        """(name, the store's real path, its stamp) for a client's run name; 404 if none."""
        if not isinstance(name, str) or not name or name.endswith("/"):
            raise RunNotFoundError(name)
        try:
            rel = check_relative(name + SUFFIX, suffixes=frozenset({SUFFIX}))
            st, found = self._root().look(rel.parts)
        except (NotFoundError, RefusedError, OSError):
            raise RunNotFoundError(name) from None
        if not stat.S_ISDIR(st.st_mode) or not found[-1].endswith(SUFFIX):
            raise RunNotFoundError(name)
        path = Path(self._root().path, *found)
        try:
            meta = os.stat(path / "zarr.json")
        except OSError:
            raise RunNotFoundError(name, "not a run store") from None
        stamp = (meta.st_dev, meta.st_ino, meta.st_size, meta.st_mtime_ns)
        return str(PurePosixPath(*rel.parts))[: -len(SUFFIX)], path, stamp

    def get(self, name: object) -> RunStore:
        rel, path, stamp = self.locate(name)
        with self._lock:
            found = self._stores.get(rel)
            if found is not None and found.stamp == stamp and found.path == path:
                self._stores.move_to_end(rel)
                return found
        opened = open_store(rel, path, stamp)
        with self._lock:
            self._stores[rel] = opened
            while len(self._stores) > self.capacity:
                self._stores.popitem(last=False)
        return opened

    def names(self) -> tuple[list[str], bool]:
        """Names of the stores under the root (not entered through symlinks, no hidden
        names), sorted, and whether the walk stopped at LIST_MAX_RUNS."""
        found: list[str] = []
        for rel in self._walk(self.root, (), 0):
            found.append(rel)
            if len(found) >= LIST_MAX_RUNS:
                return sorted(found), True
        return sorted(found), False

    def _walk(self, folder: Path, parts: tuple[str, ...], depth: int) -> Iterator[str]:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            return
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
                continue
            if entry.name.endswith(SUFFIX):
                yield "/".join((*parts, entry.name[: -len(SUFFIX)]))
            elif depth + 1 < LIST_MAX_DEPTH:
                yield from self._walk(Path(entry.path), (*parts, entry.name), depth + 1)


def open_store(name: str, path: Path, stamp: tuple[int, ...]) -> RunStore:
    """A finished run store's record and layers; RunNotFoundError if it is not one."""
    try:
        run = open_run(path)
        group = zarr.open_group(os.fspath(path), mode="r")
    except (SatdaskError, OSError, ValueError, KeyError) as exc:
        why = "not finished" if "incomplete" in str(exc) else "not a finished run store"
        raise RunNotFoundError(name, why) from None
    record: dict[str, Any] = dict(run.record)
    named = run.monitoring["predictions"].get("classes") or {}
    names = {flag_name(str(n)): str(n) for n in named}
    key = (os.fspath(path), *stamp)
    layers: dict[str, Layer] = {}
    pixels = group.get(PIXELS)
    if isinstance(pixels, zarr.Group) and "prediction" in pixels:
        kind = "pixel"
        transform, crs = _georeference(pixels, name)
        for array_name in sorted(pixels.array_keys()):
            array = pixels[array_name]
            assert isinstance(array, zarr.Array)
            if array_name == "prediction":
                layers["prediction"] = _classes_layer(array, transform, crs, names, (*key, PIXELS))
            elif array_name == "scores" and array.ndim == 3:
                layers["scores"] = Layer(
                    "scores", "continuous", array, transform, crs,
                    range=None, reduce_max=True, key=(*key, "scores"),
                )  # fmt: skip
            elif array.ndim == 2 and array.dtype.kind == "f" and array_name not in ("x", "y"):
                attrs: dict[str, Any] = dict(array.attrs)
                low, high = attrs.get("valid_range") or (
                    attrs.get("valid_min", 0.0),
                    attrs.get("valid_max", 1.0),
                )
                layers[array_name] = Layer(
                    array_name, "continuous", array, transform, crs,
                    range=(float(low), float(high)), key=(*key, array_name),
                )  # fmt: skip
        layers = {"prediction": layers.pop("prediction"), **layers}
    else:
        kind = "tile"
        grid = group.get("prediction")
        if not isinstance(grid, zarr.Array):
            raise RunNotFoundError(name, "its store holds no prediction")
        transform, crs = _georeference(group, name)
        layers["prediction"] = _classes_layer(grid, transform, crs, names, (*key, "grid"))
    return RunStore(name, path, stamp, record, kind, layers)


def _georeference(group: zarr.Group, name: str) -> tuple[Affine, CRS]:
    ref = group.get(GRID_MAPPING)
    attrs: dict[str, Any] = dict(ref.attrs) if ref is not None else {}
    try:
        transform = Affine.from_gdal(*(float(v) for v in str(attrs["GeoTransform"]).split()))
        crs = CRS.from_user_input(attrs["crs_wkt"])
    except (KeyError, ValueError, TypeError, SatdaskError):
        raise RunNotFoundError(name, f"{GRID_MAPPING} gives no CRS or transform") from None
    except Exception:  # rasterio's CRSError
        raise RunNotFoundError(name, f"{GRID_MAPPING} gives no CRS") from None
    return transform, crs


def _classes_layer(
    array: zarr.Array, transform: Affine, crs: CRS, names: dict[str, str], key: tuple[Any, ...]
) -> Layer:
    """Class values in the model's colours (a fallback where it gives none); the fill
    value and -1 (no class) clear."""
    attrs: dict[str, Any] = dict(array.attrs)
    values = [int(v) for v in attrs.get("flag_values", [])]
    colours = attrs.get("flag_colors")
    try:
        classes = cog_classes(values, attrs.get("flag_meanings", ""), colours, names=names)
    except RunError:
        classes = ()
    legend = tuple(
        LegendEntry(c.value, c.name, "#{:02x}{:02x}{:02x}".format(*c.rgba[:3]))
        for c in classes
        if c.value >= 0
    )
    fill = array.fill_value
    offset = max(0, -min([v.value for v in legend] + [int(fill) if fill is not None else 0, 0]))
    lut = class_lut({e.value: hex_rgba(e.color) for e in legend}, offset=offset)
    return Layer(
        "prediction", "classes", array, transform, crs,
        fill=None if fill is None else float(fill), legend=legend, lut=lut, offset=offset, key=key,
    )  # fmt: skip


def step_for(scale: float) -> int:
    """The largest power of two at most `scale` (store pixels per tile pixel), at least 1."""
    return 1 if scale < 2 else 1 << math.floor(math.log2(scale))
