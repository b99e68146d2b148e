"""predictions.png's map axes: round coordinates of the scene's CRS along the frame."""

from __future__ import annotations

import numpy as np
import pytest

from satdask.render import _INK, _TICK, compose, draw_text, nice_ticks, text_width, tick_label


def _ink(image: np.ndarray) -> np.ndarray:
    return (image == np.array(_INK, dtype=np.uint8)[:, None, None]).all(axis=0)


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [
        (500000.0, 510240.0, [500000.0, 505000.0, 510000.0]),
        (0.0, 1.0, [0.0, 0.5, 1.0]),
        (0.0, 0.9, [0.0, 0.2, 0.4, 0.6000000000000001, 0.8]),
        (4989760.0, 5000000.0, [4990000.0, 4995000.0, 5000000.0]),
        (-3.3, 7.1, [-2.0, 0.0, 2.0, 4.0, 6.0]),
        (5.0, 5.0, []),
    ],
)
def test_ticks_are_round_values_inside_the_range(
    low: float, high: float, expected: list[float]
) -> None:
    ticks = nice_ticks(low, high)
    assert ticks == pytest.approx(expected)
    assert len(ticks) <= 6 and all(low <= t <= high for t in ticks)


def test_tick_labels_keep_the_decimals_their_step_needs() -> None:
    assert tick_label(505000.0, 5000.0) == "505000"
    assert tick_label(0.6000000000000001, 0.2) == "0.6"
    assert tick_label(-0.0, 2.0) == "0"
    assert tick_label(12.25, 0.05) == "12.25"


def test_compose_draws_a_tick_under_the_frame_at_each_round_x_and_left_of_it_at_each_y() -> None:
    h, w = 100, 200
    tiles = np.zeros((3, h, w), dtype=np.uint8)
    tiles[0] = 200
    plain = compose(tiles, title=["s"], legend=[((0, 200, 0), "a")], legend_title="1")
    axes = compose(
        tiles,
        title=["s"],
        legend=[((0, 200, 0), "a")],
        legend_title="1",
        extent=(1000.0, 0.0, 3000.0, 1000.0),  # 10 units a pixel, x 1000..3000, y 0..1000
        crs="EPSG:32633",
    )
    assert axes.shape[1] > plain.shape[1] and axes.shape[2] > plain.shape[2], "room for labels"
    rows, cols = np.nonzero((axes == np.array([200, 0, 0], dtype=np.uint8)[:, None, None]).all(0))
    top, left = rows.min(), cols.min()
    below = top + h + 1  # the first row under the frame
    tick_cols = np.nonzero(_ink(axes[:, below + 1 : below + _TICK - 1, left : left + w]).all(0))[0]
    # 1000..3000 by 500: x = 1000 at pixel 0, 3000 at the last pixel
    assert tick_cols.tolist() == [0, 50, 100, 150, 199]
    tick_rows = np.nonzero(_ink(axes[:, top : top + h, left - _TICK : left - 2]).all(1))[0]
    assert tick_rows.tolist() == [0, 50, 99]  # 1000 down to 0 by 500
    # the labels are the tick values: "2000" drawn centred under its tick
    label = np.full((3, 30, 80), 255, dtype=np.uint8)
    draw_text(label, "2000", x=0, y=0, scale=2)
    width = text_width("2000", 2)
    x0 = left + 100 - width // 2
    y0 = below + _TICK + 2
    drawn = _ink(axes[:, y0 : y0 + 18, x0 : x0 + width])
    assert np.array_equal(drawn, _ink(label[:, :18, :width]))
    assert _ink(axes[:, y0 + 18 :, left : left + w]).any(), "the CRS is named under the labels"
