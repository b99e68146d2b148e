"""Web-mercator map tiles (WebMercatorQuad, 256 px RGBA PNG) of scenes and of finished runs.

    GET /tiles/scenes/{name}/{z}/{x}/{y}.png         ?bands=3,2,1&rescale=0,3000
    GET /tiles/scenes/{name}/tilejson.json
    GET /tiles/runs/{run}/{layer}/{z}/{x}/{y}.png    ?rescale=0,1 (continuous layers)
    GET /tiles/runs/{run}/{layer}/tilejson.json
    GET /tiles/catalog.json

A scene is named as /infer names it (its path under the data root, slashes and all), a
run by its store's path under the runs root without `.zarr` (`service.runs_root`).
Names may hold slashes, so each route takes the rest of the path and reads it from the
end: `.../{z}/{x}/{y}.png` or `.../tilejson.json`.

Reprojection is rasterio's warp (`rasterio.warp.reproject`, nearest): the same GDAL
warper every other raster path of satdask already loads, on arrays satdask reads itself.
A scene's window is read from the file with `out_shape` at the tile's resolution, so GDAL
reads the COG overview nearest that resolution (never the whole scene); its mask (nodata,
alpha, internal or .msk) is read alike and warped as a fifth band, which becomes alpha. A
run's arrays are read from zarr with a step, or from a downsampled level
(`service.runs_root`). A tile outside the data is a transparent PNG (200), the same bytes
for every such tile.

Every tile has a strong ETag from what it is drawn from: the scene's or store's identity
(path, device, inode, size, mtime), z/x/y and the query. `If-None-Match` with it is 304,
and encoded tiles are kept in an in-process LRU (`TileCache`), so a tile asked again
costs a lookup.
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote, urlencode

import msgspec
import numpy as np
from affine import Affine
from litestar import Request, Response, get
from litestar.enums import MediaType
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, Schema
from litestar.params import FromPath
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.warp import reproject, transform_bounds
from rasterio.windows import Window as RioWindow
from rasterio.windows import from_bounds

from satdask.core import mercator
from satdask.errors import GridError, SatdaskError
from satdask.io.geotiff import RasterSource, read_retries
from service.errors import NotFoundError
from service.runs_root import Layer, RunsRoot, RunStore, step_for
from service.scenes import OpenScene
from service.schemas import ErrorBody
from service.tile_images import (
    EMPTY_TILE,
    bands_rgba,
    classes_rgba,
    continuous_rgba,
    png_rgba,
    ramp_colour,
)

PNG = "image/png"
SIZE = mercator.TILE_SIZE
WEB_MERCATOR = CRS.from_epsg(3857)
WGS84 = CRS.from_epsg(4326)
ATTRIBUTION = "satdask"
_INTEGER = re.compile(r"-?[0-9]{1,10}")


class TileRequestError(SatdaskError):
    """A query that is not one (400): names the parameter."""


class NoSuchTileError(NotFoundError):
    """A tile address that names no tile (404): names the field (z, x, y or the path)."""

    def __init__(self, message: str) -> None:
        SatdaskError.__init__(self, message)


class NoRunsRootError(NotFoundError):
    """Run tiles asked of a service started without --runs-root: no run is there (404)."""

    def __init__(self) -> None:
        SatdaskError.__init__(
            self, "no runs root: start the service with --runs-root (SATDASK_RUNS_ROOT)"
        )


# ── the request's parts ─────────────────────────────────────────────────────────────────


def parse_tile(parts: list[str]) -> tuple[list[str], mercator.Tile | None]:
    """(the name's parts, the tile) of `.../{z}/{x}/{y}.png`, or (parts, None) for
    `.../tilejson.json`; NoSuchTileError naming the field otherwise."""
    if parts and parts[-1] == "tilejson.json":
        return parts[:-1], None
    if len(parts) < 4 or not parts[-1].endswith(".png"):
        raise NoSuchTileError(
            "path: a tile is .../{z}/{x}/{y}.png and a TileJSON .../tilejson.json"
        )
    values = []
    for field_name, text in zip(
        ("z", "x", "y"), (*parts[-3:-1], parts[-1][: -len(".png")]), strict=True
    ):
        if not _INTEGER.fullmatch(text):
            shown = text if len(text) <= 20 else text[:17] + "..."
            raise NoSuchTileError(f"{field_name}: {shown!r} is not an integer")
        values.append(int(text))
    try:
        tile = mercator.check_tile(*values)
    except GridError as exc:
        raise NoSuchTileError(str(exc)) from None
    return parts[:-3], tile


@dataclass(frozen=True)
class SceneQuery:
    bands: tuple[int, ...] | None  # file band numbers, 1-based; None: the default
    rescale: tuple[tuple[float, float], ...] | None  # one range, or one per band

    def encoded(self) -> str:
        params = []
        if self.bands is not None:
            params.append(("bands", ",".join(str(b) for b in self.bands)))
        for lo, hi in self.rescale or ():
            params.append(("rescale", f"{lo:g},{hi:g}"))
        return urlencode(params)


def parse_rescale(values: list[str]) -> tuple[tuple[float, float], ...] | None:
    if not values:
        return None
    ranges = []
    for text in values:
        pieces = text.split(",")
        try:
            low, high = (float(p) for p in pieces)
        except ValueError:
            raise TileRequestError(f"rescale: {text[:40]!r} is not 'min,max'") from None
        if not (math.isfinite(low) and math.isfinite(high)) or high < low:
            raise TileRequestError(f"rescale: {text[:40]!r} needs finite min <= max")
        ranges.append((low, high))
    return tuple(ranges)


def parse_scene_query(query: Mapping[str, list[str]]) -> SceneQuery:
    unknown = sorted(set(query) - {"bands", "rescale"})
    if unknown:
        raise TileRequestError(f"{unknown[0][:40]}: unknown parameter (bands, rescale)")
    bands = None
    if query.get("bands"):
        text = query["bands"][-1]
        try:
            bands = tuple(int(b) for b in text.split(","))
        except ValueError:
            raise TileRequestError(f"bands: {text[:40]!r} is not a list of band numbers") from None
        if len(bands) not in (1, 3) or min(bands) < 1:
            raise TileRequestError(f"bands: {text[:40]!r} must be 1 or 3 band numbers from 1")
    rescale = parse_rescale(query.get("rescale", []))
    if rescale and bands and len(rescale) not in (1, len(bands)):
        raise TileRequestError("rescale: give one range, or one per band")
    return SceneQuery(bands, rescale)


# ── the cache ───────────────────────────────────────────────────────────────────────────


class TileCache:
    """Encoded tiles by ETag, least recently used dropped past `max_bytes`."""

    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, etag: str) -> bytes | None:
        with self._lock:
            found = self._items.get(etag)
            if found is not None:
                self._items.move_to_end(etag)
            return found

    def put(self, etag: str, data: bytes) -> None:
        with self._lock:
            if etag in self._items:
                return
            self._items[etag] = data
            self.size += len(data)
            while self.size > self.max_bytes and self._items:
                _, dropped = self._items.popitem(last=False)
                self.size -= len(dropped)

    def __len__(self) -> int:
        return len(self._items)


def etag_of(*identity: object) -> str:
    return '"' + hashlib.blake2b(repr(identity).encode(), digest_size=16).hexdigest() + '"'


def matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return "*" in tags or etag in tags


# ── geometry ────────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class Footprint:
    """Where a grid lies in EPSG:3857 and WGS84, and its zooms."""

    web: mercator.Bounds  # EPSG:3857
    lonlat: mercator.Bounds
    minzoom: int
    maxzoom: int


@lru_cache(maxsize=1024)
def footprint(crs_wkt: str, transform: Affine, height: int, width: int, px: float) -> Footprint:
    """A (height, width) grid's footprint; `px` is its finest pixel size in CRS units
    (a tile grid's cells hold tiles of such pixels), which sets the native zoom."""
    crs = CRS.from_wkt(crs_wkt)
    xs = (transform.c, transform.c + transform.a * width)
    ys = (transform.f, transform.f + transform.e * height)
    native = (min(xs), min(ys), max(xs), max(ys))
    west, south, east, north = transform_bounds(crs, WEB_MERCATOR, *native, densify_pts=21)
    merc = mercator.Bounds(west, south, east, north)
    lon = transform_bounds(crs, WGS84, *native, densify_pts=21)
    # EPSG:3857 metres per source pixel, along the grid's width
    res = (east - west) / width * (px / abs(transform.a))
    maxzoom = mercator.native_zoom(res)
    return Footprint(merc, mercator.Bounds(*lon), min(maxzoom, mercator.min_zoom(merc)), maxzoom)


@dataclass(frozen=True)
class Plan:
    """What to read for a tile: the source window (row, col ranges), the read's shape."""

    rows: tuple[int, int]
    cols: tuple[int, int]
    scale: float  # source pixels per tile pixel


def plan(
    crs: CRS, transform: Affine, height: int, width: int, where: Footprint, tile: mercator.Tile
) -> Plan | None:
    """The source window under `tile` (with a pixel of margin), or None outside the grid."""
    tb = mercator.tile_bounds(*tile)
    fb = where.web
    west, south = max(tb.west, fb.west), max(tb.south, fb.south)
    east, north = min(tb.east, fb.east), min(tb.north, fb.north)
    if west >= east or south >= north:
        return None
    sb = transform_bounds(WEB_MERCATOR, crs, west, south, east, north, densify_pts=21)
    window = from_bounds(*sb, transform=transform)
    r0 = max(0, math.floor(window.row_off) - 1)
    c0 = max(0, math.floor(window.col_off) - 1)
    r1 = min(height, math.ceil(window.row_off + window.height) + 1)
    c1 = min(width, math.ceil(window.col_off + window.width) + 1)
    if r0 >= r1 or c0 >= c1:
        return None
    # source pixels per tile pixel, along x: the overlap's width in both grids
    src_px = (sb[2] - sb[0]) / abs(transform.a)
    tile_px = (east - west) / mercator.resolution(tile.z)
    return Plan((r0, r1), (c0, c1), src_px / tile_px if tile_px > 0 else 1.0)


def warp(
    data: np.ndarray,
    src_transform: Affine,
    crs: CRS,
    tile: mercator.Tile,
    *,
    nodata: float,
) -> np.ndarray:
    """(band, y, x) source values onto the tile's 256 x 256 grid (nearest); `nodata`
    wherever no source pixel lands."""
    out = np.full((data.shape[0], SIZE, SIZE), nodata, dtype=data.dtype)
    tb = mercator.tile_bounds(*tile)
    dst_transform = Affine(
        (tb.east - tb.west) / SIZE, 0, tb.west, 0, -(tb.north - tb.south) / SIZE, tb.north
    )
    reproject(
        source=data,
        destination=out,
        src_transform=src_transform,
        src_crs=crs,
        src_nodata=nodata,
        dst_transform=dst_transform,
        dst_crs=WEB_MERCATOR,
        dst_nodata=nodata,
        resampling=Resampling.nearest,
    )
    return out


def warp_index(
    shape: tuple[int, int], src_transform: Affine, crs: CRS, tile: mercator.Tile
) -> np.ndarray:
    """(256, 256) flat index into a (y, x) source of `shape` of the pixel each tile pixel
    takes (nearest), -1 where none: one warp of one band, whatever the bands to draw."""
    index = np.arange(shape[0] * shape[1], dtype=np.int32).reshape(1, *shape)
    found: np.ndarray = warp(index, src_transform, crs, tile, nodata=-1)[0]
    return found


# ── scenes ──────────────────────────────────────────────────────────────────────────────


def scene_bands(opened: OpenScene, query: SceneQuery) -> tuple[int, ...]:
    bands = query.bands
    data_bands = cast(RasterSource, opened.source).bands
    if bands is None:
        return tuple(data_bands[:3]) if len(data_bands) >= 3 else tuple(data_bands[:1])
    count = opened.layout.bands if opened.layout is not None else max(data_bands)
    for b in bands:
        if b > count:
            raise TileRequestError(f"bands: {opened.path} has no band {b} (it has {count})")
    return bands


_STATS: dict[tuple[Any, ...], tuple[float, float]] = {}
_STATS_LOCK = threading.Lock()


def default_range(src: Any, opened: OpenScene, band: int) -> tuple[float, float]:
    """A band's range when the query gives none: 0..255 for bytes; else the 2nd and 98th
    percentiles of its valid pixels, read once at most 512 px a side (an overview)."""
    if opened.dtype == "uint8":
        return (0.0, 255.0)
    key = (opened.path, opened.stamp, band)
    with _STATS_LOCK:
        found = _STATS.get(key)
    if found is not None:
        return found
    f = max(1.0, max(opened.height, opened.width) / 512)
    shape = (max(1, round(opened.height / f)), max(1, round(opened.width / f)))
    values = src.read(band, out_shape=shape, masked=True)
    valid = np.asarray(values.compressed(), dtype=np.float64)
    valid = valid[np.isfinite(valid)]
    found = (0.0, 1.0)
    if valid.size:
        lo, hi = np.percentile(valid, [2, 98])
        found = (float(lo), float(hi) if hi > lo else float(lo) + 1.0)
    with _STATS_LOCK:
        if len(_STATS) > 4096:
            _STATS.clear()
        _STATS[key] = found
    return found


def scene_rgba(opened: OpenScene, tile: mercator.Tile, query: SceneQuery) -> np.ndarray | None:
    """The scene's tile as (4, 256, 256) RGBA, or None where it has no pixel."""
    grid = opened.grid
    where = footprint(
        _wkt(opened.crs), grid.transform, grid.height, grid.width, abs(grid.transform.a)
    )
    source = cast(RasterSource, opened.source)
    bands = scene_bands(opened, query)

    def draw(src: Any) -> np.ndarray | None:
        found = plan(src.crs, src.transform, src.height, src.width, where, tile)
        if found is None:
            return None
        (r0, r1), (c0, c1) = found.rows, found.cols
        window = RioWindow(c0, r0, c1 - c0, r1 - r0)
        shape = (r1 - r0, c1 - c0)
        if found.scale > 1:  # fewer pixels than the window: GDAL reads an overview
            shape = (
                max(1, math.ceil(shape[0] / found.scale)),
                max(1, math.ceil(shape[1] / found.scale)),
            )
        data = src.read(list(bands), window=window, out_shape=(len(bands), *shape))
        ok = src.dataset_mask(window=window, out_shape=shape) != 0
        if data.dtype.kind == "f":
            ok &= np.isfinite(data).all(axis=0)
        scale = Affine.scale((c1 - c0) / shape[1], (r1 - r0) / shape[0])
        read_transform = src.transform * Affine.translation(c0, r0) * scale
        index = warp_index(shape, read_transform, src.crs, tile)
        landed = index >= 0
        at = np.where(landed, index, 0)
        valid = landed & ok.reshape(-1)[at]
        if not valid.any():
            return None
        picked = data.reshape(len(bands), -1)[:, at]
        ranges = list(query.rescale or ())
        if not ranges:
            ranges = [default_range(src, opened, b) for b in bands]
        if len(ranges) == 1:
            ranges = ranges * len(bands)
        return bands_rgba(picked, valid, ranges=ranges)

    found: np.ndarray | None = source._retrying(draw, read_retries())
    return found


@lru_cache(maxsize=64)
def _wkt(crs: str) -> str:
    return CRS.from_user_input(crs).to_wkt()


# ── runs ────────────────────────────────────────────────────────────────────────────────


def layer_footprint(run: RunStore, layer: Layer) -> Footprint:
    height, width = layer.shape
    px = abs(layer.transform.a)
    if run.kind == "tile":  # a tile grid's cell holds tile_size scene pixels a side
        px /= float(run.record.get("config", {}).get("tile_size") or 1)
    return footprint(layer.crs.to_wkt(), layer.transform, height, width, px)


def run_rgba(
    run: RunStore, layer: Layer, tile: mercator.Tile, rescale: tuple[float, float] | None
) -> np.ndarray | None:
    """A run layer's tile as (4, 256, 256) RGBA, or None where the layer has no pixel."""
    height, width = layer.shape
    found = plan(layer.crs, layer.transform, height, width, layer_footprint(run, layer), tile)
    if found is None:
        return None
    step = step_for(found.scale)
    (r0, r1), (c0, c1) = found.rows, found.cols
    r0, c0 = r0 // step * step, c0 // step * step
    data = layer.read((r0, r1), (c0, c1), step)
    read_transform = layer.transform * Affine.translation(c0, r0) * Affine.scale(step)
    if layer.kind == "classes":
        assert layer.lut is not None
        fill = layer.fill if layer.fill is not None else -1
        classes = warp(data.astype(np.int16)[None], read_transform, layer.crs, tile, nodata=fill)
        rgba = classes_rgba(classes[0], layer.lut, offset=layer.offset)
    else:
        values = warp(data.astype(np.float32)[None], read_transform, layer.crs, tile, nodata=np.nan)
        low, high = rescale or layer.value_range()
        rgba = continuous_rgba(values[0], np.isfinite(values[0]), low, high)
    return rgba if rgba[3].any() else None


# ── TileJSON and the catalog ────────────────────────────────────────────────────────────


def tilejson(name: str, tiles_url: str, where: Footprint, **extra: Any) -> dict[str, Any]:
    b = where.lonlat
    zoom = max(where.minzoom, min(where.maxzoom, where.minzoom + 1))
    return {
        "tilejson": "3.0.0",
        "name": name,
        "scheme": "xyz",
        "tiles": [tiles_url],
        "bounds": [b.west, b.south, b.east, b.north],
        "center": [(b.west + b.east) / 2, (b.south + b.north) / 2, zoom],
        "minzoom": where.minzoom,
        "maxzoom": where.maxzoom,
        "attribution": ATTRIBUTION,
        **extra,
    }


def scene_path(name: str) -> str:
    return f"/tiles/scenes/{quote(name, safe='/')}"


def run_path(run: str, layer: str) -> str:
    return f"/tiles/runs/{quote(run, safe='/')}/{quote(layer, safe='')}"


def layer_info(run: RunStore, layer: Layer) -> dict[str, Any]:
    base = run_path(run.name, layer.name)
    info: dict[str, Any] = {
        "name": layer.name,
        "kind": layer.kind,
        "tilejson": f"{base}/tilejson.json",
        "tiles": f"{base}/{{z}}/{{x}}/{{y}}.png",
    }
    if layer.kind == "classes":
        info["legend"] = [
            {"value": e.value, "name": e.name, "color": e.color} for e in layer.legend
        ]
    else:
        low, high = layer.value_range()
        info["range"] = [low, high]
        info["colors"] = [ramp_colour(f) for f in (0.0, 0.25, 0.5, 0.75, 1.0)]
    return info


def run_info(run: RunStore, data_root: object) -> dict[str, Any]:
    return {
        "name": run.name,
        "kind": run.kind,
        "model": run.model_id,
        "scene": run.scene_name(data_root),
        "layers": [layer_info(run, layer) for layer in run.layers.values()],
    }


# ── what the JSON routes answer (their OpenAPI schema) ──────────────────────────────────


class LegendItem(msgspec.Struct):
    value: int
    name: str
    color: str


class TileJSON(msgspec.Struct, omit_defaults=True):
    """TileJSON 3.0.0, with satdask's fields: a scene's bands, a run layer's legend or range."""

    tilejson: str
    name: str
    scheme: str
    tiles: list[str]
    bounds: list[float]
    center: list[float]
    minzoom: int
    maxzoom: int
    attribution: str
    bands: list[int] | None = None
    kind: str | None = None
    run: str | None = None
    model: str | None = None
    legend: list[LegendItem] | None = None
    range: list[float] | None = None
    colors: list[str] | None = None


class CatalogScene(msgspec.Struct):
    name: str
    tilejson: str
    tiles: str


class CatalogLayer(msgspec.Struct, omit_defaults=True):
    name: str
    kind: str  # "classes" or "continuous"
    tilejson: str
    tiles: str
    legend: list[LegendItem] | None = None
    range: list[float] | None = None
    colors: list[str] | None = None


class CatalogRun(msgspec.Struct):
    name: str
    kind: str  # "pixel" or "tile"
    model: str
    scene: str | None  # relative to the data root, when the run's scene lies under it
    layers: list[CatalogLayer]


class Catalog(msgspec.Struct):
    scenes: list[CatalogScene]
    runs: list[CatalogRun]
    runs_truncated: bool


@dataclass
class TileOperation(Operation):
    """The tile routes' OpenAPI operation: a 200 is a TileJSON document or a PNG tile.

    Litestar documents one media type per status; the PNG is added here (a dataclass
    again, so that its generated `__init__` calls `__post_init__`), as app.InferOperation does.
    """

    def __post_init__(self) -> None:
        ok = (self.responses or {}).get("200")
        content = getattr(ok, "content", None)
        if isinstance(content, dict):
            content[PNG] = OpenAPIMediaType(
                schema=Schema(
                    type=OpenAPIType.STRING,
                    content_media_type=PNG,
                    description="a 256 x 256 RGBA PNG tile (transparent outside the data)",
                )
            )


# ── the routes ──────────────────────────────────────────────────────────────────────────


@dataclass
class Tiles:
    """What the tile routes share: how to reach scenes and runs, and the cache.

    `in_thread(func, *args, key=...)` runs blocking work on the service's reader
    threads (the same thread for the same key), `scene(name)` opens a scene as /infer
    does, `scenes()` lists the data root (None if it cannot be listed).
    """

    in_thread: Callable[..., Awaitable[Any]]
    scene: Callable[[str], OpenScene]
    scenes: Callable[[], Awaitable[list[str] | None]]
    runs: RunsRoot | None
    data_root: object
    cache: TileCache

    def run(self, name: str) -> RunStore:
        if self.runs is None:
            raise NoRunsRootError
        return self.runs.get(name)

    def scene_tile(
        self, name: str, tile: mercator.Tile, query: SceneQuery, seen: str | None
    ) -> tuple[str, bytes | None]:
        """(ETag, PNG bytes, or None when `seen` is that ETag: not modified)."""
        opened = self.scene(name)
        tag = etag_of("scene", opened.path, opened.stamp, tuple(tile), query)
        if matches(seen, tag):
            return tag, None
        found = self.cache.get(tag)
        if found is None:
            rgba = scene_rgba(opened, tile, query)
            found = EMPTY_TILE if rgba is None else png_rgba(rgba)
            self.cache.put(tag, found)
        return tag, found

    def run_tile(
        self,
        name: str,
        layer_name: str,
        tile: mercator.Tile,
        rescale: tuple[float, float] | None,
        seen: str | None,
    ) -> tuple[str, bytes | None]:
        run = self.run(name)
        layer = run.layer(layer_name)
        tag = etag_of("run", run.name, str(run.path), run.stamp, layer.name, tuple(tile), rescale)
        if matches(seen, tag):
            return tag, None
        found = self.cache.get(tag)
        if found is None:
            rgba = run_rgba(run, layer, tile, rescale)
            found = EMPTY_TILE if rgba is None else png_rgba(rgba)
            self.cache.put(tag, found)
        return tag, found

    def scene_tilejson(self, name: str, query: SceneQuery, base: str) -> dict[str, Any]:
        opened = self.scene(name)
        grid = opened.grid
        where = footprint(
            _wkt(opened.crs), grid.transform, grid.height, grid.width, abs(grid.transform.a)
        )
        bands = scene_bands(opened, query)
        encoded = query.encoded()
        url = f"{base}{scene_path(opened.path)}/{{z}}/{{x}}/{{y}}.png" + (
            f"?{encoded}" if encoded else ""
        )
        return tilejson(opened.path, url, where, bands=list(bands))

    def run_tilejson(
        self, name: str, layer_name: str, rescale: tuple[float, float] | None, base: str
    ) -> dict[str, Any]:
        run = self.run(name)
        layer = run.layer(layer_name)
        info = layer_info(run, layer)
        url = base + info["tiles"] + (f"?rescale={rescale[0]:g},{rescale[1]:g}" if rescale else "")
        extra: dict[str, Any] = {"kind": layer.kind, "run": run.name, "model": run.model_id}
        if "legend" in info:
            extra["legend"] = info["legend"]
        else:
            extra["range"] = list(rescale) if rescale else info["range"]
            extra["colors"] = info["colors"]
        return tilejson(f"{run.name}/{layer.name}", url, layer_footprint(run, layer), **extra)

    def run_catalog(self) -> tuple[list[dict[str, Any]], bool]:
        if self.runs is None:
            return [], False
        names, truncated = self.runs.names()
        found = []
        for name in names:
            try:
                found.append(run_info(self.runs.get(name), self.data_root))
            except SatdaskError:
                continue  # unfinished or not a run: not served, not listed
        return found, truncated


def _headers(tag: str) -> dict[str, str]:
    return {"ETag": tag, "Cache-Control": "no-cache"}


def _parts(rest: object) -> list[str]:
    text = str(rest).lstrip("/")
    return text.split("/") if text else []


def _base(request: Request[Any, Any, Any]) -> str:
    return str(request.base_url).rstrip("/")


def _answer(tag: str, data: bytes | None) -> Response[Any]:
    if data is None:
        return Response(b"", status_code=304, headers=_headers(tag), media_type=PNG)
    return Response(data, headers=_headers(tag), media_type=PNG)


_ERRORS = {
    400: "An unknown query parameter, a band the scene lacks, or a bad rescale.",
    401: "Missing or invalid API key.",
    404: "No such scene, run or layer (or one that may not be read), no runs root, or an "
    "address naming no tile: z/x/y out of range or not integers, or a path ending in "
    "neither {z}/{x}/{y}.png nor tilejson.json.",
    422: "The file is not a readable raster, or its pixels cannot be decoded.",
    502: "The remote data root did not answer.",
}


def _errors(*codes: int) -> dict[int, ResponseSpec]:
    return {
        code: ResponseSpec(data_container=ErrorBody, description=_ERRORS[code]) for code in codes
    }


def tile_routes(tiles: Tiles) -> list[Any]:
    """The route handlers, to register in `create_app`."""

    @get(
        "/tiles/catalog.json",
        summary="Scenes and finished runs to show as map layers",
        responses=_errors(401),
    )
    async def catalog() -> Catalog:
        scenes = await tiles.scenes()
        runs, truncated = await tiles.in_thread(tiles.run_catalog)
        doc = {
            "scenes": [
                {
                    "name": name,
                    "tilejson": f"{scene_path(name)}/tilejson.json",
                    "tiles": f"{scene_path(name)}/{{z}}/{{x}}/{{y}}.png",
                }
                for name in (scenes or [])
            ],
            "runs": runs,
            "runs_truncated": truncated,
        }
        return msgspec.convert(doc, Catalog)

    @get(
        "/tiles/scenes/{rest:path}",
        summary="A scene as web-mercator tiles (.../{z}/{x}/{y}.png) and its TileJSON",
        responses=_errors(400, 401, 404, 422, 502),
        operation_class=TileOperation,
    )
    async def scene_tiles(
        request: Request[Any, Any, Any], rest: FromPath[Path]
    ) -> Response[TileJSON]:
        parts, tile = parse_tile(_parts(rest))
        name = "/".join(parts)
        query = parse_scene_query(dict(request.query_params.dict()))
        if tile is None:
            doc = await tiles.in_thread(tiles.scene_tilejson, name, query, _base(request), key=name)
            return Response(msgspec.convert(doc, TileJSON), media_type=MediaType.JSON)
        seen = request.headers.get("if-none-match")
        tag, data = await tiles.in_thread(
            tiles.scene_tile, name, tile, query, seen, key=(name, tile)
        )
        return _answer(tag, data)

    @get(
        "/tiles/runs/{rest:path}",
        summary="A finished run's layer as web-mercator tiles (.../{layer}/{z}/{x}/{y}.png) "
        "and its TileJSON",
        responses=_errors(400, 401, 404),
        operation_class=TileOperation,
    )
    async def run_tiles(
        request: Request[Any, Any, Any], rest: FromPath[Path]
    ) -> Response[TileJSON]:
        parts, tile = parse_tile(_parts(rest))
        if len(parts) < 2:
            raise NoSuchTileError("path: a run's tile is /tiles/runs/{run}/{layer}/...")
        name, layer = "/".join(parts[:-1]), parts[-1]
        query = dict(request.query_params.dict())
        unknown = sorted(set(query) - {"rescale"})
        if unknown:
            raise TileRequestError(f"{unknown[0][:40]}: unknown parameter (rescale)")
        ranges = parse_rescale(query.get("rescale", []))
        rescale = ranges[0] if ranges else None
        if tile is None:
            doc = await tiles.in_thread(
                tiles.run_tilejson, name, layer, rescale, _base(request), key=name
            )
            return Response(msgspec.convert(doc, TileJSON), media_type=MediaType.JSON)
        seen = request.headers.get("if-none-match")
        tag, data = await tiles.in_thread(
            tiles.run_tile, name, layer, tile, rescale, seen, key=(name, layer, tile)
        )
        return _answer(tag, data)

    return [catalog, scene_tiles, run_tiles]
