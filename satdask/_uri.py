"""What a scene or store name is: a local path, a URL, or an in-memory STAC item.

One place for the tests that used to be repeated in the raster, STAC, store and
lineage code, so a new scheme is added once.
"""

from __future__ import annotations

import os
from pathlib import Path

from satdask.errors import SceneError

REMOTE_PREFIXES = ("http://", "https://", "s3://", "/vsi")
HTTP_PREFIXES = ("http://", "https://")
NO_SELF_HREF = "stac-item:"  # uri prefix of an in-memory STAC item that was never saved


def is_remote(uri: str) -> bool:
    """Read over the network (or through a GDAL virtual file system), not from a local path."""
    return uri.startswith(REMOTE_PREFIXES)


def is_http(uri: str) -> bool:
    return uri.startswith(HTTP_PREFIXES)


def is_url(text: str | os.PathLike[str]) -> bool:
    """Any `scheme://...`: a destination that fsspec, not the local file system, writes."""
    return "://" in os.fspath(text)


def normalize_uri(source: str | os.PathLike[str]) -> str:
    """Absolute path for local files (checked to exist), the URL unchanged otherwise."""
    uri = os.fspath(source)
    if is_remote(uri):
        return uri
    if uri.startswith("file://"):
        uri = uri[len("file://") :]
    path = Path(uri).expanduser()
    if not path.exists():
        raise SceneError(f"{uri}: no such file", uri=uri)
    if path.is_dir():
        raise SceneError(f"{uri}: is a directory, not a raster file", uri=uri)
    if path.stat().st_size == 0:
        raise SceneError(f"{uri}: file is empty", uri=uri)
    return str(path.resolve())
