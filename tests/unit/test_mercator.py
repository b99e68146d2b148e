"""satdask.core.mercator: WebMercatorQuad tiles against the slippy-map formulas."""

from __future__ import annotations

import math

import pytest

from satdask.core import mercator
from satdask.errors import GridError

ORIGIN = 20037508.342789244


def _slippy(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    """(west, south, east, north) degrees by the OpenStreetMap wiki's tile formulas."""
    n = 2**z

    def lat(row: int) -> float:
        return math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * row / n))))

    return x / n * 360 - 180, lat(y + 1), (x + 1) / n * 360 - 180, lat(y)


def test_zoom_0_is_the_whole_square_world() -> None:
    assert mercator.tile_bounds(0, 0, 0) == pytest.approx((-ORIGIN, -ORIGIN, ORIGIN, ORIGIN))
    west, south, east, north = mercator.tile_lonlat_bounds(0, 0, 0)
    assert (west, east) == pytest.approx((-180, 180))
    assert (south, north) == pytest.approx((-85.0511287798, 85.0511287798))


@pytest.mark.parametrize(
    ("x", "y", "expected"),
    [
        (0, 0, (-ORIGIN, 0, 0, ORIGIN)),  # north-west
        (1, 0, (0, 0, ORIGIN, ORIGIN)),  # north-east
        (0, 1, (-ORIGIN, -ORIGIN, 0, 0)),  # south-west
        (1, 1, (0, -ORIGIN, ORIGIN, 0)),  # south-east
    ],
)
def test_zoom_1_quadrants(x: int, y: int, expected: tuple[float, ...]) -> None:
    assert mercator.tile_bounds(1, x, y) == pytest.approx(expected, abs=1e-6)


def test_a_zoom_10_tile_matches_the_slippy_map_formulas() -> None:
    bounds = mercator.tile_lonlat_bounds(10, 553, 366)
    assert bounds == pytest.approx(_slippy(10, 553, 366), abs=1e-9)
    assert bounds == pytest.approx((14.4140625, 45.3367019, 14.765625, 45.5832898), abs=1e-6)
    x, y = mercator.to_mercator(14.5, 45.4)
    assert mercator.tile_of(x, y, 10) == (10, 553, 366)


def test_lonlat_and_mercator_round_trip() -> None:
    for lon, lat in [(0, 0), (15.1, 45.1), (-122.4, 37.8), (179.9, -84.9)]:
        assert mercator.to_lonlat(*mercator.to_mercator(lon, lat)) == pytest.approx((lon, lat))


def test_tiles_covering_bounds() -> None:
    world = mercator.tile_bounds(0, 0, 0)
    assert list(mercator.tiles_covering(world, 1)) == [(1, 0, 0), (1, 1, 0), (1, 0, 1), (1, 1, 1)]
    # a box on tile edges covers exactly the tiles inside it
    nw = mercator.tile_bounds(2, 1, 1)
    assert list(mercator.tiles_covering(nw, 2)) == [(2, 1, 1)]
    small = mercator.Bounds(10.0, -10.0, 20.0, 10.0)  # across the equator
    assert [t.y for t in mercator.tiles_covering(small, 3)] == [3, 4]


def test_native_zoom_keeps_every_pixel() -> None:
    # 10 m pixels at 45 deg north are 14.1 m of EPSG:3857: zoom 14 (9.55 m), not 13 (19.1 m)
    assert mercator.native_zoom(10 / math.cos(math.radians(45))) == 14
    assert mercator.native_zoom(mercator.resolution(12)) == 12
    assert mercator.resolution(0) == pytest.approx(156543.03392804097)
    with pytest.raises(GridError, match="resolution"):
        mercator.native_zoom(0)


def test_min_zoom_fits_the_bounds_in_one_tile() -> None:
    b = mercator.tile_bounds(9, 10, 10)
    assert mercator.min_zoom(b) == 9
    assert mercator.min_zoom(mercator.Bounds(0, 0, b.east - b.west + 1, 1)) == 8


@pytest.mark.parametrize(
    ("z", "x", "y", "field"),
    [(-1, 0, 0, "z"), (31, 0, 0, "z"), (1, 2, 0, "x"), (1, 0, 2, "y"), (3, -1, 0, "x")],
)
def test_tiles_out_of_range_name_their_field(z: int, x: int, y: int, field: str) -> None:
    with pytest.raises(GridError, match=f"^{field}: "):
        mercator.check_tile(z, x, y)
