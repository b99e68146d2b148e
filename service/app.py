"""`create_app(settings)`: the Litestar application serving single-tile predictions.

Each tile request reads only that tile's window (what `satdask.read_tile` does, with the
scene's source cached) and runs the block function batch runs (`satdask.infer_block`)
on a block of one tile, so the service and the batch run store cannot disagree. A pixel
model's tile goes through its batch block function too (`service.pixels`), answered as
class counts (JSON), a colour PNG or a GeoTIFF, as the client's Accept header asks. The
model is loaded once, in the lifespan, with its checksum verified (an ONNX model's
session built then, once per process); scenes are opened lazily into a bounded cache.
Raster reads, models and numpy work run on `settings.threads` reader threads, never on
the event loop; a tile always goes to the same thread, whose GDAL handle caches its blocks.
The app keeps no state between requests beyond those caches, so any number of instances
can serve one data root.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import Annotated, Any

import msgspec
import numpy as np
from affine import Affine
from litestar import HttpMethod, Litestar, MediaType, Request, Response, get, post, route
from litestar.enums import RequestEncodingType
from litestar.exceptions import HTTPException, SerializationException
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import (
    Components,
    OpenAPIMediaType,
    OpenAPIType,
    Operation,
    Schema,
    SecurityScheme,
)
from litestar.params import Body, Parameter
from litestar.response import Redirect
from rasterio.errors import RasterioError

import satdask
from satdask.core.features import STATUS_NAMES
from satdask.core.grid import TileGrid, Window, size_text
from satdask.core.inference import infer_block
from satdask.core.windows import WindowLayout
from satdask.io._gdal import gdal_message
from satdask.io.geotiff import read_retries
from satdask.io.halo import PixelBlock
from satdask.io.registry import ModelArtifact, ModelRegistry, parse_model_ref
from satdask.io.source import read_masked
from satdask.models.base import PixelModel
from service.auth import PUBLIC, api_key_guard, host_guard, on_the_loop
from service.docs import CSP, render_docs
from service.errors import (
    ListingUnsupportedError,
    ModelNotReadyError,
    NotAcceptableError,
    RasterTooLargeError,
    TileOutsideGridError,
    TileReadError,
)
from service.gdal import configure_service_gdal, restore_gdal_env
from service.images import GEOTIFF, JSON, PNG, TIFF, geotiff, negotiate, png
from service.limits import FileLimits
from service.listing import Bounds, SceneListing
from service.mapview import map_routes
from service.metrics import CONTENT_TYPE, Metrics, MetricsMiddleware
from service.paths import MAX_PATH_CHARS
from service.pixels import PixelTiles
from service.public import client_error, describe_exception, public_lineage
from service.remote import RemoteRoot, recheck, remote_error
from service.runs_root import RunsRoot
from service.scenes import ModelMismatchError, OpenScene, SceneStore, check_model
from service.schemas import (
    ErrorBody,
    Health,
    Index,
    InferRequest,
    InferRequestSchemaPlugin,
    ModelInfo,
    PixelTileResponse,
    Ready,
    SceneInfo,
    SceneList,
    SceneTileRequest,
    SceneTileResponse,
    TileGridInfo,
    TilePathRequest,
    TilePathResponse,
    decode_infer_request,
    is_infer_request,
)
from service.settings import Settings
from service.tiles import TileCache, Tiles, tile_routes

log = logging.getLogger("satdask.service")

SCHEMA_PATH = "/schema"
OPENAPI_PATH = f"{SCHEMA_PATH}/openapi.json"
DOCS_PATH = "/docs"

_ERROR_TEXT = {
    400: "Malformed JSON, a missing or invalid field, or a bad query parameter.",
    401: "Missing or invalid API key.",
    404: "No such scene under the data root (or one that may not be read), or a tile "
    "outside the grid.",
    406: "An Accept header naming none of application/json, image/png and image/tiff, or "
    "an image of a model without per-pixel classes (a threshold model, a window classifier).",
    413: "Request body over the size limit.",
    414: "Request line over SATDASK_MAX_REQUEST_LINE bytes (refused before routing).",
    415: "A body sent without Content-Type: application/json.",
    422: "The file is not a readable raster, or the tile cannot be decoded.",
    501: "The data root is remote (an http(s):// or s3:// prefix), which cannot be listed.",
    502: "The remote data root did not answer (network, credentials or a server error).",
    503: "The model is not loaded.",
}


class ServiceRequest(Request[Any, Any, Any]):
    """A request whose JSON body, if not valid UTF-8, is malformed JSON: 400, not 500.

    msgspec raises UnicodeDecodeError for invalid UTF-8 inside a JSON string rather than
    its DecodeError (msgspec#714), and RecursionError for arrays or objects nested about
    1,000 deep (2 KB of brackets); Litestar turns only DecodeError into a 400. A body
    not labelled `application/json` is refused (415) before it is read: a web page can
    post `text/plain` across sites without asking, but not JSON.
    """

    async def json(self) -> Any:
        media_type = self.content_type[0].lower()
        if media_type != "application/json":
            given = repr(media_type[:40]) if media_type else "none"
            raise HTTPException(
                status_code=415,
                detail=f"Content-Type must be application/json for a JSON body, got {given}",
            )
        try:
            return await super().json()
        except UnicodeDecodeError:
            raise SerializationException("JSON is malformed: not valid UTF-8") from None
        except RecursionError:
            raise SerializationException("JSON is malformed: nested too deeply") from None


def _errors(*codes: int) -> dict[int, ResponseSpec]:
    return {
        code: ResponseSpec(data_container=ErrorBody, description=_ERROR_TEXT[code])
        for code in codes
    }


def load_model(ref: str) -> ModelArtifact:
    """Load 'DIR[:ID]' from its registry, verifying the checksum (RegistryError if not)."""
    directory, artifact_id = parse_model_ref(ref)
    return ModelRegistry(directory).load(artifact_id)


@dataclass
class InferOperation(Operation):
    """`POST /infer`'s OpenAPI operation: its 200 also comes as a PNG or a GeoTIFF.

    Litestar documents one media type per status; the images are added here (a
    dataclass again, so that its generated `__init__` calls `__post_init__`).
    """

    def __post_init__(self) -> None:
        ok = (self.responses or {}).get("200")
        content = getattr(ok, "content", None)
        if isinstance(content, dict):
            for media, what in (
                (PNG, "a pixel model's tile as a colour PNG (no class: transparent)"),
                (TIFF, "a pixel model's tile as a GeoTIFF (image/tiff; application=geotiff)"),
            ):
                content[media] = OpenAPIMediaType(
                    schema=Schema(
                        type=OpenAPIType.STRING, content_media_type=media, description=what
                    )
                )


Answer = SceneTileResponse | TilePathResponse | PixelTileResponse


@dataclass
class Runtime:
    """What the handlers share: settings, caches, metrics and the loaded model."""

    settings: Settings
    scenes: SceneStore
    metrics: Metrics
    artifact: ModelArtifact | None = None
    pixels: PixelTiles | None = None  # the artifact's pixel model, made once (its session too)
    executors: list[ThreadPoolExecutor] = field(default_factory=list, repr=False)
    listing: SceneListing | None = field(default=None, repr=False)  # GET /scenes (local root)

    _turn: Iterator[int] = field(default_factory=itertools.count, repr=False)

    @property
    def allow_mismatch(self) -> bool:
        return self.settings.allow_model_mismatch

    def require_model(self) -> ModelArtifact:
        if self.artifact is None:
            raise ModelNotReadyError
        return self.artifact

    async def in_thread(self, func: Callable[..., Any], *args: Any, key: Any = None) -> Any:
        """Run blocking work on one of the service's reader threads.

        Each thread keeps its own GDAL handle and GDAL caches decoded blocks per handle,
        so work with a `key` (a tile) always goes to the same thread: a tile is decoded
        into one cache, not into every thread's. A plain executor rather than
        `anyio.to_thread`: the work cannot be cancelled either way, and the hop skips
        anyio's cancel-scope bookkeeping, which showed in GIL profiles.
        """
        executors = self.executors
        index = hash(key) % len(executors) if key is not None else next(self._turn)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(executors[index % len(executors)], func, *args)

    def scene(self, path: object) -> OpenScene:
        try:
            return self.scenes.get(path)
        finally:
            self.metrics.scenes_cached.set(len(self.scenes))

    def read(self, opened: OpenScene, row: int, col: int, grid: TileGrid) -> np.ndarray:
        """One tile's window: what `satdask.read_tile` does, with the scene's source cached.

        `read_tile` rebuilds the `RasterSource` from the DataArray on every call, and
        that xarray indexing held the GIL for about a tenth of a request. The cached
        source is rebuilt whenever the file's (size, mtime) changes (see SceneStore).
        `RasterSource.read` retries a remote read (counted in the retries metric); a
        remote read that still fails is told apart by asking the store again: it does not
        answer (502), the file is gone (404), or else the bytes did not decode (422).
        """
        with self.reading(opened, row, col):
            return read_masked(opened.source, grid.window(row, col))  # with the file's mask

    @contextmanager
    def reading(self, opened: OpenScene, row: int, col: int) -> Iterator[None]:
        """Pixels of tile (row, col) read inside: a failed read becomes the client's error."""
        retries = read_retries()
        try:
            yield
        except (RasterioError, OSError) as exc:
            self.metrics.tile_read_failures.inc()
            reason = gdal_message(exc) if isinstance(exc, RasterioError) else "I/O error"
            root, uri = self.settings.data_root, opened.source.uri
            if isinstance(root, RemoteRoot) and isinstance(exc, RasterioError):
                store = recheck(root, uri, reason)  # the store's failure, or None
                if store is not None:
                    if store[0] == "missing":
                        self.scenes.forget(opened.path)
                    raise remote_error(opened.path, uri, *store) from None
            error = TileReadError(f"{uri}: tile ({row}, {col}) cannot be read ({reason})", uri=uri)
            raise client_error(error, opened.path) from None
        finally:
            if retried := read_retries() - retries:
                self.metrics.remote_read_retries.inc(retried)

    def infer_tile(self, request: SceneTileRequest, artifact: ModelArtifact) -> SceneTileResponse:
        opened = self.scene(request.scene)
        grid, row, col = opened.grid, request.row, request.col
        check_model(artifact, opened, tile_size=grid.tile_size, allow=self.allow_mismatch)
        if row >= grid.rows or col >= grid.cols:
            raise self.outside_grid(opened, row, col)
        pixels = self.read(opened, row, col, grid)
        out = infer_block(
            pixels,
            model=artifact.model,
            tile_size=grid.tile_size,
            nodata=opened.nodata,
            edge=grid.edge,
        )
        prediction = int(out["prediction"][0, 0])
        self.metrics.count_prediction(prediction)
        return SceneTileResponse(
            scene=opened.path,
            row=row,
            col=col,
            prediction=prediction,
            mean_intensity=_number(out["mean_intensity"][0, 0]),
            std_intensity=_number(out["std_intensity"][0, 0]),
            valid_fraction=float(out["valid_fraction"][0, 0]),
            status=STATUS_NAMES[int(out["status"][0, 0])],  # type: ignore[arg-type]
            bounds=list(grid.bounds(row, col)),
            crs=opened.crs,
            model_id=artifact.id,
            latency_ms=0.0,
        )

    def infer_pixels(
        self, request: SceneTileRequest, tiles: PixelTiles, media: str
    ) -> PixelTileResponse | bytes:
        """A pixel model's tile: its classes as `media` (counts as JSON, a PNG, a GeoTIFF)."""
        opened = self.scene(request.scene)
        grid, row, col = opened.grid, request.row, request.col
        layout = tiles.layout(opened, tile_size=grid.tile_size)
        if row >= grid.rows or col >= grid.cols:
            raise self.outside_grid(opened, row, col)
        window = grid.window(row, col)
        padding = tiles.padding(request.padding)
        with self.reading(opened, row, col):
            block = tiles.classify(opened, window, layout=layout, padding=padding)
        return self.pixel_answer(
            tiles, opened, block, window, grid.tile_transform(row, col), layout,
            row=row, col=col, padding=padding, media=media,
        )  # fmt: skip

    def pixel_answer(
        self,
        tiles: PixelTiles,
        opened: OpenScene,
        block: PixelBlock,
        window: Window,
        corner: Affine,
        layout: WindowLayout,
        *,
        row: int,
        col: int,
        padding: str,
        media: str,
    ) -> PixelTileResponse | bytes:
        """`block`, the classes of `window` (upper-left corner at `corner`), as `media`.

        Only JSON counts the classes. Its bounds are the window's: a tile at the scene's
        edge has fewer pixels.
        """
        artifact = tiles.artifact
        if media == PNG:
            return png(block.classes, tiles.table, tiles.colours)
        if media == TIFF:
            tags = {
                "satdask_model_id": artifact.id,
                "satdask_model_sha256": artifact.sha256,
                "satdask_padding": padding,
            }
            return geotiff(
                block.classes, tiles.table, tiles.colours, transform=corner, crs=opened.crs,
                tags=tags, flags=tiles.flags(),
            )  # fmt: skip
        found = tiles.summary(block)
        xs = (corner.c, corner.c + corner.a * window.width)
        ys = (corner.f, corner.f + corner.e * window.height)
        return PixelTileResponse(
            scene=opened.path,
            row=row,
            col=col,
            counts=found.counts,
            nodata=found.nodata,
            fractions=found.fractions(),
            prediction=found.prediction,
            width=window.width,
            height=window.height,
            window=layout.size,
            halo=layout.halo,
            padding=padding,  # type: ignore[arg-type]
            bounds=[min(xs), min(ys), max(xs), max(ys)],
            crs=opened.crs,
            model_id=artifact.id,
            model_sha256=artifact.sha256,
            latency_ms=0.0,
        )

    def outside_grid(self, opened: OpenScene, row: int, col: int) -> TileOutsideGridError:
        """What a client asking for a tile beyond the grid is told, and how to go on."""
        grid, name = opened.grid, opened.path
        if grid.rows and grid.cols:
            return TileOutsideGridError(
                f"{name}: tile ({row}, {col}) is outside the scene's grid of "
                f"{size_text(grid.rows, grid.cols)} of {grid.tile_size} px tiles "
                f"(edge={grid.edge}); rows and cols count from 0"
            )
        whole = opened.height * opened.width <= self.settings.max_raster_pixels
        return TileOutsideGridError(
            f"{name}: the scene ({size_text(opened.height, opened.width, opened.bands)}) "
            f"holds no whole tile of {grid.tile_size} px, so it has no tiles to ask for; "
            + (f"predict it whole with {json.dumps({'tile_path': name})}, or " if whole else "")
            + "serve it with a smaller --tile-size (SATDASK_TILE_SIZE) or --edge pad"
        )

    def whole(self, path: str) -> OpenScene:
        """The scene of a `tile_path` request, refused over the form's pixel limit."""
        opened = self.scene(path)
        limit = self.settings.max_raster_pixels
        if opened.height * opened.width > limit:
            raise RasterTooLargeError(
                f"{opened.path}: {size_text(opened.height, opened.width, opened.bands)} "
                f"({opened.height * opened.width} px) is over the {limit} px limit of the "
                "tile_path form; ask for its tiles with scene, row and col"
            )
        return opened

    def infer_whole(self, request: TilePathRequest, artifact: ModelArtifact) -> TilePathResponse:
        """The reference contract: the whole raster is one tile (side = its longer side,
        edge 'pad', so a non-square raster's missing pixels count as invalid)."""
        opened = self.whole(request.tile_path)
        side = max(opened.height, opened.width)
        check_model(artifact, opened, tile_size=side, allow=self.allow_mismatch)
        self.scenes.check_whole(opened)
        whole = TileGrid(opened.height, opened.width, opened.grid.transform, side, "pad")
        pixels = self.read(opened, 0, 0, whole)
        out = infer_block(
            pixels, model=artifact.model, tile_size=side, nodata=opened.nodata, edge="pad"
        )
        prediction = int(out["prediction"][0, 0])
        self.metrics.count_prediction(prediction)
        return TilePathResponse(
            prediction=prediction,
            mean_intensity=_number(out["mean_intensity"][0, 0]),
            model_path=f"{artifact.id}.json",
            model_id=artifact.id,
        )

    def infer_whole_pixels(
        self, request: TilePathRequest, tiles: PixelTiles, media: str
    ) -> PixelTileResponse | bytes:
        """A pixel model over a whole (small) raster: its windows laid as in a run of the
        service's tile size, so the pixels are that run's; counted as one tile."""
        opened = self.whole(request.tile_path)
        tile_size = self.settings.tile_size
        if tiles.window_model:
            raise ModelMismatchError(
                f"{opened.path}: model {tiles.artifact.id} is a window classifier, which "
                "classifies tiles, not a whole raster; ask for its tiles with scene, row and col"
            )
        layout = tiles.layout(opened, tile_size=tile_size)
        self.scenes.check_whole(opened)
        padding = tiles.padding(request.padding)
        window = Window(0, 0, opened.width, opened.height)
        with self.reading(opened, 0, 0):
            block = tiles.classify(opened, window, layout=layout, padding=padding)
        return self.pixel_answer(
            tiles, opened, block, window, opened.grid.transform, layout,
            row=0, col=0, padding=padding, media=media,
        )  # fmt: skip

    def scene_info(self, path: str) -> SceneInfo:
        opened = self.scene(path)
        g = opened.grid
        tf = g.transform
        xs = (tf.c, tf.c + tf.a * g.width)
        ys = (tf.f, tf.f + tf.e * g.height)
        return SceneInfo(
            path=opened.path,
            crs=opened.crs,
            shape=[opened.bands, g.height, g.width],
            width=g.width,
            height=g.height,
            bands=opened.bands,
            dtype=opened.dtype,
            nodata=opened.nodata,
            bounds=[min(xs), min(ys), max(xs), max(ys)],
            grid=TileGridInfo(tile_size=g.tile_size, edge=g.edge, rows=g.rows, cols=g.cols),
        )

    def model_info(self) -> ModelInfo:
        a = self.require_model()
        params = a.model.to_dict()
        threshold = params.get("threshold")
        return ModelInfo(
            id=a.id,
            sha256=a.sha256,
            kind=a.model.kind,
            threshold=float(threshold) if isinstance(threshold, int | float) else None,
            created_at=a.created_at,
            model_path=f"{a.id}.json",
            training=dict(params.get("training", {})),
            lineage=public_lineage(a.lineage, self.settings.data_root),
        )


def _number(value: Any) -> float | None:
    number = float(value)
    return number if np.isfinite(number) else None


def create_app(settings: Settings | None = None) -> Litestar:
    """Build the app; with no settings, read them from `SATDASK_*` variables now."""
    settings = settings if settings is not None else Settings.from_env()
    metrics = Metrics()
    rt = Runtime(
        settings=settings,
        scenes=SceneStore(
            settings.data_root,
            tile_size=settings.tile_size,
            edge=settings.edge,
            capacity=settings.scene_cache,
            on_open=metrics.count_scene_open,
            limits=FileLimits.of(settings),
        ),
        metrics=metrics,
    )

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        previous = configure_service_gdal(cache_mb=settings.gdal_cachemax)
        rt.executors = [
            ThreadPoolExecutor(1, thread_name_prefix=f"satdask-io-{i}")
            for i in range(settings.threads)
        ]
        if settings.model:
            rt.artifact = await rt.in_thread(load_model, settings.model)
            if isinstance(rt.artifact.model, PixelModel):
                rt.pixels = await rt.in_thread(PixelTiles.load, rt.artifact)
            log.info("model %s loaded (sha256 %s)", rt.artifact.id, rt.artifact.sha256[:12])
        else:
            log.warning("no model configured: /ready and /infer answer 503")
        metrics.set_model(rt.artifact)
        if isinstance(settings.data_root, Path):
            rt.listing = SceneListing(
                settings.data_root,
                Bounds(
                    max_scenes=settings.list_max_scenes,
                    max_entries=settings.list_max_entries,
                    max_depth=settings.list_max_depth,
                    seconds=settings.list_seconds,
                ),
                cache_seconds=settings.list_cache_seconds,
                metrics=metrics,
            )
        try:
            yield
        finally:
            rt.artifact, rt.pixels = None, None
            metrics.set_model(None)
            for executor in rt.executors:
                executor.shutdown(wait=True, cancel_futures=True)
            if rt.listing is not None:
                rt.listing.close()
            restore_gdal_env(previous)

    @post(
        "/infer",
        status_code=200,
        summary="Predict one tile",
        description="`{tile_path}`: a whole raster as one tile (the reference pipeline's "
        "contract). `{scene, row, col}`: one tile of a scene in the service's tile grid. "
        "A threshold model answers its tile's class. A pixel model answers the class of "
        "every pixel of the tile, exactly as a batch run's store holds them: as class "
        "counts (JSON, the default), a colour PNG (`Accept: image/png`; no class is "
        "transparent) or a GeoTIFF on the scene's grid (`Accept: image/tiff`).",
        responses=_errors(400, 401, 404, 406, 413, 415, 422, 502, 503),
        operation_class=InferOperation,
    )
    async def infer(
        request: Request[Any, Any, Any],
        data: Annotated[InferRequest, Body(media_type=RequestEncodingType.JSON)],
    ) -> Response[Answer]:
        start = perf_counter()
        artifact = rt.require_model()
        media = negotiate(request.headers.get("accept"))
        assert isinstance(data, SceneTileRequest | TilePathRequest)
        tiles = rt.pixels
        if media != JSON and (tiles is None or tiles.window_model):
            kind = "window classifier" if tiles else f"{artifact.model.kind} model"
            raise NotAcceptableError(
                f"Accept: model {artifact.id} is a {kind}, which gives one class per tile "
                f"and no per-pixel classes: it is answered as {JSON} only"
            )
        if tiles is None:  # a tile model reads the tile alone: padding changes nothing
            if isinstance(data, TilePathRequest):
                return Response(
                    await rt.in_thread(rt.infer_whole, data, artifact, key=data.tile_path)
                )
            key = (data.scene, data.row, data.col)
            result = await rt.in_thread(rt.infer_tile, data, artifact, key=key)
            result.latency_ms = (perf_counter() - start) * 1000.0
            return Response(result)
        if isinstance(data, SceneTileRequest):
            key = (data.scene, data.row, data.col)
            answer = await rt.in_thread(rt.infer_pixels, data, tiles, media, key=key)
        else:
            answer = await rt.in_thread(
                rt.infer_whole_pixels, data, tiles, media, key=data.tile_path
            )
        if isinstance(answer, bytes):
            return Response(answer, media_type=GEOTIFF if media == TIFF else PNG)
        answer.latency_ms = (perf_counter() - start) * 1000.0
        return Response(answer)

    @get(
        "/scenes",
        summary="List the rasters under the data root",
        description="A local data root only: under a remote one (an http(s):// or s3:// "
        "prefix) the answer is 501, and scenes are named by a path the client knows. "
        "The walk is bounded (`truncated` and `reason` say where it stopped), runs on its "
        "own thread, and its answer is reused for SATDASK_LIST_CACHE_SECONDS.",
        responses=_errors(401, 501),
    )
    async def scenes() -> SceneList:
        if isinstance(settings.data_root, RemoteRoot) or rt.listing is None:
            raise ListingUnsupportedError
        found = await rt.listing.get()
        return SceneList(scenes=found.scenes, truncated=found.truncated, reason=found.reason)

    @get(
        "/scenes/info",
        summary="A scene's CRS, shape, bands, dtype and tile grid",
        responses=_errors(400, 401, 404, 414, 422, 502),
    )
    async def scene_info(
        path: Annotated[
            str,
            Parameter(
                min_length=1,
                max_length=MAX_PATH_CHARS,
                description="Path of a GeoTIFF relative to the data root.",
            ),
        ],
    ) -> SceneInfo:
        return await rt.in_thread(rt.scene_info, path)

    @get(
        "/",
        summary="Where the API docs are (needs no API key)",
        opt={PUBLIC: True},
        security=[{}],
    )
    async def index() -> Index:
        return Index(docs=DOCS_PATH, openapi=OPENAPI_PATH, health="/health")

    page: list[str] = []  # rendered once, at the first request (the schema is built lazily)

    @get(DOCS_PATH, include_in_schema=False, media_type=MediaType.HTML)
    async def docs(request: Request[Any, Any, Any]) -> Response[str]:
        """The API docs as plain HTML from the OpenAPI document: no script, no CDN."""
        if not page:
            served = msgspec.json.encode(request.app.openapi_schema.to_schema())
            page.append(render_docs(msgspec.json.decode(served), openapi_url=OPENAPI_PATH))
        return Response(
            page[0], media_type=MediaType.HTML, headers={"Content-Security-Policy": CSP}
        )

    @get(f"{SCHEMA_PATH}/swagger", include_in_schema=False)
    async def swagger() -> Redirect:
        """Where Litestar's Swagger UI was (blank offline): the docs page now."""
        return Redirect(DOCS_PATH, status_code=308)

    @route(
        "/health",
        http_method=[HttpMethod.GET, HttpMethod.HEAD],
        summary="Liveness (needs no API key)",
        opt={PUBLIC: True},
        security=[{}],
    )
    async def health() -> Health:
        return Health(status="ok")

    @get("/ready", summary="Readiness: 200 once the model is loaded", responses=_errors(401, 503))
    async def ready() -> Ready:
        return Ready(status="ready", model_id=rt.require_model().id)

    @get("/model", summary="The loaded model and its lineage", responses=_errors(401, 503))
    async def model() -> ModelInfo:
        return rt.model_info()

    @get(
        "/metrics",
        summary="Prometheus metrics (per worker process)",
        media_type=CONTENT_TYPE,
        responses=_errors(401),
    )
    async def prometheus() -> bytes:
        metrics.scenes_cached.set(len(rt.scenes))
        return metrics.render()

    async def scene_names() -> list[str] | None:
        return None if rt.listing is None else (await rt.listing.get()).scenes

    tiles = Tiles(
        in_thread=rt.in_thread,
        scene=rt.scene,
        scenes=scene_names,
        runs=RunsRoot(settings.runs_root) if settings.runs_root is not None else None,
        data_root=settings.data_root,
        cache=TileCache(),
    )

    def handle_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
        status, body, headers = describe_exception(exc, settings.data_root)
        metrics.observe_unmatched(request.scope, status)
        return Response(body, status_code=status, headers=headers, media_type=MediaType.JSON)

    components = Components()
    security: list[dict[str, list[str]]] = []
    if settings.api_key:
        components = Components(
            security_schemes={
                "bearer": SecurityScheme(type="http", scheme="bearer"),
                "apiKey": SecurityScheme(
                    type="apiKey", name="X-API-Key", security_scheme_in="header"
                ),
            }
        )
        security = [{"bearer": []}, {"apiKey": []}]

    app = Litestar(
        route_handlers=[
            index,
            docs,
            swagger,
            infer,
            scenes,
            scene_info,
            health,
            ready,
            model,
            prometheus,
            *map_routes(rt),
            *tile_routes(tiles),
        ],
        lifespan=[lifespan],
        middleware=[MetricsMiddleware(metrics)],
        exception_handlers={Exception: handle_error},
        guards=[
            on_the_loop(guard)
            for guard in (
                host_guard(settings.allowed_hosts) if settings.allowed_hosts else None,
                api_key_guard(settings.api_key) if settings.api_key else None,
            )
            if guard is not None
        ],
        request_max_body_size=settings.max_body_bytes,
        request_class=ServiceRequest,
        type_decoders=[(is_infer_request, decode_infer_request)],
        plugins=[InferRequestSchemaPlugin()],
        openapi_config=OpenAPIConfig(
            title="satdask",
            version=satdask.__version__,
            description="Single-tile predictions over satellite scenes.",
            path=SCHEMA_PATH,
            # JSON only: Swagger UI loads its scripts from a CDN, blank offline (see docs.py)
            render_plugins=[JsonRenderPlugin()],
            components=components,
            security=security or None,
        ),
        logging_config=None,
        debug=False,
    )
    app.state.runtime = rt
    return app
