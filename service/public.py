"""What a client may see: its own names for files, messages without server paths, error bodies.

A client names scenes by paths relative to the data root; every file or URL behind those
names is the server's business. `SatdaskError.uri` tells which file an error's message
names, so the service puts the client's name in its place (`client_error`). Whatever
else a message holds (GDAL quoting another path, an error raised without `uri`) passes
`scrub`, the fallback that hides any remaining absolute path or URL.

This module sits above `remote` (it needs `RemoteRoot`) and below the app, so the
service's modules import bottom-up: errors, paths, remote, public.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from litestar.exceptions import HTTPException, ValidationException

from satdask._uri import is_remote
from satdask.errors import SatdaskError
from service.errors import (
    ListingUnsupportedError,
    ModelNotReadyError,
    error_body,
    status_for,
)
from service.remote import RemoteRoot

log = logging.getLogger("satdask.service")

# An absolute path: a '/' at the start or after a space, quote, bracket or '='.
_ABSOLUTE_PATH = re.compile(r"(?<![^\s'\"(\[=])/[^\s'\",;()\[\]]+")
# A URL (scheme://...): the host of a remote data root is the server's business.
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\",;()\[\]]*")
# What Litestar's Request.stream raises when the connection closes before the body is in:
# the client went away (or service.protocol cut a body that stopped arriving), no bug.
_DISCONNECTED = "client disconnected prematurely"


def spellings(uri: str) -> tuple[str, ...]:
    """How GDAL and satdask write `uri` in messages, longest first."""
    if uri.startswith("s3://"):
        return ("/vsis3/" + uri[len("s3://") :], uri)
    if uri.startswith(("http://", "https://")):
        return ("/vsicurl/" + uri, uri)
    return (uri,)


def renamed(message: str, uri: str, name: str) -> str:
    """`message` with every spelling of `uri` replaced by `name`."""
    for spelling in spellings(uri):
        message = message.replace(spelling, name)
    return message


def client_error(exc: SatdaskError, name: str) -> SatdaskError:
    """`exc`, whose message names a file (`exc.uri`), now naming it by the client's `name`.

    Changed in place: the error was just raised for this name's open or read, and is
    kept (in the scene cache) only in this form. An error without `uri` is left as it is
    for `scrub`.
    """
    if exc.uri:
        exc.args = (renamed(str(exc), exc.uri, name), *exc.args[1:])
        exc.uri = name
    return exc


def public_uri(uri: Any, root: Path | RemoteRoot) -> Any:
    """A URI a client may see: relative under the root, a URL without its query, or the
    bare file name for any other local path."""
    if not isinstance(uri, str) or not uri:
        return uri
    if isinstance(root, RemoteRoot) and uri.startswith(root.url) and root.contains(uri):
        return uri[len(root.url) :].split("?", 1)[0]
    if is_remote(uri):
        return uri.split("?", 1)[0]
    path = Path(uri)
    if isinstance(root, Path) and path.is_absolute() and path.is_relative_to(root):
        return path.relative_to(root).as_posix()
    return path.name


def public_lineage(lineage: Any, root: Path | RemoteRoot) -> dict[str, Any]:
    """The training lineage with scene URIs made public (see `public_uri`)."""
    out = dict(lineage)
    scenes = out.get("scenes")
    if isinstance(scenes, list):
        out["scenes"] = [
            {**s, "uri": public_uri(s.get("uri"), root)} if isinstance(s, dict) else s
            for s in scenes
        ]
    return out


def scrub(message: str, root: Path | RemoteRoot | None) -> str:
    """The fallback: `message` with paths under `root` made relative and any other
    absolute path or URL hidden."""
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


def public_message(exc: SatdaskError, root: Path | RemoteRoot | None) -> str:
    """An error's message as a client may read it.

    A `uri` the service has not yet given the client's name (an absolute path or a URL)
    gets its public name (`public_uri`); then `scrub` hides whatever else the text holds.
    """
    text = str(exc)
    uri = exc.uri
    if uri and root is not None and (is_remote(uri) or Path(uri).is_absolute()):
        text = renamed(text, uri, str(public_uri(uri, root)))
    return scrub(text, root)


def describe_exception(
    exc: Exception, root: Path | RemoteRoot | None
) -> tuple[int, dict[str, Any], Mapping[str, str] | None]:
    """(status, JSON body, extra headers) for any exception: the single mapping point."""
    if isinstance(exc, HTTPException):
        status = exc.status_code
        if status >= 500 and exc.detail == _DISCONNECTED:
            log.info("a request's body did not arrive: the connection closed")
            return 400, error_body(400, "the connection closed before the body arrived"), None
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
        return status, error_body(status, public_message(exc, root)), None
    log.error("internal error", exc_info=exc)
    return 500, error_body(500, "internal server error"), None
