"""A prediction map as a PNG without matplotlib, so the demo needs only the core:
tiles coloured by class, a title and a legend in a small bitmap font drawn for it."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning

from satdask.core.features import STATUS_FAILED, STATUS_NODATA

# RGB per class: dark, bright, nodata, failed (colour-blind-safe viridis ends + grey, red)
COLOURS = {
    "dark": (68, 1, 84),
    "bright": (253, 231, 37),
    "nodata": (190, 190, 190),
    "failed": (220, 40, 40),
}


def prediction_rgb(prediction: np.ndarray, status: np.ndarray, *, scale: int = 1) -> np.ndarray:
    """(3, rows*scale, cols*scale) uint8 image of a tile grid's classes."""
    rgb = np.empty((3, *prediction.shape), dtype=np.uint8)
    layers = [
        (prediction == 0, "dark"),
        (prediction == 1, "bright"),
        (status == STATUS_NODATA, "nodata"),
        (status == STATUS_FAILED, "failed"),
    ]
    for mask, name in layers:
        rgb[:, mask] = np.array(COLOURS[name], dtype=np.uint8)[:, None]
    return rgb.repeat(scale, axis=1).repeat(scale, axis=2)


def write_png(image: np.ndarray, path: Path) -> Path:
    """A (3, H, W) uint8 picture as a PNG, through rasterio (no other image library)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # a picture, not a map
        with rasterio.open(
            path,
            "w",
            driver="PNG",
            width=image.shape[2],
            height=image.shape[1],
            count=3,
            dtype="uint8",
        ) as dst:
            dst.write(image)
    return path


# --------------------------------------------------------------------------- drawing

_MARGIN = 16
_INK = (30, 30, 30)


def compose(
    tiles: np.ndarray,
    *,
    title: Sequence[str],
    legend: Sequence[tuple[tuple[int, int, int], str]],
    legend_title: str,
) -> np.ndarray:
    """A (3, H, W) uint8 picture: `title` lines above the (3, h, w) `tiles` image,
    framed, and beside it a swatch and a label per `legend` entry."""
    m, big, small = _MARGIN, 3, 2
    line = _GLYPH_H * small + small * 4
    title_h = (_GLYPH_H * big + big * 4) + line * (len(title) - 1)
    swatch = _GLYPH_H * small
    labels = [legend_title, *(label for _, label in legend)]
    legend_w = swatch + small * 6 + max(text_width(t, small) for t in labels)
    _, h, w = tiles.shape
    text_w = [text_width(title[0], big), *(text_width(t, small) for t in title[1:])]
    width = m + max(w + 2 + m + legend_w, *text_w) + m
    height = m + title_h + m + max(h + 2, line * (len(legend) + 1)) + m
    canvas = np.full((3, height, width), 255, dtype=np.uint8)
    y = m
    draw_text(canvas, title[0], x=m, y=y, scale=big)
    y += _GLYPH_H * big + big * 4
    for text in title[1:]:
        draw_text(canvas, text, x=m, y=y, scale=small)
        y += line
    top = m + title_h + m
    canvas[:, top : top + h + 2, m : m + w + 2] = np.array(_INK, dtype=np.uint8)[:, None, None]
    canvas[:, top + 1 : top + 1 + h, m + 1 : m + 1 + w] = tiles
    x = m + w + 2 + m
    draw_text(canvas, legend_title, x=x, y=top, scale=small)
    for i, (colour, label) in enumerate(legend, start=1):
        y = top + i * line
        canvas[:, y : y + swatch, x : x + swatch] = np.array(_INK, dtype=np.uint8)[:, None, None]
        inner = np.array(colour, dtype=np.uint8)[:, None, None]
        canvas[:, y + 1 : y + swatch - 1, x + 1 : x + swatch - 1] = inner
        draw_text(canvas, label, x=x + swatch + small * 6, y=y, scale=small)
    return canvas


def text_width(text: str, scale: int) -> int:
    return len(text) * (_GLYPH_W + 1) * scale


def draw_text(canvas: np.ndarray, text: str, *, x: int, y: int, scale: int) -> None:
    """Write `text` into a (3, H, W) canvas, its top-left corner at (x, y). Capitals are
    drawn as small letters; a character the font lacks, as '?'."""
    ink = np.array(_INK, dtype=np.uint8)[:, None]
    for i, char in enumerate(text.lower()):
        glyph = _GLYPHS.get(char, _GLYPHS["?"])
        mask = glyph.repeat(scale, axis=0).repeat(scale, axis=1)
        left = x + i * (_GLYPH_W + 1) * scale
        region = canvas[:, y : y + mask.shape[0], left : left + mask.shape[1]]
        region[:, mask[: region.shape[1], : region.shape[2]]] = ink


def _parse_font(text: str) -> dict[str, np.ndarray]:
    """Bands of glyphs side by side: a line naming them, then one line per pixel row."""
    lines = text.strip("\n").splitlines()
    glyphs: dict[str, np.ndarray] = {}
    for start in range(0, len(lines), _GLYPH_H + 1):
        names, rows = lines[start].split(), lines[start + 1 : start + 1 + _GLYPH_H]
        for k, name in enumerate(names):
            cols = slice(k * (_GLYPH_W + 1), k * (_GLYPH_W + 1) + _GLYPH_W)
            glyphs[name] = np.array([[c == "#" for c in row[cols]] for row in rows], dtype=bool)
    glyphs[" "] = np.zeros((_GLYPH_H, _GLYPH_W), dtype=bool)
    return glyphs


# 5 x 9 px: 7 rows above the baseline, 2 for descenders. Drawn for this file.
_GLYPH_W, _GLYPH_H = 5, 9
_GLYPHS = _parse_font(
    """
a     b     c     d     e     f     g     h     i     j     k     l     m     n     o
..... #.... ..... ....# ..... ..##. ..... #.... ..#.. ...#. #.... .##.. ..... ..... .....
..... #.... ..... ....# ..... .#... ..... #.... ..... ..... #.... ..#.. ..... ..... .....
.###. ####. .###. .#### .###. ####. .#### ####. .##.. ..##. #..#. ..#.. ##.#. ####. .###.
....# #...# #.... #...# #...# .#... #...# #...# ..#.. ...#. #.#.. ..#.. #.#.# #...# #...#
.#### #...# #.... #...# ##### .#... #...# #...# ..#.. ...#. ##... ..#.. #.#.# #...# #...#
#...# #...# #.... #...# #.... .#... #...# #...# ..#.. ...#. #.#.. ..#.. #.#.# #...# #...#
.#### ####. .###. .#### .###. .#... .#### #...# .###. ...#. #..#. .###. #.#.# #...# .###.
..... ..... ..... ..... ..... ..... ....# ..... ..... #..#. ..... ..... ..... ..... .....
..... ..... ..... ..... ..... ..... .###. ..... ..... .##.. ..... ..... ..... ..... .....
p     q     r     s     t     u     v     w     x     y     z     0     1     2     3
..... ..... ..... ..... .#... ..... ..... ..... ..... ..... ..... .###. ..#.. .###. #####
..... ..... ..... ..... .#... ..... ..... ..... ..... ..... ..... #...# .##.. #...# ...#.
####. .#### #.##. .#### ####. #...# #...# #...# #...# #...# ##### #..## ..#.. ....# ..#..
#...# #...# ##..# #.... .#... #...# #...# #...# .#.#. #...# ...#. #.#.# ..#.. ...#. ...#.
#...# #...# #.... .###. .#... #...# #...# #.#.# ..#.. #...# ..#.. ##..# ..#.. ..#.. ....#
#...# #...# #.... ....# .#..# #...# .#.#. #.#.# .#.#. #...# .#... #...# ..#.. .#... #...#
####. .#### #.... ####. ..##. .#### ..#.. .#.#. #...# .#### ##### .###. .###. ##### .###.
#.... ....# ..... ..... ..... ..... ..... ..... ..... ....# ..... ..... ..... ..... .....
#.... ....# ..... ..... ..... ..... ..... ..... ..... .###. ..... ..... ..... ..... .....
4     5     6     7     8     9     .     ,     -     :     _     /     (     )     =
...#. ##### ..##. ##### .###. .###. ..... ..... ..... ..... ..... ..... ...#. .#... .....
..##. #.... .#... ....# #...# #...# ..... ..... ..... .##.. ..... ....# ..#.. ..#.. .....
.#.#. ####. #.... ...#. #...# #...# ..... ..... ..... .##.. ..... ...#. .#... ...#. #####
#..#. ....# ####. ..#.. .###. .#### ..... ..... .###. ..... ..... ..#.. .#... ...#. .....
##### ....# #...# .#... #...# ....# ..... ..... ..... ..... ..... .#... .#... ...#. #####
...#. #...# #...# .#... #...# ...#. .##.. .##.. ..... .##.. ..... #.... ..#.. ..#.. .....
...#. .###. .###. .#... .###. .##.. .##.. ..#.. ..... .##.. ..... ..... ...#. .#... .....
..... ..... ..... ..... ..... ..... ..... .#... ..... ..... ##### ..... ..... ..... .....
..... ..... ..... ..... ..... ..... ..... ..... ..... ..... ..... ..... ..... ..... .....
+     %     ?     '     #
..... ##..# .###. ..#.. .#.#.
..#.. ##.#. #...# ..#.. .#.#.
..#.. ...#. ....# ..... #####
##### ..#.. ...#. ..... .#.#.
..#.. .#... ..#.. ..... #####
..#.. .#.## ..... ..... .#.#.
..... #..## ..#.. ..... .#.#.
..... ..... ..... ..... .....
..... ..... ..... ..... .....
"""
)
