"""The threshold classifier: bright (1) when a tile's mean exceeds the threshold."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from satdask.errors import ModelError

HISTOGRAM_BINS = 10


@dataclass(frozen=True)
class ThresholdModel:
    """Threshold = mean of the training tile means.

    `training` keeps the mean, std and a histogram of the training tile means so a
    run can measure drift; `lineage` says which scenes and config produced it.
    """

    threshold: float
    training: Mapping[str, Any] = field(default_factory=dict, compare=False)
    lineage: Mapping[str, Any] = field(default_factory=dict, compare=False)

    kind: ClassVar[str] = "threshold"

    def __post_init__(self) -> None:
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, (int, float)):
            raise ModelError(f"threshold must be a number, got {self.threshold!r}")
        if not math.isfinite(self.threshold):
            raise ModelError(f"threshold must be finite, got {self.threshold!r}")

    @classmethod
    def fit(
        cls, tile_means: np.ndarray, *, lineage: Mapping[str, Any] | None = None
    ) -> ThresholdModel:
        """Fit on the means of valid tiles (NaN entries are ignored)."""
        means = np.asarray(tile_means, dtype=np.float64).ravel()
        means = means[np.isfinite(means)]
        if means.size == 0:
            raise ModelError("cannot train: the training scenes have no valid tile")
        edges = histogram_edges(means)
        mean = float(means.mean())
        training = {
            "mean": mean,
            "std": float(means.std()),
            "tile_count": int(means.size),
            "histogram": {
                "edges": [float(e) for e in edges],
                "counts": [int(c) for c in histogram_counts(means, edges)],
            },
        }
        return cls(threshold=mean, training=training, lineage=dict(lineage or {}))

    def predict(self, mean_intensity: np.ndarray, *, ok: np.ndarray | None = None) -> np.ndarray:
        bright = np.asarray(mean_intensity) > self.threshold
        pred = bright.astype(np.int8)
        if ok is not None:
            pred[~ok] = -1
        return pred

    def to_dict(self) -> dict[str, Any]:
        return {"threshold": float(self.threshold), "training": dict(self.training)}

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, lineage: Mapping[str, Any] | None = None
    ) -> ThresholdModel:
        try:
            return cls(
                threshold=data["threshold"],
                training=data.get("training", {}),
                lineage=dict(lineage or {}),
            )
        except (KeyError, TypeError) as exc:
            raise ModelError(f"threshold model parameters are malformed: {exc!r}") from None

    def __dask_tokenize__(self) -> tuple[str, float]:
        return (self.kind, float(self.threshold))


def histogram_edges(means: np.ndarray) -> np.ndarray:
    """Decile edges of the training means, so every bin holds data (what PSI needs)."""
    edges = np.unique(np.quantile(means, np.linspace(0.0, 1.0, HISTOGRAM_BINS + 1)))
    if edges.size < 2:
        edges = np.array([edges[0] - 0.5, edges[0] + 0.5])
    return edges


def histogram_counts(values: np.ndarray, edges: np.ndarray | Sequence[float]) -> np.ndarray:
    """Counts per bin; values beyond the outer edges fall in the outer bins."""
    inner = np.asarray(edges, dtype=np.float64)[1:-1]
    bins = np.searchsorted(inner, values, side="right")
    return np.bincount(bins, minlength=len(edges) - 1)
