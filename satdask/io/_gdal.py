"""GDAL settings every process applies before its first read, and GDAL's messages.

Set as environment variables because every thread sees those: rasterio's
set_gdal_config from a worker thread only reaches that thread.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import urlsplit

# Small block cache: GDAL's default (5% of RAM per process) made peak memory grow
# with scene size; chunks are read once, so a big cache buys nothing. Values are in
# environment form (GDAL_CACHEMAX below 100000 means MB).
GDAL_OPTIONS: dict[str, str] = {
    "GDAL_CACHEMAX": "64",
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff,.TIF,.TIFF",
    "GDAL_HTTP_MAX_RETRY": "3",
    "GDAL_HTTP_RETRY_DELAY": "0.5",
    "VSI_CACHE": "TRUE",
}

_configured_pid: int | None = None


def configure_gdal() -> None:
    """Apply GDAL_OPTIONS once per process, before its first read; a user's own values win.

    Set as environment variables because every thread sees those: rasterio's
    set_gdal_config from a worker thread only reaches that thread.
    """
    global _configured_pid
    if _configured_pid == os.getpid():
        return
    for key, value in {**GDAL_OPTIONS, **s3_endpoint_options(os.environ)}.items():
        os.environ.setdefault(key, value)
    _configured_pid = os.getpid()


def s3_endpoint_options(environ: Mapping[str, str]) -> dict[str, str]:
    """GDAL's names for the S3 endpoint that boto3 and s3fs read from AWS_ENDPOINT_URL.

    One variable then points every reader and writer at MinIO, moto or another
    S3-compatible store; path-style addressing, as those servers expect.
    """
    url = environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL")
    if not url:
        return {}
    parts = urlsplit(url)
    return {
        "AWS_S3_ENDPOINT": parts.netloc,
        "AWS_HTTPS": "YES" if parts.scheme == "https" else "NO",
        "AWS_VIRTUAL_HOSTING": "FALSE",
    }


def gdal_message(exc: BaseException) -> str:
    """rasterio's message plus GDAL's own reason, which rasterio chains as the cause."""
    parts = [str(exc)]
    if exc.__cause__ is not None and str(exc.__cause__) not in parts[0]:
        parts.append(str(exc.__cause__))
    return " ".join(": ".join(parts).split())
