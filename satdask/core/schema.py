"""What a run store holds: its per-tile variables, and the run record beside them.

`SCHEMA` is one table of the per-tile variables (names, dtypes, CF attributes,
fill values) for the batch run (which assembles the tile grid), the store (which
writes it), the lazy feature map and `runs verify`, so they cannot disagree.
`RunRecord` is the one definition of the run's attributes (lineage, counts,
monitoring, health checks), for the code that writes them and the faces that
read them.

No `from __future__ import annotations` here: TypedDict sees `NotRequired` only
in evaluated annotations, and old stores depend on it.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NotRequired, TypedDict

import numpy as np

from satdask.core.features import STATUS_NAMES, STATUS_NODATA
from satdask.core.grid import EdgePolicy, size_text


@dataclass(frozen=True)
class Variable:
    """One per-tile variable of a run.

    `empty` is what a tile holds before its block reports (a tile with no result).
    `fill` is the Zarr fill value, what a chunk that was never written reads as:
    for the class and the status, a value no tile can have, so a lost chunk shows
    instead of reading as "ok, dark". Floats use NaN for both.
    """

    name: str
    dtype: str
    empty: float
    fill: float
    attrs: Mapping[str, Any] = field(default_factory=dict)


_STATUS_FLAGS = {
    "flag_values": list(range(len(STATUS_NAMES))),
    "flag_meanings": " ".join(STATUS_NAMES),
}
SCHEMA: tuple[Variable, ...] = (
    Variable(
        "prediction",
        "int8",
        empty=-1,
        fill=-128,
        attrs={
            "long_name": "predicted class",
            "flag_values": [-1, 0, 1],
            "flag_meanings": "none dark bright",
        },
    ),
    Variable(
        "mean_intensity",
        "float64",
        empty=np.nan,
        fill=np.nan,
        attrs={"long_name": "mean of valid pixel values over the selected bands"},
    ),
    Variable(
        "std_intensity",
        "float64",
        empty=np.nan,
        fill=np.nan,
        attrs={"long_name": "population std of valid pixel values"},
    ),
    Variable(
        "valid_fraction",
        "float32",
        empty=0.0,
        fill=np.nan,
        attrs={"long_name": "fraction of the tile's samples that are valid"},
    ),
    Variable(
        "status",
        "uint8",
        empty=STATUS_NODATA,
        fill=255,
        attrs={"long_name": "tile status", **_STATUS_FLAGS},
    ),
)
BY_NAME: dict[str, Variable] = {v.name: v for v in SCHEMA}
VARIABLES: tuple[str, ...] = tuple(BY_NAME)
# CF attributes of each per-tile variable, in the run store and in `tile_features`
VARIABLE_ATTRS: dict[str, Mapping[str, Any]] = {v.name: v.attrs for v in SCHEMA}
# Zarr fill values of the integer variables (floats are NaN)
FILL_VALUES: dict[str, float] = {v.name: v.fill for v in SCHEMA if v.dtype[0] in "iu"}


# --------------------------------------------------------------------------- run record
#
# The run store's `satdask` attribute, section by section: what `run_batch` writes,
# and what `open_run`, the CLI summary, the HTML view, the plots and the exports read.
# TypedDicts, not classes, because the record is stored as JSON and must stay exactly
# that shape: a store written by an older satdask still opens, so every section added
# later is `NotRequired` and its readers say what they do without it.

Verdict = Literal["ok", "retrain", "investigate", "not assessed"]
HealthStatus = Literal["healthy", "degraded", "no data"]


class ModelRecord(TypedDict):
    """The model a run used; `id` and `uri` are None for a model never registered."""

    id: str | None
    sha256: str
    uri: str | None
    file_sha256: NotRequired[str]  # an ONNX model's file, which the artifact names


class SceneRecord(TypedDict):
    """The scene a run read. `shape` is (bands, rows, cols) of the bands it used."""

    uri: str
    sha256: str | None  # None for a remote scene, which is never hashed
    crs: str
    shape: list[int]
    dtype: str
    nodata: float | None
    acquisition_time: str | None
    stac: NotRequired[dict[str, Any]]  # a STAC item's id, self_href and assets


class RunConfig(TypedDict):
    tile_size: int
    edge: EdgePolicy
    bands: list[int]
    chunk_px: list[int]  # the largest block, (rows, cols) in pixels
    blocks: int
    scheduler: str
    # a pixel or window model's run only: its windows, their halo, what they see
    # beyond the scene's edge, and whether the class scores were kept
    window: NotRequired[int]
    halo: NotRequired[int]
    padding: NotRequired[str]
    keep_scores: NotRequired[bool]


class RunCounts(TypedDict):
    tiles_total: int
    tiles_inferred: int  # status ok
    tiles_skipped: int  # status nodata: no valid pixel, never attempted
    tiles_failed: int  # status failed: the bytes could not be read


class BlockMs(TypedDict):
    mean: float | None
    p50: float | None
    p95: float | None
    max: float | None


class TileMs(TypedDict):
    p50: float | None
    p95: float | None


class Latency(TypedDict):
    blocks: int
    block_ms: BlockMs
    tile_ms: TileMs  # per block: its ms divided by its tiles
    run_seconds: float
    tiles_per_second: float | None


class TileCounts(TypedDict):
    tiles_total: int
    ok: int
    nodata: int
    failed: int
    success_rate: float | None  # None when no tile was attempted
    failure_rate: float  # 0 when no tile was attempted
    read_retries: NotRequired[int]


class Predictions(TypedDict):
    """Ok tiles by predicted class: a threshold model's bright and dark, or a pixel or
    window model's `classes` (name -> tiles) and `classes_pct`; `none` either way."""

    none: int
    bright: NotRequired[int]
    dark: NotRequired[int]
    bright_pct: NotRequired[float | None]
    dark_pct: NotRequired[float | None]
    classes: NotRequired[dict[str, int]]
    classes_pct: NotRequired[dict[str, float | None]]


class TileMean(TypedDict):
    n: int
    mean: float | None
    std: float | None


class Drift(TypedDict):
    """The run's tile means against the model's training statistics (all None without)."""

    train_mean: float | None
    train_std: float | None
    train_tile_count: int | None
    mean_delta: float | None
    std_delta: float | None
    psi: float | None


class Monitoring(TypedDict):
    """What `health.summarize` measures; `health.health_report` judges it."""

    latency: Latency
    counts: TileCounts
    predictions: Predictions
    tile_mean: TileMean
    drift: Drift


class HealthCheck(TypedDict):
    """One rule of the health policy applied to one run.

    A check passes when `value <= limit`. `value` is None when the check could not
    be assessed (no training statistics, no ok tiles, no timed block), and `limit`
    is None when the policy's bound depends on something the run lacks. `reason`
    says why for any verdict but "ok".
    """

    name: str
    value: float | None
    limit: float | None
    verdict: Verdict
    reason: str | None


class HealthReport(TypedDict):
    """What `health.health_report` says of a run.

    `status` is "degraded" when any recommendation exists, "no data" when no tile
    was inferred and none failed, else "healthy". `checks` is absent from stores
    written before it existed; `RunResult.record` fills it in from `monitoring`.
    """

    status: HealthStatus
    drift_assessed: bool
    drift_detected: bool
    mean_delta: float | None
    std_delta: float | None
    psi: float | None
    failure_rate: float
    p95_tile_latency_ms: float | None
    reasons: list[str]
    recommendations: list[str]
    policy: dict[str, float]
    checks: NotRequired[list[HealthCheck]]


class TileError(TypedDict):
    tile: list[int]  # (row, col)
    message: str


class Resume(TypedDict):
    blocks_reused: int
    blocks_computed: int


class Timings(TypedDict):
    prepare_s: float
    hash_s: float
    compute_s: float
    total_s: float


class Coverage(TypedDict):
    """Pixels of the scene no tile covers: under edge "skip", the last `height % tile`
    rows and `width % tile` cols are never inferred."""

    pixels_total: int
    pixels_uncovered: int
    rows_uncovered: int
    cols_uncovered: int
    fraction_uncovered: float


class RunRecord(TypedDict):
    """A run store's `satdask` attribute: lineage, config, counts, monitoring and health."""

    run_id: str
    created_at: str
    model: ModelRecord
    scene: SceneRecord
    config: RunConfig
    versions: dict[str, str]
    counts: RunCounts
    monitoring: Monitoring
    health: HealthReport
    errors: list[TileError]
    resume: NotRequired[Resume]
    timings: NotRequired[Timings]
    coverage: NotRequired[Coverage]
    complete: NotRequired[bool]


# Sections every run store has had; the rest came later and may be missing.
RECORD_SECTIONS: tuple[str, ...] = tuple(sorted(RunRecord.__required_keys__))


def missing_sections(attrs: Mapping[str, Any]) -> list[str]:
    """Required sections of a run record that `attrs` lacks (or holds as a non-dict)."""
    scalar = {"run_id", "created_at", "errors"}
    return [
        k
        for k in RECORD_SECTIONS
        if k not in attrs or (k not in scalar and not isinstance(attrs[k], Mapping))
    ]


def scene_size(shape: Sequence[Any]) -> str:
    """A recorded (bands, rows, cols) shape as `size_text` words it; `?` where it is missing."""
    if len(shape) != 3:
        return "? bands x ? rows x ? cols"
    bands, rows, cols = (int(n) for n in shape)
    return size_text(rows, cols, bands)
