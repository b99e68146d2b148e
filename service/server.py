"""`satdask serve`: settings from the environment and the CLI, checked, then uvicorn.

The merged settings are exported as `SATDASK_*` variables, so each uvicorn worker
process rebuilds exactly the same settings through the app factory.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from service.settings import Settings

log = logging.getLogger("satdask.service")

APP_FACTORY = "service.server:app_from_env"


def app_from_env() -> Any:
    """uvicorn's factory (one call per worker process)."""
    from satdask._logs import configure_logging
    from service.app import create_app

    settings = Settings.from_env()
    if not logging.getLogger("satdask").handlers:  # a worker process started by uvicorn
        level = logging.getLevelName(settings.log_level.upper())
        configure_logging(level=level if isinstance(level, int) else logging.DEBUG)
    return create_app(settings)


def serve(**overrides: Any) -> None:
    """Run the service; raises a SatdaskError (one line in the CLI) on bad settings or model."""
    import uvicorn

    from service.app import load_model
    from service.errors import ConfigError
    from service.gdal import export_gdal_env

    settings = Settings.from_env(**overrides)
    if not settings.model:
        raise ConfigError("no model: pass --model DIR[:ID] or set SATDASK_MODEL")
    artifact = load_model(settings.model)  # fail here, in one line, not in a worker
    os.environ.update(settings.to_env())
    # Before GDAL registers its drivers (at the first open), or GDAL_SKIP has no effect.
    export_gdal_env(cache_mb=settings.gdal_cachemax)
    log.info(
        "serving %s with model %s on http://%s:%d (%d worker%s)",
        settings.data_root,
        artifact.id,
        settings.host,
        settings.port,
        settings.workers,
        "" if settings.workers == 1 else "s",
    )
    uvicorn.run(
        APP_FACTORY,
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        access_log=settings.access_log,
        lifespan="on",
        server_header=False,
        timeout_graceful_shutdown=10,
    )
