"""Monitoring figures and a health report for one batch run.

Pure: numpy in, plain JSON-ready dicts out (typed in ``satdask.core.schema``), no
I/O and no logging. The batch
runner stores ``summarize()`` and ``health_report()`` in the run store's attrs,
so every value is a Python ``int``/``float``/``bool``/``str`` or ``None``
(never a numpy scalar, never NaN or inf): the store must round-trip through
strict JSON, and ``health_report()`` must give the same answer on the reloaded
dict as on the fresh one.

Status codes (uint8): 0 ok, 1 nodata, 2 failed. Predictions (int8): a threshold
model's 1 bright and 0 dark, or a pixel or window model's class values; -1 none.
Only ok tiles enter the feature statistics; nodata tiles were never attempted, so
they count in neither the success nor the failure rate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from satdask.core.features import STATUS_OK
from satdask.core.schema import (
    Drift,
    HealthCheck,
    HealthReport,
    HealthStatus,
    Latency,
    Monitoring,
    Predictions,
    TileCounts,
    Verdict,
)
from satdask.errors import ModelError, MonitoringError
from satdask.models.threshold import histogram_counts

__all__ = [
    "HealthPolicy",
    "health_checks",
    "health_report",
    "psi",
    "should_retrain",
    "summarize",
]

_BRIGHT = 1
_DARK = 0


@dataclass(frozen=True, kw_only=True)
class HealthPolicy:
    """Thresholds of the health report; frozen so one policy is one fixed rule set."""

    psi_threshold: float = 0.2  # PSI above -> drift
    mean_shift_sigmas: float = 0.5  # |mean - train_mean| > this * train_std -> drift
    std_ratio: float = 0.5  # |std - train_std| / train_std > this -> drift
    max_failure_rate: float = 0.02  # > this -> investigate
    max_p95_tile_latency_ms: float = 50.0  # p95 of (block ms / tiles) > this -> investigate

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if not (number and math.isfinite(value) and value >= 0):
                raise MonitoringError(
                    f"HealthPolicy.{name} must be a finite number >= 0, got {value!r}"
                )


# --------------------------------------------------------------------------- PSI


def psi(
    *,
    edges: Sequence[float],
    expected_counts: Sequence[int],
    actual: np.ndarray,
    epsilon: float = 1e-4,
) -> float:
    """Population stability index of ``actual`` against a binned reference.

    ``sum((a - e) * ln(a / e))`` over bins, where ``e`` and ``a`` are the
    expected and actual proportions. Bins follow ``np.histogram`` (half-open,
    the last one closed); values below ``edges[0]`` count in the first bin and
    values above ``edges[-1]`` in the last, because decile edges of a training
    sample never cover a new scene's extremes. Proportions are floored at
    ``epsilon`` so an empty bin gives a large but finite term, not inf; each
    term stays >= 0, so the index does too. Non-finite ``actual`` values are
    ignored; with none left the index is undefined and NaN is returned.
    """
    e = np.asarray(edges, dtype=np.float64)
    c = np.asarray(expected_counts, dtype=np.float64)
    if e.ndim != 1 or e.size < 2:
        raise MonitoringError(f"psi: edges must be 1-D with at least 2 values, got shape {e.shape}")
    if c.ndim != 1 or c.size != e.size - 1:
        raise MonitoringError(
            f"psi: {e.size} edges need {e.size - 1} expected_counts, got {c.size}"
        )
    if not np.all(np.isfinite(e)) or np.any(np.diff(e) < 0):
        raise MonitoringError("psi: edges must be finite and non-decreasing")
    if not np.all(np.isfinite(c)) or np.any(c < 0) or c.sum() <= 0:
        raise MonitoringError("psi: expected_counts must be non-negative with a positive total")
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise MonitoringError(f"psi: epsilon must be a finite number > 0, got {epsilon!r}")

    values = np.asarray(actual, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return math.nan

    # The same binning that counted the training histogram, outer bins open-ended.
    observed = histogram_counts(values, e).astype(np.float64)

    expected_p = np.maximum(c / c.sum(), epsilon)
    actual_p = np.maximum(observed / values.size, epsilon)
    # math.fsum: an exactly rounded sum, independent of numpy's pairwise order.
    return float(math.fsum(((actual_p - expected_p) * np.log(actual_p / expected_p)).tolist()))


# --------------------------------------------------------------------------- summarize


def _f(x: float | np.floating | None) -> float | None:
    """Plain float, or None where the value is undefined (NaN/inf never reach JSON)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def _latency(
    block_latency_ms: Sequence[float],
    block_tiles: Sequence[int],
    run_seconds: float,
    tiles_total: int,
) -> Latency:
    ms = np.asarray(block_latency_ms, dtype=np.float64).ravel()
    tiles = np.asarray(block_tiles, dtype=np.int64).ravel()
    if ms.size != tiles.size:
        raise MonitoringError(
            f"summarize: {ms.size} block_latency_ms values but {tiles.size} block_tiles values"
        )
    if not np.all(np.isfinite(ms)) or np.any(ms < 0):
        raise MonitoringError("summarize: block_latency_ms must be finite and >= 0")
    if np.any(tiles < 0):
        raise MonitoringError("summarize: block_tiles must be >= 0")
    if not (math.isfinite(run_seconds) and run_seconds >= 0):
        raise MonitoringError(
            f"summarize: run_seconds must be finite and >= 0, got {run_seconds!r}"
        )

    # A block with no tiles has no per-tile latency; leave it out rather than divide by 0.
    has_tiles = tiles > 0
    per_tile = ms[has_tiles] / tiles[has_tiles]

    def pct(a: np.ndarray, q: float) -> float | None:
        return _f(np.percentile(a, q)) if a.size else None

    return {
        "blocks": int(ms.size),
        "block_ms": {
            "mean": _f(ms.mean()) if ms.size else None,
            "p50": pct(ms, 50),
            "p95": pct(ms, 95),
            "max": _f(ms.max()) if ms.size else None,
        },
        "tile_ms": {"p50": pct(per_tile, 50), "p95": pct(per_tile, 95)},
        "run_seconds": float(run_seconds),
        "tiles_per_second": _f(tiles_total / run_seconds) if run_seconds > 0 else None,
    }


def _training_stats(training: Mapping[str, Any]) -> tuple[float, float, int | None, Any]:
    """Checked (mean, std, tile_count, histogram); a bad artifact is a ModelError."""
    try:
        mean = float(training["mean"])
        std = float(training["std"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"training statistics: need numeric 'mean' and 'std' ({exc})") from exc
    if not (math.isfinite(mean) and math.isfinite(std) and std >= 0):
        raise ModelError(
            f"training statistics: mean {mean!r} / std {std!r} must be finite, std >= 0"
        )
    count = training.get("tile_count")
    hist = training.get("histogram")
    if hist is not None:
        if not isinstance(hist, Mapping) or "edges" not in hist or "counts" not in hist:
            raise ModelError("training statistics: 'histogram' needs 'edges' and 'counts'")
        if len(hist["edges"]) != len(hist["counts"]) + 1:
            raise ModelError(
                f"training statistics: histogram has {len(hist['edges'])} edges "
                f"for {len(hist['counts'])} counts (need counts + 1)"
            )
    return mean, std, (int(count) if count is not None else None), hist


def summarize(
    *,
    status: np.ndarray,
    prediction: np.ndarray,
    mean_intensity: np.ndarray,
    block_latency_ms: Sequence[float],
    block_tiles: Sequence[int],
    run_seconds: float,
    training: Mapping[str, Any] | None,
    read_retries: int = 0,
    classes: Mapping[int, str] | None = None,
) -> Monitoring:
    """Monitoring figures of one run, from its per-tile arrays (any shape) and block timings.

    Sections: ``latency``, ``counts``, ``predictions``, ``tile_mean`` and
    ``drift``. Rates and statistics that have no data behind them are None
    (e.g. the std of zero ok tiles); the failure rate alone is 0 when no tile
    was attempted, so an all-nodata scene does not read as a failing run.
    ``drift`` is all None when ``training`` is None.

    ``classes`` (value -> name) counts the ok tiles of a pixel or window model's
    classes under their names; without it the classes are the threshold model's
    bright (1) and dark (0), which would silently mislabel any other model's.
    """
    st = np.asarray(status)
    pred = np.asarray(prediction)
    mi = np.asarray(mean_intensity)
    if not (st.shape == pred.shape == mi.shape):
        raise MonitoringError(
            "summarize: status, prediction and mean_intensity must share a shape, got "
            f"{st.shape}, {pred.shape}, {mi.shape}"
        )
    st = st.ravel()
    if st.size and (not np.issubdtype(st.dtype, np.integer) or st.min() < 0 or st.max() > 2):
        raise MonitoringError(
            "summarize: status codes must be integers 0 (ok), 1 (nodata), 2 (failed)"
        )
    n_ok, n_nodata, n_failed = (int(n) for n in np.bincount(st.astype(np.intp), minlength=3))
    tiles_total = int(st.size)
    attempted = n_ok + n_failed

    ok = st == STATUS_OK
    pred_ok = pred.ravel()[ok]

    # Accumulate in float64; an ok tile with a non-finite mean carries no feature value.
    values = mi.ravel()[ok].astype(np.float64)
    values = values[np.isfinite(values)]
    mean = _f(values.mean()) if values.size else None
    std = _f(values.std(ddof=0)) if values.size else None

    drift: Drift = {
        "train_mean": None,
        "train_std": None,
        "train_tile_count": None,
        "mean_delta": None,
        "std_delta": None,
        "psi": None,
    }
    if training is not None:
        t_mean, t_std, t_count, hist = _training_stats(training)
        drift["train_mean"], drift["train_std"], drift["train_tile_count"] = t_mean, t_std, t_count
        if mean is not None and std is not None:
            drift["mean_delta"] = _f(mean - t_mean)
            drift["std_delta"] = _f(std - t_std)
            if hist is not None:
                try:
                    value = psi(edges=hist["edges"], expected_counts=hist["counts"], actual=values)
                except ValueError as exc:
                    raise ModelError(f"training statistics: bad histogram ({exc})") from exc
                drift["psi"] = _f(value)

    failure_rate = n_failed / attempted if attempted else 0.0
    return {
        "latency": _latency(block_latency_ms, block_tiles, run_seconds, tiles_total),
        "counts": {
            "tiles_total": tiles_total,
            "ok": n_ok,
            "nodata": n_nodata,
            "failed": n_failed,
            "success_rate": _ratio(n_ok, attempted),
            "failure_rate": failure_rate,
            "read_retries": read_retries,
        },
        "predictions": _predictions(pred_ok, classes),
        "tile_mean": {"n": int(values.size), "mean": mean, "std": std},
        "drift": drift,
    }


def _predictions(pred_ok: np.ndarray, classes: Mapping[int, str] | None) -> Predictions:
    """Ok tiles per class, and their share of the ok tiles; `none` for the rest."""
    n_ok = int(pred_ok.size)

    def pct(n: int) -> float | None:
        return _f(100.0 * n / n_ok) if n_ok else None

    if classes is None:
        bright = int(np.count_nonzero(pred_ok == _BRIGHT))
        dark = int(np.count_nonzero(pred_ok == _DARK))
        return {
            "bright": bright,
            "dark": dark,
            "none": n_ok - bright - dark,
            "bright_pct": pct(bright),
            "dark_pct": pct(dark),
        }
    counts = {name: int(np.count_nonzero(pred_ok == value)) for value, name in _named(classes)}
    return {
        "classes": counts,
        "classes_pct": {name: pct(n) for name, n in counts.items()},
        "none": n_ok - sum(counts.values()),
    }


def _named(classes: Mapping[int, str]) -> list[tuple[int, str]]:
    """(value, name) pairs whose names are unique: a repeated name gets its value added."""
    names = list(classes.values())
    return [
        (int(value), name if names.count(name) == 1 else f"{name} ({value})")
        for value, name in classes.items()
    ]


# --------------------------------------------------------------------------- health


def _num(x: float, *, signed: bool = False) -> str:
    """Short human number for messages: 3 significant digits, but never exponent notation."""
    text = f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"
    return f"+{text}" if signed and x >= 0 else text


@dataclass(frozen=True)
class _Judged:
    """One check's row, plus what it adds to the report's reasons and recommendations."""

    row: HealthCheck
    reason: str | None = None  # for the report's `reasons`, worded for a sentence on its own
    recommendation: str | None = None


def _row(
    name: str,
    value: float | None,
    limit: float | None,
    verdict: Verdict,
    reason: str | None = None,
) -> HealthCheck:
    return {"name": name, "value": value, "limit": limit, "verdict": verdict, "reason": reason}


def _first_upper(text: str) -> str:
    return text[0].upper() + text[1:]


def _drift_checks(drift: Drift, policy: HealthPolicy) -> tuple[list[_Judged], str | None]:
    """PSI, mean shift and std change; and the reason drift was not assessed, if it was not."""
    train_std, mean_delta, std_delta, psi_value = (
        drift["train_std"],
        drift["mean_delta"],
        drift["std_delta"],
        drift["psi"],
    )
    shift_limit = None if train_std is None else policy.mean_shift_sigmas * train_std
    std_limit = None if train_std is None else policy.std_ratio * train_std
    if drift["train_mean"] is None or train_std is None:
        why = "no training statistics"
    elif mean_delta is None or std_delta is None:
        why = "no ok tiles with a finite mean"
    else:
        why = None
    if why is not None:
        return [
            _Judged(_row("PSI", None, policy.psi_threshold, "not assessed", why)),
            _Judged(_row("mean shift", None, shift_limit, "not assessed", why)),
            _Judged(_row("std change", None, std_limit, "not assessed", why)),
        ], f"Drift not assessed: {why}."
    assert mean_delta is not None and std_delta is not None and train_std is not None
    assert shift_limit is not None and std_limit is not None
    return [
        _psi_check(psi_value, policy),
        _mean_check(mean_delta, shift_limit, policy),
        _std_check(std_delta, std_limit, train_std, policy),
    ], None


def _psi_check(value: float | None, policy: HealthPolicy) -> _Judged:
    limit = policy.psi_threshold
    if value is None:
        why = "training statistics have no histogram"
        return _Judged(_row("PSI", None, limit, "not assessed", why), f"PSI not assessed: {why}.")
    if value <= limit:
        return _Judged(_row("PSI", value, limit, "ok"))
    msg = f"PSI {_num(value)} exceeds {_num(limit)}"
    return _Judged(
        _row("PSI", value, limit, "retrain", msg),
        msg,
        f"Retrain: {msg} (tile means are distributed unlike training).",
    )


def _mean_check(delta: float, limit: float, policy: HealthPolicy) -> _Judged:
    value = abs(delta)
    if value <= limit:
        return _Judged(_row("mean shift", value, limit, "ok"))
    msg = (
        f"tile mean moved by {_num(delta, signed=True)} from training "
        f"(limit {_num(policy.mean_shift_sigmas)} x training std = {_num(limit)})"
    )
    return _Judged(
        _row("mean shift", value, limit, "retrain", msg), _first_upper(msg), f"Retrain: {msg}."
    )


def _std_check(delta: float, limit: float, train_std: float, policy: HealthPolicy) -> _Judged:
    value = abs(delta)
    if value <= limit:
        return _Judged(_row("std change", value, limit, "ok"))
    # A zero training std makes the relative change unbounded for any change at all.
    shown = f"{_num(100 * value / train_std)}%" if train_std > 0 else "an unbounded amount"
    msg = (
        f"tile-mean std changed by {_num(delta, signed=True)}, {shown} of training std "
        f"(limit {100 * policy.std_ratio:g}%)"
    )
    return _Judged(
        _row("std change", value, limit, "retrain", msg), _first_upper(msg), f"Retrain: {msg}."
    )


def _failure_check(counts: TileCounts, policy: HealthPolicy) -> _Judged:
    rate, limit = float(counts["failure_rate"]), policy.max_failure_rate
    if rate <= limit:
        return _Judged(_row("failure rate", rate, limit, "ok"))
    attempted = counts["ok"] + counts["failed"]
    msg = (
        f"{_num(100 * rate)}% of tiles failed ({counts['failed']} of {attempted} "
        f"attempted; limit {100 * limit:g}%)"
    )
    return _Judged(
        _row("failure rate", rate, limit, "investigate", msg),
        msg,
        f"Investigate: {msg}; see the run's errors.",
    )


def _latency_check(p95: float | None, policy: HealthPolicy) -> _Judged:
    name, limit = "p95 tile latency ms", policy.max_p95_tile_latency_ms
    if p95 is None:
        why = "no timed blocks with tiles"
        return _Judged(
            _row(name, None, limit, "not assessed", why), f"Latency not assessed: {why}."
        )
    if p95 <= limit:
        return _Judged(_row(name, p95, limit, "ok"))
    msg = f"p95 tile latency {_num(p95)} ms exceeds {_num(limit)} ms"
    return _Judged(
        _row(name, p95, limit, "investigate", msg),
        msg,
        f"Investigate: {msg}; check chunking and worker load.",
    )


def health_checks(
    monitoring: Monitoring, *, policy: HealthPolicy = HealthPolicy()
) -> list[HealthCheck]:
    """The policy's rules applied to a ``summarize()`` dict, one row per check.

    The one place the rules live: ``health_report`` words its reasons from these
    rows, and the plots and HTML views draw them.
    """
    return [j.row for j in _judge(monitoring, policy)[0]]


def _judge(monitoring: Monitoring, policy: HealthPolicy) -> tuple[list[_Judged], str | None]:
    drift, not_assessed = _drift_checks(monitoring["drift"], policy)
    return [
        *drift,
        _failure_check(monitoring["counts"], policy),
        _latency_check(monitoring["latency"]["tile_ms"]["p95"], policy),
    ], not_assessed


def health_report(monitoring: Monitoring, *, policy: HealthPolicy = HealthPolicy()) -> HealthReport:
    """Judge a ``summarize()`` dict: drift -> retrain, failures or slow tiles -> investigate.

    Works on the dict as reloaded from the run store's JSON attrs. ``checks`` holds
    one row per rule (see ``health_checks``). Status is "degraded" when any
    recommendation exists; else "no data" when no tile was inferred and none failed
    (a scene of nodata has nothing to call healthy); else "healthy". Without
    training statistics (or without ok tiles) drift is not assessed and
    ``reasons`` says so.
    """
    counts = monitoring["counts"]
    judged, drift_not_assessed = _judge(monitoring, policy)
    no_data = counts["ok"] == 0 and counts["failed"] == 0
    reasons: list[str] = []
    if no_data:
        reasons.append(
            f"No data: none of the {counts['tiles_total']} tiles had a valid pixel, so nothing "
            "was inferred (check the scene's nodata value and the bands)."
        )
    if drift_not_assessed:
        reasons.append(drift_not_assessed)
    reasons += [j.reason for j in judged if j.reason]
    recommendations = [j.recommendation for j in judged if j.recommendation]
    checks = [j.row for j in judged]
    drift = monitoring["drift"]
    status: HealthStatus = "degraded" if recommendations else "no data" if no_data else "healthy"
    return {
        "status": status,
        "drift_assessed": drift_not_assessed is None,
        "drift_detected": any(c["verdict"] == "retrain" for c in checks),
        "mean_delta": drift["mean_delta"],
        "std_delta": drift["std_delta"],
        "psi": drift["psi"],
        "failure_rate": float(counts["failure_rate"]),
        "p95_tile_latency_ms": monitoring["latency"]["tile_ms"]["p95"],
        "reasons": reasons,
        "recommendations": recommendations,
        "policy": asdict(policy),
        "checks": checks,
    }


def should_retrain(health: Mapping[str, Any]) -> bool:
    """True exactly when the health report detected drift."""
    return bool(health["drift_detected"])
