"""GDAL's settings for the service process: what `satdask serve` exports and the app applies.

GDAL reads GDAL_SKIP only when it first registers its drivers, so `satdask serve`
exports these variables before anything opens a raster (`export_gdal_env`), and each
worker's lifespan applies them again, restoring the previous values at shutdown
(`configure_service_gdal`, `restore_gdal_env`): in-process apps (tests, notebooks)
leave the environment as they found it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from satdask.io._gdal import GDAL_OPTIONS

log = logging.getLogger("satdask.service")

HTTP_TIMEOUTS = {"GDAL_HTTP_CONNECTTIMEOUT": "10", "GDAL_HTTP_TIMEOUT": "30"}  # seconds


def service_gdal_env(environ: Mapping[str, str], *, cache_mb: int) -> dict[str, str]:
    """GDAL settings for the service process, as environment variables.

    - GDAL_SKIP gains VRT: the VRT driver can read any file on the machine.
    - GDAL_PAM_ENABLED=NO: no .aux.xml side-car files read or written in the data root.
    - GDAL_CACHEMAX: the service reads tiles again and again, so a larger block cache
      than batch's; an operator's own value wins.
    - satdask's GDAL_OPTIONS, unless already set, and HTTP timeouts, so a remote data
      root that stops answering fails a request (502) instead of holding a reader thread.
    """
    skip = environ.get("GDAL_SKIP", "").replace(",", " ").split()
    defaults = {**GDAL_OPTIONS, **HTTP_TIMEOUTS}
    out = {key: value for key, value in defaults.items() if key not in environ}
    if "GDAL_CACHEMAX" not in environ:
        out["GDAL_CACHEMAX"] = str(cache_mb)
    out["GDAL_SKIP"] = " ".join(skip if "VRT" in skip else [*skip, "VRT"])
    out["GDAL_PAM_ENABLED"] = "NO"
    return out


def export_gdal_env(*, cache_mb: int) -> dict[str, str | None]:
    """Set `service_gdal_env` in `os.environ`; returns the values it replaced (None: unset)."""
    wanted = service_gdal_env(os.environ, cache_mb=cache_mb)
    previous = {key: os.environ.get(key) for key in wanted}
    os.environ.update(wanted)
    return previous


def configure_service_gdal(*, cache_mb: int) -> dict[str, str | None]:
    """`export_gdal_env`, then log whether GDAL's VRT driver is really gone.

    In a process where GDAL already started (tests, notebooks) the VRT driver stays
    registered: the TIFF signature check in `service.paths` still keeps VRT files away
    from GDAL.
    """
    import rasterio

    previous = export_gdal_env(cache_mb=cache_mb)
    with rasterio.Env() as env:
        vrt_disabled = "VRT" not in env.drivers()
    if vrt_disabled:
        log.info("GDAL VRT driver disabled")
    else:
        log.warning(
            "GDAL VRT driver still registered (GDAL started before the service); "
            "files are opened only after a TIFF signature check"
        )
    return previous


def restore_gdal_env(previous: Mapping[str, str | None]) -> None:
    """Put back what `export_gdal_env` replaced."""
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
