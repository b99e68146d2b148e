"""Hashes and versions that make every output traceable to its inputs."""

from __future__ import annotations

import hashlib
import json
import os
import platform
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from satdask._files import write_new
from satdask._uri import NO_SELF_HREF, is_remote

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
    """sha256 of a local scene; None for a remote one, which would mean a full download.

    For a STAC item this is the item JSON's; its StackSource's `lineage()` lists its assets'.
    """
    if is_remote(uri) or uri.startswith(NO_SELF_HREF):  # the latter: an unsaved item
        return None
    return cached_file_sha256(uri)


def cache_dir(environ: Mapping[str, str] = os.environ) -> Path:
    if "SATDASK_CACHE_DIR" in environ:
        return Path(environ["SATDASK_CACHE_DIR"])
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "satdask"


def cached_file_sha256(path: str | os.PathLike[str]) -> str:
    """file_sha256, remembered per (device, inode, size, mtime, ctime) like git's index.

    Hashing a 16384 x 16384 scene takes about a second; a rerun on an unchanged
    file should not pay it again. ctime changes on any write and cannot be set
    back by a user, so a stale entry cannot match a modified file.
    """
    st = os.stat(path)
    stamp = f"{os.path.realpath(path)}\0{st.st_dev}\0{st.st_ino}\0{st.st_size}\0"
    stamp += f"{st.st_mtime_ns}\0{st.st_ctime_ns}"
    entry = cache_dir() / "sha256" / hashlib.sha256(stamp.encode()).hexdigest()
    try:
        cached = entry.read_text().strip()
        if len(cached) == 64:
            return cached
    except OSError:
        pass
    digest = file_sha256(path)
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        write_new(entry, digest.encode())
    except OSError:  # a read-only or shared cache is an optimisation lost, not an error
        pass
    return digest
