"""One settings object for the service: `SATDASK_*` environment variables merged with overrides.

Nothing is read at import time: `Settings.from_env()` reads the environment when it is
called (by `satdask serve`, or by uvicorn's app factory in each worker process).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from satdask.core.grid import EDGE_POLICIES
from service.errors import ConfigError
from service.remote import RemoteRoot, looks_like_url

PREFIX = "SATDASK_"


def _positive_int(name: str) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool):
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be a positive integer, got {value!r}") from None
        if number <= 0:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        return number

    return parse


def _port(value: Any) -> int:
    number = _positive_int(f"{PREFIX}PORT")(value)
    if number > 65535:
        raise ConfigError(f"{PREFIX}PORT must be 1..65535, got {value!r}")
    return number


def _boolean(name: str) -> Callable[[Any], bool]:
    def parse(value: Any) -> bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in {"1", "true", "yes", "on"}:
            return True
        if text in {"0", "false", "no", "off", ""}:
            return False
        raise ConfigError(f"{name} must be true or false, got {value!r}")

    return parse


def _edge(value: Any) -> str:
    if value not in EDGE_POLICIES:
        raise ConfigError(f"{PREFIX}EDGE must be one of {', '.join(EDGE_POLICIES)}, got {value!r}")
    return str(value)


def _optional_text(value: Any) -> str | None:
    text = None if value is None else str(value)
    return text or None


def _positive_number(name: str) -> Callable[[Any], float]:
    def parse(value: Any) -> float:
        try:
            number = float(value) if not isinstance(value, bool) else math.nan
        except (TypeError, ValueError):
            number = math.nan
        if not (math.isfinite(number) and number > 0):
            raise ConfigError(f"{name} must be a positive number of seconds, got {value!r}")
        return number

    return parse


def _hosts(value: Any) -> str | None:
    """Host names the service answers to, comma-separated: names or addresses without a
    port, `*.domain` for its subdomains, `*` for any; None (unset) means the default."""
    if value is None:
        return None
    names = []
    for item in str(value).split(","):
        name = item.strip().lower()
        if not name:
            continue
        bare = name.removeprefix("*.")
        if name != "*" and bare.count(":") >= 2 and not bare.startswith("["):
            name = bare = f"[{bare}]"  # an IPv6 address, as a Host header writes it
        if name != "*" and (not bare or any(c in bare for c in "*/@ ") or bare.count(":") == 1):
            raise ConfigError(
                f"{PREFIX}ALLOWED_HOSTS: {item.strip()!r} is not a host name (no port, "
                "scheme or path; '*.example.org' for subdomains, '*' for any host)"
            )
        names.append(name)
    return ",".join(names) or None


@dataclass(frozen=True)
class Settings:
    """Everything the service can be told; each field is `SATDASK_<FIELD>` in the environment.

    `data_root` is a directory, resolved once so every containment check compares against
    the real directory, or a remote prefix (`RemoteRoot`: an http(s):// or s3:// URL, given
    as text). `api_key` never appears in the repr.
    """

    data_root: Path | RemoteRoot
    model: str | None = None
    runs_root: Path | None = None  # finished run stores served as map tiles (service.tiles)
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    api_key: str | None = field(default=None, repr=False)
    tile_size: int = 256
    edge: str = "skip"
    max_body_bytes: int = 16 * 1024
    scene_cache: int = 64
    threads: int = 2
    max_raster_pixels: int = 2048 * 2048
    gdal_cachemax: int = 256
    access_log: bool = False
    log_level: str = "info"
    # Hostile files (service/README.md, "Files under the data root"): refused before GDAL
    # reads more than the TIFF header, or before a model answers for a scene unlike its own.
    allow_model_mismatch: bool = False
    allow_hard_links: bool = False
    max_scene_side: int = 131072
    max_scene_pixels: int = 2**32
    max_block_bytes: int = 8 * 1024 * 1024
    max_read_bytes: int = 128 * 1024 * 1024

    # Hostile clients (service/README.md, "Connections and requests"): what one client may
    # make the server hold (service.protocol), and who may talk to it (service.auth).
    allowed_hosts: str | None = None
    max_request_line: int = 16 * 1024  # a valid path (1,024 chars) fits percent-encoded
    max_header_bytes: int = 32 * 1024
    request_timeout: float = 10.0
    keepalive_timeout: float = 5.0
    max_connections: int = 512
    max_in_flight: int = 256
    list_max_scenes: int = 10_000
    list_max_entries: int = 100_000
    list_max_depth: int = 16
    list_seconds: float = 2.0
    list_cache_seconds: float = 10.0

    def __post_init__(self) -> None:
        for name, parse in _PARSERS.items():
            object.__setattr__(self, name, parse(getattr(self, name)))
        if self.log_level not in _LOG_LEVELS:
            raise ConfigError(
                f"{PREFIX}LOG_LEVEL must be one of {', '.join(_LOG_LEVELS)}, got {self.log_level!r}"
            )
        object.__setattr__(self, "data_root", _data_root(self.data_root))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read `SATDASK_*` variables, then apply the overrides (None means: not given)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            key = PREFIX + f.name.upper()
            if key in env:
                values[f.name] = env[key]
        values.update({k: v for k, v in overrides.items() if v is not None})
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"unknown service setting(s): {', '.join(sorted(unknown))}")
        if "data_root" not in values or not str(values["data_root"]):
            raise ConfigError(f"no data root: pass --data-root or set {PREFIX}DATA_ROOT")
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """The `SATDASK_*` variables that rebuild these settings in a worker process."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool):
                out[PREFIX + f.name.upper()] = "true" if value else "false"
            elif value is not None:
                out[PREFIX + f.name.upper()] = str(value)
        return out


def _runs_root(value: Any) -> Path | None:
    """A local directory of run stores (resolved, as the data root), or None: no runs."""
    if value is None or value == "":
        return None
    root = Path(str(value)).expanduser()
    if not root.is_dir():
        raise ConfigError(f"{PREFIX}RUNS_ROOT {str(root)!r} is not a directory")
    return root.resolve()


def _data_root(value: Any) -> Path | RemoteRoot:
    """A remote prefix from URL text, else a directory (resolved).

    URLs must arrive as text: `Path("http://host/x")` has already lost a slash.
    """
    if isinstance(value, RemoteRoot):
        return value
    if isinstance(value, str) and looks_like_url(value):
        return RemoteRoot.parse(value)
    text = str(value)
    if text.startswith("/vsi"):
        raise ConfigError(
            f"data root {text!r}: give a remote root as its URL (http://, https:// or s3://)"
        )
    root = Path(text).expanduser()
    if not root.is_dir():
        raise ConfigError(f"data root {str(root)!r} is not a directory")
    return root.resolve()


_LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")

_PARSERS: dict[str, Callable[[Any], Any]] = {
    "model": _optional_text,
    "runs_root": _runs_root,
    "host": lambda v: str(v) or "127.0.0.1",
    "port": _port,
    "workers": _positive_int(f"{PREFIX}WORKERS"),
    "api_key": _optional_text,
    "tile_size": _positive_int(f"{PREFIX}TILE_SIZE"),
    "edge": _edge,
    "max_body_bytes": _positive_int(f"{PREFIX}MAX_BODY_BYTES"),
    "scene_cache": _positive_int(f"{PREFIX}SCENE_CACHE"),
    "threads": _positive_int(f"{PREFIX}THREADS"),
    "max_raster_pixels": _positive_int(f"{PREFIX}MAX_RASTER_PIXELS"),
    "gdal_cachemax": _positive_int(f"{PREFIX}GDAL_CACHEMAX"),
    "access_log": _boolean(f"{PREFIX}ACCESS_LOG"),
    "log_level": lambda v: str(v).lower(),
    "allow_model_mismatch": _boolean(f"{PREFIX}ALLOW_MODEL_MISMATCH"),
    "allow_hard_links": _boolean(f"{PREFIX}ALLOW_HARD_LINKS"),
    "max_scene_side": _positive_int(f"{PREFIX}MAX_SCENE_SIDE"),
    "max_scene_pixels": _positive_int(f"{PREFIX}MAX_SCENE_PIXELS"),
    "max_block_bytes": _positive_int(f"{PREFIX}MAX_BLOCK_BYTES"),
    "max_read_bytes": _positive_int(f"{PREFIX}MAX_READ_BYTES"),
    "allowed_hosts": _hosts,
    "max_request_line": _positive_int(f"{PREFIX}MAX_REQUEST_LINE"),
    "max_header_bytes": _positive_int(f"{PREFIX}MAX_HEADER_BYTES"),
    "request_timeout": _positive_number(f"{PREFIX}REQUEST_TIMEOUT"),
    "keepalive_timeout": _positive_number(f"{PREFIX}KEEPALIVE_TIMEOUT"),
    "max_connections": _positive_int(f"{PREFIX}MAX_CONNECTIONS"),
    "max_in_flight": _positive_int(f"{PREFIX}MAX_IN_FLIGHT"),
    "list_max_scenes": _positive_int(f"{PREFIX}LIST_MAX_SCENES"),
    "list_max_entries": _positive_int(f"{PREFIX}LIST_MAX_ENTRIES"),
    "list_max_depth": _positive_int(f"{PREFIX}LIST_MAX_DEPTH"),
    "list_seconds": _positive_number(f"{PREFIX}LIST_SECONDS"),
    "list_cache_seconds": _positive_number(f"{PREFIX}LIST_CACHE_SECONDS"),
}
