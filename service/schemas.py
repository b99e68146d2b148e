"""Typed request and response bodies; Litestar builds the OpenAPI schema from them.

`POST /infer` takes one of two bodies. msgspec decodes untagged unions of two object
types only through a hook, so both forms derive from the `InferRequest` mixin: the
hook picks the form by its keys and the schema plugin documents `oneOf` the two.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from litestar.openapi.spec import Reference, Schema
from litestar.plugins import OpenAPISchemaPlugin
from litestar.typing import FieldDefinition

from service.paths import MAX_PATH_CHARS

RelativePath = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=MAX_PATH_CHARS,
        description="Path of a GeoTIFF relative to the data root, e.g. `scenes/a.tif`.",
        examples=["RGB.byte.tif"],
    ),
]
TileIndex = Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1, description="0-based tile index.")]
PaddingName = Annotated[
    Literal["reflect", "symmetric", "edge", "zeros"],
    msgspec.Meta(
        description="What a pixel model's windows see beyond the scene's edge, as in a "
        "batch run (`run_batch(padding=)`); reflect when omitted. A threshold model reads "
        "the tile alone, so its answer does not depend on it."
    ),
]


class InferRequest:
    """Marker base of the two request forms (a mixin, so no fields and empty slots)."""

    __slots__ = ()


class TilePathRequest(msgspec.Struct, InferRequest, forbid_unknown_fields=True):
    """The reference pipeline's form: a whole (small) raster treated as one tile."""

    tile_path: RelativePath
    padding: PaddingName | None = None


class SceneTileRequest(msgspec.Struct, InferRequest, forbid_unknown_fields=True):
    """One tile of a scene, by row and column in the service's tile grid."""

    scene: RelativePath
    row: TileIndex
    col: TileIndex
    padding: PaddingName | None = None


def decode_infer_request(_: type, value: Any) -> InferRequest:
    """Pick the form by its keys; msgspec then validates that form strictly.

    JSON Schema's `integer` includes numbers like 2.0, which msgspec's `int` refuses:
    integral floats become ints first, so the server accepts what its schema allows.
    """
    if isinstance(value, dict) and "tile_path" in value:
        return msgspec.convert(value, TilePathRequest)
    if isinstance(value, dict):
        value = {k: _integral(v) if k in ("row", "col") else v for k, v in value.items()}
    return msgspec.convert(value, SceneTileRequest)


def _integral(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def is_infer_request(annotation: Any) -> bool:
    return annotation is InferRequest


class InferRequestSchemaPlugin(OpenAPISchemaPlugin):
    """Documents `InferRequest` as oneOf the two forms, each closed to unknown fields."""

    @staticmethod
    def is_plugin_supported_type(value: Any) -> bool:
        return value is InferRequest

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: Any) -> Schema:
        union = FieldDefinition.from_annotation(TilePathRequest | SceneTileRequest)
        schema = schema_creator.for_field_definition(union)
        for ref in schema.one_of or ():
            if isinstance(ref, Reference):  # forbid_unknown_fields, said in the schema
                schema_creator.schema_registry.from_reference(
                    ref
                ).schema.additional_properties = False
        return schema


class TilePathResponse(msgspec.Struct):
    """The reference pipeline's answer."""

    prediction: Annotated[int, msgspec.Meta(description="1 bright, 0 dark, -1 no prediction")]
    mean_intensity: float | None
    model_path: Annotated[str, msgspec.Meta(description="artifact file within the registry")]
    model_id: str


Status = Literal["ok", "nodata", "failed"]


class SceneTileResponse(msgspec.Struct):
    scene: str
    row: int
    col: int
    prediction: Annotated[int, msgspec.Meta(description="1 bright, 0 dark, -1 no prediction")]
    mean_intensity: float | None
    std_intensity: float | None
    valid_fraction: float
    status: Status
    bounds: Annotated[
        list[float], msgspec.Meta(description="left, bottom, right, top in the scene's CRS")
    ]
    crs: str
    model_id: str
    latency_ms: float


class PixelTileResponse(msgspec.Struct):
    """A pixel model's tile: its pixels by class, and its one class."""

    scene: str
    row: int
    col: int
    counts: Annotated[
        dict[str, int],
        msgspec.Meta(
            description="pixels of the tile in each of the model's classes, by class name "
            "(every class, 0 included); empty for a window classifier, whose answer is the "
            "tile's one class (`prediction`)"
        ),
    ]
    nodata: Annotated[
        int, msgspec.Meta(description="pixels of the tile with no class: nodata or masked")
    ]
    fractions: Annotated[
        dict[str, float | None],
        msgspec.Meta(
            description="each class's share of the tile's pixels with a class (s2cloudless: "
            "`cloud` is the tile's cloud fraction); null when none has one; empty for a window "
            "classifier"
        ),
    ]
    prediction: Annotated[
        int,
        msgspec.Meta(
            description="the tile's class value, as a run's tile grid has it: the majority "
            "class of its pixels with a class, ties to the first class (a window "
            "classifier: its window's class); -1 when no pixel holds data"
        ),
    ]
    width: Annotated[int, msgspec.Meta(description="the tile's pixels across (less at an edge)")]
    height: int
    window: Annotated[int, msgspec.Meta(description="side of the model's windows in px")]
    halo: Annotated[int, msgspec.Meta(description="context cropped from each window's side")]
    padding: Literal["reflect", "symmetric", "edge", "zeros"]
    bounds: Annotated[
        list[float], msgspec.Meta(description="left, bottom, right, top in the scene's CRS")
    ]
    crs: str
    model_id: str
    model_sha256: Annotated[
        str, msgspec.Meta(description="the model artifact's sha256, as a run store records it")
    ]
    latency_ms: float


class ErrorBody(msgspec.Struct, omit_defaults=True):
    status_code: int
    detail: str
    extra: list[dict[str, Any]] | dict[str, Any] | None = None


class Index(msgspec.Struct):
    """`GET /`: where a newcomer reads on."""

    docs: Annotated[str, msgspec.Meta(description="the API docs, one HTML page")]
    openapi: Annotated[str, msgspec.Meta(description="the OpenAPI document (JSON)")]
    health: str


class Health(msgspec.Struct):
    status: Literal["ok"]


class Ready(msgspec.Struct):
    status: Literal["ready"]
    model_id: str


class SceneList(msgspec.Struct):
    scenes: list[str]
    truncated: bool
    reason: Annotated[
        Literal["scenes", "entries", "depth", "time"] | None,
        msgspec.Meta(
            description="the bound that cut the listing short: scenes found, directory "
            "entries looked at, folder depth or time (SATDASK_LIST_*); null when complete"
        ),
    ] = None


class TileGridInfo(msgspec.Struct):
    tile_size: int
    edge: str
    rows: int
    cols: int


class SceneInfo(msgspec.Struct):
    path: str
    crs: str
    shape: Annotated[list[int], msgspec.Meta(description="bands, height, width")]
    width: int
    height: int
    bands: int
    dtype: str
    nodata: float | None
    bounds: list[float]
    grid: TileGridInfo


class ModelInfo(msgspec.Struct):
    id: str
    sha256: str
    kind: str
    threshold: float | None
    created_at: str
    model_path: str
    training: dict[str, Any]
    lineage: dict[str, Any]
