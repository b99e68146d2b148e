"""What the batch run, the registry and the service need from any model."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class TileModel(Protocol):
    # Read-only, so a frozen dataclass with a ClassVar `kind` satisfies the protocol.
    @property
    def kind(self) -> str: ...

    @property
    def lineage(self) -> Mapping[str, Any]:
        """Which scenes and config produced the model."""
        ...

    def predict(self, mean_intensity: np.ndarray, *, ok: np.ndarray | None = None) -> np.ndarray:
        """int8 classes per tile; -1 where `ok` is False (no prediction)."""
        ...

    def to_dict(self) -> dict[str, Any]:
        """Parameters and training statistics, JSON-serialisable."""
        ...


@dataclass(frozen=True)
class ModelClass:
    """One class a model predicts: the value stored, its name, and a colour for maps."""

    value: int
    name: str
    color: str | None = None  # "#rrggbb"


@runtime_checkable
class PixelModel(Protocol):
    """A model that reads windows of pixels rather than tile features.

    `output` says what it gives: "pixel", class scores for every pixel of the window,
    or "window", one row of class scores per window (a tile classifier). What it needs
    is `bands` (None: the bands given), `window` (a fixed H = W, or None: satdask
    chooses), `halo` (context cropped from each side of a window's output) and
    `batch_size` (windows per call, fixed so results cannot depend on the chunking).
    `layers` names per-pixel float outputs a pixel model gives beside its classes
    (s2cloudless's cloud probability); most models have none.
    """

    @property
    def kind(self) -> str: ...

    @property
    def output(self) -> Literal["pixel", "window"]: ...

    @property
    def lineage(self) -> Mapping[str, Any]: ...

    @property
    def bands(self) -> int | None: ...

    @property
    def window(self) -> int | None: ...

    @property
    def halo(self) -> int: ...

    @property
    def batch_size(self) -> int: ...

    @property
    def classes(self) -> tuple[ModelClass, ...]: ...

    @property
    def layers(self) -> tuple[str, ...]: ...

    def scores(self, batch: np.ndarray, *, inside: np.ndarray | None = None) -> np.ndarray:
        """(N, bands, H, W) pixels as read -> (N, K + L, H, W) or, for "window", (N, K).

        N is always `batch_size`; K is `len(classes)`, in the order of `classes`, and L
        `len(layers)`. `inside` (N, H, W), when given, is False on pixels padded beyond
        the scene's edge (None: all inside).
        """
        ...

    def to_dict(self) -> dict[str, Any]: ...


Model = TileModel | PixelModel


def input_mismatches(
    trained: Mapping[str, Any], *, bands: int, dtype: str, tile_size: int
) -> list[str]:
    """How a run's inputs differ from those the model was trained on (`lineage["config"]`).

    A model only means something on the inputs it learned from: a threshold on the mean
    of 3 uint8 bands in 256 px tiles says nothing about 1 band, uint16 or 100 px tiles.
    Facts an older artifact did not record (its dtype) are not compared.
    """
    out = []
    trained_bands = trained.get("bands")
    if isinstance(trained_bands, list) and len(trained_bands) != bands:
        out.append(f"{describe_inputs(len(trained_bands))} became {describe_inputs(bands)}")
    if trained.get("dtype") not in (None, dtype):
        out.append(f"dtype {trained['dtype']} became {dtype}")
    if trained.get("tile_size") not in (None, tile_size):
        out.append(f"{trained['tile_size']} px tiles became {tile_size} px")
    return out


def describe_inputs(bands: int, dtype: str | None = None, tile_size: int | None = None) -> str:
    """`3 bands of uint8 in 256 px tiles`: one wording for every message about inputs."""
    text = f"{bands} band{'s' * (bands != 1)}"
    if dtype:
        text += f" of {dtype}"
    if tile_size:
        text += f" in {tile_size} px tiles"
    return text
