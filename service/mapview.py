"""`GET /map`: a web map of the scenes and runs the tile endpoints serve, offline.

The page, its script and its style are this package's own files (`service/map/`).
Leaflet comes from the XStatic-Leaflet package that the 'service' extra installs, read
from its installed files: nothing is loaded from another host and no copy of Leaflet is
kept in this repository. Without it, `/map` says what to install.

The page and its static files hold no data, so they need no API key (a browser cannot
send one when it navigates); what the page then fetches (the catalog, tiles, `/infer`,
`/map/locate`) is guarded like every other route, with the key the page is given.
"""

from __future__ import annotations

import hashlib
import html
import math
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any

from litestar import MediaType, Request, Response, get
from litestar.exceptions import NotFoundException
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, Parameter

from service.auth import PUBLIC
from service.paths import MAX_PATH_CHARS
from service.schemas import ErrorBody

MAP_PATH = "/map"
STATIC_PATH = "/map/static"
INSTALL = "pip install 'satdask[service]'"

# Scripts and styles from this server only; tiles may arrive as blob: URLs (fetched with
# the API key) and Leaflet's CSS draws a few images as data: URLs.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_MEDIA = {".html": MediaType.HTML, ".js": "text/javascript", ".css": "text/css"}
_MEDIA_IMAGE = {".png": "image/png", ".svg": "image/svg+xml"}
_PAGE_FILES = ("index.html", "map.js", "map.css")
_LOCATE_ERRORS = {
    400: "A missing or invalid query parameter.",
    401: "Missing or invalid API key.",
    404: "No such scene under the data root (or one that may not be read).",
    414: "Request line over SATDASK_MAX_REQUEST_LINE bytes (refused before routing).",
    422: "The file is not a readable raster.",
    502: "The remote data root did not answer (network, credentials or a server error).",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    etag: str

    @classmethod
    def of(cls, body: bytes, media_type: str) -> Asset:
        return cls(body, media_type, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


def leaflet_dir() -> Path | None:
    """The folder of Leaflet's files in the installed XStatic-Leaflet, or None without it."""
    try:
        from xstatic.pkg import leaflet  # type: ignore[import-untyped]
    except ImportError:
        return None
    folder = Path(leaflet.BASE_DIR)
    return folder if (folder / "leaflet.js").is_file() else None


def leaflet_assets(folder: Path) -> dict[str, Asset]:
    """leaflet.js, leaflet.css and its images, by their names under `leaflet/`.

    Read once into memory: the files served are exactly these, so no name a client
    sends is ever looked up on disk.
    """
    found = {
        "leaflet/leaflet.js": Asset.of((folder / "leaflet.js").read_bytes(), _MEDIA[".js"]),
        "leaflet/leaflet.css": Asset.of((folder / "leaflet.css").read_bytes(), _MEDIA[".css"]),
    }
    images = folder / "images"
    for path in sorted(images.iterdir()) if images.is_dir() else ():
        media = _MEDIA_IMAGE.get(path.suffix)
        if media and path.is_file():
            found[f"leaflet/images/{path.name}"] = Asset.of(path.read_bytes(), media)
    return found


def page_assets() -> dict[str, Asset]:
    """The page's own files (package data of `service`)."""
    folder = files("service").joinpath("map")
    return {
        name: Asset.of(folder.joinpath(name).read_bytes(), _MEDIA[Path(name).suffix])
        for name in _PAGE_FILES
    }


def missing_page() -> str:
    """What `/map` answers when Leaflet is not installed: what to run, plainly."""
    command = html.escape(INSTALL)
    return (
        "<!doctype html><html lang=en><meta charset=utf-8><title>satdask map</title>"
        "<h1>The map needs Leaflet</h1>"
        "<p>Leaflet comes with the service's dependencies (the XStatic-Leaflet package), "
        f"which are not all installed here. Run:</p><pre>{command}</pre>"
        "<p>then restart the server.</p></html>"
    )


def _answer(asset: Asset, request: Request[Any, Any, Any]) -> Response[bytes]:
    headers = {"ETag": asset.etag, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
    if asset.media_type == MediaType.HTML:
        headers["Content-Security-Policy"] = CSP
    if request.headers.get("if-none-match") == asset.etag:
        return Response(b"", status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


@dataclass(frozen=True)
class TileAt:
    """The tile of a scene's grid under a point, and its corners as (lat, lon)."""

    scene: str
    row: int | None
    col: int | None
    corners: list[list[float]] | None


def tile_at(opened: Any, lon: float, lat: float) -> TileAt:
    """The service grid's tile under (lon, lat), or None outside the scene's tiles.

    The point is taken to the scene's CRS with GDAL (rasterio.warp), so any CRS works,
    and the tile's corners back to lon/lat for the page to outline.
    """
    from rasterio.warp import transform

    grid = opened.grid
    xs, ys = transform("EPSG:4326", opened.crs, [lon], [lat])
    if not (math.isfinite(xs[0]) and math.isfinite(ys[0])):
        return TileAt(opened.path, None, None, None)
    px, py = ~grid.transform * (xs[0], ys[0])
    row, col = math.floor(py / grid.tile_size), math.floor(px / grid.tile_size)
    if not (0 <= row < grid.rows and 0 <= col < grid.cols):
        return TileAt(opened.path, None, None, None)
    left, bottom, right, top = grid.bounds(row, col)
    cx, cy = [left, right, right, left], [top, top, bottom, bottom]
    lons, lats = transform(opened.crs, "EPSG:4326", cx, cy)
    return TileAt(opened.path, row, col, [[la, lo] for lo, la in zip(lons, lats, strict=True)])


def map_routes(runtime: Any) -> list[Any]:
    """The map's route handlers over the app's `Runtime` (its scene cache and threads)."""
    leaflet = leaflet_dir()
    assets: Mapping[str, Asset] = {
        **page_assets(),
        **(leaflet_assets(leaflet) if leaflet is not None else {}),
    }
    missing = Asset.of(missing_page().encode(), MediaType.HTML) if leaflet is None else None

    @get(MAP_PATH, include_in_schema=False, opt={PUBLIC: True})
    async def map_page(request: Request[Any, Any, Any]) -> Response[bytes]:
        """The map page, or (503) what to install when Leaflet is missing."""
        if missing is not None:
            answer = _answer(missing, request)
            answer.status_code = 503
            return answer
        return _answer(assets["index.html"], request)

    @get(f"{STATIC_PATH}/{{name:path}}", include_in_schema=False, opt={PUBLIC: True})
    async def map_static(request: Request[Any, Any, Any], name: FromPath[Path]) -> Response[bytes]:
        key = str(name).lstrip("/")
        asset = None if key == "index.html" else assets.get(key)
        if asset is None:
            raise NotFoundException("no such file of the map page")
        return _answer(asset, request)

    @get(
        f"{MAP_PATH}/locate",
        summary="The tile of a scene under a longitude and latitude (the map's clicks)",
        description="The row and col of the service's tile grid (its tile size and edge "
        "policy) under a WGS84 point, for `POST /infer`, and the tile's corners as "
        "[lat, lon]; row, col and corners are null outside the scene's tiles.",
        responses={
            code: ResponseSpec(data_container=ErrorBody, description=text)
            for code, text in _LOCATE_ERRORS.items()
        },
    )
    async def locate(
        scene: Annotated[
            str,
            Parameter(
                min_length=1,
                max_length=MAX_PATH_CHARS,
                description="Path of a GeoTIFF relative to the data root.",
            ),
        ],
        lon: Annotated[float, Parameter(ge=-180, le=180, description="WGS84 longitude")],
        lat: Annotated[float, Parameter(ge=-90, le=90, description="WGS84 latitude")],
    ) -> TileAt:
        opened = await runtime.in_thread(runtime.scene, scene)
        return await runtime.in_thread(tile_at, opened, lon, lat)

    return [map_page, map_static, locate]
