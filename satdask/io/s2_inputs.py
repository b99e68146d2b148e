"""Which of a scene's bands s2cloudless reads, and the offset its digital numbers carry.

A GeoTIFF must hold the 13 L1C bands in ESA order (or exactly the classifier's ten,
named so in the band descriptions); a STAC item names them on its assets. Any other
band count, or a missing band, is refused naming what is missing.

From processing baseline 04.00, ESA adds 1000 to every L1C digital number. The
offset is read, in this order:
- STAC: `raster:bands` `offset` / `scale` of the assets (-0.1 / 0.0001 -> -1000 DN),
  else the item's `s2:processing_baseline` (04.00 and later -> -1000);
- GeoTIFF: the bands' GDAL offset / scale (what `gdal_edit.py -scale 0.0001
  -offset -0.1` sets), else a `PROCESSING_BASELINE` tag;
- none of these: 0.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from satdask.errors import ModelError, SceneError
from satdask.io.geotiff import RasterSource
from satdask.io.open import open_source
from satdask.io.source import PixelSource
from satdask.io.stac import band_names, is_item, load_item, raster_assets
from satdask.models.s2cloudless import MODEL_BANDS, S2_BANDS, CloudMaskModel

# ESA's RADIO_ADD_OFFSET of L1C products from processing baseline 04.00.
BASELINE_OFFSET = -1000
REFLECTANCE_SCALE = 1e-4


@dataclass(frozen=True)
class S2Inputs:
    bands: tuple[int, ...] | tuple[str, ...]  # file band numbers, or an item's band names
    dn_offset: int


def s2_inputs(scene: object, *, bands: Sequence[int | str] | None = None) -> S2Inputs:
    """The bands s2cloudless reads from `scene` (a GeoTIFF or a STAC item) and its offset."""
    name = os.fspath(scene) if isinstance(scene, str | os.PathLike) else str(scene)
    if bands is not None:
        raise ModelError(f"{name}: s2cloudless picks its ten bands by name; do not pass bands")
    if is_item(scene):
        return _item_inputs(scene)
    if not isinstance(scene, str | os.PathLike):
        raise ModelError(
            "s2cloudless reads a scene by name (a GeoTIFF or STAC item), so it can find its "
            f"bands and offset; got a {type(scene).__name__}"
        )
    return _file_inputs(name)


def _file_inputs(uri: str) -> S2Inputs:
    import rasterio
    from rasterio.errors import RasterioError

    try:
        with rasterio.open(uri) as src:
            count, dtype = src.count, src.dtypes[0]
            described = tuple(d or "" for d in src.descriptions)
            scales, offsets = src.scales, src.offsets
            baseline = src.tags().get("PROCESSING_BASELINE")
    except RasterioError as exc:
        raise SceneError(f"{uri}: cannot open ({exc})", uri=uri) from None
    if dtype != "uint16":
        raise SceneError(f"{uri}: s2cloudless reads uint16 digital numbers, not {dtype}", uri=uri)
    if all(described) and described != S2_BANDS and described != MODEL_BANDS:
        missing = [b for b in MODEL_BANDS if b not in described]
        if missing:
            raise SceneError(f"{uri}: {_missing(missing)}; it has {_list(described)}", uri=uri)
        raise SceneError(
            f"{uri}: bands are {_list(described)}; s2cloudless needs the 13 L1C bands in ESA "
            f"order ({_list(S2_BANDS)})",
            uri=uri,
        )
    if count == len(S2_BANDS):
        numbers = tuple(S2_BANDS.index(b) + 1 for b in MODEL_BANDS)
    elif count == len(MODEL_BANDS) and described == MODEL_BANDS:
        numbers = tuple(range(1, count + 1))
    else:
        raise SceneError(
            f"{uri}: s2cloudless needs the 13 Sentinel-2 L1C bands in ESA order "
            f"({_list(S2_BANDS)}); the file has {count} band{'s' * (count != 1)}",
            uri=uri,
        )
    used = [(scales[n - 1], offsets[n - 1]) for n in numbers]
    return S2Inputs(numbers, _offset(uri, used, baseline))


def _item_inputs(scene: Any) -> S2Inputs:
    item, uri = load_item(scene)
    found: dict[str, Any] = {}
    for asset in raster_assets(item).values():
        for label in band_names(asset):
            found.setdefault(label.upper(), asset)
    missing = [b for b in MODEL_BANDS if b not in found]
    if missing:
        raise SceneError(f"{uri}: item {item.id}: {_missing(missing)}", uri=uri)
    used = [_raster_scaling(found[b].extra_fields) for b in MODEL_BANDS]
    baseline = item.properties.get("s2:processing_baseline")
    return S2Inputs(MODEL_BANDS, _offset(uri, used, baseline))


def _raster_scaling(fields: Mapping[str, Any]) -> tuple[float, float]:
    entries = fields.get("raster:bands") or fields.get("bands") or [{}]
    entry = entries[0] if isinstance(entries, list) and entries else {}
    return float(entry.get("scale", 1.0)), float(entry.get("offset", 0.0))


def _offset(uri: str, scaling: Iterable[tuple[float, float]], baseline: object) -> int:
    """One DN offset for every band the model reads, from scale/offset or the baseline."""
    declared = {pair for pair in scaling if pair != (1.0, 0.0)}
    if len(declared) > 1:
        raise SceneError(f"{uri}: the bands s2cloudless reads have different offsets", uri=uri)
    if declared:
        scale, offset = declared.pop()
        if abs(scale - REFLECTANCE_SCALE) > 1e-12:
            raise SceneError(
                f"{uri}: band scale {scale} is not L1C's 0.0001; s2cloudless needs digital "
                "numbers scaled by 1/10000",
                uri=uri,
            )
        return round(offset / scale)
    if baseline is None:
        return 0
    try:
        newer = tuple(int(p) for p in str(baseline).split(".")) >= (4, 0)
    except ValueError:
        raise SceneError(f"{uri}: processing baseline {baseline!r} is not NN.NN", uri=uri) from None
    return BASELINE_OFFSET if newer else 0


def _missing(bands: Sequence[str]) -> str:
    verb = "is" if len(bands) == 1 else "are"
    return f"s2cloudless needs {_list(bands)}, which {verb} missing"


def _list(names: Iterable[str]) -> str:
    return ", ".join(n or "(unnamed)" for n in names)


def cloud_source(source: PixelSource, model: CloudMaskModel) -> tuple[PixelSource, CloudMaskModel]:
    """`source` reading the ten bands s2cloudless takes, and the model bound to its offset:
    what the service needs for a scene it opened with every band."""
    inputs = s2_inputs(source.uri)
    if isinstance(source, RasterSource):
        chosen: PixelSource = replace(source, bands=tuple(int(b) for b in inputs.bands))
    else:
        chosen = open_source(source.uri, bands=inputs.bands).source
    return chosen, model.for_scene(dn_offset=inputs.dn_offset)
