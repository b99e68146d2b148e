"""Sentinel Hub's s2cloudless cloud detector as a satdask pixel model.

The classifier is s2cloudless's own LightGBM file, read from the installed package
(it is CC BY-SA 4.0 and never copied here), found without importing `s2cloudless`,
whose import pulls in `sentinelhub`. After the classifier come the reference's two
neighbourhood steps, with the reference's own OpenCV calls: a convolution of the
probabilities with a normalised disk of radius `average_over` (BORDER_REFLECT), a
threshold, and a dilation with a disk of radius `dilation_size`. Their reach,
`average_over + dilation_size`, is the model's halo, so chunk borders are invisible.

At the scene's edge the run pads symmetrically (OpenCV's BORDER_REFLECT), which
gives the reference's convolution, and `inside` tells `scores` where the scene
ends so the dilation sees clear sky beyond it, as `cv2.dilate` does.

Each pixel's probability is LightGBM's answer for its reflectances, computed by the
model's trees compiled with numba (`satdask.models.forest`), which equal
`Booster.predict` bit for bit and take 2.6 times less CPU.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from satdask.errors import ModelError
from satdask.models.base import ModelClass

if TYPE_CHECKING:
    from satdask.models.forest import Forest

# Sentinel-2 L1C bands in ESA order, as a 13-band scene must hold them.
S2_BANDS = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12",
)  # fmt: skip
# The ten bands the classifier reads, in its feature order.
MODEL_BANDS = ("B01", "B02", "B04", "B05", "B08", "B8A", "B09", "B10", "B11", "B12")
MODEL_FILE = "models/pixel_s2_cloud_detector_lightGBM_v0.1.txt"
EXTRA = "pip install 'satdask[cloudmask]'"
# OpenCV's filter2D switches to a DFT, whose rounding depends on the image's size, from
# a kernel of 130 px up (13 x 13, radius 6): a chunked run could not equal it.
MAX_AVERAGE_OVER = 5
CLASSES = (ModelClass(0, "clear", "#2b83ba"), ModelClass(1, "cloud", "#ff3fa4"))


def model_file() -> Path:
    """The LightGBM file inside the installed s2cloudless package (not imported)."""
    try:
        spec = importlib.util.find_spec("s2cloudless")
    except (ImportError, ValueError):  # an import hook's way of saying it is not there
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"s2cloudless is not installed; {EXTRA}")
    path = Path(next(iter(spec.submodule_search_locations))) / MODEL_FILE
    if not path.is_file():
        raise ModelError(f"{path}: s2cloudless's model file is missing; reinstall: {EXTRA}")
    return path


def reflectance(dn: np.ndarray, *, dn_offset: int = 0) -> np.ndarray:
    """Digital numbers -> the reflectances s2cloudless takes: (DN + offset) / 10000 in float32.

    `dn_offset` is ESA's radiometric offset (-1000 from processing baseline 04.00).
    """
    out = dn.astype(np.float32)
    if dn_offset:
        out += np.float32(dn_offset)
    out /= np.float32(10000.0)
    return out


def disk(radius: int) -> np.ndarray:
    """The reference's disk: skimage's, drawn by OpenCV (`s2cloudless.utils.cv2_disk`)."""
    import cv2

    side = 2 * radius + 1
    return cv2.circle(np.zeros((side, side), np.uint8), (radius, radius), radius, 1, -1)


@dataclass(frozen=True)
class CloudMaskModel:
    """s2cloudless with its parameters; satisfies `PixelModel` with one extra layer,
    `cloud_probability`. Equal and tokenized by the model file's sha256 and parameters."""

    sha256: str  # of the LightGBM file
    version: str  # of the s2cloudless package that shipped it
    threshold: float = 0.4
    average_over: int = 1
    dilation_size: int = 1
    dn_offset: int = 0  # bound to a scene by `for_scene`
    lineage: Mapping[str, Any] = field(default_factory=dict, compare=False)

    kind: ClassVar[str] = "s2cloudless"
    output: ClassVar[Literal["pixel"]] = "pixel"
    layers: ClassVar[tuple[str, ...]] = ("cloud_probability",)
    classes: ClassVar[tuple[ModelClass, ...]] = CLASSES
    window: ClassVar[None] = None
    batch_size: ClassVar[int] = 1
    padding: ClassVar[str] = "symmetric"  # OpenCV's BORDER_REFLECT, as the reference

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ModelError(f"threshold must be within 0..1, got {self.threshold}")
        for name in ("average_over", "dilation_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ModelError(f"{name} must be a whole number of pixels >= 0, got {value!r}")
        if self.average_over > MAX_AVERAGE_OVER:
            raise ModelError(
                f"average_over {self.average_over} is over {MAX_AVERAGE_OVER}: there the "
                "reference convolves by DFT, whose rounding depends on the image's size"
            )

    @property
    def bands(self) -> int:
        return len(MODEL_BANDS)

    @property
    def halo(self) -> int:
        return self.average_over + self.dilation_size

    def for_scene(self, *, dn_offset: int) -> CloudMaskModel:
        return replace(self, dn_offset=dn_offset)

    def scores(self, batch: np.ndarray, *, inside: np.ndarray | None = None) -> np.ndarray:
        """(N, 10, H, W) digital numbers -> (N, 3, H, W): clear and cloud (the mask as 0/1
        scores), then the cloud probability. `inside` (N, H, W) is False beyond the scene."""
        import cv2

        n, b, h, w = batch.shape
        if b != len(MODEL_BANDS):
            raise ModelError(f"s2cloudless reads {len(MODEL_BANDS)} bands, got {b}")
        features = np.moveaxis(reflectance(batch, dn_offset=self.dn_offset), 1, -1)
        probability = classify(self._classifier(), features.reshape(-1, b)).reshape(n, h, w)
        out = np.empty((n, 3, h, w), dtype=np.float32)
        for i in range(n):  # one call per window, as the reference makes one per image
            prob = probability[i]
            if self.average_over:
                kernel = disk(self.average_over)
                smooth = cv2.filter2D(
                    prob, -1, kernel / np.sum(kernel), borderType=cv2.BORDER_REFLECT
                )
                mask = (smooth > self.threshold).astype(np.uint8)
            else:
                mask = (prob > self.threshold).astype(np.uint8)
            if inside is not None:
                mask[~inside[i]] = 0
            if self.dilation_size:
                mask = cv2.dilate(mask, disk(self.dilation_size))
            out[i, 0], out[i, 1], out[i, 2] = 1 - mask, mask, prob
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "sha256": self.sha256,
            "version": self.version,
            "model_file": MODEL_FILE,
            "threshold": self.threshold,
            "average_over": self.average_over,
            "dilation_size": self.dilation_size,
        }

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, lineage: Mapping[str, Any] | None = None
    ) -> CloudMaskModel:
        """The artifact's model, refused unless the installed file has its sha256."""
        try:
            model = cls(
                sha256=str(data["sha256"]),
                version=str(data["version"]),
                threshold=float(data["threshold"]),
                average_over=int(data["average_over"]),
                dilation_size=int(data["dilation_size"]),
                lineage=dict(lineage or {}),
            )
        except KeyError as exc:
            raise ModelError(f"s2cloudless parameters lack {exc.args[0]!r}") from None
        model._classifier()
        return model

    @classmethod
    def installed(
        cls, *, threshold: float = 0.4, average_over: int = 1, dilation_size: int = 1
    ) -> CloudMaskModel:
        """The model the installed s2cloudless ships, with these parameters."""
        path = model_file()
        model = cls(
            sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
            version=importlib.metadata.version("s2cloudless"),
            threshold=threshold,
            average_over=average_over,
            dilation_size=dilation_size,
        )
        model._classifier()
        return model

    def _classifier(self) -> Forest:
        return load_classifier(self.sha256)

    def __dask_tokenize__(self) -> tuple[Any, ...]:
        return ("CloudMaskModel", *self.to_dict().values(), self.dn_offset)


_CLASSIFIERS: dict[str, Forest] = {}
_LOCK = threading.Lock()


def load_classifier(sha256: str) -> Forest:
    """The installed model file's trees, once per process, refused unless the file has
    the recorded sha256 (another file would silently give other masks). It is loaded
    with `lightgbm.Booster`, and its compiled trees must agree with it."""
    with _LOCK:
        if sha256 in _CLASSIFIERS:
            return _CLASSIFIERS[sha256]
        path = model_file()
        text = path.read_bytes()
        if hashlib.sha256(text).hexdigest() != sha256:
            raise ModelError(
                f"{path}: s2cloudless's model file does not match its checksum "
                f"{sha256[:12]}; it was modified or another version is installed"
            )
        try:
            import cv2
            import lightgbm

            from satdask.models.forest import Forest
        except ImportError as exc:
            raise ModelError(f"{exc.name} is not installed; {EXTRA}") from None
        cv2.setNumThreads(1)  # dask's threads are the parallelism
        booster = lightgbm.Booster(model_str=text.decode())
        forest = Forest.parse(text.decode())
        forest.check(booster)
        _CLASSIFIERS[sha256] = forest
        return forest


def classify(forest: Forest, features: np.ndarray) -> np.ndarray:
    """(P, 10) float32 reflectances -> (P,) float32 cloud probabilities, LightGBM's own."""
    return forest.probability(features).astype(np.float32)
