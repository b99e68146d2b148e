"""Monitoring figures and a health report for one batch run.

Pure: numpy in, plain JSON-ready dicts out, no I/O and no logging. The batch
runner stores ``summarize()`` and ``health_report()`` in the run store's attrs,
so every value is a Python ``int``/``float``/``bool``/``str`` or ``None``
(never a numpy scalar, never NaN or inf): the store must round-trip through
strict JSON, and ``health_report()`` must give the same answer on the reloaded
dict as on the fresh one.

Status codes (uint8): 0 ok, 1 nodata, 2 failed. Predictions (int8): 1 bright,
0 dark, -1 none. Only ok tiles enter the feature statistics; nodata tiles were
never attempted, so they count in neither the success nor the failure rate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from satdask.core.features import STATUS_OK
from satdask.errors import ModelError, MonitoringError
from satdask.models.threshold import histogram_counts

__all__ = [
    "HealthPolicy",
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
) -> dict[str, Any]:
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
) -> dict[str, Any]:
    """Monitoring figures of one run, from its per-tile arrays (any shape) and block timings.

    Sections: ``latency``, ``counts``, ``predictions``, ``tile_mean`` and
    ``drift``. Rates and statistics that have no data behind them are None
    (e.g. the std of zero ok tiles); the failure rate alone is 0 when no tile
    was attempted, so an all-nodata scene does not read as a failing run.
    ``drift`` is all None when ``training`` is None.
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
    bright = int(np.count_nonzero(pred_ok == _BRIGHT))
    dark = int(np.count_nonzero(pred_ok == _DARK))

    # Accumulate in float64; an ok tile with a non-finite mean carries no feature value.
    values = mi.ravel()[ok].astype(np.float64)
    values = values[np.isfinite(values)]
    mean = _f(values.mean()) if values.size else None
    std = _f(values.std(ddof=0)) if values.size else None

    drift: dict[str, Any] = {
        "train_mean": None,
        "train_std": None,
        "train_tile_count": None,
        "mean_delta": None,
        "std_delta": None,
        "psi": None,
    }
    if training is not None:
        t_mean, t_std, t_count, hist = _training_stats(training)
        drift.update(train_mean=t_mean, train_std=t_std, train_tile_count=t_count)
        if values.size:
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
        "predictions": {
            "bright": bright,
            "dark": dark,
            "none": n_ok - bright - dark,
            "bright_pct": _f(100.0 * bright / n_ok) if n_ok else None,
            "dark_pct": _f(100.0 * dark / n_ok) if n_ok else None,
        },
        "tile_mean": {"n": int(values.size), "mean": mean, "std": std},
        "drift": drift,
    }


# --------------------------------------------------------------------------- health


def _num(x: float, *, signed: bool = False) -> str:
    """Short human number for messages: 3 significant digits, but never exponent notation."""
    text = f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"
    return f"+{text}" if signed and x >= 0 else text


def health_report(
    monitoring: Mapping[str, Any], *, policy: HealthPolicy = HealthPolicy()
) -> dict[str, Any]:
    """Judge a ``summarize()`` dict: drift -> retrain, failures or slow tiles -> investigate.

    Works on the dict as reloaded from the run store's JSON attrs. Status is
    "degraded" when any recommendation exists. Without training statistics
    (or without ok tiles) drift is not assessed and ``reasons`` says so.
    """
    drift = monitoring["drift"]
    counts = monitoring["counts"]
    p95 = monitoring["latency"]["tile_ms"]["p95"]
    mean_delta, std_delta, psi_value = drift["mean_delta"], drift["std_delta"], drift["psi"]
    train_std = drift["train_std"]

    reasons: list[str] = []
    retrain: list[str] = []
    investigate: list[str] = []

    drift_assessed = False
    if drift["train_mean"] is None:
        reasons.append("Drift not assessed: no training statistics.")
    elif mean_delta is None:
        reasons.append("Drift not assessed: no ok tiles with a finite mean.")
    else:
        drift_assessed = True
        if psi_value is None:
            reasons.append("PSI not assessed: training statistics have no histogram.")
        elif psi_value > policy.psi_threshold:
            msg = f"PSI {_num(psi_value)} exceeds {_num(policy.psi_threshold)}"
            reasons.append(msg)
            retrain.append(f"Retrain: {msg} (tile means are distributed unlike training).")
        shift_limit = policy.mean_shift_sigmas * train_std
        if abs(mean_delta) > shift_limit:
            msg = (
                f"tile mean moved by {_num(mean_delta, signed=True)} from training "
                f"(limit {_num(policy.mean_shift_sigmas)} x training std = {_num(shift_limit)})"
            )
            reasons.append(msg[0].upper() + msg[1:])
            retrain.append(f"Retrain: {msg}.")
        # A zero training std makes the relative change infinite for any change at all.
        ratio = abs(std_delta) / train_std if train_std > 0 else (math.inf if std_delta else 0.0)
        if ratio > policy.std_ratio:
            shown = f"{_num(100 * ratio)}%" if math.isfinite(ratio) else "an unbounded amount"
            msg = (
                f"tile-mean std changed by {_num(std_delta, signed=True)}, {shown} of training std "
                f"(limit {100 * policy.std_ratio:g}%)"
            )
            reasons.append(msg[0].upper() + msg[1:])
            retrain.append(f"Retrain: {msg}.")

    failure_rate = float(counts["failure_rate"])
    if failure_rate > policy.max_failure_rate:
        attempted = counts["ok"] + counts["failed"]
        msg = (
            f"{_num(100 * failure_rate)}% of tiles failed ({counts['failed']} of {attempted} "
            f"attempted; limit {100 * policy.max_failure_rate:g}%)"
        )
        reasons.append(msg)
        investigate.append(f"Investigate: {msg}; see the run's errors.")

    if p95 is None:
        reasons.append("Latency not assessed: no timed blocks with tiles.")
    elif p95 > policy.max_p95_tile_latency_ms:
        msg = f"p95 tile latency {_num(p95)} ms exceeds {_num(policy.max_p95_tile_latency_ms)} ms"
        reasons.append(msg)
        investigate.append(f"Investigate: {msg}; check chunking and worker load.")

    recommendations = retrain + investigate
    return {
        "status": "degraded" if recommendations else "healthy",
        "drift_assessed": drift_assessed,
        "drift_detected": bool(retrain),
        "mean_delta": mean_delta,
        "std_delta": std_delta,
        "psi": psi_value,
        "failure_rate": failure_rate,
        "p95_tile_latency_ms": p95,
        "reasons": reasons,
        "recommendations": recommendations,
        "policy": asdict(policy),
    }


def should_retrain(health: Mapping[str, Any]) -> bool:
    """True exactly when the health report detected drift."""
    return bool(health["drift_detected"])
