"""The block function shared by batch and API, so the two cannot disagree."""

from __future__ import annotations

import numpy as np

from satdask.features import STATUS_NAMES, STATUS_OK, TileFeatures, block_features
from satdask.grid import EdgePolicy
from satdask.models.base import TileModel

VARIABLES = ("prediction", "mean_intensity", "std_intensity", "valid_fraction", "status")
# CF attributes of each per-tile variable, in the run store and in `tile_features`
VARIABLE_ATTRS: dict[str, dict[str, object]] = {
    "prediction": {
        "long_name": "predicted class",
        "flag_values": [-1, 0, 1],
        "flag_meanings": "none dark bright",
    },
    "mean_intensity": {"long_name": "mean of valid pixel values over the selected bands"},
    "std_intensity": {"long_name": "population std of valid pixel values"},
    "valid_fraction": {"long_name": "fraction of the tile's samples that are valid"},
    "status": {
        "long_name": "tile status",
        "flag_values": list(range(len(STATUS_NAMES))),
        "flag_meanings": " ".join(STATUS_NAMES),
    },
}


def predict_tiles(features: TileFeatures, model: TileModel) -> dict[str, np.ndarray]:
    """The run store's per-tile variables; tiles that are not ok get prediction -1."""
    return {
        "prediction": model.predict(features.mean_intensity, ok=features.status == STATUS_OK),
        "mean_intensity": features.mean_intensity,
        "std_intensity": features.std_intensity,
        "valid_fraction": features.valid_fraction.astype(np.float32),
        "status": features.status,
    }


def infer_block(
    data: np.ndarray,
    *,
    model: TileModel,
    tile_size: int,
    nodata: float | None,
    edge: EdgePolicy = "skip",
) -> dict[str, np.ndarray]:
    """Features and predictions of every tile in a (band, y, x) block of whole tiles."""
    features = block_features(data, tile_size=tile_size, nodata=nodata, edge=edge)
    return predict_tiles(features, model)
