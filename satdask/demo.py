"""`satdask demo`: every step on a generated scene, on a LocalCluster.

Its picture, predictions.png, is drawn with numpy and written by rasterio, text
included (a small bitmap font below), so the demo keeps needing only the core
install: matplotlib lives in the notebooks extra.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning

from satdask.core.features import STATUS_FAILED, STATUS_NODATA, STATUS_OK
from satdask.core.grid import size_text
from satdask.io.registry import ModelRegistry
from satdask.io.sample import write_sample
from satdask.pipeline._cluster import compute_client
from satdask.pipeline.batch import run_batch
from satdask.pipeline.runs import RunResult
from satdask.pipeline.training import train
from satdask.render import COLOURS, prediction_rgb
from satdask.views.checks import validate


def run_demo(workdir: Path, *, size: int = 4096, echo: Callable[[str], None] = print) -> RunResult:
    """Sample -> validate -> train -> infer -> show; the demo's own folder is reused."""
    workdir.mkdir(parents=True, exist_ok=True)
    scene = workdir / f"sample-{size}.tif"
    if not scene.exists():
        echo(f"[1/5] sample   writing {scene} ({size_text(size, size, 4)} uint16 COG)")
        write_sample(scene, size=size, bands=4, dtype="uint16", seed=0)
    else:
        echo(f"[1/5] sample   reusing {scene}")
    report = validate(scene)
    echo(
        f"[2/5] validate {size_text(report.height, report.width, report.bands)} {report.dtype}, "
        f"{report.crs}, acquired {report.acquisition_time}, {len(report.warnings)} warnings"
    )
    out = workdir / "run.zarr"
    with compute_client("local") as client:
        model = train([scene], scheduler=client)
        artifact = ModelRegistry(workdir / "models").save(model)
        echo(f"[3/5] train    model {artifact.id} threshold={model.threshold:.6g}")
        result = run_batch(scene, artifact, out, client=client, overwrite=True)
    c, seconds = result.counts, result.attrs["timings"]["total_s"]
    echo(
        f"[4/5] infer    {c['tiles_inferred']} tiles inferred, {c['tiles_skipped']} nodata, "
        f"{c['tiles_failed']} failed on a LocalCluster in {seconds:.2f} s"
    )
    png = write_picture(result, workdir / "predictions.png", scene=scene.name)
    p = result.monitoring["predictions"]
    echo(
        f"[5/5] show     {p['bright']} bright / {p['dark']} dark tiles, health "
        f"{result.health['status']}; map: {png}; inspect: satdask runs show {out}"
    )
    return result


def write_picture(run: RunResult, path: Path, *, scene: str) -> Path:
    """predictions.png: the tile map under a title (scene, model, dates) and beside a
    legend (each class's colour, name and tile count)."""
    ds = run.dataset()
    prediction, status = ds["prediction"].values, ds["status"].values
    record = run.record
    ok = status == STATUS_OK
    counts = {
        "bright": int(np.count_nonzero(ok & (prediction == 1))),
        "dark": int(np.count_nonzero(ok & (prediction == 0))),
        "nodata": int(np.count_nonzero(status == STATUS_NODATA)),
        "failed": int(np.count_nonzero(status == STATUS_FAILED)),
    }
    acquired = (record["scene"].get("acquisition_time") or "unknown")[:16].replace("T", " ")
    model = record["model"]
    title = [
        scene,
        f"model {str(model.get('id') or 'unregistered')[:8]}, sha256 {model['sha256'][:12]}",
        f"acquired {acquired}, run {record['created_at'][:16].replace('T', ' ')} utc",
    ]
    legend = [(COLOURS[name], f"{name:<6} {n}") for name, n in counts.items()]
    tiles = prediction_rgb(prediction, status, scale=max(1, 512 // max(prediction.shape)))
    image = compose(tiles, title=title, legend=legend, legend_title=f"{sum(counts.values())} tiles")
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
