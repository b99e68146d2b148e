"""The one table from exceptions to HTTP status codes, and the JSON error body.

Like titiler's `errors.py`: every satdask exception class maps to a status here and
nowhere else. Litestar's own HTTP exceptions keep their status (a validation failure
is 400, an oversized body 413). Anything else is a bug: 500 with a generic message,
the traceback goes to the log only. Messages pass through `public_message`, so no
server filesystem path reaches a client.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from satdask.errors import (
    GridError,
    ModelError,
    RegistryError,
    SatdaskError,
    SceneError,
    ValidationError,
)

if TYPE_CHECKING:
    from service.remote import RemoteRoot

log = logging.getLogger("satdask.service")


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


# An absolute path: a '/' at the start or after a space, quote, bracket or '='.
_ABSOLUTE_PATH = re.compile(r"(?<![^\s'\"(\[=])/[^\s'\",;()\[\]]+")
# A URL (scheme://...): the host of a remote data root is the server's business.
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\",;()\[\]]*")


def public_message(message: str, root: Path | RemoteRoot | None) -> str:
    """`message` with paths under `root` made relative and any other absolute path or URL
    hidden."""
    text = message
    if isinstance(root, Path):
        prefix = str(root).rstrip("/")
        text = text.replace(prefix + "/", "").replace(prefix, ".")
    elif root is not None:
        for prefix in root.vsi_prefixes():
            text = text.replace(prefix, "")
    text = _URL.sub("<url>", text)
    text = _ABSOLUTE_PATH.sub("<path>", text)
    return " ".join(text.split())


def error_body(status_code: int, detail: str, extra: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"status_code": status_code, "detail": detail}
    if extra:
        body["extra"] = extra
    return body


def describe_exception(
    exc: Exception, root: Path | RemoteRoot | None
) -> tuple[int, dict[str, Any], Mapping[str, str] | None]:
    """(status, JSON body, extra headers) for any exception: the single mapping point."""
    from litestar.exceptions import HTTPException, ValidationException

    if isinstance(exc, HTTPException):
        status = exc.status_code
        if status >= 500:
            log.error("internal error", exc_info=exc)
            return status, error_body(status, "internal server error"), None
        extra = exc.extra if isinstance(exc.extra, list | dict) else None
        detail = exc.detail
        if isinstance(exc, ValidationException):
            # "Validation failed for GET /scenes/info?path=...": the query is the client's
            # own input (up to the URL limit), not worth echoing; the route is enough.
            detail = detail.split("?", 1)[0]
        return status, error_body(status, detail, extra), exc.headers or None
    if isinstance(exc, SatdaskError):
        status = status_for(exc)
        if status >= 500 and not isinstance(exc, ModelNotReadyError | ListingUnsupportedError):
            log.error("service error: %s", exc)
        return status, error_body(status, public_message(str(exc), root)), None
    log.error("internal error", exc_info=exc)
    return 500, error_body(500, "internal server error"), None
