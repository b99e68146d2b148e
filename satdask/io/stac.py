"""STAC items as pixel sources: single-band GeoTIFF/COG assets stacked into bands.

An item opens as the same `TiledRaster` as a GeoTIFF. Its pixels come from a
`StackSource`, which composes one `RasterSource` per asset (so one GDAL handle per
thread per asset) and is a `PixelSource` like any other: batch runs, `read_tile`,
training, the scene view and the service need no STAC-specific code.

The scene view keeps which asset each band comes from as the `asset` coordinate
along `band` (the source's `band_labels`), and the item's hrefs in
`attrs["stac"]` (its `scene_attrs`), so `isel`/`sel` over bands keep them in step.

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

from satdask._uri import NO_SELF_HREF, is_http, is_remote, normalize_uri
from satdask.core.grid import Window, check_tile_size, size_text
from satdask.errors import SatdaskError, SceneError
from satdask.io.geotiff import RasterSource, probe
from satdask.io.lineage import scene_sha256
from satdask.io.source import (
    REMOTE_RETRIES,
    SceneInfo,
    TiledRaster,
    check_scene,
    parse_datetime,
    tile_raster,
)

if TYPE_CHECKING:
    import pystac

_RASTER_TYPES = ("image/tiff", "image/geotiff", "image/vnd.stac.geotiff")
_RASTER_SUFFIXES = (".tif", ".tiff")
_FETCH_TIMEOUT_S = 30.0


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


def is_item_uri(uri: str) -> bool:
    path = urlsplit(uri).path if is_http(uri) else uri
    lower = path.lower()
    if lower.endswith(".json") or uri.startswith(NO_SELF_HREF):
        return True
    return is_http(uri) and "/items/" in path and not lower.endswith(_RASTER_SUFFIXES)


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
    if not isinstance(source, str | os.PathLike):  # a pystac.Item (is_item let no other in)
        return source, source.get_self_href() or f"{NO_SELF_HREF}{source.id}"
    uri = normalize_uri(source)
    raw = _read_bytes(uri)
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise SceneError(f"{uri}: not a STAC item (invalid JSON: {exc})", uri=uri) from None
    kind = data.get("type") if isinstance(data, dict) else type(data).__name__
    if kind != "Feature":
        raise SceneError(f"{uri}: not a STAC item (type is {kind!r}, expected 'Feature')", uri=uri)
    try:
        item = pystac.Item.from_dict(data, href=uri, preserve_dict=False)
    except (pystac.STACError, pystac.STACTypeError, KeyError, TypeError, ValueError) as exc:
        raise SceneError(
            f"{uri}: not a valid STAC item ({type(exc).__name__}: {exc})", uri=uri
        ) from None
    return item, uri


def _read_bytes(uri: str) -> bytes:
    if not is_remote(uri):
        return Path(uri).read_bytes()
    if not is_http(uri):
        raise SceneError(
            f"{uri}: STAC items are read from local paths or http(s) URLs only", uri=uri
        )
    try:
        with urlopen(uri, timeout=_FETCH_TIMEOUT_S) as response:
            return response.read()
    except URLError as exc:
        reason = getattr(exc, "reason", exc)
        code = getattr(exc, "code", None)
        detail = f"HTTP {code} {reason}" if code else str(reason)
        raise SceneError(f"{uri}: cannot fetch the STAC item ({detail})", uri=uri) from None
    except (OSError, ValueError) as exc:
        raise SceneError(f"{uri}: cannot fetch the STAC item ({exc})", uri=uri) from None


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
            f"{uri}: item {item.id} has no GeoTIFF/COG asset (assets: {listed or 'none'})", uri=uri
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
                "has no self href to resolve it against",
                uri=uri,
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
        raise SceneError(
            f"{uri}: assets must be a non-empty list of asset keys, got {assets!r}", uri=uri
        )
    for key in assets:
        if key not in item.assets:
            raise SceneError(
                f"{uri}: item {item.id} has no asset {key!r}; its GeoTIFF/COG assets are "
                f"{', '.join(rasters)}",
                uri=uri,
            )
        if key not in rasters:
            media = item.assets[key].media_type or "no media type"
            raise SceneError(
                f"{uri}: asset {key!r} of item {item.id} is not a GeoTIFF ({media})", uri=uri
            )
    return list(assets)


def _band_numbers(
    item: pystac.Item,
    uri: str,
    keys: Sequence[str],
    rasters: Mapping[str, Any],
    bands: Sequence[int | str],
) -> list[int]:
    if isinstance(bands, str) or not bands:
        raise SceneError(f"{uri}: bands must name at least one band, got {bands!r}", uri=uri)
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
                    f"its bands are {described}",
                    uri=uri,
                )
            numbers += found
        elif isinstance(band, int | np.integer) and not isinstance(band, bool):
            if not 1 <= band <= len(keys):
                raise SceneError(
                    f"{uri}: band {band} does not exist; item {item.id} stacks bands "
                    f"1..{len(keys)}: {described}",
                    uri=uri,
                )
            numbers.append(int(band))
        else:
            raise SceneError(f"{uri}: band {band!r} is neither a band number nor a name", uri=uri)
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
    ("shape", lambda i: size_text(i.height, i.width)),
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
    infos: dict[str, SceneInfo] = {}
    for layer in layers:
        if layer.key in infos:
            continue
        try:
            info = probe(layer.href)
            check_scene(info)
        except SatdaskError as exc:
            raise type(exc)(f"{uri}: asset {layer.key}: {exc}", uri=uri) from None
        if info.count != 1:
            raise SceneError(
                f"{uri}: asset {layer.key} has {info.count} bands; only single-band assets "
                "stack (open its file directly to pick bands from it)",
                uri=uri,
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
                "choose assets on one grid with assets=[...] or bands=[...]",
                uri=uri,
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
        mask="per-dataset" if any(i.mask for i in infos.values()) else None,
    )
    normalized = tuple(Layer(layer.key, infos[layer.key].uri) for layer in layers)
    return Stack(info, normalized, tuple(infos.values()))


# ---------------------------------------------------------------------------
# Reading: a stack of per-asset RasterSources
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StackSource:
    """A PixelSource: (band, y, x) of a window, one band per asset.

    Holds no handle: each part keeps its own per-thread GDAL handle. `bands` are
    the scene's band numbers (positions in the item's stack), as lineage records;
    `keys` the asset key of each band; `item` the item's id, self href, datetime
    and the href of every asset key, which is all a scene view keeps to rebuild it.
    """

    uri: str
    parts: tuple[RasterSource, ...]
    bands: tuple[int, ...]
    keys: tuple[str, ...]
    item: Mapping[str, Any]

    def read(self, window: Window, *, retries: int = REMOTE_RETRIES) -> np.ndarray:
        """Each asset's window into one array (each read retried as RasterSource.read)."""
        first = self.parts[0].read(window, retries=retries)
        out = np.empty((len(self.parts), *first.shape[1:]), dtype=first.dtype)
        out[0] = first[0]
        for i, part in enumerate(self.parts[1:], start=1):
            out[i] = part.read(window, retries=retries)[0]
        return out

    def read_mask(self, window: Window, *, retries: int = REMOTE_RETRIES) -> np.ndarray | None:
        """Valid where every asset's mask says so; None when no asset has a mask."""
        valid: np.ndarray | None = None
        for part in self.parts:
            mask = part.read_mask(window, retries=retries)
            if mask is not None:
                valid = mask if valid is None else valid & mask
        return valid

    def subset(self, index: slice) -> StackSource:
        return StackSource(
            self.uri, self.parts[index], self.bands[index], self.keys[index], self.item
        )

    @property
    def band_labels(self) -> dict[str, tuple[str, ...]]:
        return {"asset": self.keys}

    def scene_attrs(self) -> dict[str, Any]:
        return {"stac": dict(self.item)}

    def lineage(self) -> dict[str, Any]:
        """`{"stac": ...}`: each asset's href and sha256 (None when remote), by band.

        The scene's own sha256 covers the item JSON; a changed band changes this.
        """
        hashes = {k: scene_sha256(self.item["assets"][k]) for k in dict.fromkeys(self.keys)}
        return {
            "stac": {
                "id": self.item["id"],
                "self_href": self.item["self_href"],
                "assets": [
                    {"band": b, "key": k, "href": self.item["assets"][k], "sha256": hashes[k]}
                    for b, k in zip(self.bands, self.keys, strict=True)
                ],
            }
        }

    def probe(self) -> tuple[SceneInfo, tuple[SceneInfo, ...]]:
        layers = [Layer(k, self.item["assets"][k]) for k in self.keys]
        stack = probe_layers(self.uri, layers, when=self.item.get("datetime"))
        return stack.info, stack.files

    def __dask_tokenize__(self) -> tuple[Any, ...]:
        parts = tuple(p.__dask_tokenize__() for p in self.parts)
        return ("StackSource", self.uri, parts, self.bands, self.keys)


def stack_source(
    uri: str, bands: Sequence[int], *, item: Mapping[str, Any], keys: Sequence[str]
) -> StackSource:
    """The StackSource of a scene view, from the attributes and labels it kept."""
    hrefs = item["assets"]
    parts = tuple(RasterSource.of(hrefs[k], [1]) for k in keys)
    return StackSource(uri, parts, tuple(int(b) for b in bands), tuple(keys), item)


# ---------------------------------------------------------------------------
# Opening an item as a tiled raster (through satdask.io.open.open_source)
# ---------------------------------------------------------------------------


def open_item(
    source: str | os.PathLike[str] | pystac.Item,
    *,
    tile_size: int = 256,
    tiles_per_chunk: int | None = None,
    assets: Sequence[str] | None = None,
    bands: Sequence[int | str] | None = None,
    acquisition_time: str | None = None,
) -> TiledRaster:
    """A STAC item's chosen assets, probed onto one grid and cut into tile chunks."""
    tile_size = check_tile_size(tile_size)
    item, uri = load_item(source)
    chosen = select_layers(item, uri, assets=assets, bands=bands)
    probed = probe_layers(uri, [layer for _, layer in chosen], when=item_time(item))
    info, layers = probed.info, probed.layers
    meta = {
        "id": item.id,
        "self_href": item.get_self_href(),
        "datetime": info.acquisition_time,
        "assets": {layer.key: layer.href for layer in layers},
    }
    stack = stack_source(
        uri, [n for n, _ in chosen], item=meta, keys=[layer.key for layer in layers]
    )
    return tile_raster(
        stack,
        info,
        tile_size=tile_size,
        tiles_per_chunk=tiles_per_chunk,
        acquisition_time=acquisition_time,
    )


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
            raise SceneError(f"{uri}: not a valid STAC item collection ({exc})", uri=uri) from None
        for item in collection:  # relative asset hrefs are relative to the collection's file
            for asset in item.assets.values():
                if not (is_remote(asset.href) or os.path.isabs(asset.href)):
                    asset.href = urljoin(uri, asset.href)
            expanded.append(item)
    return expanded
