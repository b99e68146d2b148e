"""`satdask view run.zarr`: one finished run on the map, served on a free loopback port.

The run's record names its scene and (when registered) its model: the store's folder
becomes the runs root, the scene's folder the data root, and the model, its tile size
and edge policy are the run's, so a click on the map asks `/infer` for the very tiles the
run computed. The socket is bound before the URL is printed, so the URL answers as soon
as it is shown, and port 0 takes whatever port is free. Nothing is opened: the URL is
printed for the user (or a test) to open.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from service.settings import Settings

log = logging.getLogger("satdask.service")


@dataclass(frozen=True)
class ViewPlan:
    """What `view` serves: the roots, the run's and scene's names in URLs, the model."""

    runs_root: Path
    run: str
    data_root: str
    scene: str
    model: str | None
    tile_size: int
    edge: str


def plan_view(store: str | os.PathLike[str]) -> ViewPlan:
    """The roots and names of a run store; a missing or unfinished store, or a scene the
    service cannot serve, raises a SatdaskError naming the store or the field."""
    from satdask._uri import is_url
    from satdask.pipeline.runs import open_run
    from service.errors import ConfigError

    path = Path(store).expanduser()
    if is_url(str(store)):
        raise ConfigError(f"{store}: satdask view serves a local run store, not a URL")
    result = open_run(path)
    record = result.record
    scene = record["scene"]
    uri = str(scene["uri"])
    if "stac" in scene or not uri.lower().endswith((".tif", ".tiff")):
        raise ConfigError(
            f"{path}: scene.uri {uri!r} is not a GeoTIFF; the map serves GeoTIFF scenes only"
        )
    if is_url(uri):
        data_root, _, name = uri.rpartition("/")
        data_root += "/"
    else:
        local = Path(uri)
        data_root, name = str(local.parent), local.name
        if not local.is_file():
            raise ConfigError(f"{path}: scene.uri {uri!r} is not a file (moved or deleted?)")
    model = record["model"]
    ref = None
    if model.get("uri") and model.get("id"):
        ref = f"{Path(str(model['uri'])).parent}:{model['id']}"
    config = record["config"]
    folder = path.resolve().parent
    return ViewPlan(
        runs_root=folder,
        run=path.resolve().name.removesuffix(".zarr"),
        data_root=data_root,
        scene=name,
        model=ref,
        tile_size=int(config["tile_size"]),
        edge=str(config["edge"]),
    )


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port); port 0 takes a free one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def map_url(host: str, port: int, run: str) -> str:
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{shown}:{port}/map?" + urlencode({"run": run}, quote_via=quote)


def view(store: str, *, host: str = "127.0.0.1", port: int = 0, echo: Any = None) -> None:
    """Serve `store`'s run and scene on the map; prints the map's URL, then runs until
    interrupted."""
    import uvicorn

    from service.app import load_model
    from service.auth import default_hosts
    from service.errors import ConfigError
    from service.gdal import export_gdal_env
    from service.server import APP_FACTORY, uvicorn_options

    if not 0 <= port <= 65535:
        raise ConfigError(f"--port must be 0..65535, got {port}")
    plan = plan_view(store)
    model = plan.model
    if model is not None:
        try:
            load_model(model)  # fail here, in one line, rather than in the worker
        except Exception as exc:  # a moved or changed registry: the map still shows the run
            log.warning("%s: the run's model %s is not served (%s); /infer answers 503",
                        store, model, exc)  # fmt: skip
            model = None
    sock = bind(host, port)
    bound = sock.getsockname()[1]
    settings = Settings.from_env(
        data_root=plan.data_root,
        runs_root=str(plan.runs_root),
        model=model or "",
        host=host,
        port=bound,
        workers=1,
        tile_size=plan.tile_size,
        edge=plan.edge,
    )
    if settings.allowed_hosts is None:
        settings = replace(settings, allowed_hosts=default_hosts(settings.host))
    os.environ.update(settings.to_env())
    if model is None:
        os.environ.pop("SATDASK_MODEL", None)
    export_gdal_env(cache_mb=settings.gdal_cachemax)
    url = map_url(host, bound, plan.run)
    (echo or _print)(f"satdask view: {plan.run} over {plan.scene} at {url}")
    config = uvicorn.Config(APP_FACTORY, **uvicorn_options(settings))
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()


def _print(text: str) -> None:
    print(text, flush=True)
    sys.stdout.flush()
