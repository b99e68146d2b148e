"""A prediction map as a PNG without matplotlib, so the demo needs only the core:
tiles coloured by class, a title, a legend and map axes (coordinates in the scene's CRS
along the edges) in a small bitmap font drawn for it."""

from __future__ import annotations

import math
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
    extent: tuple[float, float, float, float] | None = None,
    crs: str | None = None,
) -> np.ndarray:
    """A (3, H, W) uint8 picture: `title` lines above the (3, h, w) `tiles` image,
    framed, and beside it a swatch and a label per `legend` entry.

    With `extent` (left, bottom, right, top of the image, in `crs` units), the frame gets
    map axes: ticks at round coordinates along the bottom and left edges, labelled, and
    the CRS named under the x labels.
    """
    m, big, small = _MARGIN, 3, 2
    line = _GLYPH_H * small + small * 4
    title_h = (_GLYPH_H * big + big * 4) + line * (len(title) - 1)
    swatch = _GLYPH_H * small
    labels = [legend_title, *(label for _, label in legend)]
    legend_w = swatch + small * 6 + max(text_width(t, small) for t in labels)
    _, h, w = tiles.shape
    axes = _Axes.of(extent, w=w, h=h) if extent is not None else None
    left_w = axes.label_w + _TICK + small * 2 if axes else 0  # y labels left of the frame
    below = (_TICK + small * 2 + line * (2 if crs else 1)) if axes else 0
    text_w = [text_width(title[0], big), *(text_width(t, small) for t in title[1:])]
    width = m + max(left_w + w + 2 + m + legend_w, *text_w) + m
    height = m + title_h + m + max(h + 2 + below, line * (len(legend) + 1)) + m
    canvas = np.full((3, height, width), 255, dtype=np.uint8)
    y = m
    draw_text(canvas, title[0], x=m, y=y, scale=big)
    y += _GLYPH_H * big + big * 4
    for text in title[1:]:
        draw_text(canvas, text, x=m, y=y, scale=small)
        y += line
    top = m + title_h + m
    x0 = m + left_w
    canvas[:, top : top + h + 2, x0 : x0 + w + 2] = np.array(_INK, dtype=np.uint8)[:, None, None]
    canvas[:, top + 1 : top + 1 + h, x0 + 1 : x0 + 1 + w] = tiles
    if axes is not None:
        axes.draw(canvas, left=x0 + 1, top=top + 1, crs=crs)
    x = x0 + w + 2 + m
    draw_text(canvas, legend_title, x=x, y=top, scale=small)
    for i, (colour, label) in enumerate(legend, start=1):
        y = top + i * line
        canvas[:, y : y + swatch, x : x + swatch] = np.array(_INK, dtype=np.uint8)[:, None, None]
        inner = np.array(colour, dtype=np.uint8)[:, None, None]
        canvas[:, y + 1 : y + swatch - 1, x + 1 : x + swatch - 1] = inner
        draw_text(canvas, label, x=x + swatch + small * 6, y=y, scale=small)
    return canvas


_TICK = 6  # px of a tick mark, outside the frame
_LABEL = 2  # the axes' text scale


def nice_ticks(low: float, high: float, *, most: int = 5) -> list[float]:
    """Round values in [low, high], at most `most`, a step of 1, 2 or 5 times a power of 10."""
    span = high - low
    if not (math.isfinite(span) and span > 0):
        return []
    for power in range(math.floor(math.log10(span / most)), math.ceil(math.log10(span)) + 1):
        for factor in (1, 2, 5):
            step = factor * 10.0**power
            first, last = math.ceil(low / step - 1e-9), math.floor(high / step + 1e-9)
            if last - first + 1 <= most:
                return [k * step for k in range(first, last + 1)]
    return [low, high]


def tick_label(value: float, step: float) -> str:
    """A tick's value with as many decimals as its step needs, no '-0'."""
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) if step > 0 else 0
    text = f"{value:.{decimals}f}"
    return "0" if text.strip("-0.") == "" else text


class _Axes:
    """Ticks of a `w` x `h` px image: pixel offsets along each edge and their labels."""

    def __init__(self, xs: list[tuple[int, str]], ys: list[tuple[int, str]], *, h: int) -> None:
        self.xs, self.ys, self.h = xs, ys, h
        self.label_w = max((text_width(t, _LABEL) for _, t in ys), default=0)

    @classmethod
    def of(cls, extent: tuple[float, float, float, float], *, w: int, h: int) -> _Axes:
        """`extent` is (left, bottom, right, top) of the image's outer pixel edges."""
        left, bottom, right, top = extent

        def ticks(low: float, high: float, size: int, *, down: bool) -> list[tuple[int, str]]:
            values = nice_ticks(low, high)
            step = values[1] - values[0] if len(values) > 1 else high - low
            out = []
            for v in values:
                frac = (v - low) / (high - low)
                out.append(
                    (min(round((1 - frac if down else frac) * size), size - 1), tick_label(v, step))
                )
            return out

        return cls(ticks(left, right, w, down=False), ticks(bottom, top, h, down=True), h=h)

    def draw(self, canvas: np.ndarray, *, left: int, top: int, crs: str | None) -> None:
        """Ticks and labels outside the frame of the image whose first pixel is at
        (left, top): x along the bottom, y along the left, the CRS under the x labels."""
        ink = np.array(_INK, dtype=np.uint8)[:, None, None]
        _, height, width = canvas.shape
        glyph_h = _GLYPH_H * _LABEL
        below = top + self.h + 1  # the first row under the frame
        for px, text in self.xs:
            x = left + px
            canvas[:, below : below + _TICK, x : x + 1] = ink
            tw = text_width(text, _LABEL)
            draw_text(
                canvas,
                text,
                x=min(max(x - tw // 2, 0), width - tw),
                y=below + _TICK + _LABEL,
                scale=_LABEL,
            )
        for py, text in self.ys:
            y = top + py
            canvas[:, y : y + 1, left - 1 - _TICK : left - 1] = ink
            tx = left - 1 - _TICK - _LABEL - text_width(text, _LABEL)
            ty = min(max(y - glyph_h // 3, 0), height - glyph_h)
            draw_text(canvas, text, x=tx, y=ty, scale=_LABEL)
        if crs:
            y = below + _TICK + _LABEL + glyph_h + _LABEL * 4
            draw_text(canvas, f"x, y in {crs}", x=left, y=y, scale=_LABEL)


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
