"""Checks a scene must pass before satdask trusts it.

Fatal problems raise `ValidationError` naming the file; soft ones (no nodata, no
acquisition time) become warnings in the report, because a run can still go on.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from satdask.core._html import report_html
from satdask.core.grid import EdgePolicy, TileGrid, check_tile_size, require_tiles
from satdask.errors import ValidationError
from satdask.io.geotiff import check_complete
from satdask.io.open import open_source
from satdask.io.source import check_scene, parse_datetime

if TYPE_CHECKING:
    import xarray as xr


@dataclass(frozen=True)
class ValidationReport:
    uri: str
    crs: str
    width: int
    height: int
    bands: int
    dtype: str
    nodata: float | None
    block_shape: tuple[int, int]
    acquisition_time: str | None
    tile_size: int = 256
    edge: str = "skip"
    tiles: tuple[int, int] = (0, 0)  # rows x cols of whole tiles under `edge`
    pixels_uncovered: int = 0  # never inferred under `edge` (skip leaves the edge strips)
    warnings: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def _repr_html_(self) -> str:
        return report_html(self.to_dict())


def validate(
    scene: xr.DataArray | str | os.PathLike[str],
    *,
    acquisition_time: str | None = None,
    tile_size: int = 256,
    edge: EdgePolicy = "skip",
) -> ValidationReport:
    """Validate one scene, given as a path/URL, a STAC item or a DataArray from `open_scene`.

    A STAC item's assets are probed one by one and must lie on one grid. The scene is
    also checked against the tile grid a run would use (`tile_size`, `edge`): a scene
    with no whole tile is refused, as a run would refuse it, and pixels that no tile
    covers are counted in the report and warned about.
    """
    if isinstance(scene, str | os.PathLike) or not hasattr(scene, "dims"):
        source = open_source(scene).source
    else:
        from satdask.views.scene import scene_source  # xarray only for a DataArray

        source = scene_source(scene)
    info, files = source.probe()
    warnings = check_scene(info)
    for file in files:
        check_complete(file)
    grid = TileGrid(info.height, info.width, info.transform, check_tile_size(tile_size), edge)
    require_tiles(grid, info.uri)  # GridError, as the run would raise
    coverage = grid.coverage()
    if coverage["pixels_uncovered"]:
        warnings.append(
            f"edge {edge} leaves {coverage['pixels_uncovered']:,} of "
            f"{coverage['pixels_total']:,} pixels ({100 * coverage['fraction_uncovered']:.1f}%) "
            f"uninferred: the last {coverage['rows_uncovered']} rows and "
            f"{coverage['cols_uncovered']} cols; --edge pad infers them"
        )
    when = info.acquisition_time
    if acquisition_time:
        when = parse_datetime(acquisition_time)
        warnings = [w for w in warnings if not w.startswith("no acquisition time")]
    return ValidationReport(
        uri=info.uri,
        crs=info.crs.to_string() if info.crs else "",
        width=info.width,
        height=info.height,
        bands=info.count,
        dtype=info.dtype,
        nodata=info.nodata,
        block_shape=info.block_shape,
        acquisition_time=when,
        tile_size=grid.tile_size,
        edge=grid.edge,
        tiles=grid.shape,
        pixels_uncovered=int(coverage["pixels_uncovered"]),
        warnings=tuple(warnings),
    )


def validate_many(
    scenes: Sequence[xr.DataArray | str | os.PathLike[str]],
    *,
    allow_mixed_crs: bool = False,
    tile_size: int = 256,
    edge: EdgePolicy = "skip",
) -> list[ValidationReport]:
    """Validate each scene (for the tile grid `tile_size`, `edge`), then require one CRS."""
    reports = [validate(s, tile_size=tile_size, edge=edge) for s in scenes]
    check_same_crs(reports, allow_mixed_crs=allow_mixed_crs)
    return reports


def check_same_crs(reports: Sequence[ValidationReport], *, allow_mixed_crs: bool = False) -> None:
    crs_of: dict[str, list[str]] = {}
    for r in reports:
        crs_of.setdefault(r.crs, []).append(r.uri)
    if len(crs_of) > 1 and not allow_mixed_crs:
        detail = "; ".join(f"{crs}: {', '.join(uris)}" for crs, uris in crs_of.items())
        raise ValidationError(
            f"scenes have different CRS ({detail}); pass allow_mixed_crs=True "
            "(--allow-mixed-crs) to use them together"
        )
