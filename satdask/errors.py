"""One exception tree, so callers can catch everything satdask raises with one clause.

Every message names the file, field or argument at fault; the CLI prints it as
its single line of output and the service maps each class to an HTTP status.
"""


class SatdaskError(Exception):
    """Base of every error a user can cause."""


class SceneError(SatdaskError):
    """A scene cannot be opened or read (missing file, not a raster, bad band)."""


class ValidationError(SatdaskError):
    """A scene opens but breaks a rule satdask needs (CRS, dtype, size, ...)."""


class GridError(SatdaskError):
    """A tile size, edge policy or tile index is invalid for the scene."""


class ModelError(SatdaskError):
    """A model cannot be trained or used (no valid tiles, bad parameters)."""


class RegistryError(SatdaskError):
    """A model artifact is missing, malformed or fails its checksum."""


class RunError(SatdaskError):
    """A batch run cannot start or finish (output exists, store incomplete)."""


class IngestError(SatdaskError):
    """A download fails or its checksum does not match."""
