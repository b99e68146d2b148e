"""A TIFF's first image as its header says: size, bands, and the strips or tiles it is cut in.

Read before GDAL sees the file, from the descriptor the service opened, so a file that
claims a size or a block the service will not decode is refused without GDAL parsing it.
The header, not GDAL, says what a read decodes: GDAL presents a single compressed strip
as 1-row blocks (rasterio's `block_shapes` then say `(1, width)`), yet reading its last
row inflates the whole strip.

Pure: `read_layout` takes a `read(offset, size) -> bytes` callable. Classic TIFF and
BigTIFF, either byte order; only the tags that size the image are read.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass

SIGNATURES = {b"II*\x00": ("<", False), b"MM\x00*": (">", False)}
BIG_SIGNATURES = {b"II+\x00": ("<", True), b"MM\x00+": (">", True)}
MAX_ENTRIES = 4096  # entries in one directory: real files hold a few dozen

_WIDTH, _HEIGHT, _BITS, _SAMPLES, _ROWS_PER_STRIP, _PLANAR = 256, 257, 258, 277, 278, 284
_TILE_WIDTH, _TILE_HEIGHT = 322, 323
_WANTED = {_WIDTH, _HEIGHT, _BITS, _SAMPLES, _ROWS_PER_STRIP, _PLANAR, _TILE_WIDTH, _TILE_HEIGHT}
# TIFF field types holding unsigned integers: BYTE, SHORT, LONG, LONG8 (BigTIFF), by size
_INTEGER_TYPES = {1: "B", 3: "H", 4: "I", 16: "Q"}

Read = Callable[[int, int], bytes]


class NotTiffError(Exception):
    """No TIFF signature: the file is something else (a VRT named .tif, text, ...)."""


class TiffHeaderError(Exception):
    """A TIFF signature, but a header that does not describe an image."""


@dataclass(frozen=True)
class Layout:
    """The first image of a TIFF: what GDAL reads at full resolution."""

    width: int
    height: int
    bands: int  # samples per pixel
    bits: int  # bits per sample (the largest, if they differ)
    planar: bool  # one plane per band (PlanarConfiguration 2), else interleaved
    tiled: bool
    block_height: int  # rows per strip, or tile height
    block_width: int  # the width, or tile width

    @property
    def kind(self) -> str:
        return "tile" if self.tiled else "strip"

    @property
    def block_bytes(self) -> int:
        """Bytes of one strip or tile once decompressed."""
        samples = 1 if self.planar else self.bands
        return math.ceil(self.block_height * self.block_width * samples * self.bits / 8)

    def blocks_text(self, count: int) -> str:
        """`1 strip of 64 rows x 20000 cols`, `4 tiles of 512 x 512 px`."""
        kind = f"{count} {self.kind}{'s' * (count != 1)}"
        if self.tiled:
            return f"{kind} of {self.block_height} x {self.block_width} px"
        rows = self.block_height
        return f"{kind} of {rows} row{'s' * (rows != 1)} x {self.block_width} cols"

    def blocks_read(self, height: int, width: int, *, step: int | None = None) -> int:
        """The most strips or tiles a read of a `height` x `width` window decodes, for
        windows at multiples of `step` px (a tile grid), or at the origin (None)."""
        planes = self.bands if self.planar else 1
        rows = _across(height, self.block_height, self.height, step)
        cols = _across(width, self.block_width, self.width, step)
        return rows * cols * planes


def _across(length: int, block: int, total: int, step: int | None) -> int:
    """Blocks of `block` px that a window of `length` px covers, at worst, along one axis.

    Windows start at multiples of `step`, so their offset into a block is a multiple of
    gcd(step, block); the worst is the last such offset. Never more than the axis holds.
    """
    slack = 0 if step is None else block - math.gcd(step, block)
    return min((slack + length - 1) // block + 1, -(-total // block))


def read_layout(read: Read) -> Layout:
    """The first image's layout; NotTiffError or TiffHeaderError (with the reason)."""
    head = read(0, 16)
    if head[:4] in SIGNATURES:
        order, big = SIGNATURES[head[:4]]
        (offset,) = struct.unpack_from(order + "I", head, 4)
    elif head[:4] in BIG_SIGNATURES and len(head) >= 16:
        order, big = BIG_SIGNATURES[head[:4]]
        (offset,) = struct.unpack_from(order + "Q", head, 8)
    else:
        raise NotTiffError
    tags = _directory(read, offset, order, big)
    width, height = _first(tags, _WIDTH), _first(tags, _HEIGHT)
    if not width or not height:
        raise TiffHeaderError("no image width or height")
    bands = _first(tags, _SAMPLES, 1)
    bits = max(tags.get(_BITS) or [1])
    tiled = _TILE_WIDTH in tags or _TILE_HEIGHT in tags
    if tiled:
        block_height, block_width = _first(tags, _TILE_HEIGHT), _first(tags, _TILE_WIDTH)
        if not block_height or not block_width:
            raise TiffHeaderError("a tile of no width or height")
    else:
        rows = _first(tags, _ROWS_PER_STRIP, height)
        block_height, block_width = min(rows, height) if rows else height, width
    return Layout(
        width=width,
        height=height,
        bands=max(bands, 1),
        bits=max(bits, 1),
        planar=_first(tags, _PLANAR, 1) == 2,
        tiled=tiled,
        block_height=block_height,
        block_width=block_width,
    )


def _first(tags: dict[int, list[int]], tag: int, default: int = 0) -> int:
    values = tags.get(tag)
    return values[0] if values else default


def _directory(read: Read, offset: int, order: str, big: bool) -> dict[int, list[int]]:
    """The wanted tags of the directory at `offset`, as lists of integers."""
    count_format, entry_format, entry_size = ("Q", "HHQ", 20) if big else ("H", "HHI", 12)
    count_size = struct.calcsize(count_format)
    raw = read(offset, count_size)
    if offset < 8 or len(raw) < count_size:
        raise TiffHeaderError(f"no image directory at byte {offset}")
    (count,) = struct.unpack(order + count_format, raw)
    if not 0 < count <= MAX_ENTRIES:
        raise TiffHeaderError(f"an image directory of {count} entries")
    entries = read(offset + count_size, count * entry_size)
    if len(entries) < count * entry_size:
        raise TiffHeaderError("the image directory is cut short")
    inline = entry_size - struct.calcsize("=" + entry_format)
    tags: dict[int, list[int]] = {}
    for i in range(count):
        start = i * entry_size
        tag, kind, n = struct.unpack_from(order + entry_format, entries, start)
        if tag not in _WANTED or kind not in _INTEGER_TYPES or not n:
            continue
        item = _INTEGER_TYPES[kind]
        size = n * struct.calcsize(item)
        if size > 2 * 65536 * 8:
            raise TiffHeaderError(f"tag {tag} holds {n} values")
        field = entries[start + entry_size - inline : start + entry_size]
        if size <= inline:
            data = field[:size]
        else:
            (where,) = struct.unpack(order + ("Q" if big else "I"), field)
            data = read(where, size)
            if len(data) < size:
                raise TiffHeaderError(f"tag {tag} points past the end of the file")
        tags[tag] = list(struct.unpack(order + item * n, data))
    return tags
