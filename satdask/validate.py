"""Checks a scene must pass before satdask trusts it.

Fatal problems raise `ValidationError` naming the file; soft ones (no nodata, no
acquisition time) become warnings in the report, because a run can still go on.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import rasterio

from satdask.errors import ValidationError
from satdask.raster import SceneInfo, configure_gdal, is_remote, parse_datetime, probe

if TYPE_CHECKING:
    import xarray as xr

SUPPORTED_DTYPES = ("uint8", "uint16", "int16", "uint32", "int32", "float32", "float64")


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
    warnings: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def _repr_html_(self) -> str:
        from satdask.reprs import report_html

        return report_html(self)


def check_scene(info: SceneInfo) -> list[str]:
    """Raise on fatal problems; return the warnings."""

    def fail(problem: str) -> ValidationError:
        return ValidationError(f"{info.uri}: {problem}")

    if info.width <= 0 or info.height <= 0:
        raise fail(f"raster size {info.width} x {info.height} is empty")
    if info.count < 1:
        raise fail("raster has no band")
    if info.crs is None:
        raise fail("no CRS; assign one (e.g. gdal_edit.py -a_srs EPSG:XXXX) before use")
    if len(set(info.dtypes)) > 1:
        raise fail(f"bands have mixed dtypes {', '.join(info.dtypes)}")
    if info.dtype not in SUPPORTED_DTYPES:
        raise fail(f"dtype {info.dtype} is not supported; use one of {', '.join(SUPPORTED_DTYPES)}")
    if info.transform.b != 0 or info.transform.d != 0:
        raise fail("rotated or sheared transform is not supported; warp it north-up first")
    warnings = []
    if info.nodata is None:
        warnings.append("no nodata value: every pixel counts as valid")
    elif not _nodata_fits(info.nodata, info.dtype):
        warnings.append(f"nodata {info.nodata} cannot occur in {info.dtype}: it is ignored")
    if info.acquisition_time is None:
        warnings.append("no acquisition time (TIFFTAG_DATETIME or ACQUISITIONDATETIME)")
    return warnings


def check_complete(info: SceneInfo) -> None:
    """Refuse a local GeoTIFF whose pixel blocks extend past the end of the file.

    A truncated GeoTIFF (an interrupted copy or download) opens fine and fails only
    when its missing blocks are read, so the header alone cannot tell. The block
    offsets and sizes in the TIFF directory can, at about 2 us per block.
    """
    if is_remote(info.uri):
        return
    size = os.path.getsize(info.uri)
    end = _data_end(info)
    if end > size:
        raise ValidationError(
            f"{info.uri}: file is truncated: its pixel data ends at byte {end} but the file "
            f"has {size} bytes (an interrupted copy or download?)"
        )


def _data_end(info: SceneInfo) -> int:
    """Largest offset + size over the full-resolution blocks of a GeoTIFF (0 otherwise)."""
    configure_gdal()
    with rasterio.open(info.uri) as src:
        if src.driver != "GTiff":
            return 0
        interleave = src.tags(ns="IMAGE_STRUCTURE").get("INTERLEAVE", "PIXEL")
        band_ids = range(1, src.count + 1) if interleave == "BAND" else (1,)
        block_h, block_w = info.block_shape
        rows, cols = -(-info.height // block_h), -(-info.width // block_w)
        end = 0
        for bidx in band_ids:
            for y in range(rows):
                for x in range(cols):
                    offset = src.get_tag_item(f"BLOCK_OFFSET_{x}_{y}", "TIFF", bidx=bidx)
                    if offset:  # missing or 0: a sparse block, read as nodata
                        nbytes = src.get_tag_item(f"BLOCK_SIZE_{x}_{y}", "TIFF", bidx=bidx)
                        end = max(end, int(offset) + int(nbytes or 0))
        return end


def _nodata_fits(nodata: float, dtype: str) -> bool:
    kind = np.dtype(dtype).kind
    if kind == "f":
        return True
    info = np.iinfo(dtype)
    return float(nodata).is_integer() and info.min <= nodata <= info.max


def validate(
    scene: xr.DataArray | str | os.PathLike[str], *, acquisition_time: str | None = None
) -> ValidationReport:
    """Validate one scene, given as a path/URL or a DataArray from `open_scene`."""
    from satdask.stac import probe_stack

    stack = probe_stack(scene)  # a STAC item: its assets, probed and on one grid
    if stack is None:
        uri = scene if isinstance(scene, str | os.PathLike) else scene.attrs.get("source", "")
        info = probe(uri)
        files = (info,)
    else:
        info, files = stack.info, stack.files
    warnings = check_scene(info)
    for file in files:
        check_complete(file)
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
        warnings=tuple(warnings),
    )


def validate_many(
    scenes: Sequence[xr.DataArray | str | os.PathLike[str]], *, allow_mixed_crs: bool = False
) -> list[ValidationReport]:
    """Validate each scene, then require one CRS across them all."""
    reports = [validate(s) for s in scenes]
    check_same_crs(reports, allow_mixed_crs=allow_mixed_crs)
    return reports


def check_same_crs(reports: Sequence[ValidationReport], *, allow_mixed_crs: bool = False) -> None:
    crs_of: dict[str, list[str]] = {}
    for r in reports:
        crs_of.setdefault(r.crs, []).append(r.uri)
    if len(crs_of) > 1 and not allow_mixed_crs:
        detail = "; ".join(f"{crs}: {', '.join(uris)}" for crs, uris in crs_of.items())
        raise ValidationError(f"scenes have different CRS ({detail})")
