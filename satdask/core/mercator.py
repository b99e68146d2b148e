"""Web-mercator map tiles (OGC WebMercatorQuad): z/x/y <-> bounds, and zooms of a scene.

Plain arithmetic on EPSG:3857 metres and WGS84 degrees, so the service's tile routes and
anything else can share it without a projection library; reprojection itself is the
caller's (rasterio's warp, in `service.tiles`). Tile (0, 0) of a zoom is the north-west
corner, as XYZ maps (Leaflet, OpenLayers, MapLibre) number them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import NamedTuple

from satdask.errors import GridError

RADIUS = 6378137.0  # WGS84 semi-major axis: the sphere of EPSG:3857
ORIGIN = math.pi * RADIUS  # half the world's width in metres: 20037508.342789244
TILE_SIZE = 256
MAX_ZOOM = 30  # 2**30 tiles a side: finer than a millimetre at the equator
MAX_LATITUDE = math.degrees(2 * math.atan(math.exp(math.pi)) - math.pi / 2)  # 85.0511...


class Bounds(NamedTuple):
    """(west, south, east, north), in the units of whatever CRS they are in."""

    west: float
    south: float
    east: float
    north: float


class Tile(NamedTuple):
    z: int
    x: int
    y: int


def check_tile(z: int, x: int, y: int) -> Tile:
    """A tile that exists: 0 <= z <= MAX_ZOOM and 0 <= x, y < 2**z; GridError naming
    the field otherwise."""
    if z < 0 or z > MAX_ZOOM:
        raise GridError(f"z: zoom {z} is outside 0..{MAX_ZOOM}")
    side = 1 << z
    for name, value in (("x", x), ("y", y)):
        if not 0 <= value < side:
            raise GridError(f"{name}: {value} is outside 0..{side - 1} at zoom {z}")
    return Tile(z, x, y)


def tile_bounds(z: int, x: int, y: int) -> Bounds:
    """The tile's bounds in EPSG:3857 metres."""
    check_tile(z, x, y)
    size = 2 * ORIGIN / (1 << z)
    west = -ORIGIN + x * size
    north = ORIGIN - y * size
    return Bounds(west, north - size, west + size, north)


def tile_lonlat_bounds(z: int, x: int, y: int) -> Bounds:
    """The tile's bounds in WGS84 degrees."""
    b = tile_bounds(z, x, y)
    west, south = to_lonlat(b.west, b.south)
    east, north = to_lonlat(b.east, b.north)
    return Bounds(west, south, east, north)


def resolution(z: int, *, tile_size: int = TILE_SIZE) -> float:
    """Metres (of EPSG:3857) per pixel of a tile at zoom z."""
    return 2 * ORIGIN / (tile_size * (1 << z))


def to_lonlat(x: float, y: float) -> tuple[float, float]:
    """EPSG:3857 metres -> WGS84 (longitude, latitude) degrees."""
    lon = math.degrees(x / RADIUS)
    lat = math.degrees(2 * math.atan(math.exp(y / RADIUS)) - math.pi / 2)
    return lon, lat


def to_mercator(lon: float, lat: float) -> tuple[float, float]:
    """WGS84 degrees -> EPSG:3857 metres; latitudes clamped to the square world's edge."""
    lat = max(-MAX_LATITUDE, min(MAX_LATITUDE, lat))
    x = RADIUS * math.radians(lon)
    y = RADIUS * math.log(math.tan(math.pi / 4 + math.radians(lat) / 2))
    return x, y


def tile_of(x: float, y: float, z: int) -> Tile:
    """The tile holding the EPSG:3857 point (x, y) at zoom z (clamped to the world)."""
    side = 1 << z
    size = 2 * ORIGIN / side
    col = min(side - 1, max(0, math.floor((x + ORIGIN) / size)))
    row = min(side - 1, max(0, math.floor((ORIGIN - y) / size)))
    return Tile(z, col, row)


def tiles_covering(bounds: Bounds, z: int) -> Iterator[Tile]:
    """Every tile at zoom z that meets `bounds` (EPSG:3857 metres), row by row."""
    if bounds.west > bounds.east or bounds.south > bounds.north:
        raise GridError(f"bounds {tuple(bounds)}: west > east or south > north")
    nw = tile_of(bounds.west, bounds.north, z)
    se = tile_of(bounds.east, bounds.south, z)
    # a bound exactly on a tile edge belongs to the tile before it, not the next one
    size = 2 * ORIGIN / (1 << z)
    east_col, south_row = se.x, se.y
    if se.x > nw.x and (bounds.east + ORIGIN) / size == se.x:
        east_col -= 1
    if se.y > nw.y and (ORIGIN - bounds.south) / size == se.y:
        south_row -= 1
    for row in range(nw.y, south_row + 1):
        for col in range(nw.x, east_col + 1):
            yield Tile(z, col, row)


def native_zoom(metres_per_pixel: float, *, tile_size: int = TILE_SIZE) -> int:
    """The lowest zoom whose pixels are at least as fine as `metres_per_pixel` (of EPSG:3857):
    a scene's own resolution, with nothing thrown away."""
    if not (math.isfinite(metres_per_pixel) and metres_per_pixel > 0):
        raise GridError(f"resolution {metres_per_pixel!r} must be a positive number")
    zoom = math.ceil(math.log2(2 * ORIGIN / (tile_size * metres_per_pixel)) - 1e-9)
    return max(0, min(MAX_ZOOM, zoom))


def min_zoom(bounds: Bounds) -> int:
    """The highest zoom at which `bounds` (EPSG:3857) still fits in one tile's width: the
    scene as a thumbnail. Zooms below it show little more than a dot."""
    extent = max(bounds.east - bounds.west, bounds.north - bounds.south)
    if not (math.isfinite(extent) and extent > 0):
        return 0
    return max(0, min(MAX_ZOOM, math.floor(math.log2(2 * ORIGIN / extent) + 1e-9)))
