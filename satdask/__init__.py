"""satdask: ML inference over every tile of large satellite scenes, scaled with Dask."""

from importlib.metadata import PackageNotFoundError, version

from satdask.batch import RunResult, open_run, run_batch
from satdask.errors import (
    GridError,
    IngestError,
    ModelError,
    RegistryError,
    RunError,
    SatdaskError,
    SceneError,
    ValidationError,
)
from satdask.features import TileFeatures, block_features
from satdask.grid import TileGrid
from satdask.inference import infer_block
from satdask.models import ThresholdModel, TileModel
from satdask.monitoring import HealthPolicy, health_report, should_retrain
from satdask.registry import ModelArtifact, ModelRegistry
from satdask.scene import open_scene, read_tile
from satdask.tiles import scene_grid, tile_features
from satdask.training import train
from satdask.validate import ValidationReport, validate, validate_many
from satdask.verify import VerifyReport, verify_run

try:
    __version__ = version("satdask")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

__all__ = [
    "GridError",
    "HealthPolicy",
    "IngestError",
    "ModelArtifact",
    "ModelError",
    "ModelRegistry",
    "RegistryError",
    "RunError",
    "RunResult",
    "SatdaskError",
    "SceneError",
    "ThresholdModel",
    "TileFeatures",
    "TileGrid",
    "TileModel",
    "ValidationError",
    "ValidationReport",
    "VerifyReport",
    "__version__",
    "block_features",
    "health_report",
    "infer_block",
    "open_run",
    "open_scene",
    "read_tile",
    "run_batch",
    "scene_grid",
    "should_retrain",
    "tile_features",
    "train",
    "validate",
    "validate_many",
    "verify_run",
]
