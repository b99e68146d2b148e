"""Map tiles as pictures: RGBA arrays from bands, classes or a continuous layer, and PNG bytes.

The PNG is written here with zlib (an 8-bit RGBA image is a zlib stream of rows behind
a filter byte, between three chunks), at compression level 1: a 256 x 256 tile encodes
in about a millisecond, where GDAL's PNG driver through a MemoryFile takes several times
that at its fixed level 6. The ramp of continuous layers is satdask's own: five colours
from dark blue through teal and green to yellow, light rising with the value.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping

import numpy as np

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# (position, (r, g, b)): dark and bluish at 0, bright and yellow at 1, light rising evenly
_RAMP_ANCHORS = (
    (0.0, (38, 20, 84)),
    (0.25, (45, 85, 150)),
    (0.5, (30, 150, 140)),
    (0.75, (110, 200, 80)),
    (1.0, (250, 230, 40)),
)


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def png_rgba(rgba: np.ndarray) -> bytes:
    """A (4, H, W) or (H, W, 4) uint8 RGBA array as PNG bytes."""
    image = np.moveaxis(rgba, 0, -1) if rgba.shape[0] == 4 and rgba.ndim == 3 else rgba
    height, width, _ = image.shape
    rows = np.empty((height, 1 + width * 4), dtype=np.uint8)
    rows[:, 0] = 0  # filter: none
    rows[:, 1:] = np.ascontiguousarray(image, dtype=np.uint8).reshape(height, width * 4)
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return b"".join(
        (
            _SIGNATURE,
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", zlib.compress(rows.tobytes(), 1)),
            _chunk(b"IEND", b""),
        )
    )


EMPTY_TILE = png_rgba(np.zeros((4, 256, 256), dtype=np.uint8))  # outside the data


def rescale(data: np.ndarray, low: float, high: float) -> np.ndarray:
    """Values from [low, high] to 0..255 uint8, clipped (high == low: all 0 below, 255 at)."""
    span = high - low
    if span == 0:
        return np.where(data >= high, 255, 0).astype(np.uint8)
    scaled = (data.astype(np.float32) - np.float32(low)) * np.float32(255.0 / span)
    return np.clip(np.nan_to_num(scaled, nan=0.0) + 0.5, 0, 255).astype(np.uint8)


def bands_rgba(
    data: np.ndarray, valid: np.ndarray, *, ranges: list[tuple[float, float]]
) -> np.ndarray:
    """(band, y, x) values -> (4, y, x) RGBA: three bands are red, green and blue, one is
    grey; each band through its own (low, high); alpha 0 where not `valid`."""
    out = np.empty((4, *data.shape[1:]), dtype=np.uint8)
    scaled = [rescale(band, lo, hi) for band, (lo, hi) in zip(data, ranges, strict=True)]
    for i in range(3):
        out[i] = scaled[i] if len(scaled) == 3 else scaled[0]
    out[3] = np.where(valid, 255, 0)
    out[:3, ~valid] = 0
    return out


def hex_rgba(color: str) -> tuple[int, int, int, int]:
    text = color.lstrip("#")
    return int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16), 255


def class_lut(colours: Mapping[int, tuple[int, int, int, int]], *, offset: int) -> np.ndarray:
    """A (values, 4) table indexed by class value + offset; values without a colour are
    transparent (fill, none)."""
    size = max([v + offset for v in colours] + [0]) + 1
    lut = np.zeros((max(size, 256 + offset), 4), dtype=np.uint8)
    for value, rgba in colours.items():
        lut[value + offset] = rgba
    return lut


def classes_rgba(classes: np.ndarray, lut: np.ndarray, *, offset: int) -> np.ndarray:
    """(y, x) integer classes -> (4, y, x) RGBA through `lut` (outside the table: clear)."""
    index = classes.astype(np.int64) + offset
    inside = (index >= 0) & (index < len(lut))
    rgba = lut[np.where(inside, index, 0)]
    rgba[~inside] = 0
    return np.moveaxis(rgba, -1, 0)


def _ramp() -> np.ndarray:
    positions = np.linspace(0.0, 1.0, 256)
    xs = [p for p, _ in _RAMP_ANCHORS]
    table = np.empty((257, 4), dtype=np.uint8)
    for channel in range(3):
        ys = [c[channel] for _, c in _RAMP_ANCHORS]
        table[:256, channel] = np.round(np.interp(positions, xs, ys)).astype(np.uint8)
    table[:256, 3] = 255
    table[256] = 0  # no value: transparent
    return table


RAMP = _ramp()


def ramp_colour(fraction: float) -> str:
    """The ramp's colour at `fraction` (0..1) as #rrggbb, for legends."""
    r, g, b, _ = RAMP[round(min(1.0, max(0.0, fraction)) * 255)]
    return f"#{int(r):02x}{int(g):02x}{int(b):02x}"


def continuous_rgba(data: np.ndarray, valid: np.ndarray, low: float, high: float) -> np.ndarray:
    """(y, x) values -> (4, y, x) RGBA along the ramp from `low` to `high`; clear where
    not `valid` or not finite."""
    index = rescale(data, low, high).astype(np.int16)
    index[~(valid & np.isfinite(data))] = 256
    return np.moveaxis(RAMP[index], -1, 0)
