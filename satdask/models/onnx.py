"""ONNX models run by onnxruntime: a PixelModel from a model file and its MLM metadata.

Sessions. An `InferenceSession` cannot be pickled, and building one costs far more
than a call, so an `OnnxModel` carries only its bytes (that is what travels to dask
workers) and each process builds ONE session per model, cached by the model's sha256
in `_SESSIONS` behind a lock. `session.run` is thread-safe, so dask's threads in a
process all share that session.

Threads. dask already runs one task per core, so each session gets
`intra_op_num_threads` = SATDASK_ORT_THREADS (default 1), one inter-op thread and
sequential execution: ORT threads x dask threads never exceed the cores. Raise
SATDASK_ORT_THREADS only when dask runs fewer threads than there are cores.

onnxruntime is imported when the first session is built, never on import, so satdask
without the `onnx` extra only fails when an ONNX model is actually used.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, NamedTuple

import numpy as np

from satdask.errors import ModelError
from satdask.models.base import ModelClass
from satdask.models.mlm import ModelSpec, model_input

__all__ = ["ORT_THREADS_ENV", "OnnxModel"]

ORT_THREADS_ENV = "SATDASK_ORT_THREADS"
_EXTRA = "install it with pip install 'satdask[onnx]'"
# ORT's element types, as onnxruntime names them, and the numpy names MLM uses.
_ORT_TYPES = {
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
    "tensor(uint16)": "uint16",
    "tensor(int16)": "int16",
    "tensor(uint32)": "uint32",
    "tensor(int32)": "int32",
    "tensor(uint64)": "uint64",
    "tensor(int64)": "int64",
    "tensor(float16)": "float16",
    "tensor(float)": "float32",
    "tensor(double)": "float64",
}
# Side of the zero batch `check` runs through a model whose window is dynamic.
_PROBE_SIDE = 32


class _Session(NamedTuple):
    session: Any  # onnxruntime.InferenceSession
    input: str
    output: str


_SESSIONS: dict[str, _Session] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True)
class OnnxModel:
    """An ONNX network, its sha256 and its MLM metadata; satisfies `PixelModel`.

    Equal and tokenized by sha256 and metadata, never by its bytes.
    """

    model_bytes: bytes = field(compare=False, repr=False)
    sha256: str
    spec: ModelSpec = field(repr=False)
    lineage: Mapping[str, Any] = field(default_factory=dict, compare=False)

    kind: ClassVar[str] = "onnx"

    def __post_init__(self) -> None:
        # The session cache is keyed by sha256: a wrong one would run another model.
        if hashlib.sha256(self.model_bytes).hexdigest() != self.sha256:
            raise ModelError(f"ONNX model bytes do not match sha256 {self.sha256[:12]}")

    # --- PixelModel ---------------------------------------------------------------------

    @property
    def output(self) -> Literal["pixel", "window"]:
        return self.spec.output

    @property
    def bands(self) -> int | None:
        return self.spec.channels

    @property
    def window(self) -> int | None:
        return self.spec.window

    @property
    def halo(self) -> int:
        return self.spec.halo

    @property
    def batch_size(self) -> int:
        return self.spec.batch_size

    @property
    def classes(self) -> tuple[ModelClass, ...]:
        return self.spec.classes

    @property
    def layers(self) -> tuple[str, ...]:
        return ()

    def scores(self, batch: np.ndarray, *, inside: np.ndarray | None = None) -> np.ndarray:
        """(N, bands, H, W) raw pixels -> float32 scores, (N, K, H, W) or (N, K).

        A network sees padding as pixels: `inside` is not used."""
        batch = np.asarray(batch)
        self._check_batch(batch)
        return _run(self.session, batch, self.spec, who=f"ONNX model {self.sha256[:12]}")

    def to_dict(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "metadata": self.spec.to_dict()}

    # --- building -----------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        model_bytes: bytes,
        metadata: Mapping[str, Any] | ModelSpec,
        *,
        name: str,
        metadata_name: str | None = None,
        lineage: Mapping[str, Any] | None = None,
    ) -> OnnxModel:
        """Validate a model file against its metadata and return the model.

        `name` (the model file's name) and `metadata_name` prefix the one-line errors:
        metadata satdask cannot honour, bytes that are not ONNX, a graph whose declared
        input or output contradicts the metadata, or a zero batch whose real output
        shape does. The session built here is kept for the process.
        """
        spec = metadata if isinstance(metadata, ModelSpec) else _parse(metadata, metadata_name)
        sha = hashlib.sha256(model_bytes).hexdigest()
        built = _build_session(model_bytes, name=name)
        _check_graph(built, spec, name=name)
        _check_run(built, spec, name=name)
        with _LOCK:
            _SESSIONS.setdefault(sha, built)
        return cls(
            model_bytes=model_bytes,
            sha256=sha,
            spec=spec,
            lineage=dict(spec.extra if lineage is None else lineage),
        )

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        model_bytes: bytes,
        *,
        lineage: Mapping[str, Any] | None = None,
    ) -> OnnxModel:
        """Rebuild from an artifact's parameters and the model file it names (no I/O here)."""
        try:
            sha, metadata = data["sha256"], data["metadata"]
        except (KeyError, TypeError) as exc:
            raise ModelError(f"onnx model parameters are malformed: missing {exc}") from None
        if not isinstance(sha, str) or not isinstance(metadata, Mapping):
            raise ModelError("onnx model parameters are malformed: sha256 or metadata")
        return cls(
            model_bytes=model_bytes,
            sha256=sha,
            spec=ModelSpec.from_dict(metadata),
            lineage=dict(lineage or {}),
        )

    def check(self) -> None:
        """Run one zero batch and refuse a real output shape the metadata contradicts."""
        built = self.session
        _check_graph(built, self.spec, name=f"ONNX model {self.sha256[:12]}")
        _check_run(built, self.spec, name=f"ONNX model {self.sha256[:12]}")

    @property
    def session(self) -> _Session:
        """This process's session for the model (built on first use, then shared)."""
        found = _SESSIONS.get(self.sha256)
        if found is not None:
            return found
        with _LOCK:
            found = _SESSIONS.get(self.sha256)
            if found is None:
                found = _build_session(self.model_bytes, name=f"ONNX model {self.sha256[:12]}")
                _SESSIONS[self.sha256] = found
        return found

    def __dask_tokenize__(self) -> tuple[str, str, str]:
        return (self.kind, self.sha256, self.spec.sha256)

    def _check_batch(self, batch: np.ndarray) -> None:
        where = f"ONNX model {self.sha256[:12]}"
        if batch.ndim != 4:
            raise ModelError(
                f"{where}: a batch is (windows, bands, height, width), got {batch.shape}"
            )
        n, c, h, w = batch.shape
        if n != self.batch_size:
            raise ModelError(f"{where}: a batch holds {self.batch_size} windows, got {n}")
        if self.bands is not None and c != self.bands:
            raise ModelError(f"{where}: the model takes {self.bands} bands, got {c}")
        if self.window is not None and (h, w) != (self.window, self.window):
            raise ModelError(f"{where}: the model takes {self.window} px windows, got {h} x {w}")
        if min(h, w) <= 2 * self.halo:
            raise ModelError(
                f"{where}: halo {self.halo} px leaves nothing of a {h} x {w} px window"
            )


def _parse(metadata: Mapping[str, Any], metadata_name: str | None) -> ModelSpec:
    try:
        return ModelSpec.from_dict(metadata)
    except ModelError as exc:
        if metadata_name is None:
            raise
        raise ModelError(f"{metadata_name}: {exc}", uri=metadata_name) from None


def _ort_threads() -> int:
    text = os.environ.get(ORT_THREADS_ENV, "1")
    try:
        threads = int(text)
    except ValueError:
        threads = 0
    if threads < 1:
        raise ModelError(f"{ORT_THREADS_ENV} must be an integer >= 1, got {text!r}")
    return threads


def _build_session(model_bytes: bytes, *, name: str) -> _Session:
    try:
        import onnxruntime as ort  # type: ignore[import-untyped]
    except ImportError as exc:
        raise ModelError(f"ONNX models need onnxruntime; {_EXTRA} ({exc})") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = _ort_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only: warnings would break one-line output
    try:
        session = ort.InferenceSession(
            model_bytes, sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own classes, none exported stably
        text = _ort_message(exc)
        kind = type(exc).__name__
        if kind == "InvalidProtobuf" or not model_bytes or "No graph was found" in text:
            raise ModelError(f"{name}: not an ONNX model ({text})", uri=name) from None
        raise ModelError(f"{name}: onnxruntime cannot load the model ({text})", uri=name) from None
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1:
        raise ModelError(
            f"{name}: the model has {len(inputs)} inputs; satdask feeds models of one input",
            uri=name,
        )
    return _Session(session=session, input=inputs[0].name, output=outputs[0].name)


def _ort_message(exc: BaseException) -> str:
    """onnxruntime's message without its '[ONNXRuntimeError] : 7 : CODE :' prefix."""
    text = " ".join(str(exc).split())
    if text.startswith("[ONNXRuntimeError]"):
        text = text.split(" : ", 3)[-1]
    return text[:300]


def _check_graph(built: _Session, spec: ModelSpec, *, name: str) -> None:
    """The graph's declared input type and shape, and output shape, against the metadata."""
    inp = built.session.get_inputs()[0]
    declared = _ORT_TYPES.get(inp.type, inp.type)
    if declared != spec.data_type:
        raise ModelError(
            f"{name}: the model's input is {declared} but mlm:input[0].input.data_type is "
            f"{spec.data_type}",
            uri=name,
        )
    _compare_shape(
        inp.shape, list(spec.input_shape), "mlm:input[0].input.shape", name=name, what="input"
    )
    out = built.session.get_outputs()[0]
    _compare_shape(
        out.shape, list(spec.result_shape), "mlm:output[0].result.shape", name=name, what="output"
    )


def _compare_shape(graph: Any, meta: list[int], field_name: str, *, name: str, what: str) -> None:
    if not isinstance(graph, list):  # a graph may leave the rank unstated
        return
    if len(graph) != len(meta):
        raise ModelError(
            f"{name}: the model's {what} has {len(graph)} dimensions ({_dims(graph)}) but "
            f"{field_name} has {len(meta)} ({meta})",
            uri=name,
        )
    for axis, (g, m) in enumerate(zip(graph, meta, strict=True)):
        if isinstance(g, int) and g > 0 and g != m:
            raise ModelError(
                f"{name}: the model's {what} shape ({_dims(graph)}) contradicts "
                f"{field_name}[{axis}] ({m})",
                uri=name,
            )


def _dims(shape: list[Any]) -> str:
    return ", ".join(str(d) if isinstance(d, int) and d > 0 else "?" for d in shape)


def _check_run(built: _Session, spec: ModelSpec, *, name: str) -> None:
    """One zero batch through the model: its real output shape must be the metadata's."""
    side = spec.window or max(_PROBE_SIDE, 2 * spec.halo + 2)
    bands = spec.channels or 1
    zeros = np.zeros((spec.batch_size, bands, side, side), dtype=np.uint8)
    _run(built, zeros, spec, who=name)


def _run(built: _Session, batch: np.ndarray, spec: ModelSpec, *, who: str) -> np.ndarray:
    values = model_input(batch, spec)
    try:
        out = built.session.run([built.output], {built.input: values})[0]
    except Exception as exc:  # onnxruntime's own classes
        raise ModelError(
            f"{who}: the model fails on a batch of shape {tuple(values.shape)} "
            f"({_ort_message(exc)})"
        ) from None
    n, _, h, w = batch.shape
    k = len(spec.classes)
    expected = (n, k, h, w) if spec.output == "pixel" else (n, k)
    shape = tuple(np.shape(out))
    if shape != expected:
        raise ModelError(
            f"{who}: model output shape ({', '.join(map(str, shape))}) contradicts "
            f"mlm:output[0].result.shape {list(spec.result_shape)} for a batch of shape "
            f"({', '.join(map(str, batch.shape))})"
        )
    return np.ascontiguousarray(out, dtype=np.float32)
