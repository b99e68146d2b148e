"""Small real ONNX networks and their STAC MLM metadata, for tests, benchmarks and notebooks.

The weights are fixed and seeded, and chosen so that a scene of `io.sample.write_sample`
gives every class: each class has a brightness centre (the mean of the bands, scaled
to 0..1 by the metadata's value_scaling), and the network scores a pixel (or a window)
by how far its local mean lies from each centre. Seeded noise on every weight keeps
them from being hand-written constants only. The `onnx` package is imported inside
the builders.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from satdask._files import replace_file
from satdask.errors import ModelError

__all__ = ["segmentation_model", "window_classifier", "write_model"]

# opset 17 and IR 8: what every onnxruntime the `onnx` extra allows (>= 1.18) runs.
_OPSET = 17
_IR_VERSION = 8
_CLASSES = (
    ("water", "1f78b4"),
    ("vegetation", "33a02c"),
    ("built", "e31a1c"),
    ("bare", "b15928"),
    ("cloud", "dddddd"),
    ("snow", "a6cee3"),
)
_WINDOW_CLASSES = (("dark", "253494"), ("bright", "fed976"))
# Full scale of the pixel values write_sample writes, per dtype (1..250 for uint8).
_FULL_SCALE = {"uint8": 250}
_DEFAULT_FULL_SCALE = 10000
_NOISE = 0.05  # weight noise, as a fraction of each weight's own size


def segmentation_model(
    *,
    bands: int = 4,
    classes: int = 3,
    layers: int = 2,
    kernel: int = 3,
    window: int | None = None,
    dtype: str = "uint16",
    seed: int = 0,
) -> tuple[bytes, dict[str, Any]]:
    """A fully convolutional network: `layers` Conv (+ Relu but after the last) -> K scores.

    Each Conv is `kernel` x `kernel` with SAME padding, so the model reads
    `layers * (kernel // 2)` px of context on each side: its halo, written into
    mlm:hyperparameters["satdask:halo"]. `window=None` leaves H and W dynamic (-1).
    Returns the model's bytes and a complete MLM properties dict.
    """
    onnx, helper, numpy_helper = _onnx()
    _check(bands=bands, classes=classes, layers=layers, kernel=kernel, window=window)
    rng = np.random.default_rng([seed, 2])
    centres = _centres(classes)
    taps = kernel * kernel
    hidden = 2 * classes
    weights: list[np.ndarray] = []
    biases: list[np.ndarray] = []
    if layers == 1:
        # score_j = 2 c_j m - c_j^2 = m^2 - (m - c_j)^2: the nearest centre wins.
        w = np.zeros((classes, bands, kernel, kernel))
        w += (2 * centres)[:, None, None, None] / (bands * taps)
        weights.append(w)
        biases.append(-(centres**2))
    else:
        # h_2j = relu(m - c_j), h_2j+1 = relu(c_j - m): together |m - c_j|.
        sign = np.repeat([[1.0, -1.0]], classes, axis=0).ravel()
        weights.append(
            np.broadcast_to(
                sign[:, None, None, None] / (bands * taps), (hidden, bands, kernel, kernel)
            ).copy()
        )
        biases.append(-sign * np.repeat(centres, 2))
        for _ in range(layers - 2):  # averaging each channel on its own keeps |m - c_j|
            w = np.zeros((hidden, hidden, kernel, kernel))
            w[np.arange(hidden), np.arange(hidden)] = 1.0 / taps
            weights.append(w)
            biases.append(np.zeros(hidden))
        # score_j = -(h_2j + h_2j+1): the class whose centre is nearest scores highest.
        w = np.zeros((classes, hidden, kernel, kernel))
        for j in range(classes):
            w[j, 2 * j : 2 * j + 2] = -1.0 / taps
        weights.append(w)
        biases.append(np.zeros(classes))

    pad = kernel // 2
    nodes, inits = [], []
    current = "pixels"
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        w, b = _noisy(w, rng), _noisy(b, rng)
        inits += [
            numpy_helper.from_array(w.astype(np.float32), f"conv{i}.weight"),
            numpy_helper.from_array(b.astype(np.float32), f"conv{i}.bias"),
        ]
        conv = "scores" if i == layers - 1 else f"conv{i}"
        nodes.append(
            helper.make_node(
                "Conv",
                [current, f"conv{i}.weight", f"conv{i}.bias"],
                [conv],
                kernel_shape=[kernel, kernel],
                pads=[pad, pad, pad, pad],
            )
        )
        current = conv
        if i < layers - 1:
            nodes.append(helper.make_node("Relu", [conv], [f"relu{i}"]))
            current = f"relu{i}"

    side: int | str = window if window is not None else "height"
    width: int | str = window if window is not None else "width"
    graph = helper.make_graph(
        nodes,
        "satdask_sample_segmentation",
        [
            helper.make_tensor_value_info(
                "pixels", onnx.TensorProto.FLOAT, ["batch", bands, side, width]
            )
        ],
        [
            helper.make_tensor_value_info(
                "scores", onnx.TensorProto.FLOAT, ["batch", classes, side, width]
            )
        ],
        inits,
    )
    data = _serialize(onnx, helper, graph)
    n = -1 if window is None else window
    halo = layers * pad
    names = _class_list(_CLASSES, classes)
    metadata = _metadata(
        name=f"satdask-sample-segmentation-{bands}b-{classes}c-{layers}x{kernel}",
        architecture="fully convolutional network",
        task="semantic-segmentation",
        input_shape=[-1, bands, n, n],
        result_shape=[-1, classes, n, n],
        result_dims=["batch", "class", "height", "width"],
        classes=names,
        dtype=dtype,
        hyper={"satdask:halo": halo, "layers": layers, "kernel": kernel, "seed": seed},
        parameters=sum(int(w.size + b.size) for w, b in zip(weights, biases, strict=True)),
    )
    return data, metadata


def window_classifier(
    *, bands: int = 4, classes: int = 2, window: int = 64, seed: int = 0, dtype: str = "uint16"
) -> tuple[bytes, dict[str, Any]]:
    """Conv 3x3 + Relu + GlobalAveragePool + Flatten + Gemm: one row of K scores per window.

    A window is scored by the mean distance of its local brightness to each class's
    centre, so dark windows and bright windows fall in different classes.
    """
    onnx, helper, numpy_helper = _onnx()
    _check(bands=bands, classes=classes, layers=1, kernel=3, window=window)
    rng = np.random.default_rng([seed, 3])
    centres = _centres(classes)
    hidden = 2 * classes
    sign = np.repeat([[1.0, -1.0]], classes, axis=0).ravel()
    conv_w = np.broadcast_to(sign[:, None, None, None] / (bands * 9), (hidden, bands, 3, 3))
    conv_b = -sign * np.repeat(centres, 2)
    gemm_w = np.zeros((classes, hidden))  # Gemm with transB: (K, hidden)
    for j in range(classes):
        gemm_w[j, 2 * j : 2 * j + 2] = -1.0
    gemm_b = np.zeros(classes)
    arrays = {
        "conv.weight": conv_w,
        "conv.bias": conv_b,
        "fc.weight": gemm_w,
        "fc.bias": gemm_b,
    }
    inits = [
        numpy_helper.from_array(_noisy(a, rng).astype(np.float32), name)
        for name, a in arrays.items()
    ]
    nodes = [
        helper.make_node(
            "Conv",
            ["pixels", "conv.weight", "conv.bias"],
            ["conv"],
            kernel_shape=[3, 3],
            pads=[1, 1, 1, 1],
        ),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("GlobalAveragePool", ["relu"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["scores"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "satdask_sample_window_classifier",
        [
            helper.make_tensor_value_info(
                "pixels", onnx.TensorProto.FLOAT, ["batch", bands, window, window]
            )
        ],
        [helper.make_tensor_value_info("scores", onnx.TensorProto.FLOAT, ["batch", classes])],
        inits,
    )
    data = _serialize(onnx, helper, graph)
    metadata = _metadata(
        name=f"satdask-sample-window-classifier-{bands}b-{classes}c-{window}px",
        architecture="convolution and global average pooling",
        task="classification",
        input_shape=[-1, bands, window, window],
        result_shape=[-1, classes],
        result_dims=["batch", "class"],
        classes=_class_list(_WINDOW_CLASSES, classes),
        dtype=dtype,
        hyper={"satdask:halo": 0, "seed": seed},
        parameters=sum(int(a.size) for a in arrays.values()),
    )
    return data, metadata


def write_model(
    directory: str | os.PathLike[str],
    model_bytes: bytes,
    metadata: dict[str, Any],
    *,
    name: str,
) -> tuple[Path, Path]:
    """Write `name.onnx` and `name.json` (the MLM metadata) into `directory`.

    Each file is written in full beside its final name and moved into place, so a
    reader never sees half a model; an existing pair is replaced.
    """
    folder = Path(directory)
    if not folder.is_dir():
        raise ModelError(f"{folder}: directory does not exist", uri=str(folder))
    model_path, metadata_path = folder / f"{name}.onnx", folder / f"{name}.json"
    replace_file(model_path, model_bytes)
    replace_file(metadata_path, json.dumps(metadata, indent=2, sort_keys=True).encode() + b"\n")
    return model_path, metadata_path


# --- helpers ---------------------------------------------------------------------------


def _onnx() -> tuple[Any, Any, Any]:
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError as exc:
        raise ModelError(
            f"building sample ONNX models needs the onnx package; install it with "
            f"pip install 'satdask[onnx]' ({exc})"
        ) from None
    return onnx, helper, numpy_helper


def _check(*, bands: int, classes: int, layers: int, kernel: int, window: int | None) -> None:
    for label, value, minimum in (
        ("bands", bands, 1),
        ("classes", classes, 1),
        ("layers", layers, 1),
        ("kernel", kernel, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ModelError(
                f"sample model: {label} must be an integer >= {minimum}, got {value!r}"
            )
    if kernel % 2 == 0:
        raise ModelError(f"sample model: kernel must be odd (SAME padding), got {kernel}")
    if window is not None:
        halo = layers * (kernel // 2)
        if isinstance(window, bool) or not isinstance(window, int) or window <= 2 * halo:
            raise ModelError(
                f"sample model: window must be an integer over twice the halo ({2 * halo}), "
                f"got {window!r}"
            )


def _centres(classes: int) -> np.ndarray:
    """Brightness centres, 0..1, spread over what write_sample's scenes hold."""
    return np.array([0.5]) if classes == 1 else np.linspace(0.2, 0.8, classes)


def _noisy(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Seeded noise in proportion to the array's largest weight (zeros stay zeros)."""
    scale = float(np.abs(values).max()) if values.size else 0.0
    return values + rng.normal(0.0, _NOISE * scale, size=values.shape)


def _class_list(table: tuple[tuple[str, str], ...], count: int) -> list[dict[str, Any]]:
    out = []
    for i in range(count):
        name, color = table[i] if i < len(table) else (f"class {i}", "808080")
        out.append({"value": i, "name": name, "color_hint": color})
    return out


def _serialize(onnx: Any, helper: Any, graph: Any) -> bytes:
    model = helper.make_model(
        graph,
        producer_name="satdask",
        opset_imports=[helper.make_opsetid("", _OPSET)],
        ir_version=_IR_VERSION,
    )
    onnx.checker.check_model(model, full_check=True)
    data: bytes = model.SerializeToString()
    return data


def _metadata(
    *,
    name: str,
    architecture: str,
    task: str,
    input_shape: list[int],
    result_shape: list[int],
    result_dims: list[str],
    classes: list[dict[str, Any]],
    dtype: str,
    hyper: dict[str, Any],
    parameters: int,
) -> dict[str, Any]:
    full = _FULL_SCALE.get(dtype, _DEFAULT_FULL_SCALE)
    return {
        "mlm:name": name,
        "mlm:architecture": architecture,
        "mlm:tasks": [task],
        "mlm:framework": "onnx",
        "mlm:pretrained": False,
        "mlm:pretrained_source": None,
        "mlm:total_parameters": parameters,
        "mlm:accelerator": "amd64",
        "mlm:accelerator_constrained": False,
        "mlm:input": [
            {
                "name": "pixels",
                "bands": [],
                "input": {
                    "shape": input_shape,
                    "dim_order": ["batch", "channel", "height", "width"],
                    "data_type": "float32",
                },
                "value_scaling": [{"type": "scale", "value": full}],
                "resize_type": None,
                "pre_processing_function": None,
            }
        ],
        "mlm:output": [
            {
                "name": "scores",
                "tasks": [task],
                "result": {
                    "shape": result_shape,
                    "dim_order": result_dims,
                    "data_type": "float32",
                },
                "classification:classes": classes,
                "post_processing_function": None,
            }
        ],
        "mlm:hyperparameters": hyper,
    }
