"""satdask: ML inference over every tile of large satellite scenes, scaled with Dask."""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

# `validate` is imported now: a function named like its module must be bound before
# anything imports `satdask.validate`, which would otherwise shadow it with the module.
from satdask.validate import ValidationReport, validate, validate_many

# Imported on first use (PEP 562): `satdask infer` over a file must not pay for
# xarray, pandas and plotting, which a plain `import satdask` of everything would.
_EXPORTS = {
    "GridError": "satdask.errors",
    "HealthPolicy": "satdask.monitoring",
    "IngestError": "satdask.errors",
    "ModelArtifact": "satdask.registry",
    "ModelError": "satdask.errors",
    "ModelRegistry": "satdask.registry",
    "RegistryError": "satdask.errors",
    "RunError": "satdask.errors",
    "RunResult": "satdask.batch",
    "SatdaskError": "satdask.errors",
    "SceneError": "satdask.errors",
    "ThresholdModel": "satdask.models",
    "TileFeatures": "satdask.features",
    "TileGrid": "satdask.grid",
    "TileModel": "satdask.models",
    "ValidationError": "satdask.errors",
    "VerifyReport": "satdask.verify",
    "block_features": "satdask.features",
    "health_report": "satdask.monitoring",
    "infer_block": "satdask.inference",
    "open_run": "satdask.batch",
    "open_scene": "satdask.scene",
    "read_tile": "satdask.scene",
    "run_batch": "satdask.batch",
    "scene_grid": "satdask.tiles",
    "should_retrain": "satdask.monitoring",
    "tile_features": "satdask.tiles",
    "train": "satdask.training",
    "verify_run": "satdask.verify",
}

try:
    __version__ = version("satdask")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

__all__ = ["ValidationReport", "__version__", "validate", "validate_many", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'satdask' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
