"""What the batch run, the registry and the service need from any model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np

from satdask.errors import ModelError


@runtime_checkable
class TileModel(Protocol):
    kind: str
    lineage: Mapping[str, Any]

    def predict(self, mean_intensity: np.ndarray, *, ok: np.ndarray | None = None) -> np.ndarray:
        """int8 classes per tile; -1 where `ok` is False (no prediction)."""
        ...

    def to_dict(self) -> dict[str, Any]:
        """Parameters and training statistics, JSON-serialisable."""
        ...


def model_from_dict(
    kind: str, data: Mapping[str, Any], *, lineage: Mapping[str, Any] | None = None
) -> TileModel:
    """Rebuild a model from its artifact; the registry stays unaware of model classes."""
    from satdask.models.threshold import ThresholdModel

    kinds: dict[str, Any] = {ThresholdModel.kind: ThresholdModel}
    if kind not in kinds:
        raise ModelError(f"unknown model kind {kind!r}; known: {', '.join(sorted(kinds))}")
    return kinds[kind].from_dict(data, lineage=lineage)
