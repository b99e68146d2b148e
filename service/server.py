"""`satdask serve`: settings from the environment and the CLI, checked, then uvicorn.

The merged settings are exported as `SATDASK_*` variables, so each uvicorn worker
process rebuilds exactly the same settings through the app factory. uvicorn runs
`service.protocol.GuardedProtocol` (its httptools protocol, with bounds on the request
line, headers, request time and open connections) and the app behind `InFlightLimit`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from typing import Any

from service.settings import Settings

log = logging.getLogger("satdask.service")

APP_FACTORY = "service.server:app_from_env"


def app_from_env() -> Any:
    """uvicorn's factory (one call per worker process): the app, behind the in-flight limit,
    with the connection bounds handed to `GuardedProtocol` before the first connection.

    The Host allow-list defaults here, to the bound address and the loopback names: a
    server on a socket has an address to default to, an app built in-process does not.
    """
    from satdask._logs import configure_logging
    from service.app import create_app
    from service.auth import default_hosts
    from service.protocol import GuardedProtocol, InFlightLimit, Limits, ensure_descriptors

    settings = Settings.from_env()
    if settings.allowed_hosts is None:
        settings = replace(settings, allowed_hosts=default_hosts(settings.host))
    if not logging.getLogger("satdask").handlers:  # a worker process started by uvicorn
        level = logging.getLevelName(settings.log_level.upper())
        configure_logging(level=level if isinstance(level, int) else logging.DEBUG)
    app = create_app(settings)
    count = app.state.runtime.metrics.count_refused
    GuardedProtocol.limits = Limits.of(settings)
    GuardedProtocol.on_refuse = count
    ensure_descriptors(settings.max_connections)
    return InFlightLimit(app, limit=settings.max_in_flight, on_refuse=count)


def serve(**overrides: Any) -> None:
    """Run the service; raises a SatdaskError (one line in the CLI) on bad settings or model."""
    import uvicorn

    from service.app import load_model
    from service.auth import default_hosts
    from service.errors import ConfigError
    from service.gdal import export_gdal_env

    settings = Settings.from_env(**overrides)
    if not settings.model:
        raise ConfigError("no model: pass --model DIR[:ID] or set SATDASK_MODEL")
    artifact = load_model(settings.model)  # fail here, in one line, not in a worker
    if settings.allowed_hosts is None:
        settings = replace(settings, allowed_hosts=default_hosts(settings.host))
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
    log.info("answering to Host: %s (SATDASK_ALLOWED_HOSTS)", settings.allowed_hosts)
    uvicorn.run(
        APP_FACTORY,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        **uvicorn_options(settings),
    )


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """How `satdask serve` and `satdask view` run uvicorn, beside where they listen."""
    from service.protocol import PROTOCOL

    return {
        "factory": True,
        "log_level": settings.log_level,
        "access_log": settings.access_log,
        "lifespan": "on",
        "server_header": False,
        "timeout_graceful_shutdown": 10,
        # service/protocol.py: bounds on the request line, headers, the time to send a
        # request and open connections; the in-flight limit wraps the app (app_from_env)
        "http": PROTOCOL,
        "timeout_keep_alive": settings.keepalive_timeout,
    }
