"""Hashes and versions that make every output traceable to its inputs."""

from __future__ import annotations

import hashlib
import json
import os
import platform
from collections.abc import Mapping
from importlib import metadata
from typing import Any

_CHUNK = 8 * 1024 * 1024
_TRACKED = (
    "satdask",
    "numpy",
    "dask",
    "distributed",
    "xarray",
    "rioxarray",
    "rasterio",
    "zarr",
)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Content hash of a file, streamed so memory stays flat for any size."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def canonical_json(obj: Mapping[str, Any]) -> bytes:
    """One byte string per value: sorted keys, no whitespace, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def canonical_sha256(obj: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(obj)).hexdigest()


def versions() -> dict[str, str]:
    """Versions of satdask, its key dependencies, GDAL and Python."""
    out: dict[str, str] = {}
    for name in _TRACKED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    import rasterio

    out["gdal"] = rasterio.__gdal_version__
    out["python"] = platform.python_version()
    return out


def scene_sha256(uri: str) -> str | None:
    """sha256 of a local scene; None for a remote one, which would mean a full download."""
    from satdask.scene import is_remote

    return None if is_remote(uri) else file_sha256(uri)
