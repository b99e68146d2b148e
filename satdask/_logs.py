"""Structured logging: every line of a run carries run_id, model_id and scene.

`SATDASK_LOG_FORMAT=json` gives one JSON object per line for log shippers.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

CONTEXT_KEYS = ("run_id", "model_id", "scene")


class RunLogger(logging.LoggerAdapter[logging.Logger]):
    """Adds the run's context to every record it emits."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        kwargs["extra"] = {**dict(self.extra or {}), **kwargs.get("extra", {})}
        return msg, kwargs


def run_logger(name: str, **context: str) -> RunLogger:
    return RunLogger(logging.getLogger(name), context)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        context = " ".join(f"{k}={getattr(record, k)}" for k in CONTEXT_KEYS if hasattr(record, k))
        line = f"{self.formatTime(record)} {record.levelname} {record.name} {record.getMessage()}"
        return f"{line} [{context}]" if context else line


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update({k: getattr(record, k) for k in CONTEXT_KEYS if hasattr(record, k)})
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out)


def configure_logging(
    *, level: int = logging.INFO, environ: Mapping[str, str] = os.environ
) -> None:
    """Send satdask's logs to stderr in the format SATDASK_LOG_FORMAT asks for."""
    handler = logging.StreamHandler(sys.stderr)
    fmt = environ.get("SATDASK_LOG_FORMAT", "text").lower()
    handler.setFormatter(_JsonFormatter() if fmt == "json" else _TextFormatter())
    logger = logging.getLogger("satdask")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False
