"""The TIFF header the service reads before GDAL: what GDAL writes, it reads the same.

`service.tiff.read_layout` sizes every limit on a file, so it must agree with the files
GDAL writes (classic and BigTIFF, both byte orders, strips and tiles, pixel and band
interleaving), and refuse what is no TIFF or no image.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from hostile import tiff_bomb
from svc_support import TRANSFORM

from service.tiff import Layout, NotTiffError, TiffHeaderError, read_layout

CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # name: (creation options, the layout expected besides the size and bands)
    "tiled": (
        {"tiled": True, "blockxsize": 256, "blockysize": 128, "compress": "deflate"},
        {"tiled": True, "block_height": 128, "block_width": 256, "planar": False},
    ),
    "striped": (
        {"blockysize": 7, "compress": "lzw"},
        {"tiled": False, "block_height": 7, "block_width": 300, "planar": False},
    ),
    "bigtiff-big-endian": (
        {"tiled": True, "blockxsize": 64, "blockysize": 64, "BIGTIFF": "YES", "ENDIANNESS": "BIG"},
        {"tiled": True, "block_height": 64, "block_width": 64, "planar": False},
    ),
    "band-interleaved": (
        {"blockysize": 16, "interleave": "band"},
        {"tiled": False, "block_height": 16, "block_width": 300, "planar": True},
    ),
}


def layout_of(path: Path) -> Layout:
    fd = os.open(path, os.O_RDONLY)
    try:
        return read_layout(lambda offset, size: os.pread(fd, size, offset))
    finally:
        os.close(fd)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
def test_the_header_says_what_gdal_wrote(tmp_path: Path, case: str, dtype: str) -> None:
    options, expected = CASES[case]
    data = np.ones((3, 200, 300), dtype=dtype)
    path = tmp_path / "scene.tif"
    with rasterio.open(
        path, "w", driver="GTiff", width=300, height=200, count=3, dtype=dtype,
        crs="EPSG:32633", transform=TRANSFORM, **options,
    ) as dst:  # fmt: skip
        dst.write(data)
    layout = layout_of(path)
    bits = np.dtype(dtype).itemsize * 8
    assert layout == Layout(width=300, height=200, bands=3, bits=bits, **expected)
    samples = 1 if expected["planar"] else 3
    block = expected["block_height"] * expected["block_width"] * samples * bits // 8
    assert layout.block_bytes == block
    with rasterio.open(path) as src:  # where GDAL does not split strips, it agrees
        assert (src.width, src.height, src.count) == (300, 200, 3)
        assert src.block_shapes[0] == (expected["block_height"], expected["block_width"])


def test_a_single_strip_is_one_block_whatever_gdal_presents(tmp_path: Path) -> None:
    path = tiff_bomb(tmp_path / "strip.tif", width=4000, height=3000, value=1)
    with rasterio.open(path) as src:
        assert src.block_shapes[0] == (1, 4000)  # GDAL's 1-row blocks over one strip
    layout = layout_of(path)
    assert (layout.block_height, layout.block_width) == (3000, 4000)
    assert layout.block_bytes == 12_000_000
    assert layout.blocks_text(1) == "1 strip of 3000 rows x 4000 cols"


def test_no_tiff_and_no_image_are_told_apart(tmp_path: Path) -> None:
    text = tmp_path / "text.tif"
    text.write_text("<VRTDataset/>")
    with pytest.raises(NotTiffError):
        layout_of(text)
    cut = tmp_path / "cut.tif"
    whole = tiff_bomb(tmp_path / "whole.tif", width=10, height=10)
    cut.write_bytes(whole.read_bytes()[:-40])  # the directory is at the end
    with pytest.raises(TiffHeaderError, match=r"cut short|past the end"):
        layout_of(cut)
    nowhere = tmp_path / "nowhere.tif"
    nowhere.write_bytes(b"II*\x00" + (10**6).to_bytes(4, "little"))
    with pytest.raises(TiffHeaderError, match="no image directory"):
        layout_of(nowhere)


@pytest.mark.parametrize(
    ("block", "tile", "step", "total", "expected"),
    [
        (256, 256, 256, 4096, 1),  # aligned tiles
        (512, 256, 256, 4096, 1),  # two tiles per block
        (300, 256, 256, 4096, 2),  # offsets drift: some tiles straddle two blocks
        (1, 256, 256, 4096, 256),  # 1-row strips: one per row
        (4096, 256, 256, 4096, 1),  # one strip: all of it for any tile
        (100, 256, 256, 150, 2),  # never more blocks than the axis holds
        (100, 256, None, 256, 3),  # a window at the origin
    ],
)
def test_blocks_a_read_decodes(
    block: int, tile: int, step: int | None, total: int, expected: int
) -> None:
    layout = Layout(
        width=block, height=total, bands=1, bits=8, planar=False, tiled=False,
        block_height=block, block_width=block,
    )  # fmt: skip
    assert layout.blocks_read(tile, 1, step=step) == expected
    planar = Layout(**{**layout.__dict__, "bands": 4, "planar": True})
    assert planar.blocks_read(tile, 1, step=step) == 4 * expected
