"""A remote data root: the operator's `http(s)://` or `s3://` URL prefix that scenes live under.

Only the operator names a URL (`SATDASK_DATA_ROOT` / `--data-root`). A client still names
a relative path, checked by exactly the rules of a local root (`paths.check_relative`: no
`..`, no absolute path, no scheme, no `%`, no control character, `.tif`/`.tiff` only, ...),
plus `?` and `#`, which a URL parser would read as a query or fragment. The path is then
appended to the prefix, percent-encoded for HTTP, so every URL the service asks for lies
under the prefix: no segment can climb out of it, and nothing can change the host.

A remote file is looked at through GDAL with only the GTiff driver allowed (the remote
counterpart of the TIFF signature check), outside GDAL's cache: GDAL remembers a missing
URL for the life of the process, and a scene uploaded after a client asked for it must be
found. A look answers in one of GDAL's messages, sorted here into missing (the same 404 as
a missing local file), not a TIFF, unreadable, or a store that did not answer (502).
"""

from __future__ import annotations

import logging
import posixpath
import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote, unquote, urlsplit

import rasterio
from rasterio.errors import RasterioError

from satdask.errors import SatdaskError, SceneError
from satdask.io._gdal import configure_gdal, gdal_message
from service.errors import ConfigError, NotFoundError, RemoteUnavailableError
from service.paths import check_relative

log = logging.getLogger("satdask.service")

REMOTE_SCHEMES = ("http", "https", "s3")
_URL_FORBIDDEN = frozenset("?#")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# A 4xx is about the name (S3 answers 403 for a missing key when it may not list the
# bucket; a name too long for the store is 400 or 414): missing, like a missing local file.
# Except these, which are about the service's own credentials or pace, and any 5xx.
_HTTP_CODE = re.compile(r"HTTP response code: (\d{3})")
_STORE_CODES = frozenset({401, 407, 408, 429})
_MISSING_TEXT = (
    "does not exist in the file system",
    "The specified key does not exist",
    "Access Denied",
    "AccessDenied",
)
_STORE_TEXT = ("CURL error", "bucket does not exist", "Access Key Id", "SignatureDoesNotMatch")
_NOT_TIFF_TEXT = "not recognized as being in a supported file format"

StoreFailure = Literal["missing", "unavailable"]
Failure = Literal["missing", "unavailable", "not_tiff", "unreadable"]


def looks_like_url(text: str) -> bool:
    return bool(_SCHEME.match(text))


@dataclass(frozen=True)
class RemoteRoot:
    """`scheme://host/prefix/`, always ending in '/'; `str()` gives it back."""

    url: str

    @classmethod
    def parse(cls, text: str) -> RemoteRoot:
        """The operator's URL, checked; ConfigError names what is wrong with it."""
        parts = urlsplit(text)
        scheme = parts.scheme.lower()
        if scheme not in REMOTE_SCHEMES:
            raise ConfigError(
                f"data root {text!r}: a remote data root must be an http://, https:// or s3:// URL"
            )
        if not parts.hostname:
            raise ConfigError(f"data root {text!r}: the URL names no host (or bucket)")
        if parts.username is not None or parts.password is not None:
            raise ConfigError(
                f"data root {parts.scheme}://...@{parts.hostname}: credentials in the URL would "
                "reach logs; give them in the environment (AWS_*, GDAL_HTTP_*)"
            )
        if parts.query or parts.fragment or "?" in text or "#" in text:
            raise ConfigError(f"data root {text!r}: the URL may have no query or fragment")
        path = parts.path or "/"
        if any(segment in (".", "..") for segment in unquote(path).split("/")):
            raise ConfigError(f"data root {text!r}: the URL's path may not hold '.' or '..'")
        if not path.endswith("/"):
            path += "/"
        return cls(f"{scheme}://{parts.netloc}{path}")

    def __str__(self) -> str:
        return self.url

    @property
    def scheme(self) -> str:
        return self.url.split("://", 1)[0]

    def join(self, text: object) -> tuple[str, str]:
        """(normalised relative path, URL) of a client's path; NotFoundError if refused.

        The relative path passes `check_relative` (the local rules) and holds no `?` or
        `#`. For HTTP it is percent-encoded as UTF-8; an S3 key is given as it is, since
        GDAL encodes the key itself.
        """
        rel = check_relative(text).as_posix()
        if not _URL_FORBIDDEN.isdisjoint(rel):
            raise NotFoundError
        try:
            encoded = quote(rel, safe="/") if self.scheme != "s3" else rel
            encoded.encode("utf-8")  # a lone surrogate cannot be sent
        except UnicodeEncodeError:
            raise NotFoundError from None
        url = self.url + encoded
        if not self.contains(url):  # cannot happen after check_relative; kept as a guard
            raise NotFoundError
        return rel, url

    def contains(self, url: str) -> bool:
        """Whether `url`, with its path decoded and normalised, lies under the prefix."""
        root, other = urlsplit(self.url), urlsplit(url)
        if (other.scheme.lower(), other.netloc) != (root.scheme, root.netloc):
            return False
        if other.query or other.fragment:
            return False
        return posixpath.normpath(unquote(other.path)).startswith(unquote(root.path))

    def vsi_prefixes(self) -> tuple[str, ...]:
        """How GDAL and satdask spell the prefix in messages, longest first."""
        if self.scheme == "s3":
            return ("/vsis3/" + self.url[len("s3://") :], self.url)
        return ("/vsicurl/" + self.url, self.url)

    def vsi_family(self) -> str:
        return "/vsis3/" if self.scheme == "s3" else "/vsicurl/"


def _without_url(message: str, url: str) -> str:
    """GDAL's message without the file's own name, which the client chose."""
    vsi = "/vsis3/" + url[len("s3://") :] if url.startswith("s3://") else "/vsicurl/" + url
    return message.replace(vsi, "<scene>").replace(url, "<scene>")


def store_failure(message: str, url: str) -> StoreFailure | None:
    """What GDAL's message about `url` says of the store: the name is missing there, the
    store did not answer, or None when it blames the bytes (a read that did not decode)."""
    message = _without_url(message, url)
    if match := _HTTP_CODE.search(message):
        code = int(match.group(1))
        return "missing" if 400 <= code < 500 and code not in _STORE_CODES else "unavailable"
    if any(text in message for text in _MISSING_TEXT):
        return "missing"
    if any(text in message for text in _STORE_TEXT):
        return "unavailable"
    return None


def classify(message: str, url: str) -> Failure:
    """Sort GDAL's message about a file that would not open into what the client is told."""
    if failure := store_failure(message, url):
        return failure
    message = _without_url(message, url)
    if _NOT_TIFF_TEXT in message:
        return "not_tiff"
    if "TIFF" in message:  # libtiff's own complaint: the file, not the store
        return "unreadable"
    return "unavailable"  # a remote open failing for an unknown reason: the store's


def remote_error(rel: str, url: str, failure: Failure, message: str) -> SatdaskError:
    """The error a client gets for a failed look at a remote file (never the URL)."""
    if failure == "missing":
        log.debug("remote scene %s: missing (%s)", url, message)
        return NotFoundError()
    if failure == "unavailable":
        log.warning("remote scene %s: the data root did not answer: %s", url, message)
        return RemoteUnavailableError(rel)
    if failure == "not_tiff":
        return SceneError(f"{rel}: not a readable raster (not a TIFF)")
    return SceneError(f"{rel}: not a readable raster")


def look(root: RemoteRoot, url: str) -> tuple[Failure, str] | None:
    """Open `url` with only GDAL's GTiff driver, bypassing GDAL's cache: None when it opens,
    else (what went wrong, GDAL's message).

    On the service's reader threads `rasterio.Env` sets thread-local options, so only
    this look goes uncached. `CPL_VSIL_CURL_NON_CACHED` also drops what this handle
    fetched when it closes, so the header is fetched again by `open_scene` (about 32 KB
    once per scene, not per request).
    """
    configure_gdal()
    try:
        with (
            rasterio.Env(CPL_VSIL_CURL_NON_CACHED=root.vsi_family()),
            rasterio.open(url, driver="GTiff"),
        ):
            return None
    except RasterioError as exc:
        message = gdal_message(exc)
    return classify(message, url), message


def recheck(root: RemoteRoot, url: str, message: str) -> tuple[StoreFailure, str] | None:
    """After a remote read failed (retries included): was it the store?

    GDAL's read errors name only libtiff's short read, not the HTTP answer behind it, so
    the store is asked again (a `look`, on this failure path only): a missing file or a
    store that does not answer is the store's failure; a file that still opens had bytes
    that did not decode (or a store that fails only some ranges: the two look alike).
    """
    if failure := store_failure(message, url):
        return failure, message
    failed = look(root, url)
    if failed is None:
        return None
    found, text = failed
    if found == "missing" or found == "unavailable":
        return found, text
    return None
