"""satdask: ML inference over every tile of large satellite scenes, scaled with Dask.

The public API below is imported on first use (PEP 562): `satdask infer` over a
file must not pay for xarray, pandas and plotting, which importing everything
would. The package's layers are described in docs/architecture.md.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

_EXPORTS = {
    "GridError": "satdask.errors",
    "HealthPolicy": "satdask.core.health",
    "IngestError": "satdask.errors",
    "ModelArtifact": "satdask.io.registry",
    "ModelError": "satdask.errors",
    "ModelRegistry": "satdask.io.registry",
    "MonitoringError": "satdask.errors",
    "PlotError": "satdask.errors",
    "RegistryError": "satdask.errors",
    "RunError": "satdask.errors",
    "RunResult": "satdask.pipeline.runs",
    "SatdaskError": "satdask.errors",
    "SceneError": "satdask.errors",
    "ThresholdModel": "satdask.models",
    "TileFeatures": "satdask.core.features",
    "TileGrid": "satdask.core.grid",
    "TileModel": "satdask.models",
    "ValidationError": "satdask.errors",
    "ValidationReport": "satdask.views.checks",
    "VerifyReport": "satdask.pipeline.verify",
    "block_features": "satdask.core.features",
    "health_report": "satdask.core.health",
    "infer_block": "satdask.core.inference",
    "open_run": "satdask.pipeline.runs",
    "open_scene": "satdask.views.scene",
    "predict": "satdask.pipeline.predict",
    "PixelModel": "satdask.models.base",
    "OnnxModel": "satdask.models.onnx",
    "ModelClass": "satdask.models.base",
    "read_tile": "satdask.views.scene",
    "run_batch": "satdask.pipeline.batch",
    "scene_grid": "satdask.views.tiles",
    "should_retrain": "satdask.core.health",
    "tile_features": "satdask.views.tiles",
    "train": "satdask.pipeline.training",
    "validate": "satdask.views.checks",
    "validate_many": "satdask.views.checks",
    "verify_run": "satdask.pipeline.verify",
    "write_sample": "satdask.io.sample",
}

try:
    __version__ = version("satdask")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'satdask' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
