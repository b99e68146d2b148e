"""Any scene name as a pixel source: the one place that knows every kind of source.

A path or URL of a GeoTIFF/COG opens as a `RasterSource`, a STAC item (a
`pystac.Item`, or the path or URL of its JSON) as a `StackSource`; both come back
cut into chunks of whole tiles, as a `TiledRaster`, with no pixel read.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from satdask.errors import SceneError
from satdask.io.geotiff import RasterSource, open_raster
from satdask.io.source import PixelSource, TiledRaster
from satdask.io.stac import is_item, open_item, stack_source

if TYPE_CHECKING:
    import pystac

SceneName = str | os.PathLike[str]


def open_source(
    source: SceneName | pystac.Item,
    *,
    tile_size: int = 256,
    tiles_per_chunk: int | None = None,
    bands: Sequence[int | str] | None = None,
    assets: Sequence[str] | None = None,
    acquisition_time: str | None = None,
) -> TiledRaster:
    """Probe, validate and cut a scene into chunks of whole tiles: no pixel is read.

    `bands` picks band numbers, or for a STAC item also common names; `assets`
    picks a STAC item's asset keys.
    """
    if is_item(source):
        return open_item(
            source,
            tile_size=tile_size,
            tiles_per_chunk=tiles_per_chunk,
            assets=assets,
            bands=bands,
            acquisition_time=acquisition_time,
        )
    if assets is not None:
        raise SceneError(f"{os.fspath(source)}: assets= selects assets of a STAC item only")  # type: ignore[arg-type]
    return open_raster(
        source,  # type: ignore[arg-type]
        tile_size=tile_size,
        tiles_per_chunk=tiles_per_chunk,
        bands=bands,  # type: ignore[arg-type]  # names are for STAC items; refused there
        acquisition_time=acquisition_time,
    )


def source_from_scene(
    uri: str,
    bands: Sequence[int],
    *,
    attrs: Mapping[str, Any],
    labels: Mapping[str, Sequence[str]],
) -> PixelSource:
    """Rebuild the source behind a scene view from what the view kept.

    `attrs` and `labels` are what the source's `scene_attrs()` and `band_labels`
    gave when it was opened, the labels narrowed to the bands the view still holds.
    """
    if "stac" in attrs:
        return stack_source(uri, bands, item=attrs["stac"], keys=list(labels["asset"]))
    return RasterSource.of(uri, bands)
