"""Models that turn per-tile features into predictions (pure: no I/O)."""

from satdask.models.base import TileModel
from satdask.models.kinds import model_from_dict
from satdask.models.threshold import ThresholdModel

__all__ = ["ThresholdModel", "TileModel", "model_from_dict"]
