"""A tile's classes as a picture: which one a client asks for, a colour PNG, a GeoTIFF.

Both are written by GDAL through rasterio (a dependency already) into memory, so the
service needs no imaging library. A class keeps its value as the pixel value wherever
it can: a palette PNG and a paletted GeoTIFF of the class values, whose colour table
gives each class its colour and the fill value (no class: nodata or masked) a
transparent entry. Class values of 255 or more do not fit a PNG palette: that PNG is
RGBA instead, the GeoTIFF stays uint16 with its colour table.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from functools import lru_cache

import numpy as np
from affine import Affine
from litestar.datastructures.headers import Accept
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile

from satdask.core.pixels import ClassTable
from satdask.models.base import ModelClass
from service.errors import NotAcceptableError

JSON = "application/json"
PNG = "image/png"
TIFF = "image/tiff"
GEOTIFF = "image/tiff; application=geotiff"  # what a GeoTIFF answer is labelled
OFFERED = (JSON, PNG, TIFF)  # in order of preference for `*/*`

# Colours for classes whose metadata gives none (ColorBrewer's Dark2, then Set1).
_FALLBACK = (
    "#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d",
    "#666666", "#e41a1c", "#377eb8", "#4daf4a", "#984ea3", "#ff7f00", "#ffff33",
)  # fmt: skip
_CLEAR = (0, 0, 0, 0)


def negotiate(accept: str | None) -> str:
    """The media type to answer with: JSON unless the client prefers a PNG or a TIFF.

    No header, or `*/*`, is JSON, as before images were served. A header that accepts
    none of the three is refused (406), naming what is offered.
    """
    if not accept or accept == "*/*":  # most clients: no parsing
        return JSON
    chosen = Accept(accept).best_match(list(OFFERED))
    if chosen is None:
        shown = accept if len(accept) <= 80 else accept[:77] + "..."
        raise NotAcceptableError(
            f"Accept: {shown!r} names no type this route answers with: {', '.join(OFFERED)}"
        )
    return chosen


def palette(table: ClassTable, classes: Sequence[ModelClass]) -> dict[int, tuple[int, ...]]:
    """RGBA of every class value, from its colour (a fallback when it has none), and a
    transparent fill value."""
    colours: dict[int, tuple[int, ...]] = {}
    for i, c in enumerate(classes):
        text = (c.color or _FALLBACK[i % len(_FALLBACK)]).lstrip("#")
        colours[c.value] = (int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16), 255)
    colours[table.fill] = _CLEAR
    return colours


def png(classes: np.ndarray, table: ClassTable, colours: Mapping[int, tuple[int, ...]]) -> bytes:
    """The (y, x) classes as a palette PNG (RGBA if a value does not fit a byte)."""
    height, width = classes.shape
    if table.dtype == np.uint8:
        bands, count = classes[None], 1
    else:
        lut = np.zeros((table.fill + 1, 4), dtype=np.uint8)
        for value, rgba in colours.items():
            lut[value] = rgba
        bands, count = np.moveaxis(lut[classes], -1, 0), 4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # a picture, not a map
        with MemoryFile() as memory:
            with memory.open(
                driver="PNG", width=width, height=height, count=count, dtype="uint8"
            ) as dst:
                dst.write(bands)
                if count == 1:
                    dst.write_colormap(1, dict(colours))
            return bytes(memory.read())


def geotiff(
    classes: np.ndarray,
    table: ClassTable,
    colours: Mapping[int, tuple[int, ...]],
    *,
    transform: Affine,
    crs: str,
    tags: Mapping[str, str],
    flags: Mapping[str, str],
) -> bytes:
    """The (y, x) classes as a GeoTIFF on the scene's grid: its `transform` (the window's
    upper-left corner) and `crs`, the fill value as nodata, a colour table; `tags` on the
    dataset, `flags` (CF flag_values and flag_meanings) on the band."""
    height, width = classes.shape
    with MemoryFile() as memory:
        with memory.open(
            driver="GTiff",
            width=width,
            height=height,
            count=1,
            dtype=table.dtype.name,
            crs=_crs(crs),
            transform=transform,
            nodata=table.fill,
            compress="deflate",
        ) as dst:
            dst.write(classes, 1)
            dst.write_colormap(1, dict(colours))
            dst.set_band_description(1, "predicted class")
            dst.update_tags(**tags)
            dst.update_tags(1, **flags)
        return bytes(memory.read())


@lru_cache(maxsize=64)
def _crs(text: str) -> CRS | None:
    """A scene's CRS from its text (parsed once: PROJ is not free)."""
    return CRS.from_user_input(text) if text else None
