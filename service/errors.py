"""The one table from exceptions to HTTP status codes, and the JSON error body.

Like titiler's `errors.py`: every satdask exception class maps to a status here and
nowhere else. Litestar's own HTTP exceptions keep their status (a validation failure
is 400, an oversized body 413). Anything else is a bug: 500 with a generic message.
The bottom of the service: it imports nothing of it. `service.public` turns an
exception into the body a client sees, with no server path in it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from satdask.errors import (
    GridError,
    ModelError,
    RegistryError,
    SatdaskError,
    SceneError,
    ValidationError,
)


class ConfigError(SatdaskError):
    """A service setting is missing or invalid."""


class NotFoundError(SatdaskError):
    """No scene at that path, or one the service may not open: both answer alike."""

    def __init__(self) -> None:
        super().__init__("no such scene under the data root")


class TileOutsideGridError(GridError):
    """A row or column beyond the scene's tile grid."""


class TileReadError(SceneError):
    """A tile whose bytes cannot be decoded; the message names the scene and the tile."""


class RasterTooLargeError(SceneError):
    """A whole-raster request (`tile_path`) over the service's pixel limit."""


class RemoteUnavailableError(SatdaskError):
    """A remote data root that did not answer (network, credentials, a server error).

    The message names the scene only: the URL and the store's reason go to the log.
    """

    def __init__(self, rel: str) -> None:
        super().__init__(f"{rel}: the data root did not answer; try again later")


class ListingUnsupportedError(SatdaskError):
    """`GET /scenes` on a remote data root: a plain HTTP server cannot be listed."""

    def __init__(self) -> None:
        super().__init__(
            "the data root is a remote URL prefix, which cannot be listed; "
            "name a scene by its path relative to the data root"
        )


class NotAcceptableError(SatdaskError):
    """An Accept header the loaded model cannot answer: an image of a model without
    per-pixel classes, or a media type the service does not serve."""


class ModelNotReadyError(SatdaskError):
    """No model is loaded; the service is alive but not ready."""

    def __init__(self) -> None:
        super().__init__("model not loaded; the service is not ready")


# The table. A class not listed takes the status of its nearest listed base class.
STATUS_BY_ERROR: Mapping[type[BaseException], int] = {
    NotFoundError: 404,
    TileOutsideGridError: 404,
    TileReadError: 422,
    RasterTooLargeError: 422,
    ModelNotReadyError: 503,
    NotAcceptableError: 406,
    ListingUnsupportedError: 501,
    RemoteUnavailableError: 502,
    ConfigError: 500,
    SceneError: 422,
    ValidationError: 422,
    GridError: 422,
    ModelError: 500,
    RegistryError: 503,
    SatdaskError: 400,
}


def status_for(exc: BaseException) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 500


def error_body(status_code: int, detail: str, extra: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"status_code": status_code, "detail": detail}
    if extra:
        body["extra"] = extra
    return body
