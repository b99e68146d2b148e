"""Exports of a run store in shapes other tools already read."""

from __future__ import annotations

import colorsys
import math
import os
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from satdask._files import replace_file, write_new
from satdask.core.grid import size_text
from satdask.core.pixels import flag_name
from satdask.errors import RunError
from satdask.pipeline.runs import open_run


def reference_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The reference pipeline's batch output: `metadata` plus one entry per tile."""
    run = open_run(path)
    a = run.record
    ds = run.dataset()
    pred = ds["prediction"].values
    mean = ds["mean_intensity"].values
    status = ds["status"].values
    rows, cols = np.indices(pred.shape)
    status_names = ds["status"].attrs["flag_meanings"].split()
    predictions = [
        {
            "tile_id": f"r{r}_c{c}",
            "row": int(r),
            "col": int(c),
            "run_id": a["run_id"],
            "model_id": a["model"]["id"],
            "prediction": int(p) if p >= 0 else None,
            "mean_intensity": float(m) if math.isfinite(m) else None,
            "status": status_names[s],
        }
        for r, c, p, m, s in zip(
            rows.ravel(), cols.ravel(), pred.ravel(), mean.ravel(), status.ravel(), strict=True
        )
    ]
    metadata = {
        "run_id": a["run_id"],
        "model_path": a["model"]["uri"],
        "model_id": a["model"]["id"],
        "tiles_inferred": a["counts"]["tiles_inferred"],
        "tiles_failed": a["counts"]["tiles_failed"],
        "monitoring": a["monitoring"],
        "health_report": a["health"],
    }
    return {"metadata": metadata, "predictions": predictions}


def write_export(path: Path, text: str, *, overwrite: bool = False) -> None:
    """Exports never replace a file unless asked: nothing written before is lost by default."""
    _check_out(path, overwrite=overwrite)
    if overwrite:
        replace_file(path, text.encode())
        return
    try:
        write_new(path, text.encode())
    except FileExistsError:
        raise RunError(f"{path}: already exists; pass --overwrite to replace it") from None


def _check_out(path: Path, *, overwrite: bool) -> None:
    if not path.parent.is_dir():
        raise RunError(f"{path}: output directory {path.parent} does not exist")
    if path.is_dir():
        raise RunError(f"{path}: is a directory; --out names the file to write")
    if path.exists() and not overwrite:
        raise RunError(f"{path}: already exists; pass --overwrite to replace it")


# --------------------------------------------------------------------------- COG

COG_BLOCK = 256  # px a side of the COG's tiles, and of its smallest overview
_WINDOW = 2048  # px a side of the pieces copied from the store: the export's memory bound


@dataclass(frozen=True)
class CogClass:
    value: int
    name: str
    rgba: tuple[int, int, int, int]
    given: bool  # the model gave this colour; False: a default chosen to stand apart


@dataclass(frozen=True)
class CogExport:
    """What `write_cog` wrote: the file, its class table and its overview factors."""

    path: Path
    sidecar: Path  # GDAL's PAM file holding the category names
    size: str
    dtype: str
    nodata: int
    classes: tuple[CogClass, ...]
    overviews: tuple[int, ...]


def write_cog(
    path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    blocksize: int = COG_BLOCK,
) -> CogExport:
    """A pixel model's classes (the store's `pixels/prediction`) as a Cloud Optimized GeoTIFF.

    The classes are copied from the store in pieces of at most 2048 x 2048 px into a
    tiled GeoTIFF beside `out`, then GDAL's COG driver writes `out` from it, making
    its overviews with MODE resampling (the most frequent class, nodata left out).
    GDAL reads and writes block by block through its block cache (GDAL_CACHEMAX), so
    memory does not grow with the scene: about 150 MiB over the interpreter's for 8192
    and for 16384 px scenes alike.
    The file carries the scene's CRS and transform, nodata = the store's fill value,
    a colour table (the model's colours; a class without one gets a distinct
    default; nodata is transparent) and the class names as band metadata
    (flag_values, flag_meanings: CF's words, in the TIFF's GDAL_METADATA). GDAL keeps
    category names only in a PAM sidecar, so `out.aux.xml` holds them too.
    """
    import rasterio
    import rasterio.shutil
    import zarr
    from affine import Affine

    from satdask.io._gdal import configure_gdal
    from satdask.io.store import PIXELS

    run = open_run(path)
    out = Path(out)
    sidecar = out.with_name(out.name + ".aux.xml")
    _check_out(out, overwrite=overwrite)
    if sidecar.exists() and not overwrite:
        raise RunError(f"{sidecar}: already exists; pass --overwrite to replace it")
    if blocksize <= 0 or blocksize % 16:
        raise RunError(f"blocksize {blocksize} must be a positive multiple of 16 (GDAL's COG)")
    group = zarr.open_group(os.fspath(run.path), mode="r")
    if PIXELS not in group:
        raise RunError(
            f"{path} has no {PIXELS} group: its model predicts tiles; "
            "export --format json gives the tile grid",
            uri=str(path),
        )
    pixels, array = group[PIXELS], group[f"{PIXELS}/prediction"]
    if not (isinstance(pixels, zarr.Group) and isinstance(array, zarr.Array)):
        raise RunError(f"{path}: {PIXELS}/prediction is not an array in a group", uri=str(path))
    attrs: dict[str, Any] = dict(array.attrs)
    nodata = int(array.fill_value)
    named = run.monitoring["predictions"].get("classes") or {}
    classes = cog_classes(
        attrs.get("flag_values", []),
        attrs.get("flag_meanings", ""),
        attrs.get("flag_colors"),
        names={flag_name(name): name for name in named},
    )
    ref: dict[str, Any] = dict(pixels["spatial_ref"].attrs)
    transform = Affine.from_gdal(*(float(v) for v in str(ref["GeoTransform"]).split()))
    height, width = array.shape
    record = run.record
    configure_gdal()
    fd, staged = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tif")
    os.close(fd)
    cog = f"{staged[: -len('.tif')]}.cog.tif"
    try:
        profile = {
            "driver": "GTiff",
            "width": width,
            "height": height,
            "count": 1,
            "dtype": array.dtype.name,
            "crs": ref["crs_wkt"],
            "transform": transform,
            "nodata": nodata,
            "tiled": True,
            "blockxsize": blocksize,
            "blockysize": blocksize,
            "compress": "deflate",
            "bigtiff": "if_safer",
        }
        with rasterio.open(staged, "w", **profile) as dst:
            for rows, cols in _pieces(height, width, _step(array.chunks, blocksize)):
                window = ((rows.start, rows.stop), (cols.start, cols.stop))
                dst.write(np.asarray(array[rows, cols]), 1, window=window)
            dst.write_colormap(1, {c.value: c.rgba for c in classes} | {nodata: (0, 0, 0, 0)})
            dst.set_band_description(1, "predicted class")
            dst.update_tags(
                1,
                flag_values=" ".join(str(c.value) for c in classes),
                flag_meanings=" ".join(flag_name(c.name) for c in classes),
                flag_colors=" ".join(_hex(c.rgba) for c in classes),
            )
            dst.update_tags(
                satdask_run_id=record["run_id"],
                satdask_model_id=str(record["model"]["id"]),
                satdask_model_sha256=record["model"]["sha256"],
                satdask_scene=record["scene"]["uri"],
            )
        rasterio.shutil.copy(
            staged,
            cog,
            driver="COG",
            BLOCKSIZE=blocksize,
            COMPRESS="DEFLATE",
            OVERVIEW_RESAMPLING="MODE",
            BIGTIFF="IF_SAFER",
        )
        with rasterio.open(cog) as src:
            overviews = tuple(src.overviews(1))
        aux = f"{cog}.aux.xml"
        Path(aux).write_bytes(_category_names(classes))
        _move(cog, out, overwrite=overwrite)
        os.replace(aux, sidecar)
    finally:
        for name in (staged, cog, f"{staged}.aux.xml", f"{cog}.aux.xml"):
            if os.path.exists(name):
                os.unlink(name)
    return CogExport(
        out, sidecar, size_text(height, width), array.dtype.name, nodata, classes, overviews
    )


def cog_classes(
    values: Sequence[Any],
    meanings: str,
    colors: Sequence[Any] | None,
    *,
    names: Mapping[str, str] | None = None,
) -> tuple[CogClass, ...]:
    """The classes of a pixels group's CF flags, each with an opaque RGBA colour.

    `names` gives back the names that flag_meanings spell with '_' for a space (the
    run's monitoring holds them). A class without a colour gets one of evenly spread
    hues, skipping any close to a colour already in the table, so no two look alike.
    """
    words = str(meanings).split()
    given = list(colors) if colors is not None else [None] * len(values)
    if not (len(values) == len(words) == len(given)) or not values:
        raise RunError(
            "pixels/prediction: flag_values, flag_meanings and flag_colors "
            "do not describe the same classes"
        )
    rgba = {int(v): _rgba(c) for v, c in zip(values, given, strict=True) if c}
    defaults = _distinct(list(rgba.values()))
    real = names or {}
    return tuple(
        CogClass(int(v), real.get(word, word), rgba.get(int(v)) or next(defaults), int(v) in rgba)
        for v, word in zip(values, words, strict=True)
    )


def _rgba(color: str) -> tuple[int, int, int, int]:
    text = color.lstrip("#")
    if len(text) != 6:
        raise RunError(f"pixels/prediction: flag_colors has {color!r}, not #rrggbb")
    try:
        r, g, b = (int(text[i : i + 2], 16) for i in (0, 2, 4))
    except ValueError:
        raise RunError(f"pixels/prediction: flag_colors has {color!r}, not #rrggbb") from None
    return r, g, b, 255


def _hex(rgba: tuple[int, int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgba[:3])


def _distinct(used: list[tuple[int, int, int, int]]) -> Iterator[tuple[int, int, int, int]]:
    """Colours by the golden angle around the hue circle, none within 48 (RGB distance)
    of one already used; after a full search, the nearest-free candidate anyway."""
    taken = [np.asarray(c[:3], dtype=float) for c in used]
    k = 0
    while True:
        best: tuple[int, int, int] | None = None
        for _ in range(64):
            hue = (k * 0.618033988749895) % 1.0
            value = 0.9 if k % 2 == 0 else 0.7
            k += 1
            rgb = tuple(round(255 * x) for x in colorsys.hsv_to_rgb(hue, 0.7, value))
            if all(np.linalg.norm(np.asarray(rgb, dtype=float) - t) >= 48 for t in taken):
                best = (rgb[0], rgb[1], rgb[2])
                break
            best = best or (rgb[0], rgb[1], rgb[2])
        assert best is not None
        taken.append(np.asarray(best, dtype=float))
        yield (*best, 255)


def _category_names(classes: Sequence[CogClass]) -> bytes:
    """GDAL's PAM XML naming each pixel value up to the largest class (gaps left blank)."""
    names = {c.value: c.name for c in classes}
    root = ET.Element("PAMDataset")
    band = ET.SubElement(root, "PAMRasterBand", band="1")
    table = ET.SubElement(band, "CategoryNames")
    for value in range(max(names) + 1):
        ET.SubElement(table, "Category").text = names.get(value, "")
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8") + b"\n"


def _step(chunks: Sequence[int], blocksize: int) -> int:
    """Pieces of whole store chunks (reads) and whole GeoTIFF blocks (writes)."""
    unit = math.lcm(int(chunks[0]), int(chunks[1]), blocksize)
    if unit > _WINDOW:  # chunks unlike the blocks: whole blocks, each written once
        unit = blocksize
    return unit * max(1, _WINDOW // unit)


def _pieces(height: int, width: int, step: int) -> Iterator[tuple[slice, slice]]:
    for y in range(0, height, step):
        for x in range(0, width, step):
            yield slice(y, min(y + step, height)), slice(x, min(x + step, width))


def _move(staged: str, out: Path, *, overwrite: bool) -> None:
    """Into place with one rename; without `overwrite` a link, which refuses a name taken
    meanwhile."""
    if overwrite:
        os.replace(staged, out)
        return
    try:
        os.link(staged, out)
    except FileExistsError:
        raise RunError(f"{out}: already exists; pass --overwrite to replace it") from None
    os.unlink(staged)
