"""OnnxModel with real onnxruntime sessions: scores, the per-process session cache, threads."""

from __future__ import annotations

import copy
import json
import multiprocessing
import os
import pickle
import subprocess
import sys
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from dask.base import tokenize

from satdask.errors import ModelError
from satdask.io.sample_model import segmentation_model, window_classifier
from satdask.models import onnx as onnx_module
from satdask.models.base import PixelModel
from satdask.models.onnx import OnnxModel


@pytest.fixture(scope="module")
def segmentation() -> tuple[bytes, dict[str, Any]]:
    return segmentation_model(bands=4, classes=3, layers=2, window=64, seed=11)


@pytest.fixture(scope="module")
def model(segmentation: tuple[bytes, dict[str, Any]]) -> OnnxModel:
    data, metadata = segmentation
    return OnnxModel.load(data, metadata, name="seg.onnx")


def pixels(n: int, *, bands: int = 4, side: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 10001, size=(n, bands, side, side), dtype=np.uint16)


def direct_run(data: bytes, batch: np.ndarray, scale: float = 10000.0) -> np.ndarray:
    """The same network run by onnxruntime directly, with the metadata's scaling by hand."""
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    out: np.ndarray = session.run(None, {name: (batch / scale).astype(np.float32)})[0]
    return out


def test_an_onnx_model_is_a_pixel_model(model: OnnxModel) -> None:
    assert isinstance(model, PixelModel)
    assert (model.kind, model.output, model.bands, model.window) == ("onnx", "pixel", 4, 64)
    assert (model.halo, model.batch_size) == (2, 16)
    assert [c.name for c in model.classes] == ["water", "vegetation", "built"]
    assert model.lineage["mlm:name"] == model.spec.name  # the MLM extras, by default


def test_scores_equal_onnxruntime_run_directly(
    model: OnnxModel, segmentation: tuple[bytes, dict[str, Any]]
) -> None:
    batch = pixels(model.batch_size)
    got = model.scores(batch)
    assert got.dtype == np.float32 and got.shape == (16, 3, 64, 64)
    np.testing.assert_allclose(got, direct_run(segmentation[0], batch), rtol=1e-5, atol=1e-6)


def test_dark_middle_and_bright_windows_get_different_classes(model: OnnxModel) -> None:
    levels = np.linspace(500, 9500, 16)  # one brightness per window, on the 0..10000 scale
    batch = (pixels(16) // 20 + levels[:, None, None, None]).astype(np.uint16)
    classes = model.scores(batch).argmax(axis=1)
    majority = [np.bincount(c.ravel(), minlength=3).argmax() for c in classes]
    assert majority == sorted(majority)  # brighter windows never get a darker class
    assert set(majority) == {0, 1, 2}


def test_a_window_classifier_gives_one_row_per_window() -> None:
    data, metadata = window_classifier(bands=3, classes=2, window=32, seed=4)
    model = OnnxModel.load(data, metadata, name="win.onnx")
    assert (model.output, model.window, model.batch_size) == ("window", 32, 64)
    batch = pixels(64, bands=3, side=32)
    batch[:32] //= 8  # dark windows: about 0.06 of full scale
    batch[32:] = 5000 + batch[32:] // 2  # bright ones: about 0.75
    got = model.scores(batch)
    assert got.shape == (64, 2) and got.dtype == np.float32
    np.testing.assert_allclose(got, direct_run(data, batch), rtol=1e-5, atol=1e-6)
    assert set(got[:32].argmax(1)) == {0} and set(got[32:].argmax(1)) == {1}


def test_a_dynamic_window_takes_any_side_over_twice_the_halo() -> None:
    data, metadata = segmentation_model(layers=3, kernel=3, seed=5)  # halo 3
    model = OnnxModel.load(data, metadata, name="dyn.onnx")
    assert model.window is None and model.halo == 3 and model.batch_size == 1
    for side in (7, 40, 100):
        batch = pixels(1, side=side, seed=side)
        got = model.scores(batch)
        assert got.shape == (1, 3, side, side)
        np.testing.assert_allclose(got, direct_run(data, batch), rtol=1e-5, atol=1e-6)
    with pytest.raises(ModelError, match="halo 3 px leaves nothing of a 6 x 6 px window"):
        model.scores(pixels(1, side=6))


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((16, 4, 64), "a batch is .windows, bands, height, width., got .16, 4, 64."),
        ((8, 4, 64, 64), "a batch holds 16 windows, got 8"),
        ((16, 3, 64, 64), "the model takes 4 bands, got 3"),
        ((16, 4, 32, 32), "the model takes 64 px windows, got 32 x 32"),
    ],
)
def test_scores_refuse_a_batch_of_another_shape(
    model: OnnxModel, shape: tuple[int, ...], message: str
) -> None:
    with pytest.raises(ModelError, match=message):
        model.scores(np.zeros(shape, np.uint16))


# --- sessions: one per process, shared by threads --------------------------------------


def test_unpickling_in_the_same_process_reuses_the_cached_session(model: OnnxModel) -> None:
    session = model.session
    count = len(onnx_module._SESSIONS)
    again = pickle.loads(pickle.dumps(model))
    assert again == model and again is not model
    assert again.model_bytes == model.model_bytes
    assert again.session is session
    assert len(onnx_module._SESSIONS) == count
    np.testing.assert_array_equal(again.scores(pixels(16)), model.scores(pixels(16)))


def _score_in_a_fresh_process(model: OnnxModel, batch: np.ndarray) -> dict[str, Any]:
    from satdask.models import onnx as module

    before = sorted(module._SESSIONS)
    scores = model.scores(batch)
    return {
        "pid": os.getpid(),
        "before": before,
        "after": sorted(module._SESSIONS),
        "scores": scores,
    }


def test_a_fresh_process_builds_its_own_session(model: OnnxModel) -> None:
    batch = pixels(16, seed=3)
    expected = model.scores(batch)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        first = pool.submit(_score_in_a_fresh_process, model, batch).result(timeout=120)
        second = pool.submit(_score_in_a_fresh_process, model, batch).result(timeout=120)
    assert first["pid"] != os.getpid() and second["pid"] == first["pid"]
    assert first["before"] == [] and first["after"] == [model.sha256]
    assert second["before"] == [model.sha256]  # built once per process, then kept
    np.testing.assert_array_equal(first["scores"], expected)
    np.testing.assert_array_equal(second["scores"], expected)


def test_threads_share_the_session_and_agree(model: OnnxModel) -> None:
    batches = [pixels(16, seed=s) for s in range(8)]
    serial = [model.scores(b) for b in batches]
    barrier = threading.Barrier(4, timeout=60)
    sessions = []

    def run(batch: np.ndarray) -> np.ndarray:
        barrier.wait()  # the four threads call scores together
        sessions.append(model.session)
        return model.scores(batch)

    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(run, batches[:4])) + list(pool.map(run, batches[4:]))
    for got, want in zip(parallel, serial, strict=True):
        np.testing.assert_array_equal(got, want)
    assert len({id(s) for s in sessions}) == 1


def test_ort_threads_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    data, metadata = segmentation_model(seed=21)  # bytes of its own: a session of its own
    monkeypatch.setenv("SATDASK_ORT_THREADS", "2")
    model = OnnxModel.load(data, metadata, name="t.onnx")
    options = model.session.session.get_session_options()
    assert options.intra_op_num_threads == 2
    assert options.inter_op_num_threads == 1
    assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    monkeypatch.setenv("SATDASK_ORT_THREADS", "many")
    other, meta = segmentation_model(seed=22)
    with pytest.raises(ModelError, match="SATDASK_ORT_THREADS must be an integer >= 1, got 'many'"):
        OnnxModel.load(other, meta, name="t2.onnx")


def test_the_default_is_one_ort_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SATDASK_ORT_THREADS", raising=False)
    data, metadata = segmentation_model(seed=23)
    model = OnnxModel.load(data, metadata, name="t.onnx")
    assert model.session.session.get_session_options().intra_op_num_threads == 1


# --- identity --------------------------------------------------------------------------


def test_to_dict_and_from_dict_round_trip(
    model: OnnxModel, segmentation: tuple[bytes, dict[str, Any]]
) -> None:
    params = json.loads(json.dumps(model.to_dict()))
    assert params == {"sha256": model.sha256, "metadata": segmentation[1]}
    again = OnnxModel.from_dict(params, segmentation[0], lineage={"source": "x"})
    assert again == model and again.lineage == {"source": "x"}


def test_bytes_that_do_not_match_the_sha256_are_refused(model: OnnxModel) -> None:
    with pytest.raises(ModelError, match="ONNX model bytes do not match sha256"):
        OnnxModel.from_dict(model.to_dict(), model.model_bytes + b"\0")


def test_the_dask_token_follows_the_sha256_and_the_metadata(
    model: OnnxModel, segmentation: tuple[bytes, dict[str, Any]]
) -> None:
    data, metadata = segmentation
    again = OnnxModel.load(data, copy.deepcopy(metadata), name="again.onnx")
    assert tokenize(again) == tokenize(model)
    assert model.__dask_tokenize__() == ("onnx", model.sha256, model.spec.sha256)
    renamed = copy.deepcopy(metadata)
    renamed["mlm:name"] = "renamed"
    assert tokenize(OnnxModel.load(data, renamed, name="r.onnx")) != tokenize(model)


# --- load refuses, in one line ---------------------------------------------------------


def _refusal(data: bytes, metadata: dict[str, Any], *, name: str = "m.onnx") -> str:
    with pytest.raises(ModelError) as info:
        OnnxModel.load(data, metadata, name=name, metadata_name="m.json")
    message = str(info.value)
    assert "\n" not in message
    return message


def test_bytes_that_are_not_onnx_are_refused(segmentation: tuple[bytes, dict[str, Any]]) -> None:
    message = _refusal(b"not a model, just text\n", segmentation[1], name="text.onnx")
    assert message.startswith("text.onnx: not an ONNX model (")
    assert _refusal(b"", segmentation[1], name="empty.onnx").startswith(
        "empty.onnx: not an ONNX model ("
    )


def test_metadata_errors_name_the_metadata_file(
    segmentation: tuple[bytes, dict[str, Any]],
) -> None:
    metadata = copy.deepcopy(segmentation[1])
    del metadata["mlm:input"]
    assert _refusal(segmentation[0], metadata).startswith("m.json: mlm:input is missing")


def test_a_graph_that_contradicts_the_metadata_is_refused(
    segmentation: tuple[bytes, dict[str, Any]],
) -> None:
    data, metadata = segmentation
    bands = copy.deepcopy(metadata)
    bands["mlm:input"][0]["input"]["shape"][1] = 3
    assert _refusal(data, bands) == (
        "m.onnx: the model's input shape (?, 4, 64, 64) contradicts mlm:input[0].input.shape[1] (3)"
    )
    window = copy.deepcopy(metadata)
    window["mlm:input"][0]["input"]["shape"][2:] = [-1, -1]
    window["mlm:output"][0]["result"]["shape"][2:] = [-1, -1]
    assert "contradicts mlm:input[0].input.shape[2] (-1)" in _refusal(data, window)
    dtype = copy.deepcopy(metadata)
    dtype["mlm:input"][0]["input"]["data_type"] = "uint16"
    assert _refusal(data, dtype) == (
        "m.onnx: the model's input is float32 but mlm:input[0].input.data_type is uint16"
    )
    classes = copy.deepcopy(metadata)
    classes["mlm:output"][0]["result"]["shape"][1] = 4
    classes["mlm:output"][0]["classification:classes"].append({"value": 3, "name": "snow"})
    assert _refusal(data, classes) == (
        "m.onnx: the model's output shape (?, 3, 64, 64) contradicts "
        "mlm:output[0].result.shape[1] (4)"
    )


def with_data_dependent_classes(data: bytes) -> bytes:
    """The same network whose class axis onnxruntime cannot infer before running it.

    The scores go through a Slice whose end is computed from the pixels (always 3), as
    an exported graph with a data-dependent shape would; the graph states no K.
    """
    proto = onnx.load_from_string(data)
    graph = proto.graph
    for node in graph.node:
        node.output[:] = ["full" if o == "scores" else o for o in node.output]
    graph.initializer.extend(
        [
            onnx.numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
            onnx.numpy_helper.from_array(np.array(3.0, np.float32), "three"),
            onnx.numpy_helper.from_array(np.array([0], np.int64), "starts"),
            onnx.numpy_helper.from_array(np.array([1], np.int64), "axes"),
        ]
    )
    helper = onnx.helper
    graph.node.extend(
        [
            helper.make_node("ReduceMin", ["pixels"], ["low"], keepdims=0),
            helper.make_node("Mul", ["low", "zero"], ["nothing"]),
            helper.make_node("Add", ["nothing", "three"], ["k_float"]),
            helper.make_node("Cast", ["k_float"], ["k"], to=onnx.TensorProto.INT64),
            helper.make_node("Unsqueeze", ["k", "starts"], ["ends"]),
            helper.make_node("Slice", ["full", "starts", "ends", "axes"], ["scores"]),
        ]
    )
    graph.output[0].type.tensor_type.shape.dim[1].dim_param = "classes"
    onnx.checker.check_model(proto)
    out: bytes = proto.SerializeToString()
    return out


def test_a_real_output_shape_that_contradicts_the_metadata_is_refused_at_load(
    segmentation: tuple[bytes, dict[str, Any]],
) -> None:
    data, metadata = segmentation
    data = with_data_dependent_classes(data)
    assert ort.InferenceSession(data).get_outputs()[0].shape[1] == "classes"
    classes = copy.deepcopy(metadata)
    classes["mlm:output"][0]["result"]["shape"][1] = 4
    classes["mlm:output"][0]["classification:classes"].append({"value": 3, "name": "snow"})
    assert _refusal(data, classes) == (
        "m.onnx: model output shape (16, 3, 64, 64) contradicts mlm:output[0].result.shape "
        "[-1, 4, 64, 64] for a batch of shape (16, 4, 64, 64)"
    )
    assert OnnxModel.load(data, metadata, name="ok.onnx").check() is None


def test_onnxruntime_is_imported_only_when_a_model_is_loaded(
    segmentation: tuple[bytes, dict[str, Any]], tmp_path: Any
) -> None:
    (tmp_path / "m.onnx").write_bytes(segmentation[0])
    (tmp_path / "m.json").write_text(json.dumps(segmentation[1]))
    code = f"""
import json, sys
import satdask.models.onnx, satdask.models.mlm, satdask.io.registry, satdask.cli
assert "onnxruntime" not in sys.modules, "imported too early"
sys.modules["onnxruntime"] = None  # as if the extra were not installed
from satdask.errors import ModelError
from satdask.models.onnx import OnnxModel
data = open({str(tmp_path / "m.onnx")!r}, "rb").read()
meta = json.load(open({str(tmp_path / "m.json")!r}))
try:
    OnnxModel.load(data, meta, name="m.onnx")
except ModelError as exc:
    print(exc)
"""
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "install it with pip install 'satdask[onnx]'" in proc.stdout
    assert len(proc.stdout.splitlines()) == 1


# --- the sample networks on the sample scene -------------------------------------------


def test_the_sample_networks_give_every_class_on_the_sample_scene(sample_tif: Any) -> None:
    import rasterio

    with rasterio.open(sample_tif) as src:
        scene = src.read()  # (4, 1024, 1024) uint16, a nodata collar of zeros
    data, metadata = segmentation_model()
    seg = OnnxModel.load(data, metadata, name="seg.onnx")
    classes = seg.scores(scene[None]).argmax(axis=1)
    shares = np.bincount(classes.ravel(), minlength=3) / classes.size
    assert (shares > 0.05).all(), shares

    data, metadata = window_classifier()
    win = OnnxModel.load(data, metadata, name="win.onnx")
    windows = scene.reshape(4, 16, 64, 16, 64).transpose(1, 3, 0, 2, 4).reshape(256, 4, 64, 64)
    rows = np.concatenate([win.scores(windows[i : i + 16]) for i in range(0, 256, 16)])
    counts = np.bincount(rows.argmax(axis=1), minlength=2)
    assert (counts > 10).all(), counts
