"""STAC MLM metadata (the Machine Learning Model extension, 1.5) -> what satdask runs.

A model file says how to compute; its MLM metadata says what goes in and what comes
out: the bands, the input shape and type, how raw values are scaled, the task and its
classes. `ModelSpec.from_dict` reads the fields satdask needs from `mlm:input[0]` and
`mlm:output[0]` and refuses, in one line naming the field, anything it cannot honour
(custom pre- or post-processing functions, derived bands, resizing, unknown scalings
or tasks), because running such a model without them would give quietly wrong scores.

Pure: plain JSON-like values and numpy, no onnxruntime.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from satdask.errors import ModelError
from satdask.models.base import ModelClass

__all__ = [
    "DATA_TYPES",
    "PIXEL_TASKS",
    "SCALINGS",
    "WINDOW_TASKS",
    "ModelSpec",
    "Scaling",
    "model_input",
    "scale_values",
]

# What each value_scaling type needs and computes (MLM "Value Scaling Object"):
# min-max (x - minimum) / (maximum - minimum), z-score (x - mean) / stddev,
# clip min(max(x, minimum), maximum), clip-min max(x, minimum), clip-max min(x, maximum),
# offset x - value, scale x / value. `processing` (an expression) is not run.
SCALINGS: dict[str, tuple[str, ...]] = {
    "clip": ("minimum", "maximum"),
    "clip-max": ("maximum",),
    "clip-min": ("minimum",),
    "min-max": ("minimum", "maximum"),
    "offset": ("value",),
    "scale": ("value",),
    "z-score": ("mean", "stddev"),
}
DATA_TYPES = (
    "uint8",
    "int8",
    "uint16",
    "int16",
    "uint32",
    "int32",
    "uint64",
    "int64",
    "float16",
    "float32",
    "float64",
)
PIXEL_TASKS = ("semantic-segmentation", "segmentation")
WINDOW_TASKS = ("classification", "scene-classification")
# MLM names the channel axis "channel" or, as many published items do, "bands".
_DIM_ORDERS = (("batch", "channel", "height", "width"), ("batch", "bands", "height", "width"))
HALO_KEY = "satdask:halo"
# Windows per call when the metadata suggests no batch size: about this many pixels.
BATCH_PIXELS = 256 * 256
# Integer inputs wider than 16 bits are not exact in float32, so they are scaled in float64.
_WIDE = ("float64", "int32", "uint32", "int64", "uint64")
_HEX = re.compile(r"[0-9A-Fa-f]{6}")


@dataclass(frozen=True)
class Scaling:
    """One value_scaling entry: its type and the numbers that type needs."""

    type: str
    params: tuple[tuple[str, float], ...]

    def get(self, name: str) -> float:
        return dict(self.params)[name]


@dataclass(frozen=True)
class ModelSpec:
    """The parts of a model's MLM metadata that satdask acts on, and the metadata itself.

    `channels` is the band count the model takes (None: any), `window` the fixed side of
    its square input (None: dynamic), `scaling` None (no scaling), one entry for every
    band, or one entry (or None, no scaling) per band. `raw` is the JSON as given, so an
    artifact records exactly what was imported; `extra` is every property satdask does
    not interpret itself (name, architecture, framework...), kept for lineage.
    """

    band_names: tuple[str, ...]
    input_shape: tuple[int, int, int, int]  # as given: batch, channels, height, width
    channels: int | None
    window: int | None
    batch_size: int
    data_type: str
    scaling: tuple[Scaling | None, ...] | None
    output: Literal["pixel", "window"]
    task: str
    classes: tuple[ModelClass, ...]
    result_shape: tuple[int, ...]
    halo: int
    extra: Mapping[str, Any] = field(repr=False)
    raw: Mapping[str, Any] = field(repr=False)

    @property
    def name(self) -> str | None:
        value = self.extra.get("mlm:name")
        return value if isinstance(value, str) else None

    @property
    def sha256(self) -> str:
        """Hash of the canonical JSON of the metadata as given."""
        text = json.dumps(self.raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(dict(self.raw))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelSpec:
        """Parse a STAC item (its `properties`) or a bare properties dict.

        Raises ModelError naming the field at fault, e.g.
        `mlm:input[0].value_scaling[1].type 'log' is not supported; supported: ...`.
        """
        if not isinstance(data, Mapping):
            raise ModelError(f"MLM metadata must be a JSON object, got {type(data).__name__}")
        props = data
        if "mlm:input" not in data and isinstance(data.get("properties"), Mapping):
            props = data["properties"]
        raw = copy.deepcopy(dict(data))
        extra = {
            k: copy.deepcopy(v) for k, v in props.items() if k not in ("mlm:input", "mlm:output")
        }

        inp = _only(props, "mlm:input")
        band_names = _band_names(inp.get("bands"), "mlm:input[0].bands")
        shape, data_type = _input_structure(inp.get("input"))
        batch, channels, height, width = shape
        for key in ("pre_processing_function", "resize_type"):
            if inp.get(key) is not None:
                raise ModelError(
                    f"mlm:input[0].{key} is set ({_short(inp[key])}); satdask cannot honour it "
                    f"(it feeds windows at their size, scaled only by value_scaling)"
                )
        if channels > 0 and band_names and len(band_names) != channels:
            raise ModelError(
                f"mlm:input[0].bands names {len(band_names)} bands but "
                f"mlm:input[0].input.shape[1] is {channels}"
            )
        known = channels if channels > 0 else (len(band_names) or None)
        scaling = _scalings(inp.get("value_scaling"), known)
        if known is None and scaling is not None and len(scaling) > 1:
            known = len(scaling)  # one entry per band: the entries count the bands
        window = height if height > 0 else None

        out = _only(props, "mlm:output")
        output, task = _task(out.get("tasks"))
        if out.get("post_processing_function") is not None:
            raise ModelError(
                "mlm:output[0].post_processing_function is set "
                f"({_short(out['post_processing_function'])}); satdask cannot honour it"
            )
        result = _result_shape(out.get("result"), output, batch=batch, window=window)
        classes = _classes(out.get("classification:classes"), result[1])
        halo = _halo(props.get("mlm:hyperparameters"), window)
        batch_size = _batch_size(props.get("mlm:batch_size_suggestion"), batch, window)
        del width  # equal to height, checked by _input_structure
        return cls(
            band_names=band_names,
            input_shape=shape,
            channels=known,
            window=window,
            batch_size=batch_size,
            data_type=data_type,
            scaling=scaling,
            output=output,
            task=task,
            classes=classes,
            result_shape=result,
            halo=halo,
            extra=extra,
            raw=raw,
        )


def scale_values(pixels: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Pixels (N, bands, H, W) as read -> the scaled values, as MLM value_scaling says.

    Computed in float32 (float64 when the model takes float64 or integers wider than
    16 bits, which float32 cannot hold exactly), always by the same operations in the
    same order, so the same pixels give the same bits.
    """
    work = np.float64 if spec.data_type in _WIDE else np.float32
    values = np.array(pixels, dtype=work)  # a copy: scaled in place below
    if spec.scaling is None:
        return values
    if values.ndim != 4:
        raise ModelError(
            f"pixels must be (windows, bands, height, width), got shape {values.shape}"
        )
    if len(spec.scaling) == 1:
        _scale(values, spec.scaling[0])
        return values
    if values.shape[1] != len(spec.scaling):
        raise ModelError(
            f"pixels have {values.shape[1]} bands but mlm:input[0].value_scaling "
            f"has {len(spec.scaling)} entries, one per band"
        )
    for band, scaling in enumerate(spec.scaling):
        _scale(values[:, band], scaling)
    return values


def model_input(pixels: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Scaled pixels in the type the model's input takes (integers rounded and clipped)."""
    scaled = scale_values(pixels, spec)
    target = np.dtype(spec.data_type)
    if target.kind == "f":
        return scaled.astype(target, copy=False)
    info = np.iinfo(target)
    rounded: np.ndarray = np.clip(np.rint(scaled), info.min, info.max)
    return rounded.astype(target)


def _scale(values: np.ndarray, scaling: Scaling | None) -> None:
    """Apply one scaling to `values` in place."""
    if scaling is None:
        return
    p = {k: values.dtype.type(v) for k, v in scaling.params}
    kind = scaling.type
    if kind == "min-max":
        values -= p["minimum"]
        values /= values.dtype.type(scaling.get("maximum") - scaling.get("minimum"))
    elif kind == "z-score":
        values -= p["mean"]
        values /= p["stddev"]
    elif kind == "clip":
        np.clip(values, p["minimum"], p["maximum"], out=values)
    elif kind == "clip-min":
        np.maximum(values, p["minimum"], out=values)
    elif kind == "clip-max":
        np.minimum(values, p["maximum"], out=values)
    elif kind == "offset":
        values -= p["value"]
    elif kind == "scale":
        values /= p["value"]
    else:  # parsing refuses every other type
        raise ModelError(f"value_scaling type {kind!r} is not supported")


# --- parsing ---------------------------------------------------------------------------


def _short(value: Any) -> str:
    """A value as a message shows it: 'text' quoted as Python does, the rest as JSON."""
    text = repr(value) if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _only(props: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """The single entry of `mlm:input` / `mlm:output`."""
    if key not in props:
        raise ModelError(f"{key} is missing; satdask needs it to know what the model takes")
    items = props[key]
    if not isinstance(items, list) or not items:
        raise ModelError(f"{key} must be a non-empty list, got {_short(items)}")
    if len(items) > 1:
        raise ModelError(f"{key} has {len(items)} entries; satdask runs models of one {key[4:]}")
    if not isinstance(items[0], Mapping):
        raise ModelError(f"{key}[0] must be an object, got {_short(items[0])}")
    return items[0]


def _band_names(bands: Any, where: str) -> tuple[str, ...]:
    if bands is None:
        return ()
    if not isinstance(bands, list):
        raise ModelError(f"{where} must be a list of band names, got {_short(bands)}")
    names = []
    for i, band in enumerate(bands):
        if isinstance(band, Mapping):
            if band.get("expression") is not None or band.get("format") is not None:
                raise ModelError(
                    f"{where}[{i}] is derived by an expression; satdask reads bands, it does "
                    f"not compute them"
                )
            band = band.get("name")
        if not isinstance(band, str) or not band:
            raise ModelError(f"{where}[{i}] must be a band name or an object with a name")
        names.append(band)
    return tuple(names)


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ModelError(f"{where} must be an integer, got {_short(value)}")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ModelError(f"{where} must be a finite number, got {_short(value)}")
    return float(value)


def _shape(value: Any, where: str, rank: int, form: str) -> tuple[int, ...]:
    if (
        not isinstance(value, list)
        or len(value) != rank
        or any(isinstance(v, bool) or not isinstance(v, int) or (v < 1 and v != -1) for v in value)
    ):
        raise ModelError(f"{where} must be {form}, each an integer > 0 or -1, got {_short(value)}")
    return tuple(value)


def _input_structure(structure: Any) -> tuple[tuple[int, int, int, int], str]:
    where = "mlm:input[0].input"
    if not isinstance(structure, Mapping):
        raise ModelError(f"{where} must be an object with shape, dim_order and data_type")
    dims = structure.get("dim_order")
    if not isinstance(dims, list) or tuple(dims) not in _DIM_ORDERS:
        raise ModelError(
            f"{where}.dim_order {_short(dims)} is not supported; satdask feeds "
            f'["batch", "channel", "height", "width"] ("bands" for "channel" also accepted)'
        )
    b, c, h, w = _shape(
        structure.get("shape"), f"{where}.shape", 4, "[batch, channels, height, width]"
    )
    if (h == -1) != (w == -1):
        raise ModelError(
            f"{where}.shape has height {h} and width {w}; both must be fixed or both -1"
        )
    if h != w:
        raise ModelError(f"{where}.shape has height {h} and width {w}; satdask runs square windows")
    data_type = structure.get("data_type")
    if data_type not in DATA_TYPES:
        raise ModelError(
            f"{where}.data_type {_short(data_type)} is not supported; supported: "
            f"{', '.join(DATA_TYPES)}"
        )
    return (b, c, h, w), str(data_type)


def _scalings(value: Any, channels: int | None) -> tuple[Scaling | None, ...] | None:
    where = "mlm:input[0].value_scaling"
    if value is None:
        return None
    if not isinstance(value, list):
        raise ModelError(f"{where} must be a list or null, got {_short(value)}")
    if not value:
        return None
    entries = tuple(_scaling(item, f"{where}[{i}]") for i, item in enumerate(value))
    if len(entries) > 1 and channels is not None and len(entries) != channels:
        raise ModelError(
            f"{where} has {len(entries)} entries for {channels} bands; give one for all "
            f"bands or one per band"
        )
    if all(e is None for e in entries):
        return None
    return entries


def _scaling(item: Any, where: str) -> Scaling | None:
    if item is None:
        return None
    if not isinstance(item, Mapping):
        raise ModelError(f"{where} must be an object or null, got {_short(item)}")
    kind = item.get("type")
    if kind is None:
        return None  # MLM: `type: null` where no scaling applies to that band
    if kind not in SCALINGS:
        raise ModelError(
            f"{where}.type {_short(kind)} is not supported; supported: {', '.join(SCALINGS)}"
        )
    params = tuple((name, _number(item.get(name), f"{where}.{name}")) for name in SCALINGS[kind])
    found = dict(params)
    if kind == "min-max" and found["maximum"] == found["minimum"]:
        raise ModelError(f"{where}: min-max needs maximum != minimum, both are {found['minimum']}")
    if kind == "clip" and found["maximum"] < found["minimum"]:
        raise ModelError(
            f"{where}: clip maximum {found['maximum']} is below minimum {found['minimum']}"
        )
    if kind == "z-score" and found["stddev"] <= 0:
        raise ModelError(f"{where}.stddev must be > 0, got {found['stddev']}")
    if kind == "scale" and found["value"] == 0:
        raise ModelError(f"{where}.value must not be 0 (scale divides by it)")
    return Scaling(type=str(kind), params=params)


def _task(tasks: Any) -> tuple[Literal["pixel", "window"], str]:
    where = "mlm:output[0].tasks"
    if not isinstance(tasks, list) or not all(isinstance(t, str) for t in tasks):
        raise ModelError(f"{where} must be a list of task names, got {_short(tasks)}")
    pixel = [t for t in tasks if t in PIXEL_TASKS]
    window = [t for t in tasks if t in WINDOW_TASKS]
    if pixel and window:
        raise ModelError(
            f"{where} {_short(tasks)} names both a per-pixel and a per-window task; "
            f"satdask cannot tell which one the output is"
        )
    if pixel:
        return "pixel", pixel[0]
    if window:
        return "window", window[0]
    raise ModelError(
        f"{where} {_short(tasks)} has no task satdask runs; supported: "
        f"{', '.join(PIXEL_TASKS + WINDOW_TASKS)}"
    )


def _result_shape(result: Any, output: str, *, batch: int, window: int | None) -> tuple[int, ...]:
    where = "mlm:output[0].result"
    if not isinstance(result, Mapping):
        raise ModelError(f"{where} must be an object with a shape")
    if output == "pixel":
        shape = _shape(result.get("shape"), f"{where}.shape", 4, "[batch, classes, height, width]")
    else:
        shape = _shape(result.get("shape"), f"{where}.shape", 2, "[batch, classes]")
    dims = result.get("dim_order")
    if dims is not None and (not isinstance(dims, list) or len(dims) != len(shape)):
        raise ModelError(f"{where}.dim_order {_short(dims)} does not match shape {list(shape)}")
    if shape[1] == -1:
        raise ModelError(f"{where}.shape[1] must be the number of classes, got -1")
    if -1 not in (shape[0], batch) and shape[0] != batch:
        raise ModelError(
            f"{where}.shape[0] is {shape[0]} but mlm:input[0].input.shape[0] is {batch}"
        )
    if output == "pixel":
        wanted = window or -1
        for axis, name in ((2, "height"), (3, "width")):
            if shape[axis] != -1 and shape[axis] != wanted:
                raise ModelError(
                    f"{where}.shape[{axis}] ({name}) is {shape[axis]} but the input's is "
                    f"{wanted}; satdask needs an output the size of the input"
                )
    return shape


def _classes(classes: Any, count: int) -> tuple[ModelClass, ...]:
    where = "mlm:output[0].classification:classes"
    if not isinstance(classes, list) or not classes:
        raise ModelError(f"{where} must list the model's classes, got {_short(classes)}")
    out = []
    for i, item in enumerate(classes):
        if not isinstance(item, Mapping):
            raise ModelError(f"{where}[{i}] must be an object with value and name")
        value = _int(item.get("value"), f"{where}[{i}].value")
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise ModelError(f"{where}[{i}].name must be a non-empty string, got {_short(name)}")
        hint = item.get("color_hint")
        if hint is not None and (not isinstance(hint, str) or not _HEX.fullmatch(hint)):
            raise ModelError(
                f"{where}[{i}].color_hint must be 6 hex digits (RRGGBB, no '#'), got {_short(hint)}"
            )
        out.append(ModelClass(value=value, name=name, color=f"#{hint.lower()}" if hint else None))
    values = [c.value for c in out]
    if len(set(values)) != len(values):
        raise ModelError(f"{where} repeats a value: {values}")
    if len(out) != count:
        raise ModelError(
            f"{where} has {len(out)} classes but mlm:output[0].result.shape[1] is {count}"
        )
    return tuple(out)


def _halo(hyper: Any, window: int | None) -> int:
    where = f'mlm:hyperparameters["{HALO_KEY}"]'
    if hyper is None:
        return 0
    if not isinstance(hyper, Mapping):
        raise ModelError(f"mlm:hyperparameters must be an object, got {_short(hyper)}")
    halo = hyper.get(HALO_KEY, 0)
    if isinstance(halo, bool) or not isinstance(halo, int) or halo < 0:
        raise ModelError(f"{where} must be an integer >= 0, got {_short(halo)}")
    if window is not None and 2 * halo >= window:
        raise ModelError(
            f"{where}: halo {halo} px leaves nothing of a {window} px window "
            f"(the halo must be under half the window)"
        )
    return halo


def _batch_size(suggestion: Any, batch: int, window: int | None) -> int:
    where = "mlm:batch_size_suggestion"
    if suggestion is not None:
        suggestion = _int(suggestion, where)
        if suggestion < 1:
            raise ModelError(f"{where} must be >= 1, got {suggestion}")
    if batch > 0:  # the graph takes exactly this many windows
        if suggestion is not None and suggestion != batch:
            raise ModelError(
                f"{where} is {suggestion} but mlm:input[0].input.shape[0] fixes the batch "
                f"at {batch}"
            )
        return batch
    if suggestion is not None:
        return int(suggestion)
    if window is None or window * window >= BATCH_PIXELS:
        return 1
    return BATCH_PIXELS // (window * window)
