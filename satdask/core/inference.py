"""The block function shared by batch and API, so the two cannot disagree."""

from __future__ import annotations

import numpy as np

from satdask.core.features import STATUS_OK, TileFeatures, block_features
from satdask.core.grid import EdgePolicy
from satdask.models.base import TileModel


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
    valid: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Features and predictions of every tile in a (band, y, x) block of whole tiles.

    `valid` (or a masked array's mask) marks the pixels a mask lets through, as in
    `block_features`: a tile masked whole is nodata, with prediction -1.
    """
    features = block_features(data, tile_size=tile_size, nodata=nodata, edge=edge, valid=valid)
    return predict_tiles(features, model)
