"""A deterministic synthetic Sentinel-2 L1C scene, so cloud-mask tests and demos need no download.

The pixels are plausible top-of-atmosphere digital numbers for the 13 L1C bands: land
(vegetation, bare soil, water) under thick cumulus, thin cirrus that shows mostly in
B10, and haze, each a smooth seeded field. They are generated window by window from
fields defined on the whole scene, so memory does not grow with the size and one
window never depends on another. The files are written the way `write_sample` writes
its scene (capped GDAL cache, scratch file, COG copy, then a rename).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from satdask._files import replace_file
from satdask.errors import SatdaskError
from satdask.io.sample import (
    _WINDOW_TARGET,
    SAMPLE_CRS,
    SAMPLE_DATETIME,
    SAMPLE_NODATA,
    SAMPLE_ORIGIN,
    SAMPLE_PIXEL_SIZE,
    _gdal_env,
    _interp_axis,
    _scratch_profile,
    _staged_cog,
)
from satdask.models.s2cloudless import S2_BANDS

__all__ = ["S2_KINDS", "write_s2_item", "write_s2_scene"]

S2_KINDS = ("clear", "cloudy", "mixed")
# ESA's radiometric offset: from processing baseline 04.00 on, DN = reflectance * 10000 + 1000.
_OFFSET_BASELINE = (4, 0)
_DN_OFFSET = 1000
_SCALE = 0.0001
_OFFSET = -0.1

# Top-of-atmosphere reflectance x 10000, in S2_BANDS order:
#                B01   B02   B03   B04   B05   B06   B07   B08   B8A   B09  B10   B11   B12
_VEGETATION = (1300, 1000, 900, 700, 1200, 2200, 2600, 2700, 2900, 900, 15, 1800, 1000)
_SOIL = (1400, 1300, 1500, 1800, 2000, 2200, 2300, 2400, 2500, 800, 18, 3200, 2600)
_WATER = (1400, 1100, 900, 600, 500, 400, 350, 300, 250, 100, 10, 100, 60)
# Thick cloud at mid brightness; a brightness field scales it by 0.75..1.25.
_CLOUD = (5600, 5500, 5400, 5400, 5500, 5600, 5700, 5700, 5600, 3000, 300, 3200, 2600)
# Added at full cirrus (B10 up to about 200) and at full haze (mostly the blue end).
_CIRRUS = (150, 150, 150, 140, 140, 140, 130, 130, 130, 100, 185, 100, 80)
_HAZE = (400, 380, 300, 230, 200, 160, 140, 120, 110, 60, 0, 30, 15)
# Half-width of the per-pixel (triangular) noise in DN; B10 is a quiet band.
_NOISE = (24, 20, 20, 20, 20, 24, 24, 24, 24, 16, 2, 24, 20)

# Field streams: each smooth field draws its control grids from its own seed stream.
_WATER_FIELD, _VEG_FIELD, _PARCEL_FIELD, _BRIGHT_FIELD = 0, 1, 2, 3
_CUMULUS_FIELD, _CLOUD_BRIGHT_FIELD, _CIRRUS_FIELD, _HAZE_FIELD = 4, 5, 6, 7


@dataclass(frozen=True)
class _FieldSpec:
    """Feature size in pixels: a share of the short side, held between a floor (so a small
    test scene still shows several features) and a ceiling (so a full tile does not get
    continent-sized clouds); octaves of finer detail; a stretch along x (cirrus streaks);
    `blocky` for field parcels, whose control values are taken as they are."""

    share: int
    floor: int
    ceiling: int
    octaves: int = 2
    stretch: float = 1.0
    blocky: bool = False


_FIELDS = {
    _WATER_FIELD: _FieldSpec(3, 24, 400, octaves=3),
    _VEG_FIELD: _FieldSpec(5, 16, 160, octaves=3),
    _PARCEL_FIELD: _FieldSpec(12, 8, 40, octaves=1, stretch=1.6, blocky=True),
    _BRIGHT_FIELD: _FieldSpec(10, 12, 60),
    _CUMULUS_FIELD: _FieldSpec(6, 16, 160, octaves=4),
    _CLOUD_BRIGHT_FIELD: _FieldSpec(12, 8, 60, octaves=2),
    _CIRRUS_FIELD: _FieldSpec(5, 16, 300, octaves=3, stretch=3.0),
    _HAZE_FIELD: _FieldSpec(2, 32, 800),
}

_EO_BANDS = (  # name, common name, centre wavelength and FWHM in micrometres (S2A)
    ("B01", "coastal", 0.443, 0.027),
    ("B02", "blue", 0.490, 0.098),
    ("B03", "green", 0.560, 0.045),
    ("B04", "red", 0.665, 0.038),
    ("B05", "rededge1", 0.704, 0.019),
    ("B06", "rededge2", 0.740, 0.018),
    ("B07", "rededge3", 0.783, 0.028),
    ("B08", "nir", 0.842, 0.145),
    ("B8A", "nir08", 0.865, 0.033),
    ("B09", "nir09", 0.945, 0.026),
    ("B10", "cirrus", 1.375, 0.075),
    ("B11", "swir16", 1.610, 0.143),
    ("B12", "swir22", 2.190, 0.242),
)
_PROJ_SCHEMA = "https://stac-extensions.github.io/projection/v1.1.0/schema.json"
_S2_SCHEMA = "https://stac-extensions.github.io/sentinel-2/v1.0.0/schema.json"


@dataclass(frozen=True)
class _Options:
    width: int
    height: int
    kind: str
    seed: int
    tile_size: int
    collar: int
    baseline: str

    @property
    def offset(self) -> int:
        """The DN offset of the baseline: 1000 from 04.00 on, else 0."""
        major, minor = (int(part) for part in self.baseline.split("."))
        return _DN_OFFSET if (major, minor) >= _OFFSET_BASELINE else 0


def _check_int(name: str, value: object, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SatdaskError(f"sample_s2: {name} must be an integer >= {minimum}, got {value!r}")
    return value


def _options(
    *, width: object, height: object, kind: object, seed: object, tile_size: object,
    collar: object, baseline: object,
) -> _Options:  # fmt: skip
    width = _check_int("width", width, minimum=1)
    height = _check_int("height", height, minimum=1)
    seed = _check_int("seed", seed, minimum=0)
    tile_size = _check_int("tile_size", tile_size, minimum=16)
    if tile_size % 16:
        raise SatdaskError(f"sample_s2: tile_size must be a multiple of 16, got {tile_size}")
    collar = _check_int("collar", collar, minimum=0)
    if 2 * collar >= min(width, height):
        raise SatdaskError(
            f"sample_s2: collar {collar} leaves no valid pixel in a {width} x {height} scene"
        )
    if kind not in S2_KINDS:
        raise SatdaskError(f"sample_s2: kind {kind!r} is not one of {', '.join(S2_KINDS)}")
    if not isinstance(baseline, str) or not re.fullmatch(r"\d\d\.\d\d", baseline):
        raise SatdaskError(
            f"sample_s2: baseline must be a processing baseline like '04.00', got {baseline!r}"
        )
    return _Options(width, height, str(kind), seed, tile_size, collar, baseline)


@dataclass(frozen=True)
class _Field:
    """A smooth field in -1..1 over the whole scene: octaves of value noise.

    The control values are a shuffled, evenly spaced set (as in `write_sample`), so
    the share of the scene above a threshold hardly depends on the seed.
    """

    spec: _FieldSpec
    grids: tuple[np.ndarray, ...]
    spacings: tuple[tuple[float, float], ...]  # (y, x) per octave

    @classmethod
    def make(cls, options: _Options, stream: int) -> _Field:
        spec = _FIELDS[stream]
        short = min(options.width, options.height)
        spacing = float(min(spec.ceiling, max(spec.floor, short // spec.share)))
        grids, spacings = [], []
        for octave in range(spec.octaves):
            sy = spacing / 2**octave
            sx = sy * spec.stretch
            ny = math.ceil(options.height / sy) + 2
            nx = math.ceil(options.width / sx) + 2
            rng = np.random.default_rng([options.seed, 2, stream, octave])
            grids.append(rng.permutation(np.linspace(-1.0, 1.0, ny * nx)).reshape(ny, nx))
            spacings.append((sy, sx))
        return cls(spec, tuple(grids), tuple(spacings))

    def window(self, row0: int, col0: int, height: int, width: int) -> np.ndarray:
        out = np.zeros((height, width), dtype=np.float64)
        total = 0.0
        for octave, (grid, (sy, sx)) in enumerate(zip(self.grids, self.spacings, strict=True)):
            amplitude = 0.5**octave
            total += amplitude
            iy, wy = _interp_axis(row0, row0 + height, sy)
            ix, wx = _interp_axis(col0, col0 + width, sx)
            if self.spec.blocky:
                out += amplitude * grid[iy][:, ix]
                continue
            wy, wx = _smoothstep(wy), _smoothstep(wx)
            rows = grid[iy] * (1.0 - wy)[:, None] + grid[iy + 1] * wy[:, None]
            out += amplitude * (rows[:, ix] * (1.0 - wx) + rows[:, ix + 1] * wx)
        return (out / total).astype(np.float32)


def _smoothstep(weight: np.ndarray) -> np.ndarray:
    """Interpolation weights with a flat start and end, so the field has no creases."""
    return weight * weight * (3.0 - 2.0 * weight)


def _ramp(values: np.ndarray, start: float, width: float) -> np.ndarray:
    """0 below `start`, 1 above `start + width`, linear between."""
    return np.clip((values - np.float32(start)) / np.float32(width), 0.0, 1.0)


def _s2_window(
    options: _Options,
    fields: dict[int, _Field],
    row0: int,
    col0: int,
    height: int,
    width: int,
    *,
    window_index: tuple[int, int],
) -> np.ndarray:
    """13 bands of uint16 DN for one window: a pure function of its arguments."""

    def field(stream: int) -> np.ndarray:
        return fields[stream].window(row0, col0, height, width)

    water = _ramp(-field(_WATER_FIELD), 0.3, 0.15)
    # Crops: parcels of their own vigour, in regions of more or less vegetation.
    vegetation = _ramp(field(_VEG_FIELD) + np.float32(0.3) * field(_PARCEL_FIELD), -0.3, 0.6)
    brightness = 1.0 + np.float32(0.12) * field(_BRIGHT_FIELD)
    if options.kind == "clear":
        cloud = np.zeros_like(water)
    elif options.kind == "cloudy":
        cloud = np.clip(np.float32(0.95) + np.float32(0.45) * field(_CUMULUS_FIELD), 0.0, 1.0)
    else:
        cloud = _ramp(field(_CUMULUS_FIELD), 0.2, 0.3)
    cloud_brightness = 1.0 + np.float32(0.25) * field(_CLOUD_BRIGHT_FIELD)
    cirrus: np.ndarray | None = None
    haze: np.ndarray | None = None
    if options.kind == "mixed":
        cirrus = _ramp(field(_CIRRUS_FIELD), 0.15, 0.35)
        haze = _ramp(field(_HAZE_FIELD), -0.1, 0.5)

    rows = np.arange(row0, row0 + height)
    cols = np.arange(col0, col0 + width)
    inside_rows = (rows >= options.collar) & (rows < options.height - options.collar)
    inside_cols = (cols >= options.collar) & (cols < options.width - options.collar)
    outside = ~(inside_rows[:, None] & inside_cols[None, :])

    land = 1.0 - water
    clear_sky = 1.0 - cloud
    thick = cloud * cloud_brightness
    rng = np.random.default_rng([options.seed, 3, window_index[0], window_index[1]])
    noise = np.empty((height, width), dtype=np.float32)
    out = np.empty((len(S2_BANDS), height, width), dtype=np.uint16)
    for b in range(len(S2_BANDS)):
        surface = vegetation * np.float32(_VEGETATION[b] - _SOIL[b]) + np.float32(_SOIL[b])
        surface = (land * surface + water * np.float32(_WATER[b])) * brightness
        if haze is not None:
            surface += haze * np.float32(_HAZE[b])
        band = clear_sky * surface + thick * np.float32(_CLOUD[b])
        if cirrus is not None:
            band += cirrus * np.float32(_CIRRUS[b])
        # Triangular noise: the sum of two uniform draws, centred, of half-width _NOISE[b].
        rng.random(out=noise, dtype=np.float32)
        band += noise * np.float32(_NOISE[b])
        rng.random(out=noise, dtype=np.float32)
        band += (noise - np.float32(1.0)) * np.float32(_NOISE[b])
        np.rint(band, out=band)
        np.clip(band, 1.0, float(np.iinfo(np.uint16).max - options.offset), out=band)
        band += np.float32(options.offset)
        band[outside] = SAMPLE_NODATA
        out[b] = band
    return out


def _windows(options: _Options) -> Iterator[tuple[tuple[tuple[int, int], ...], np.ndarray]]:
    """(rasterio window, 13-band pixels) for every generation window, row by row."""
    fields = {stream: _Field.make(options, stream) for stream in _FIELDS}
    step = options.tile_size * max(1, _WINDOW_TARGET // options.tile_size)
    for wi, row0 in enumerate(range(0, options.height, step)):
        height = min(step, options.height - row0)
        for wj, col0 in enumerate(range(0, options.width, step)):
            width = min(step, options.width - col0)
            data = _s2_window(options, fields, row0, col0, height, width, window_index=(wi, wj))
            yield ((row0, row0 + height), (col0, col0 + width)), data


def _describe(dst: Any, options: _Options, names: tuple[str, ...]) -> None:
    """Band names, acquisition time, baseline and, from 04.00 on, the DN -> reflectance scaling."""
    dst.descriptions = names
    dst.update_tags(TIFFTAG_DATETIME=SAMPLE_DATETIME, PROCESSING_BASELINE=options.baseline)
    if options.offset:
        dst.scales = (_SCALE,) * len(names)
        dst.offsets = (_OFFSET,) * len(names)


def _output_folder(folder: Path) -> Path:
    if not folder.parent.is_dir():
        raise SatdaskError(f"sample_s2: output directory {str(folder.parent)!r} does not exist")
    try:
        folder.mkdir(exist_ok=True)
    except OSError as exc:
        raise SatdaskError(f"sample_s2: cannot create {str(folder)!r}: {exc}") from exc
    return folder


def write_s2_scene(
    path: str | os.PathLike[str],
    *,
    width: int = 1024,
    height: int = 1024,
    kind: str = "mixed",
    seed: int = 0,
    tile_size: int = 256,
    collar: int = 0,
    baseline: str = "03.01",
) -> Path:
    """Write a 13-band uint16 COG of Sentinel-2 L1C digital numbers, bands in ESA order.

    ``kind`` is "clear" (land only), "cloudy" (thick cloud over nearly all) or "mixed"
    (land, cumulus, cirrus and haze). ``collar`` pixels on every side are nodata (0 in
    every band). From ``baseline`` "04.00" on, DN carry ESA's +1000 offset and the bands
    carry scale 0.0001 and offset -0.1. Georeferenced like `write_sample` (EPSG:32633,
    10 m); the same arguments always give the same bytes.
    """
    import rasterio

    options = _options(
        width=width, height=height, kind=kind, seed=seed, tile_size=tile_size,
        collar=collar, baseline=baseline,
    )  # fmt: skip
    final = Path(path)
    if not final.parent.is_dir():
        raise SatdaskError(f"sample_s2: output directory {str(final.parent)!r} does not exist")
    profile = _scratch_profile(
        width=options.width,
        height=options.height,
        count=len(S2_BANDS),
        dtype=np.dtype("uint16"),
        tile_size=options.tile_size,
    )
    # The scratch dataset closes before _staged_cog copies it into the COG.
    with (
        _gdal_env(),
        _staged_cog(final, tile_size=options.tile_size) as scratch,
        rasterio.open(scratch, "w", **profile) as dst,
    ):
        _describe(dst, options, S2_BANDS)
        for window, data in _windows(options):
            dst.write(data, window=window)
    return final


def write_s2_item(
    folder: str | os.PathLike[str],
    *,
    width: int = 1024,
    height: int = 1024,
    kind: str = "mixed",
    seed: int = 0,
    tile_size: int = 256,
    collar: int = 0,
    baseline: str = "03.01",
) -> Path:
    """Write `write_s2_scene`'s pixels as a STAC item: 13 single-band COGs and item.json.

    The folder gets B01.tif ... B12.tif and ``item.json`` (STAC 1.0, relative hrefs, so
    the folder can move), whose assets B01 ... B12 carry eo:bands and raster:bands. The
    item is written last, so it never names a band file that is not complete. Returns
    the path of item.json.
    """
    import rasterio

    options = _options(
        width=width, height=height, kind=kind, seed=seed, tile_size=tile_size,
        collar=collar, baseline=baseline,
    )  # fmt: skip
    target = _output_folder(Path(folder))
    profile = _scratch_profile(
        width=options.width,
        height=options.height,
        count=1,
        dtype=np.dtype("uint16"),
        tile_size=options.tile_size,
    )
    with _gdal_env(), contextlib.ExitStack() as stack:
        datasets = []
        for name in S2_BANDS:
            cog = target / f"{name}.tif"
            scratch = stack.enter_context(_staged_cog(cog, tile_size=options.tile_size))
            dst = stack.enter_context(rasterio.open(scratch, "w", **profile))
            _describe(dst, options, (name,))
            datasets.append(dst)
        for window, data in _windows(options):
            for dst, band in zip(datasets, data, strict=True):
                dst.write(band[None], window=window)
    item_path = target / "item.json"
    document = _item(options, item_path).to_dict(include_self_link=False)
    # pystac stamps its own newest version; every field here is STAC 1.0's (eo:bands, not bands).
    document["stac_version"] = "1.0.0"
    replace_file(item_path, (json.dumps(document, indent=2) + "\n").encode())
    return item_path


def _footprint(options: _Options) -> tuple[list[float], dict[str, Any]]:
    """The scene's WGS84 bbox and polygon, rounded so the JSON is stable."""
    from rasterio.warp import transform_geom

    west, north = SAMPLE_ORIGIN
    east = west + options.width * SAMPLE_PIXEL_SIZE
    south = north - options.height * SAMPLE_PIXEL_SIZE
    ring = [(west, north), (east, north), (east, south), (west, south), (west, north)]
    polygon = transform_geom(SAMPLE_CRS, "EPSG:4326", {"type": "Polygon", "coordinates": [ring]})
    points = [(round(x, 8), round(y, 8)) for x, y in polygon["coordinates"][0]]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    geometry = {"type": "Polygon", "coordinates": [[list(p) for p in points]]}
    return [min(xs), min(ys), max(xs), max(ys)], geometry


def _item(options: _Options, item_path: Path) -> Any:
    """The pystac Item of the band files beside `item_path`."""
    import pystac
    from pystac.extensions.eo import Band, EOExtension
    from pystac.extensions.raster import DataType, RasterBand, RasterExtension

    when = datetime.strptime(SAMPLE_DATETIME, "%Y:%m:%d %H:%M:%S").replace(tzinfo=UTC)
    bbox, geometry = _footprint(options)
    west, north = SAMPLE_ORIGIN
    item_id = (
        f"S2A_MSIL1C_{when:%Y%m%dT%H%M%S}_N{options.baseline.replace('.', '')}"
        f"_synthetic-{options.kind}-{options.seed}"
    )
    item = pystac.Item(
        item_id,
        geometry=geometry,
        bbox=bbox,
        datetime=when,
        properties={
            "platform": "sentinel-2a",
            "constellation": "sentinel-2",
            "instruments": ["msi"],
            "s2:processing_baseline": options.baseline,
            "proj:epsg": int(SAMPLE_CRS.split(":")[1]),
            "proj:shape": [options.height, options.width],
            "proj:transform": [SAMPLE_PIXEL_SIZE, 0.0, west, 0.0, -SAMPLE_PIXEL_SIZE, north],
        },
    )
    item.stac_extensions += [_PROJ_SCHEMA, _S2_SCHEMA]
    EOExtension.add_to(item)
    RasterExtension.add_to(item)
    for name, common, centre, fwhm in _EO_BANDS:
        asset = pystac.Asset(
            f"./{name}.tif", title=name, media_type=pystac.MediaType.COG, roles=["data"]
        )
        item.add_asset(name, asset)
        EOExtension.ext(asset).bands = [
            Band.create(
                name=name, common_name=common, center_wavelength=centre, full_width_half_max=fwhm
            )
        ]
        band = RasterBand.create(
            nodata=SAMPLE_NODATA, data_type=DataType.UINT16, spatial_resolution=SAMPLE_PIXEL_SIZE
        )
        if options.offset:
            band.scale = _SCALE
            band.offset = _OFFSET
        RasterExtension.ext(asset).bands = [band]
    item.set_self_href(str(item_path))
    return item
