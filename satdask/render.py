"""A prediction map as a PNG without matplotlib, so the demo needs only the core."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning

from satdask.core.features import STATUS_FAILED, STATUS_NODATA

# RGB per class: dark, bright, nodata, failed (colour-blind-safe viridis ends + grey, red)
COLOURS = {
    "dark": (68, 1, 84),
    "bright": (253, 231, 37),
    "nodata": (190, 190, 190),
    "failed": (220, 40, 40),
}


def prediction_rgb(prediction: np.ndarray, status: np.ndarray, *, scale: int = 1) -> np.ndarray:
    """(3, rows*scale, cols*scale) uint8 image of a tile grid's classes."""
    rgb = np.empty((3, *prediction.shape), dtype=np.uint8)
    layers = [
        (prediction == 0, "dark"),
        (prediction == 1, "bright"),
        (status == STATUS_NODATA, "nodata"),
        (status == STATUS_FAILED, "failed"),
    ]
    for mask, name in layers:
        rgb[:, mask] = np.array(COLOURS[name], dtype=np.uint8)[:, None]
    return rgb.repeat(scale, axis=1).repeat(scale, axis=2)


def write_prediction_png(
    prediction: np.ndarray, status: np.ndarray, path: Path, *, scale: int = 16
) -> Path:
    rgb = prediction_rgb(prediction, status, scale=scale)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # a picture, not a map
        with rasterio.open(
            path, "w", driver="PNG", width=rgb.shape[2], height=rgb.shape[1], count=3, dtype="uint8"
        ) as dst:
            dst.write(rgb)
    return path
