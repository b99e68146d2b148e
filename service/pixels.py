"""A pixel model's answer for one tile: the batch run's block function on the tile's window.

`satdask.io.halo.pixel_block` is what a batch run's task calls for each block. Given the
tile's window it reads the halo the model's windows need across the tile's borders from
the scene, and pads beyond the scene's edge as the run does, so the classes of a tile are
the run store's `pixels/prediction` over that window, bit for bit, whatever the run's
chunking: windows are anchored to the scene's (0, 0), and a tile depends only on the
scene, the model, the tile size and the padding. Only the JSON answer counts the classes;
its majority class is counted as a run's `tile_summary` counts it (ties to the first class).

`PixelTiles` is made once, when the app loads the model, and holds the model object for
the process: an ONNX model's session (cached per process by sha256 in
`satdask.models.onnx`) is built then, off the event loop, and every request shares it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from satdask.core.grid import Window
from satdask.core.pixels import ClassTable, class_counts, class_flags, model_layout
from satdask.core.windows import Padding, WindowLayout, check_padding
from satdask.io.halo import PixelBlock, pixel_block
from satdask.io.registry import ModelArtifact
from satdask.io.s2_inputs import cloud_source
from satdask.io.source import PixelSource
from satdask.models.base import PixelModel, describe_inputs
from satdask.models.onnx import OnnxModel
from satdask.models.s2cloudless import CloudMaskModel
from service.images import palette
from service.scenes import ModelMismatchError, OpenScene

_READERS = 64  # scenes whose s2cloudless source is kept


@dataclass(frozen=True)
class TileSummary:
    """One tile's classes counted, and its one class."""

    counts: dict[str, int]  # pixels per class name; {} for a window classifier
    nodata: int  # pixels with no class (no data, or masked)
    prediction: int  # majority (or window) class, -1 none

    def fractions(self) -> dict[str, float | None]:
        """Each class's share of the pixels with a class (None when none has one)."""
        total = sum(self.counts.values())
        return {name: n / total if total else None for name, n in self.counts.items()}


class PixelTiles:
    """The loaded pixel model, its class table and colours, and its window layouts."""

    def __init__(self, artifact: ModelArtifact) -> None:
        model = artifact.model
        if not isinstance(model, PixelModel):
            raise TypeError(f"model {artifact.id} is a {model.kind} model, not a pixel model")
        self.artifact = artifact
        self.model: PixelModel = model
        self.table = ClassTable.of(model.classes)
        self.colours = palette(self.table, model.classes)
        self._layouts: dict[int, WindowLayout] = {}
        self._readers: dict[tuple[str, tuple[int, ...]], tuple[PixelSource, PixelModel]] = {}

    @classmethod
    def load(cls, artifact: ModelArtifact) -> PixelTiles:
        """Ready to serve: an ONNX model's session built, and its output checked, now."""
        tiles = cls(artifact)
        if isinstance(tiles.model, OnnxModel):
            tiles.model.check()
        return tiles

    @property
    def window_model(self) -> bool:
        return self.model.output == "window"

    def flags(self) -> dict[str, str]:
        """CF flag attributes of the classes, as the run store's `pixels/prediction` has."""
        flags = class_flags(self.model.classes)
        return {
            "flag_values": " ".join(map(str, flags["flag_values"])),
            "flag_meanings": flags["flag_meanings"],
        }

    def layout(self, opened: OpenScene, *, tile_size: int) -> WindowLayout:
        """The model's windows for tiles of `tile_size`, after refusing a scene it cannot read.

        A network takes the bands it was built for: no setting serves it others (as in
        batch). A window classifier's tiles are its windows less the halo.
        """
        name = self.artifact.id
        if isinstance(self.model, CloudMaskModel):
            self.reader(opened)  # refuses a scene without the bands it needs, naming them
        elif self.model.bands not in (None, opened.bands):
            raise ModelMismatchError(
                f"{opened.path}: model {name} reads {describe_inputs(self.model.bands)}, the "
                f"scene has {describe_inputs(opened.bands)}; serve a model made for such scenes"
            )
        layout = self._layouts.get(tile_size)
        if layout is None:
            layout = self._layouts[tile_size] = model_layout(self.model, tile_size=tile_size)
        if self.window_model and layout.step != tile_size:
            raise ModelMismatchError(
                f"{opened.path}: model {name} classifies {layout.size} px windows less a "
                f"{layout.halo} px halo, {layout.step} px tiles, not the service's "
                f"{tile_size} px tiles; serve it with --tile-size {layout.step} "
                "(SATDASK_TILE_SIZE)"
            )
        return layout

    def reader(self, opened: OpenScene) -> tuple[PixelSource, PixelModel]:
        """The source and model a scene is classified with: s2cloudless reads its ten bands
        by name and is bound to the scene's offset, as a batch run does."""
        if not isinstance(self.model, CloudMaskModel):
            return opened.source, self.model
        key = (opened.path, opened.stamp)
        if key not in self._readers:
            if len(self._readers) >= _READERS:
                self._readers.clear()
            self._readers[key] = cloud_source(opened.source, self.model)
        return self._readers[key]

    def padding(self, asked: str | None) -> Padding:
        """The padding asked for; a model with a padding of its own (s2cloudless's, its
        reference's) refuses another."""
        own = getattr(self.model, "padding", None)
        if own is not None and asked not in (None, own):
            raise ModelMismatchError(
                f"padding {asked!r} cannot apply to model {self.artifact.id}, a "
                f"{self.model.kind} model, which pads {own} as its reference does"
            )
        return check_padding(asked or own or "reflect")

    def classify(
        self, opened: OpenScene, window: Window, *, layout: WindowLayout, padding: Padding
    ) -> PixelBlock:
        """The classes of `window`, read with the halo, as a run's task computes them.

        Raises rasterio's errors for bytes that cannot be decoded, as a read does.
        """
        source, model = self.reader(opened)
        return pixel_block(
            source,
            window,
            model=model,
            layout=layout,
            table=self.table,
            height=opened.height,
            width=opened.width,
            padding=padding,
            nodata=opened.nodata,
        )

    def summary(self, block: PixelBlock) -> TileSummary:
        """`block` (one tile) counted: pixels per class, pixels with none, and its class.

        A pixel model's class is the majority of the tile's pixels with a class (ties to
        the first class, as `core.pixels.tile_summary` breaks them); a window
        classifier's is its window's. -1 when no pixel of the tile holds data. That is
        the run's tile grid wherever the data are integers (a float tile whose every
        valid sample is infinite is nodata there, classified here).
        """
        nodata = int(block.valid.size - np.count_nonzero(block.valid))
        if self.window_model:
            prediction = int(block.classes[0, 0]) if nodata < block.valid.size else -1
            return TileSummary({}, nodata, prediction)
        size = max(block.classes.shape)
        per_class = class_counts(block.classes, table=self.table, tile_size=size)[:, 0, 0]
        prediction = int(self.table.values[per_class.argmax()]) if per_class.any() else -1
        counts: dict[str, int] = {}
        for c, n in zip(self.model.classes, per_class.tolist(), strict=True):
            counts[c.name] = counts.get(c.name, 0) + n  # a name given twice adds up
        return TileSummary(counts, nodata, prediction)
