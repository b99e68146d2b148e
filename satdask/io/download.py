"""Getting scenes onto local disk: checksummed, idempotent downloads.

A download is written next to its final path and moved into place at the end, so a
crash never leaves a file that looks finished.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO
from urllib.error import HTTPError, URLError
from urllib.parse import unquote, urlsplit, urlunsplit
from urllib.request import Request, url2pathname, urlopen

from satdask.errors import IngestError
from satdask.io.lineage import file_sha256

__all__ = ["IngestResult", "ingest"]


_CHUNK = 1024 * 1024
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True)
class IngestResult:
    """Where an ingested file is, its content hash, and whether this call fetched it."""

    path: Path
    sha256: str
    downloaded: bool  # False when the file was already there with the right checksum


def _redact(url: str) -> str:
    """The URL without any password, for error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username}:***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _strip_credentials(url: str) -> str:
    parts = urlsplit(url)
    if parts.username is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _source(url: str) -> tuple[str, str, str]:
    """(kind, location, file name) for a URL or local path; kind is 'http' or 'file'."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - validates the port
    except ValueError as exc:
        raise IngestError(f"ingest: {url!r} is not a valid URL ({exc})") from exc
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        kind, location = "http", url
        path = unquote(parts.path)
        name = "" if path.endswith("/") else PurePosixPath(path).name
    elif scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise IngestError(f"ingest: {url}: file:// URLs must not name a remote host")
        kind, location = "file", url2pathname(parts.path)
        name = Path(location).name
    elif scheme == "" or (len(scheme) == 1 and os.name == "nt"):  # plain or C:\ path
        kind, location = "file", url
        name = Path(url).name
    else:
        raise IngestError(
            f"ingest: {_redact(url)}: unsupported scheme {parts.scheme!r}; "
            "use http, https, file:// or a local path"
        )
    if name in ("", ".", "..") or "\x00" in name:
        raise IngestError(f"ingest: {_redact(url)}: cannot derive a file name from the URL path")
    return kind, location, name


@contextlib.contextmanager
def _open_source(kind: str, location: str, *, timeout: float) -> Iterator[tuple[BinaryIO, int]]:
    """A readable stream and its expected length (-1 if unknown)."""
    if kind == "file":
        try:
            f = open(location, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError as exc:
            raise IngestError(f"ingest: {location}: no such file") from exc
        except IsADirectoryError as exc:
            raise IngestError(f"ingest: {location}: is a directory, not a file") from exc
        except OSError as exc:
            raise IngestError(f"ingest: {location}: cannot open ({exc.strerror})") from exc
        with f:
            yield f, os.fstat(f.fileno()).st_size
        return
    request = Request(_strip_credentials(location), headers={"User-Agent": "satdask-ingest"})
    parts = urlsplit(location)
    if parts.username is not None:
        # urllib does not read user:password@ from the URL. Unredirected, so a redirect
        # to another host never receives the credentials.
        user_pass = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        token = base64.b64encode(user_pass.encode()).decode("ascii")
        request.add_unredirected_header("Authorization", f"Basic {token}")
    with urlopen(request, timeout=timeout) as response:
        length = response.headers.get("Content-Length")
        yield response, int(length) if length and length.isdigit() else -1


def _fetch(kind: str, location: str, dest: Path, *, timeout: float) -> tuple[str, int, int]:
    """Stream the source into ``dest`` (created exclusively).

    Returns the sha256, the bytes received and the bytes announced (-1 if unknown).
    """
    digest = hashlib.sha256()
    received = 0
    with (
        _open_source(kind, location, timeout=timeout) as (src, expected_len),
        open(dest, "xb") as out,
    ):
        while chunk := src.read(_CHUNK):
            digest.update(chunk)
            out.write(chunk)
            received += len(chunk)
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest(), received, expected_len


def _place(tmp: Path, final: Path) -> bool:
    """Move ``tmp`` to ``final`` without ever replacing an existing file.

    Returns False if ``final`` appeared in the meantime (the caller compares contents).
    A hard link is atomic and fails on an existing target; filesystems without hard
    links fall back to an exclusive create followed by a rename.
    """
    try:
        os.link(tmp, final)
    except FileExistsError:
        return False
    except OSError:
        try:
            fd = os.open(final, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        os.close(fd)
        os.replace(tmp, final)
        return True
    tmp.unlink()
    return True


def ingest(
    url: str,
    out_dir: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    timeout: float = 60.0,
) -> IngestResult:
    """Download ``url`` into ``out_dir`` once, verifying its checksum.

    ``url`` may be http(s), file:// or a local path; the file keeps the basename of
    the URL path. A file already present with the expected ``sha256`` is returned
    without any network request. A file already present with other content is never
    overwritten. Downloads stream to a hidden temporary file in ``out_dir`` and are
    moved into place only once complete and verified.
    """
    if sha256 is not None:
        if not isinstance(sha256, str) or not _HEX64.fullmatch(sha256):
            raise IngestError(f"ingest: sha256 must be 64 hexadecimal characters, got {sha256!r}")
        sha256 = sha256.lower()
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise IngestError(f"ingest: timeout must be a positive number of seconds, got {timeout!r}")
    shown = _redact(url)
    kind, location, name = _source(url)

    directory = Path(out_dir)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise IngestError(f"ingest: cannot create out_dir {str(directory)!r}: {exc}") from exc
    final = directory / name

    if final.exists():
        if not final.is_file():
            raise IngestError(f"ingest: {str(final)!r} exists and is not a file")
        if sha256 is not None:
            existing = file_sha256(final)
            if existing == sha256:
                return IngestResult(final, existing, downloaded=False)
            raise IngestError(
                f"ingest: {str(final)!r} already exists with different content "
                f"(sha256 {existing}, expected {sha256}); remove it to download {shown}"
            )

    tmp = directory / f".{name}.partial-{uuid.uuid4().hex}"
    try:
        try:
            actual, received, announced = _fetch(kind, location, tmp, timeout=timeout)
        except HTTPError as exc:
            exc.close()  # it holds the response and its socket
            raise IngestError(f"ingest: {shown}: HTTP {exc.code} {exc.reason}") from exc
        except URLError as exc:
            raise IngestError(f"ingest: {shown}: cannot connect ({exc.reason})") from exc
        except TimeoutError as exc:
            raise IngestError(f"ingest: {shown}: timed out after {timeout:g} s") from exc
        except (http.client.HTTPException, OSError) as exc:
            detail = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise IngestError(f"ingest: {shown}: download failed ({detail})") from exc
        if announced >= 0 and received != announced:
            # urllib's read(n) returns short data instead of raising when a server hangs up.
            raise IngestError(
                f"ingest: {shown}: truncated download (received {received} of {announced} bytes)"
            )

        if sha256 is not None and actual != sha256:
            raise IngestError(
                f"ingest: {shown}: checksum mismatch (expected sha256 {sha256}, got {actual})"
            )
        if _place(tmp, final):
            return IngestResult(final, actual, downloaded=True)
        try:
            existing = file_sha256(final)
        except OSError as exc:
            raise IngestError(f"ingest: {str(final)!r} exists but cannot be read: {exc}") from exc
        if existing == actual:
            return IngestResult(final, actual, downloaded=False)
        raise IngestError(
            f"ingest: {str(final)!r} already exists with different content "
            f"(sha256 {existing}; {shown} has {actual}); not overwriting"
        )
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
