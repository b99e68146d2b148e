"""STAC items as scenes: single-band GeoTIFF/COG assets stacked into the band dimension.

An item opens as the same lazy, tile-chunked (band, y, x) DataArray as a GeoTIFF.
Its pixels come from a `StackSource`, which composes one `RasterSource` per asset
(so one GDAL handle per thread per asset) and reads like a `RasterSource`: batch
runs, `read_tile`, training and the service need no STAC-specific code.

Which asset each band comes from travels with the scene itself: the `asset`
coordinate along `band` names the asset key, and `attrs["stac"]` maps keys to
hrefs, so `isel`/`sel` over bands keep them in step.

pystac is an optional dependency (the `stac` extra), imported only when an item
is opened.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.error import URLError
from urllib.parse import urljoin, urlsplit
from urllib.request import urlopen

import numpy as np
from rasterio.windows import Window

from satdask.errors import SatdaskError, SceneError
from satdask.grid import check_tile_size
from satdask.raster import (
    REMOTE_RETRIES,
    RasterSource,
    SceneInfo,
    is_remote,
    normalize_uri,
    parse_datetime,
    probe,
    tile_raster,
)

if TYPE_CHECKING:
    import pystac
    import xarray as xr

_RASTER_TYPES = ("image/tiff", "image/geotiff", "image/vnd.stac.geotiff")
_RASTER_SUFFIXES = (".tif", ".tiff")
_FETCH_TIMEOUT_S = 30.0
NO_SELF_HREF = "stac-item:"  # uri prefix of an in-memory item that was never saved


# ---------------------------------------------------------------------------
# Recognising and loading items
# ---------------------------------------------------------------------------


def is_item(source: object) -> bool:
    """A `pystac.Item`, or a path/URL to an item's JSON (`.json`, or an API's `/items/ID`)."""
    pystac = sys.modules.get("pystac")  # not imported: then no object can be an Item
    if pystac is not None and isinstance(source, pystac.Item):
        return True
    if not isinstance(source, str | os.PathLike):
        return False
    return is_item_uri(os.fspath(source))


def _is_dataarray(obj: object) -> bool:
    xarray = sys.modules.get("xarray")  # not imported: then no object can be a DataArray
    return xarray is not None and isinstance(obj, xarray.DataArray)


def is_item_uri(uri: str) -> bool:
    path = urlsplit(uri).path if uri.startswith(("http://", "https://")) else uri
    lower = path.lower()
    if lower.endswith(".json") or uri.startswith(NO_SELF_HREF):
        return True
    return (
        uri.startswith(("http://", "https://"))
        and "/items/" in path
        and not lower.endswith(_RASTER_SUFFIXES)
    )


def _pystac() -> Any:
    try:
        import pystac
    except ImportError:
        raise SceneError(
            "STAC items need pystac: pip install 'satdask[stac]' (or pip install pystac)"
        ) from None
    return pystac


def load_item(source: str | os.PathLike[str] | pystac.Item) -> tuple[pystac.Item, str]:
    """The item and the URI that names it in messages and lineage (its self href)."""
    pystac = _pystac()
    if isinstance(source, pystac.Item):
        return source, source.get_self_href() or f"{NO_SELF_HREF}{source.id}"
    uri = normalize_uri(source)
    raw = _read_bytes(uri)
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise SceneError(f"{uri}: not a STAC item (invalid JSON: {exc})") from None
    kind = data.get("type") if isinstance(data, dict) else type(data).__name__
    if kind != "Feature":
        raise SceneError(f"{uri}: not a STAC item (type is {kind!r}, expected 'Feature')")
    try:
        item = pystac.Item.from_dict(data, href=uri, preserve_dict=False)
    except (pystac.STACError, pystac.STACTypeError, KeyError, TypeError, ValueError) as exc:
        raise SceneError(f"{uri}: not a valid STAC item ({type(exc).__name__}: {exc})") from None
    return item, uri


def _read_bytes(uri: str) -> bytes:
    if not is_remote(uri):
        return Path(uri).read_bytes()
    if not uri.startswith(("http://", "https://")):
        raise SceneError(f"{uri}: STAC items are read from local paths or http(s) URLs only")
    try:
        with urlopen(uri, timeout=_FETCH_TIMEOUT_S) as response:
            return response.read()
    except URLError as exc:
        reason = getattr(exc, "reason", exc)
        code = getattr(exc, "code", None)
        detail = f"HTTP {code} {reason}" if code else str(reason)
        raise SceneError(f"{uri}: cannot fetch the STAC item ({detail})") from None
    except (OSError, ValueError) as exc:
        raise SceneError(f"{uri}: cannot fetch the STAC item ({exc})") from None


# ---------------------------------------------------------------------------
# Choosing assets (pure: item metadata only)
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Layer:
    """One band of the stack: an asset key and its absolute href."""

    key: str
    href: str


def raster_assets(item: pystac.Item) -> dict[str, pystac.Asset]:
    """GeoTIFF/COG assets, by media type or, where the item gives none, by suffix."""
    out = {}
    for key, asset in item.assets.items():
        media = (asset.media_type or "").lower()
        if media.startswith(_RASTER_TYPES) or (
            not media and urlsplit(asset.href).path.lower().endswith(_RASTER_SUFFIXES)
        ):
            out[key] = asset
    return out


def band_names(asset: pystac.Asset) -> list[str]:
    """Common and band names of an asset: eo:bands (STAC 1.0), bands or eo:common_name (1.1)."""
    fields = asset.extra_fields
    names = [fields.get("eo:common_name")]
    for entry in _entries(fields.get("eo:bands")):
        names += [entry.get("common_name"), entry.get("name")]
    for entry in _entries(fields.get("bands")):
        names += [entry.get("eo:common_name"), entry.get("name")]
    return list(dict.fromkeys(str(n) for n in names if n))


def _entries(value: object) -> list[Mapping[str, Any]]:
    """The dict entries of a band list; malformed metadata names nothing rather than fails."""
    return [e for e in value if isinstance(e, Mapping)] if isinstance(value, list) else []


def select_layers(
    item: pystac.Item,
    uri: str,
    *,
    assets: Sequence[str] | None = None,
    bands: Sequence[int | str] | None = None,
) -> list[tuple[int, Layer]]:
    """(band number, layer) pairs in the requested order.

    `assets` forms the stack (default: the raster assets with the `data` role, or
    all raster assets if none has it); `bands` then picks from it like band
    numbers pick from a file: 1-based positions, or common/band names.
    """
    rasters = raster_assets(item)
    if not rasters:
        listed = ", ".join(f"{k} ({a.media_type or 'no type'})" for k, a in item.assets.items())
        raise SceneError(
            f"{uri}: item {item.id} has no GeoTIFF/COG asset (assets: {listed or 'none'})"
        )
    keys = _stack_keys(item, uri, rasters, assets)
    if bands is None:
        numbers = list(range(1, len(keys) + 1))
    else:
        numbers = _band_numbers(item, uri, keys, rasters, bands)
    layers = []
    for n in numbers:
        key = keys[n - 1]
        href = rasters[key].get_absolute_href()
        if not href:
            raise SceneError(
                f"{uri}: asset {key} has the relative href {rasters[key].href!r} and the item "
                "has no self href to resolve it against"
            )
        layers.append((n, Layer(key, href)))
    return layers


def _stack_keys(
    item: pystac.Item, uri: str, rasters: Mapping[str, Any], assets: Sequence[str] | None
) -> list[str]:
    if assets is None:
        data = [k for k, a in rasters.items() if a.has_role("data")]
        return data or list(rasters)
    if isinstance(assets, str) or not assets:
        raise SceneError(f"{uri}: assets must be a non-empty list of asset keys, got {assets!r}")
    for key in assets:
        if key not in item.assets:
            raise SceneError(
                f"{uri}: item {item.id} has no asset {key!r}; its GeoTIFF/COG assets are "
                f"{', '.join(rasters)}"
            )
        if key not in rasters:
            media = item.assets[key].media_type or "no media type"
            raise SceneError(f"{uri}: asset {key!r} of item {item.id} is not a GeoTIFF ({media})")
    return list(assets)


def _band_numbers(
    item: pystac.Item,
    uri: str,
    keys: Sequence[str],
    rasters: Mapping[str, Any],
    bands: Sequence[int | str],
) -> list[int]:
    if isinstance(bands, str) or not bands:
        raise SceneError(f"{uri}: bands must name at least one band, got {bands!r}")
    names = {key: band_names(rasters[key]) for key in keys}
    described = ", ".join(
        f"{i}={k}" + (f" ({'/'.join(names[k])})" if names[k] else "")
        for i, k in enumerate(keys, start=1)
    )
    numbers = []
    for band in bands:
        if isinstance(band, str):
            found = [
                i for i, k in enumerate(keys, start=1) if band.lower() in _lower([*names[k], k])
            ]
            if len(found) != 1:
                problem = "no asset has" if not found else "several assets have"
                raise SceneError(
                    f"{uri}: {problem} the band name {band!r} in item {item.id}; "
                    f"its bands are {described}"
                )
            numbers += found
        elif isinstance(band, int | np.integer) and not isinstance(band, bool):
            if not 1 <= band <= len(keys):
                raise SceneError(
                    f"{uri}: band {band} does not exist; item {item.id} stacks bands "
                    f"1..{len(keys)}: {described}"
                )
            numbers.append(int(band))
        else:
            raise SceneError(f"{uri}: band {band!r} is neither a band number nor a name")
    return numbers


def _lower(names: Iterable[str]) -> set[str]:
    return {n.lower() for n in names}


def item_time(item: pystac.Item) -> str | None:
    """The item's `datetime`, or the start of its range when it has only one."""
    when = item.datetime or item.common_metadata.start_datetime
    return parse_datetime(when.isoformat()) if when else None


# ---------------------------------------------------------------------------
# Probing the chosen assets: one grid or a clear refusal
# ---------------------------------------------------------------------------

_SAME: tuple[tuple[str, Callable[[SceneInfo], object]], ...] = (
    ("CRS", lambda i: i.crs.to_string() if i.crs else "none"),
    ("resolution", lambda i: f"{abs(i.transform.a):g} x {abs(i.transform.e):g}"),
    ("shape", lambda i: f"{i.width} x {i.height} px"),
    ("transform", lambda i: "(" + ", ".join(f"{v:g}" for v in tuple(i.transform)[:6]) + ")"),
    ("dtype", lambda i: i.dtype),
    ("nodata", lambda i: str(i.nodata)),
)


@dataclass(frozen=True)
class Stack:
    """A probed stack: its SceneInfo, its layers (hrefs normalized) and each asset's info."""

    info: SceneInfo
    layers: tuple[Layer, ...]
    files: tuple[SceneInfo, ...]


def probe_layers(uri: str, layers: Sequence[Layer], *, when: str | None) -> Stack:
    """Probe each asset once and describe the stack as one scene.

    Refuses multi-band assets and assets on different grids: resampling is out of
    scope, so a stack is only as good as its assets' agreement.
    """
    from satdask.validate import check_scene

    infos: dict[str, SceneInfo] = {}
    for layer in layers:
        if layer.key in infos:
            continue
        try:
            info = probe(layer.href)
            check_scene(info)
        except SatdaskError as exc:
            raise type(exc)(f"{uri}: asset {layer.key}: {exc}") from None
        if info.count != 1:
            raise SceneError(
                f"{uri}: asset {layer.key} has {info.count} bands; only single-band assets "
                "stack (open its file directly to pick bands from it)"
            )
        infos[layer.key] = info
    for what, value in _SAME:
        groups: dict[object, list[str]] = {}
        for key, info in infos.items():
            groups.setdefault(value(info), []).append(key)
        if len(groups) > 1:
            detail = "; ".join(f"{', '.join(keys)}: {v}" for v, keys in groups.items())
            raise SceneError(
                f"{uri}: assets have different {what} ({detail}); resampling is not supported, "
                "choose assets on one grid with assets=[...] or bands=[...]"
            )
    first = infos[layers[0].key]
    info = SceneInfo(
        uri=uri,
        width=first.width,
        height=first.height,
        count=len(layers),
        dtypes=(first.dtype,) * len(layers),
        crs=first.crs,
        transform=first.transform,
        nodata=first.nodata,
        block_shape=first.block_shape,
        acquisition_time=when,
    )
    normalized = tuple(Layer(layer.key, infos[layer.key].uri) for layer in layers)
    return Stack(info, normalized, tuple(infos.values()))


# ---------------------------------------------------------------------------
# Reading: a stack of per-asset RasterSources
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StackSource:
    """Reads like a RasterSource: (band, y, x) of a window, one band per asset.

    Holds no handle: each part keeps its own per-thread GDAL handle. `bands` are
    the scene's band numbers (positions in the item's stack), as lineage records.
    """

    uri: str
    parts: tuple[RasterSource, ...]
    bands: tuple[int, ...]

    def read(self, window: Window, *, retries: int = REMOTE_RETRIES) -> np.ndarray:
        """Each asset's window into one array (each read retried as RasterSource.read)."""
        first = self.parts[0].read(window, retries=retries)
        out = np.empty((len(self.parts), *first.shape[1:]), dtype=first.dtype)
        out[0] = first[0]
        for i, part in enumerate(self.parts[1:], start=1):
            out[i] = part.read(window, retries=retries)[0]
        return out

    def subset(self, index: slice) -> StackSource:
        return StackSource(self.uri, self.parts[index], self.bands[index])

    def __dask_tokenize__(self) -> tuple[Any, ...]:
        parts = tuple(p.__dask_tokenize__() for p in self.parts)
        return ("StackSource", self.uri, parts, self.bands)


def is_stack(scene: object) -> bool:
    """A DataArray opened from a STAC item (it carries the `asset` coordinate)."""
    if not _is_dataarray(scene):
        return False
    return "asset" in scene.coords and "stac" in scene.attrs  # type: ignore[attr-defined]


def stack_source(scene: xr.DataArray) -> StackSource:
    """The assets behind a scene from `open_item`, with the bands it still holds."""
    hrefs = scene.attrs["stac"]["assets"]
    keys = [str(k) for k in np.atleast_1d(scene["asset"].values)]
    bands = tuple(int(b) for b in np.atleast_1d(scene["band"].values))
    parts = tuple(RasterSource.of(hrefs[k], [1]) for k in keys)
    return StackSource(scene.attrs["source"], parts, bands)


# ---------------------------------------------------------------------------
# Public entry points (through satdask.open_scene and satdask.validate)
# ---------------------------------------------------------------------------


def open_item(
    source: str | os.PathLike[str] | pystac.Item,
    *,
    tile_size: int = 256,
    tiles_per_chunk: int | None = None,
    assets: Sequence[str] | None = None,
    bands: Sequence[int | str] | None = None,
    acquisition_time: str | None = None,
) -> xr.DataArray:
    """A STAC item as a lazy (band, y, x) scene: see `satdask.open_scene`."""
    from satdask.scene import lazy_scene

    tile_size = check_tile_size(tile_size)
    item, uri = load_item(source)
    chosen = select_layers(item, uri, assets=assets, bands=bands)
    probed = probe_layers(uri, [layer for _, layer in chosen], when=item_time(item))
    info, layers = probed.info, probed.layers
    parts = tuple(RasterSource.of(layer.href, [1]) for layer in layers)
    stack = StackSource(uri, parts, tuple(n for n, _ in chosen))
    raster = tile_raster(
        stack,
        info,
        tile_size=tile_size,
        tiles_per_chunk=tiles_per_chunk,
        acquisition_time=acquisition_time,
    )
    scene = lazy_scene(raster)
    scene = scene.assign_coords(asset=("band", [layer.key for layer in layers]))
    scene.attrs["stac"] = {
        "id": item.id,
        "self_href": item.get_self_href(),
        "datetime": info.acquisition_time,
        "assets": {layer.key: layer.href for layer in layers},
    }
    return scene


def probe_stack(scene: xr.DataArray | str | os.PathLike[str]) -> Stack | None:
    """The stack's info for a STAC item path/URL or a scene opened from one; else None.

    For a path, the default stack (as `open_scene(path)` would open it).
    """
    if is_stack(scene):
        stac = scene.attrs["stac"]
        keys = [str(k) for k in np.atleast_1d(scene["asset"].values)]
        layers = [Layer(k, stac["assets"][k]) for k in keys]
        return probe_layers(scene.attrs["source"], layers, when=stac.get("datetime"))
    if _is_dataarray(scene) or not is_item(scene):
        return None
    item, uri = load_item(scene)
    layers = [layer for _, layer in select_layers(item, uri)]
    return probe_layers(uri, layers, when=item_time(item))


def stac_lineage(scene: xr.DataArray) -> dict[str, Any]:
    """`{"stac": ...}` for a run's or model's scene record; `{}` for a plain file.

    The scene's own sha256 covers the item JSON; each asset's sha256 (None when
    remote, as for remote scenes) is listed here, so a changed band changes lineage.
    """
    from satdask.lineage import scene_sha256

    if not is_stack(scene):
        return {}
    stac = scene.attrs["stac"]
    keys = [str(k) for k in np.atleast_1d(scene["asset"].values)]
    bands = [int(b) for b in np.atleast_1d(scene["band"].values)]
    hashes = {k: scene_sha256(stac["assets"][k]) for k in dict.fromkeys(keys)}
    return {
        "stac": {
            "id": stac["id"],
            "self_href": stac["self_href"],
            "assets": [
                {"band": b, "key": k, "href": stac["assets"][k], "sha256": hashes[k]}
                for b, k in zip(bands, keys, strict=True)
            ],
        }
    }


def expand_collections(sources: Sequence[Any]) -> list[Any]:
    """Each item-collection JSON (a GeoJSON FeatureCollection) replaced by its items.

    Anything else is kept as it is, for `open_scene` to open or refuse.
    """
    expanded: list[Any] = []
    for source in sources:
        if not isinstance(source, str | os.PathLike) or not is_item_uri(os.fspath(source)):
            expanded.append(source)
            continue
        uri = normalize_uri(source)
        try:
            data = json.loads(_read_bytes(uri))
        except ValueError:
            data = None  # open_scene names the problem
        if not (isinstance(data, dict) and data.get("type") == "FeatureCollection"):
            expanded.append(source)
            continue
        pystac = _pystac()
        try:
            collection = pystac.ItemCollection.from_dict(data, preserve_dict=False)
        except (pystac.STACError, KeyError, TypeError, ValueError) as exc:
            raise SceneError(f"{uri}: not a valid STAC item collection ({exc})") from None
        for item in collection:  # relative asset hrefs are relative to the collection's file
            for asset in item.assets.values():
                if not (is_remote(asset.href) or os.path.isabs(asset.href)):
                    asset.href = urljoin(uri, asset.href)
            expanded.append(item)
    return expanded
