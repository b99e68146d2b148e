"""The demo's predictions.png: the tile map, its title and legend, drawn without matplotlib."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

import satdask
from satdask.core.features import STATUS_OK
from satdask.demo import write_picture
from satdask.io.sample import write_sample
from satdask.render import _INK, COLOURS, compose, draw_text, text_width


def _has(image: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    """(H, W) True where a (3, H, W) image is `colour`."""
    return (image == np.array(colour, dtype=np.uint8)[:, None, None]).all(axis=0)


def test_text_is_ink_on_the_canvas_and_capitals_are_small_letters() -> None:
    lower = np.full((3, 40, 200), 255, dtype=np.uint8)
    upper = lower.copy()
    draw_text(lower, "run 2026-12-02", x=4, y=4, scale=2)
    draw_text(upper, "RUN 2026-12-02", x=4, y=4, scale=2)
    ink = _has(lower, _INK)
    assert ink.any() and np.array_equal(lower, upper)
    columns = np.nonzero(ink.any(axis=0))[0]
    assert columns.min() >= 4 and columns.max() < 4 + text_width("run 2026-12-02", 2)


def test_a_character_the_font_lacks_is_drawn_as_a_question_mark() -> None:
    unknown, question = (np.full((3, 30, 30), 255, dtype=np.uint8) for _ in range(2))
    draw_text(unknown, "é", x=2, y=2, scale=2)
    draw_text(question, "?", x=2, y=2, scale=2)
    assert _has(question, _INK).any() and np.array_equal(unknown, question)


def test_compose_puts_the_title_above_the_framed_map_and_a_swatch_per_class() -> None:
    tiles = np.zeros((3, 40, 60), dtype=np.uint8)
    tiles[0] = 200  # a colour used nowhere else
    legend = [((10, 200, 10), "green 3"), ((10, 10, 200), "blue 4")]
    picture = compose(tiles, title=["scene.tif", "model 1234"], legend=legend, legend_title="7")
    map_rows, map_cols = np.nonzero(_has(picture, (200, 0, 0)))
    assert map_rows.size == 40 * 60
    top, left = map_rows.min(), map_cols.min()
    assert _has(picture[:, :top], _INK).any(), "the title is above the map"
    assert _has(picture[:, top - 1, left - 1 : left + 61], _INK).all(), "the map is framed"
    for colour, _ in legend:
        rows, cols = np.nonzero(_has(picture, colour))
        assert rows.size > 0 and cols.min() > left + 60, f"{colour}'s swatch is right of the map"
    wide = compose(tiles, title=["x" * 80], legend=legend, legend_title="7")
    assert wide.shape[2] >= text_width("x" * 80, 3), "a long title widens the picture"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> satdask.RunResult:
    folder = tmp_path_factory.mktemp("demo-picture")
    scene = write_sample(folder / "sample.tif", size=1024, seed=0)
    model = satdask.train([scene], scheduler="threads")
    return satdask.run_batch(scene, model, folder / "run.zarr", scheduler="threads")


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")  # a PNG
def test_the_picture_shows_every_tile_in_its_class_colour(
    run: satdask.RunResult, tmp_path: Path
) -> None:
    png = write_picture(run, tmp_path / "predictions.png", scene="sample.tif")
    with rasterio.open(png) as src:
        picture = src.read()
    ds = run.dataset()
    ok = ds["status"].values == STATUS_OK
    bright = int(np.count_nonzero(ok & (ds["prediction"].values == 1)))
    dark = int(np.count_nonzero(ok & (ds["prediction"].values == 0)))
    assert bright and dark, "the sample has both classes"
    scale = 512 // max(ds["prediction"].shape)  # the map is about 512 px across
    swatch = (9 * 2 - 2) ** 2  # the legend's swatch, inside its frame
    assert _has(picture, COLOURS["bright"]).sum() == bright * scale**2 + swatch
    assert _has(picture, COLOURS["dark"]).sum() == dark * scale**2 + swatch
    assert _has(picture, COLOURS["nodata"]).sum() == swatch  # no nodata tile: the swatch
