"""Model kinds by name: what rebuilds a model from its artifact's parameters."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from satdask.errors import ModelError
from satdask.models.base import Model
from satdask.models.s2cloudless import CloudMaskModel
from satdask.models.threshold import ThresholdModel

KINDS: dict[str, type[ThresholdModel] | type[CloudMaskModel]] = {
    ThresholdModel.kind: ThresholdModel,
    CloudMaskModel.kind: CloudMaskModel,
}


def model_from_dict(
    kind: str, data: Mapping[str, Any], *, lineage: Mapping[str, Any] | None = None
) -> Model:
    """Rebuild a model from its artifact; the registry stays unaware of model classes."""
    if kind not in KINDS:
        raise ModelError(f"unknown model kind {kind!r}; known: {', '.join(sorted(KINDS))}")
    return KINDS[kind].from_dict(data, lineage=lineage)
