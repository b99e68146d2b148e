"""One exception tree, so callers can catch everything satdask raises with one clause.

Every message names the file, field or argument at fault; the CLI prints it as
its single line of output and the service maps each class to an HTTP status.
Each class also subclasses the builtin that fits (a bad value is a ValueError),
so code written against the builtins keeps catching them. `uri`, when set, is the
file or URL the message names, so the service can replace it with the client's own
name instead of scrubbing paths out of the text.
"""

from __future__ import annotations


class SatdaskError(Exception):
    """Base of every error a user can cause."""

    def __init__(self, message: str, *, uri: str | None = None) -> None:
        super().__init__(message)
        self.uri = uri


class SceneError(SatdaskError, ValueError):
    """A scene cannot be opened or read (missing file, not a raster, bad band)."""


class ValidationError(SatdaskError, ValueError):
    """A scene opens but breaks a rule satdask needs (CRS, dtype, size, ...)."""


class GridError(SatdaskError, ValueError):
    """A tile size, edge policy or tile index is invalid for the scene."""


class ModelError(SatdaskError, ValueError):
    """A model cannot be trained or used (no valid tiles, bad parameters, wrong inputs)."""


class RegistryError(SatdaskError, ValueError):
    """A model artifact is missing, malformed or fails its checksum."""


class RunError(SatdaskError, RuntimeError):
    """A batch run cannot start or finish (output exists, store incomplete)."""


class IngestError(SatdaskError, ValueError):
    """A download fails or its checksum does not match."""


class PlotError(SatdaskError, ValueError):
    """A figure cannot be drawn from what it was given (wrong variable, no data)."""


class MonitoringError(SatdaskError, ValueError):
    """A health policy, or the figures monitoring is asked to judge, are invalid."""
