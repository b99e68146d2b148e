"""STAC MLM metadata -> ModelSpec: what is read, every refusal in one line, the scaling maths."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from satdask.errors import ModelError
from satdask.models.base import ModelClass
from satdask.models.mlm import SCALINGS, ModelSpec, model_input, scale_values


def properties(**changes: Any) -> dict[str, Any]:
    """A complete MLM properties dict of a 4-band, 3-class 64 px segmentation model."""
    props: dict[str, Any] = {
        "mlm:name": "test-unet",
        "mlm:architecture": "U-Net",
        "mlm:framework": "onnx",
        "mlm:tasks": ["semantic-segmentation"],
        "mlm:input": [
            {
                "name": "pixels",
                "bands": ["B02", "B03", {"name": "B04"}, "B08"],
                "input": {
                    "shape": [-1, 4, 64, 64],
                    "dim_order": ["batch", "channel", "height", "width"],
                    "data_type": "float32",
                },
                "value_scaling": [{"type": "scale", "value": 10000}],
                "resize_type": None,
                "pre_processing_function": None,
            }
        ],
        "mlm:output": [
            {
                "name": "scores",
                "tasks": ["semantic-segmentation"],
                "result": {
                    "shape": [-1, 3, 64, 64],
                    "dim_order": ["batch", "class", "height", "width"],
                    "data_type": "float32",
                },
                "classification:classes": [
                    {"value": 0, "name": "water", "color_hint": "1F78B4"},
                    {"value": 1, "name": "vegetation", "color_hint": "33a02c"},
                    {"value": 5, "name": "built"},
                ],
                "post_processing_function": None,
            }
        ],
        "mlm:hyperparameters": {"satdask:halo": 4, "epochs": 10},
    }
    props.update(changes)
    return props


def edited(edit: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    props = properties()
    edit(props)
    return props


def inp(props: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = props["mlm:input"][0]
    return entry


def out(props: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = props["mlm:output"][0]
    return entry


# --- what is read ----------------------------------------------------------------------


def test_a_segmentation_model_is_read_field_by_field() -> None:
    spec = ModelSpec.from_dict(properties())
    assert spec.band_names == ("B02", "B03", "B04", "B08")
    assert spec.input_shape == (-1, 4, 64, 64)
    assert (spec.channels, spec.window, spec.halo, spec.batch_size) == (4, 64, 4, 16)
    assert spec.data_type == "float32"
    assert spec.output == "pixel" and spec.task == "semantic-segmentation"
    assert spec.result_shape == (-1, 3, 64, 64)
    assert spec.classes == (
        ModelClass(0, "water", "#1f78b4"),
        ModelClass(1, "vegetation", "#33a02c"),
        ModelClass(5, "built", None),
    )
    assert spec.scaling is not None and len(spec.scaling) == 1
    assert spec.scaling[0].type == "scale" and spec.scaling[0].get("value") == 10000.0
    assert spec.name == "test-unet"
    # everything satdask does not interpret itself travels on, for lineage
    assert spec.extra == {
        k: v for k, v in properties().items() if k not in ("mlm:input", "mlm:output")
    }


def test_a_stac_item_is_read_through_its_properties_and_kept_whole() -> None:
    item = {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": "test-unet",
        "geometry": None,
        "properties": properties(),
        "assets": {"model": {"href": "model.onnx", "roles": ["mlm:model"]}},
    }
    spec = ModelSpec.from_dict(item)
    bare = ModelSpec.from_dict(properties())
    assert (spec.classes, spec.window, spec.halo, spec.extra) == (
        bare.classes,
        bare.window,
        bare.halo,
        bare.extra,
    )
    assert spec.to_dict() == item  # the artifact records exactly what was given
    assert spec.sha256 != bare.sha256


def test_to_dict_and_from_dict_round_trip_and_to_dict_is_a_copy() -> None:
    spec = ModelSpec.from_dict(properties())
    again = ModelSpec.from_dict(spec.to_dict())
    assert again == spec and again.sha256 == spec.sha256
    raw = spec.to_dict()
    raw["mlm:input"][0]["bands"].append("B11")
    assert ModelSpec.from_dict(spec.to_dict()) == spec


def test_the_spec_hash_follows_the_metadata_not_the_key_order() -> None:
    props = properties()
    reordered = dict(reversed(list(props.items())))
    assert ModelSpec.from_dict(reordered).sha256 == ModelSpec.from_dict(props).sha256
    other = properties(**{"mlm:name": "another"})
    assert ModelSpec.from_dict(other).sha256 != ModelSpec.from_dict(props).sha256


def test_bands_as_dim_order_name_and_dynamic_windows() -> None:
    def dynamic(p: dict[str, Any]) -> None:
        inp(p)["input"]["dim_order"] = ["batch", "bands", "height", "width"]
        inp(p)["input"]["shape"] = [-1, 4, -1, -1]
        inp(p)["bands"] = []
        out(p)["result"]["shape"] = [-1, 3, -1, -1]

    spec = ModelSpec.from_dict(edited(dynamic))
    assert spec.window is None and spec.batch_size == 1
    assert spec.band_names == () and spec.channels == 4


def test_a_classification_model_gives_one_row_per_window() -> None:
    def classifier(p: dict[str, Any]) -> None:
        out(p)["tasks"] = ["classification"]
        out(p)["result"] = {"shape": [-1, 3], "dim_order": ["batch", "class"]}

    spec = ModelSpec.from_dict(edited(classifier))
    assert spec.output == "window" and spec.task == "classification"
    assert spec.result_shape == (-1, 3)


@pytest.mark.parametrize(
    ("window", "suggestion", "batch", "expected"),
    [
        (64, None, -1, 16),  # 16 windows of 64 x 64 make 256 x 256 px
        (100, None, -1, 6),
        (256, None, -1, 1),
        (512, None, -1, 1),
        (-1, None, -1, 1),
        (64, 5, -1, 5),  # the metadata's suggestion wins
        (64, None, 8, 8),  # a graph of fixed batch takes exactly that many
        (64, 8, 8, 8),
    ],
)
def test_the_batch_size(window: int, suggestion: int | None, batch: int, expected: int) -> None:
    def shape(p: dict[str, Any]) -> None:
        inp(p)["input"]["shape"] = [batch, 4, window, window]
        out(p)["result"]["shape"] = [-1, 3, window, window]
        p["mlm:hyperparameters"] = {}
        if suggestion is not None:
            p["mlm:batch_size_suggestion"] = suggestion

    assert ModelSpec.from_dict(edited(shape)).batch_size == expected


def test_no_value_scaling_and_type_null_entries() -> None:
    spec = ModelSpec.from_dict(edited(lambda p: inp(p).update(value_scaling=None)))
    assert spec.scaling is None
    spec = ModelSpec.from_dict(edited(lambda p: inp(p).pop("value_scaling")))
    assert spec.scaling is None
    spec = ModelSpec.from_dict(edited(lambda p: inp(p).update(value_scaling=[{"type": None}])))
    assert spec.scaling is None
    per_band = [
        {"type": None},
        {"type": "offset", "value": 1},
        None,
        {"type": "scale", "value": 2},
    ]
    spec = ModelSpec.from_dict(edited(lambda p: inp(p).update(value_scaling=per_band)))
    assert spec.scaling is not None
    assert [s and s.type for s in spec.scaling] == [None, "offset", None, "scale"]


def test_per_band_scaling_counts_the_bands_when_nothing_else_does() -> None:
    def unnamed(p: dict[str, Any]) -> None:
        inp(p)["bands"] = []
        inp(p)["input"]["shape"] = [-1, -1, 64, 64]
        inp(p)["value_scaling"] = [{"type": "offset", "value": v} for v in (1, 2)]

    assert ModelSpec.from_dict(edited(unnamed)).channels == 2


# --- refusals: one line, naming the field ----------------------------------------------


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """An edit setting props[...] along a path like 'mlm:input.0.input.shape'."""

    def edit(props: dict[str, Any]) -> None:
        keys: list[Any] = [int(k) if k.isdigit() else k for k in path.split(".")]
        target: Any = props
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value

    return edit


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda props: props.pop(key)


REFUSALS: dict[str, tuple[Callable[[dict[str, Any]], object], str]] = {
    "no mlm:input": (_drop("mlm:input"), "mlm:input is missing"),
    "no mlm:output": (_drop("mlm:output"), "mlm:output is missing"),
    "empty mlm:input": (_set("mlm:input", []), "mlm:input must be a non-empty list"),
    "two inputs": (
        lambda p: p["mlm:input"].append(copy.deepcopy(p["mlm:input"][0])),
        "mlm:input has 2 entries; satdask runs models of one input",
    ),
    "two outputs": (
        lambda p: p["mlm:output"].append(copy.deepcopy(p["mlm:output"][0])),
        "mlm:output has 2 entries",
    ),
    "unknown scaling": (
        lambda p: _set(
            "mlm:input.0.value_scaling", [{"type": "scale", "value": 1}, {"type": "log"}]
        )(p),
        "mlm:input[0].value_scaling[1].type 'log' is not supported; supported: "
        "clip, clip-max, clip-min, min-max, offset, scale, z-score",
    ),
    "processing scaling": (
        _set(
            "mlm:input.0.value_scaling",
            [{"type": "processing", "format": "gdal-calc", "expression": "A * 2"}],
        ),
        "mlm:input[0].value_scaling[0].type 'processing' is not supported",
    ),
    "min-max without maximum": (
        _set("mlm:input.0.value_scaling", [{"type": "min-max", "minimum": 0}]),
        "mlm:input[0].value_scaling[0].maximum must be a finite number, got null",
    ),
    "z-score std 0": (
        _set("mlm:input.0.value_scaling", [{"type": "z-score", "mean": 1, "stddev": 0}]),
        "mlm:input[0].value_scaling[0].stddev must be > 0",
    ),
    "min-max of one value": (
        _set("mlm:input.0.value_scaling", [{"type": "min-max", "minimum": 3, "maximum": 3}]),
        "mlm:input[0].value_scaling[0]: min-max needs maximum != minimum",
    ),
    "scale by 0": (
        _set("mlm:input.0.value_scaling", [{"type": "scale", "value": 0}]),
        "mlm:input[0].value_scaling[0].value must not be 0",
    ),
    "clip upside down": (
        _set("mlm:input.0.value_scaling", [{"type": "clip", "minimum": 5, "maximum": 1}]),
        "mlm:input[0].value_scaling[0]: clip maximum 1.0 is below minimum 5.0",
    ),
    "a boolean scale": (
        _set("mlm:input.0.value_scaling", [{"type": "scale", "value": True}]),
        "mlm:input[0].value_scaling[0].value must be a finite number",
    ),
    "3 scalings for 4 bands": (
        _set("mlm:input.0.value_scaling", [{"type": "scale", "value": 1}] * 3),
        "mlm:input[0].value_scaling has 3 entries for 4 bands",
    ),
    "wrong dim_order": (
        _set("mlm:input.0.input.dim_order", ["batch", "height", "width", "channel"]),
        'mlm:input[0].input.dim_order ["batch", "height", "width", "channel"] is not supported',
    ),
    "shape of rank 3": (
        _set("mlm:input.0.input.shape", [-1, 4, 64]),
        "mlm:input[0].input.shape must be [batch, channels, height, width]",
    ),
    "shape with 0": (
        _set("mlm:input.0.input.shape", [-1, 4, 0, 0]),
        "mlm:input[0].input.shape must be [batch, channels, height, width]",
    ),
    "shape of text": (
        _set("mlm:input.0.input.shape", "1x4x64x64"),
        "mlm:input[0].input.shape must be [batch, channels, height, width]",
    ),
    "height fixed, width dynamic": (
        _set("mlm:input.0.input.shape", [-1, 4, 64, -1]),
        "mlm:input[0].input.shape has height 64 and width -1; both must be fixed or both -1",
    ),
    "not square": (
        _set("mlm:input.0.input.shape", [-1, 4, 64, 32]),
        "mlm:input[0].input.shape has height 64 and width 32; satdask runs square windows",
    ),
    "no structure": (
        _set("mlm:input.0.input", None),
        "mlm:input[0].input must be an object with shape, dim_order and data_type",
    ),
    "unknown data_type": (
        _set("mlm:input.0.input.data_type", "complex64"),
        'mlm:input[0].input.data_type "complex64" is not supported',
    ),
    "pre-processing": (
        _set("mlm:input.0.pre_processing_function", {"format": "python", "expression": "m:f"}),
        "mlm:input[0].pre_processing_function is set",
    ),
    "resize": (
        _set("mlm:input.0.resize_type", "interpolation-linear"),
        "mlm:input[0].resize_type is set",
    ),
    "a derived band": (
        _set("mlm:input.0.bands", ["B02", "B03", "B04", {"name": "ndvi", "format": "x"}]),
        "mlm:input[0].bands[3] is derived by an expression",
    ),
    "a nameless band": (
        _set("mlm:input.0.bands", ["B02", "B03", "B04", {"title": "x"}]),
        "mlm:input[0].bands[3] must be a band name or an object with a name",
    ),
    "3 bands named, 4 in the shape": (
        _set("mlm:input.0.bands", ["B02", "B03", "B04"]),
        "mlm:input[0].bands names 3 bands but mlm:input[0].input.shape[1] is 4",
    ),
    "unknown task": (
        _set("mlm:output.0.tasks", ["object-detection"]),
        'mlm:output[0].tasks ["object-detection"] has no task satdask runs; supported:',
    ),
    "both kinds of task": (
        _set("mlm:output.0.tasks", ["classification", "semantic-segmentation"]),
        "names both a per-pixel and a per-window task",
    ),
    "no result": (
        _set("mlm:output.0.result", None),
        "mlm:output[0].result must be an object with a shape",
    ),
    "result of rank 2 for segmentation": (
        _set("mlm:output.0.result.shape", [-1, 3]),
        "mlm:output[0].result.shape must be [batch, classes, height, width]",
    ),
    "dynamic class count": (
        _set("mlm:output.0.result.shape", [-1, -1, 64, 64]),
        "mlm:output[0].result.shape[1] must be the number of classes, got -1",
    ),
    "output smaller than the input": (
        _set("mlm:output.0.result.shape", [-1, 3, 32, 32]),
        "mlm:output[0].result.shape[2] (height) is 32 but the input's is 64",
    ),
    "dim_order of the wrong length": (
        _set("mlm:output.0.result.dim_order", ["batch", "class"]),
        'mlm:output[0].result.dim_order ["batch", "class"] does not match shape',
    ),
    "4 classes listed for 3 scores": (
        lambda p: out(p)["classification:classes"].append({"value": 9, "name": "snow"}),
        "mlm:output[0].classification:classes has 4 classes but mlm:output[0].result.shape[1] is 3",
    ),
    "no classes": (
        lambda p: out(p).pop("classification:classes"),
        "mlm:output[0].classification:classes must list the model's classes",
    ),
    "a repeated class value": (
        _set("mlm:output.0.classification:classes.2.value", 1),
        "mlm:output[0].classification:classes repeats a value: [0, 1, 1]",
    ),
    "a class without a name": (
        _set("mlm:output.0.classification:classes.1.name", ""),
        "mlm:output[0].classification:classes[1].name must be a non-empty string",
    ),
    "a colour with a hash": (
        _set("mlm:output.0.classification:classes.0.color_hint", "#1f78b4"),
        "mlm:output[0].classification:classes[0].color_hint must be 6 hex digits",
    ),
    "post-processing": (
        _set("mlm:output.0.post_processing_function", {"format": "python", "expression": "m:f"}),
        "mlm:output[0].post_processing_function is set",
    ),
    "a negative halo": (
        _set("mlm:hyperparameters", {"satdask:halo": -1}),
        'mlm:hyperparameters["satdask:halo"] must be an integer >= 0, got -1',
    ),
    "a fractional halo": (
        _set("mlm:hyperparameters", {"satdask:halo": 1.5}),
        'mlm:hyperparameters["satdask:halo"] must be an integer >= 0, got 1.5',
    ),
    "a halo larger than the window": (
        _set("mlm:hyperparameters", {"satdask:halo": 40}),
        "halo 40 px leaves nothing of a 64 px window",
    ),
    "a halo of exactly half the window": (
        _set("mlm:hyperparameters", {"satdask:halo": 32}),
        "halo 32 px leaves nothing of a 64 px window",
    ),
    "a batch size of 0": (
        _set("mlm:batch_size_suggestion", 0),
        "mlm:batch_size_suggestion must be >= 1, got 0",
    ),
    "a batch size against a fixed batch": (
        lambda p: (
            _set("mlm:input.0.input.shape", [2, 4, 64, 64])(p),
            _set("mlm:batch_size_suggestion", 4)(p),
        ),
        "mlm:batch_size_suggestion is 4 but mlm:input[0].input.shape[0] fixes the batch at 2",
    ),
    "output batch against input batch": (
        lambda p: (
            _set("mlm:input.0.input.shape", [2, 4, 64, 64])(p),
            _set("mlm:output.0.result.shape", [3, 3, 64, 64])(p),
        ),
        "mlm:output[0].result.shape[0] is 3 but mlm:input[0].input.shape[0] is 2",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_every_refusal_is_one_line_naming_the_field(case: str) -> None:
    edit, expected = REFUSALS[case]
    props = edited(edit)
    with pytest.raises(ModelError) as info:
        ModelSpec.from_dict(props)
    message = str(info.value)
    assert "\n" not in message
    assert expected.replace('"', "'") in message.replace('"', "'"), message


def test_the_unknown_scaling_message_is_exactly_the_documented_one() -> None:
    with pytest.raises(ModelError) as info:
        ModelSpec.from_dict(edited(REFUSALS["unknown scaling"][0]))
    assert str(info.value) == (
        "mlm:input[0].value_scaling[1].type 'log' is not supported; supported: "
        "clip, clip-max, clip-min, min-max, offset, scale, z-score"
    )


def test_metadata_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(ModelError, match="MLM metadata must be a JSON object, got list"):
        ModelSpec.from_dict([properties()])  # type: ignore[arg-type]


# --- the scaling maths, against hand computation ---------------------------------------


def spec_with(scaling: Any, *, data_type: str = "float32", bands: int = 4) -> ModelSpec:
    def edit(p: dict[str, Any]) -> None:
        inp(p)["value_scaling"] = scaling
        inp(p)["input"]["data_type"] = data_type
        inp(p)["input"]["shape"] = [-1, bands, 64, 64]
        inp(p)["bands"] = []

    return ModelSpec.from_dict(edited(edit))


PIXELS = np.array([[[[0, 1], [250, 7000]], [[3, 10000], [65535, 12]]]], dtype=np.uint16)


@pytest.mark.parametrize(
    ("entry", "hand"),
    [
        ({"type": "min-max", "minimum": 100, "maximum": 5100}, lambda x: (x - 100) / 5000),
        ({"type": "z-score", "mean": 1500, "stddev": 250}, lambda x: (x - 1500) / 250),
        (
            {"type": "clip", "minimum": 5, "maximum": 9000},
            lambda x: np.minimum(np.maximum(x, 5), 9000),
        ),
        ({"type": "clip-min", "minimum": 5}, lambda x: np.maximum(x, 5)),
        ({"type": "clip-max", "maximum": 9000}, lambda x: np.minimum(x, 9000)),
        ({"type": "offset", "value": 1000}, lambda x: x - 1000),
        ({"type": "scale", "value": 10000}, lambda x: x / 10000),
    ],
    ids=lambda v: v["type"] if isinstance(v, dict) else "",
)
def test_each_scaling_computes_what_the_spec_says(
    entry: dict[str, Any], hand: Callable[[np.ndarray], np.ndarray]
) -> None:
    spec = spec_with([entry], bands=2)
    got = scale_values(PIXELS, spec)
    assert got.dtype == np.float32 and got.shape == PIXELS.shape
    np.testing.assert_allclose(got, hand(PIXELS.astype(np.float64)), rtol=1e-6, atol=1e-6)


def test_every_documented_scaling_type_is_covered() -> None:
    assert set(SCALINGS) == {
        "min-max",
        "z-score",
        "clip",
        "clip-min",
        "clip-max",
        "offset",
        "scale",
    }


def test_per_band_scaling_applies_each_entry_to_its_band_only() -> None:
    scaling = [{"type": "offset", "value": 1}, {"type": "z-score", "mean": 2, "stddev": 4}]
    got = scale_values(PIXELS, spec_with(scaling, bands=2))
    x = PIXELS.astype(np.float64)
    np.testing.assert_allclose(got[:, 0], x[:, 0] - 1, rtol=1e-6)
    np.testing.assert_allclose(got[:, 1], (x[:, 1] - 2) / 4, rtol=1e-6)


def test_a_null_entry_leaves_its_band_as_read() -> None:
    got = scale_values(PIXELS, spec_with([{"type": None}, {"type": "scale", "value": 2}], bands=2))
    np.testing.assert_array_equal(got[:, 0], PIXELS[:, 0].astype(np.float32))
    np.testing.assert_allclose(got[:, 1], PIXELS[:, 1] / 2.0, rtol=1e-6)


def test_no_scaling_gives_the_values_as_float32_and_never_changes_the_input() -> None:
    pixels = PIXELS.copy()
    got = scale_values(pixels, spec_with(None, bands=2))
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, PIXELS.astype(np.float32))
    got += 1  # a copy: the caller's pixels stay as read
    np.testing.assert_array_equal(pixels, PIXELS)


def test_scaling_is_float64_for_a_float64_model_and_deterministic() -> None:
    spec = spec_with([{"type": "z-score", "mean": 1234.5, "stddev": 321.25}], data_type="float64")
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 10000, size=(3, 4, 16, 16), dtype=np.uint16)
    first, second = scale_values(pixels, spec), scale_values(pixels.copy(), spec)
    assert first.dtype == np.float64
    assert first.tobytes() == second.tobytes()
    np.testing.assert_allclose(first, (pixels - 1234.5) / 321.25, rtol=1e-12)


def test_per_band_scaling_refuses_pixels_of_another_band_count() -> None:
    spec = spec_with([{"type": "offset", "value": 1}, {"type": "offset", "value": 2}], bands=2)
    with pytest.raises(ModelError, match=r"pixels have 3 bands but mlm:input\[0\]\.value_scaling"):
        scale_values(np.zeros((1, 3, 2, 2), np.uint16), spec)


def test_model_input_rounds_and_clips_into_an_integer_input_type() -> None:
    spec = spec_with([{"type": "scale", "value": 40}], data_type="uint8", bands=2)
    got = model_input(PIXELS, spec)
    assert got.dtype == np.uint8
    expected = np.clip(np.rint(PIXELS / 40.0), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(got, expected)
    assert got.max() == 255  # 65535 / 40 is clipped, not wrapped


def test_model_input_casts_to_a_float16_input() -> None:
    spec = spec_with([{"type": "scale", "value": 10000}], data_type="float16", bands=2)
    got = model_input(PIXELS, spec)
    assert got.dtype == np.float16
    np.testing.assert_allclose(got, (PIXELS / 10000.0).astype(np.float16), rtol=1e-3)
