"""Monitoring and health: figures on hand-made grids, PSI by hand, drift and thresholds."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from satdask.core.health import HealthPolicy, health_report, psi, should_retrain, summarize
from satdask.errors import ModelError, MonitoringError, SatdaskError

OK, NODATA, FAILED = 0, 1, 2


def training_from(means: np.ndarray) -> dict:
    """Training stats the way a trainer would build them: decile edges, collapsed."""
    edges = np.unique(np.quantile(means, np.linspace(0, 1, 11)))
    counts, _ = np.histogram(means, bins=edges)
    return {
        "mean": float(means.mean()),
        "std": float(means.std()),
        "tile_count": int(means.size),
        "histogram": {"edges": edges.tolist(), "counts": counts.tolist()},
    }


def run(status, prediction=None, mean_intensity=None, *, training=None, **kw) -> dict:
    status = np.asarray(status, dtype=np.uint8)
    if prediction is None:
        prediction = np.where(status == OK, 1, -1).astype(np.int8)
    if mean_intensity is None:
        mean_intensity = np.where(status == OK, 100.0, np.nan)
    opts = {"block_latency_ms": [10.0], "block_tiles": [status.size], "run_seconds": 1.0}
    opts.update(kw)
    return summarize(
        status=status,
        prediction=np.asarray(prediction, dtype=np.int8),
        mean_intensity=np.asarray(mean_intensity),
        training=training,
        **opts,
    )


@pytest.fixture(scope="module")
def train_means() -> np.ndarray:
    return np.random.default_rng(7).normal(100.0, 10.0, 2000)


# --------------------------------------------------------------------------- counts


def test_counts_and_predictions_on_a_hand_made_grid():
    status = np.array([[OK, OK, OK, NODATA], [OK, FAILED, OK, NODATA]], dtype=np.uint8)
    pred = np.array([[1, 0, 1, -1], [1, -1, -1, -1]], dtype=np.int8)  # one ok tile without
    mi = np.array([[10.0, 20.0, 30.0, np.nan], [40.0, np.nan, 50.0, np.nan]])
    m = summarize(
        status=status,
        prediction=pred,
        mean_intensity=mi,
        block_latency_ms=[40.0, 10.0],
        block_tiles=[4, 4],
        run_seconds=2.0,
        training=None,
        read_retries=3,
    )
    assert m["counts"] == {
        "read_retries": 3,
        "tiles_total": 8,
        "ok": 5,
        "nodata": 2,
        "failed": 1,
        "success_rate": 5 / 6,
        "failure_rate": 1 / 6,
    }
    assert m["predictions"] == {
        "bright": 3,
        "dark": 1,
        "none": 1,
        "bright_pct": 60.0,
        "dark_pct": 20.0,
    }
    assert m["tile_mean"]["n"] == 5
    assert m["tile_mean"]["mean"] == pytest.approx(30.0)
    assert m["tile_mean"]["std"] == pytest.approx(math.sqrt(200.0))  # ddof=0
    lat = m["latency"]
    assert lat["blocks"] == 2
    assert lat["block_ms"] == {"mean": 25.0, "p50": 25.0, "p95": 38.5, "max": 40.0}
    assert lat["tile_ms"]["p50"] == pytest.approx(6.25)
    assert lat["tiles_per_second"] == 4.0
    assert m["drift"] == dict.fromkeys(
        ["train_mean", "train_std", "train_tile_count", "mean_delta", "std_delta", "psi"]
    )


def test_nan_and_nodata_tiles_do_not_enter_feature_statistics():
    status = np.array([OK, OK, NODATA, NODATA, FAILED], dtype=np.uint8)
    # A failed tile with a (garbage) value and nodata tiles with NaN or a value:
    # none of them may move the statistics.
    mi = np.array([10.0, 30.0, np.nan, 1e9, -5.0])
    m = run(status, mean_intensity=mi)
    assert m["tile_mean"] == {"n": 2, "mean": 20.0, "std": 10.0}


def test_no_ok_tiles_gives_none_not_nan():
    m = run(np.full((3, 3), NODATA), block_latency_ms=[], block_tiles=[], run_seconds=0.0)
    assert m["tile_mean"] == {"n": 0, "mean": None, "std": None}
    assert m["predictions"]["bright_pct"] is None
    assert m["counts"]["failure_rate"] == 0.0
    assert m["counts"]["success_rate"] is None
    assert m["latency"]["block_ms"]["p95"] is None
    assert m["latency"]["tiles_per_second"] is None
    json.dumps(m, allow_nan=False)
    h = health_report(m)
    assert not h["drift_detected"]


def test_a_run_where_every_tile_was_nodata_is_no_data_not_healthy():
    m = run(np.full((3, 3), NODATA), block_latency_ms=[], block_tiles=[], run_seconds=0.0)
    h = health_report(m)
    assert h["status"] == "no data"
    assert h["reasons"][0] == (
        "No data: none of the 9 tiles had a valid pixel, so nothing was inferred "
        "(check the scene's nodata value and the bands)."
    )
    assert h["recommendations"] == [] and not should_retrain(h)
    assert {c["verdict"] for c in h["checks"] if c["name"] != "failure rate"} == {"not assessed"}


def test_no_ok_tile_but_failures_is_degraded_not_no_data():
    h = health_report(run(np.array([NODATA, FAILED, FAILED])))
    assert h["status"] == "degraded"
    assert h["recommendations"][0].startswith("Investigate: 100% of tiles failed")


def test_zero_tile_blocks_are_left_out_of_tile_latency():
    m = run(np.zeros(4), block_latency_ms=[8.0, 3.0], block_tiles=[4, 0])
    assert m["latency"]["tile_ms"] == {"p50": 2.0, "p95": 2.0}
    assert m["latency"]["block_ms"]["max"] == 8.0


def test_bad_inputs_are_refused():
    with pytest.raises(MonitoringError, match="share a shape"):
        summarize(
            status=np.zeros(3, np.uint8),
            prediction=np.zeros(4, np.int8),
            mean_intensity=np.zeros(3),
            block_latency_ms=[],
            block_tiles=[],
            run_seconds=1.0,
            training=None,
        )
    with pytest.raises(MonitoringError, match="status codes"):
        run(np.array([0, 3]))
    with pytest.raises(MonitoringError, match="block_tiles"):
        run(np.zeros(2), block_latency_ms=[1.0, 2.0], block_tiles=[2])
    with pytest.raises(ModelError, match="edges"):
        run(np.zeros(2), training={"mean": 1.0, "std": 1.0, "histogram": {"edges": [0, 1]}})
    with pytest.raises(ModelError, match="counts"):
        bad = {"mean": 1.0, "std": 1.0, "histogram": {"edges": [0, 1, 2], "counts": [1]}}
        run(np.zeros(2), training=bad)


# --------------------------------------------------------------------------- PSI


def test_psi_is_zero_for_the_training_distribution_itself(train_means):
    t = training_from(train_means)
    h = t["histogram"]
    assert psi(edges=h["edges"], expected_counts=h["counts"], actual=train_means) == 0.0


def test_psi_matches_a_hand_computation():
    # expected 50/50, actual 25/75: (0.25-0.5) ln(0.5) + (0.75-0.5) ln(1.5) = 0.25 ln 3
    actual = np.array([0.5] * 25 + [1.5] * 75)
    value = psi(edges=[0.0, 1.0, 2.0], expected_counts=[50, 50], actual=actual)
    assert value == pytest.approx(0.25 * math.log(3.0), rel=1e-12)


def test_psi_clips_out_of_range_values_into_the_end_bins_and_follows_histogram_edges():
    edges, counts = [0.0, 1.0, 2.0, 3.0], [10, 10, 10]
    # -50 -> first bin, 99 -> last bin; an interior edge (1.0) belongs to the bin on its right.
    actual = np.array([-50.0, 0.5, 1.0, 1.5, 2.5, 99.0])
    assert psi(edges=edges, expected_counts=counts, actual=actual) == pytest.approx(0.0, abs=1e-15)
    # NaN values are ignored, not binned.
    with_nan = np.append(actual, [np.nan, np.inf])
    assert psi(edges=edges, expected_counts=counts, actual=with_nan) == pytest.approx(0, abs=1e-15)


def test_psi_grows_with_the_shift(train_means):
    h = training_from(train_means)["histogram"]
    values = [
        psi(edges=h["edges"], expected_counts=h["counts"], actual=train_means + shift)
        for shift in (0.0, 2.0, 5.0, 10.0, 20.0)
    ]
    assert values[0] == 0.0
    assert all(a < b for a, b in itertools.pairwise(values))


def test_psi_empty_expected_bin_is_finite():
    value = psi(edges=[0.0, 1.0, 2.0], expected_counts=[10, 0], actual=np.array([1.5, 1.5]))
    assert math.isfinite(value) and value > 1.0


def test_psi_without_finite_values_is_nan_and_bad_bins_are_refused():
    assert math.isnan(psi(edges=[0, 1], expected_counts=[1], actual=np.array([np.nan])))
    with pytest.raises(MonitoringError, match="3 edges need 2 expected_counts, got 1"):
        psi(edges=[0, 1, 2], expected_counts=[1], actual=np.ones(3))
    with pytest.raises(MonitoringError, match="non-decreasing"):
        psi(edges=[2, 1, 0], expected_counts=[1, 1], actual=np.ones(3))
    with pytest.raises(MonitoringError, match="positive total"):
        psi(edges=[0, 1], expected_counts=[0], actual=np.ones(3))


# --------------------------------------------------------------------------- drift


def test_same_distribution_is_not_drift(train_means):
    training = training_from(train_means)
    # A fresh sample of the same distribution, as a 2-D tile grid.
    fresh = np.random.default_rng(8).normal(100.0, 10.0, (40, 50))
    m = run(np.zeros(fresh.shape), mean_intensity=fresh, training=training)
    d = m["drift"]
    assert d["train_mean"] == training["mean"] and d["train_tile_count"] == 2000
    assert abs(d["mean_delta"]) < 1.0 and abs(d["std_delta"]) < 1.0
    assert d["psi"] < 0.05
    h = health_report(m)
    assert h["drift_assessed"] and not h["drift_detected"]
    assert h["status"] == "healthy" and h["recommendations"] == []
    assert not should_retrain(h)


def test_brighter_copy_is_drift(train_means):
    training = training_from(train_means)
    brighter = train_means + 8.0  # 0.8 training std
    m = run(np.zeros(brighter.shape), mean_intensity=brighter, training=training)
    assert m["drift"]["mean_delta"] == pytest.approx(8.0)
    assert m["drift"]["std_delta"] == pytest.approx(0.0, abs=1e-9)
    h = health_report(m)
    assert h["drift_detected"] and should_retrain(h)
    assert h["status"] == "degraded"
    assert h["psi"] > 0.2
    assert any(r.startswith("Retrain: PSI ") and "exceeds 0.2" in r for r in h["recommendations"])
    assert any(r.startswith("Retrain: tile mean moved by +8") for r in h["recommendations"])
    assert not any("std changed" in r for r in h["recommendations"])


def test_std_change_alone_is_drift(train_means):
    training = training_from(train_means)
    mu = train_means.mean()
    wider = mu + (train_means - mu) * 1.6  # same mean, std x1.6
    m = run(np.zeros(wider.shape), mean_intensity=wider, training=training)
    loose = HealthPolicy(psi_threshold=10.0)  # isolate the std rule
    h = health_report(m, policy=loose)
    assert h["drift_detected"]
    (rec,) = h["recommendations"]
    assert rec.startswith("Retrain: tile-mean std changed by +")
    assert "60% of training std (limit 50%)" in rec
    assert abs(m["drift"]["mean_delta"]) < 1e-9


def test_policy_thresholds_decide_drift(train_means):
    training = training_from(train_means)
    shifted = train_means + 3.0  # 0.3 training std
    m = run(np.zeros(shifted.shape), mean_intensity=shifted, training=training)
    assert not health_report(m)["drift_detected"]
    strict = HealthPolicy(mean_shift_sigmas=0.2, psi_threshold=10.0)
    h = health_report(m, policy=strict)
    assert h["drift_detected"]
    assert h["policy"]["mean_shift_sigmas"] == 0.2


def test_no_training_means_no_drift():
    m = run(np.zeros((4, 4)), mean_intensity=np.full((4, 4), 1e6))
    assert all(v is None for v in m["drift"].values())
    h = health_report(m)
    assert not h["drift_detected"] and not h["drift_assessed"] and not should_retrain(h)
    assert h["psi"] is None and h["mean_delta"] is None
    assert "Drift not assessed: no training statistics." in h["reasons"]
    assert h["status"] == "healthy"


def test_training_without_histogram_still_checks_mean_and_std():
    m = run(np.zeros(4), training={"mean": 50.0, "std": 1.0, "tile_count": 10})
    assert m["drift"]["psi"] is None and m["drift"]["mean_delta"] == 50.0
    h = health_report(m)
    assert h["drift_detected"]
    assert "PSI not assessed: training statistics have no histogram." in h["reasons"]


def test_zero_training_std_and_huge_numbers_read_plainly():
    m = run(
        np.zeros(4),
        mean_intensity=np.array([5e4, 5e4, 7e4, 7e4]),
        training={"mean": 1.0, "std": 0.0},
    )
    h = health_report(m)
    assert h["drift_detected"]
    assert h["recommendations"] == [
        "Retrain: tile mean moved by +59999 from training (limit 0.5 x training std = 0).",
        "Retrain: tile-mean std changed by +10000, an unbounded amount of training std "
        "(limit 50%).",
    ]


# --------------------------------------------------------------------------- checks

CHECK_NAMES = ["PSI", "mean shift", "std change", "failure rate", "p95 tile latency ms"]


def checks_by_name(h: dict) -> dict[str, dict]:
    assert [c["name"] for c in h["checks"]] == CHECK_NAMES
    assert all(set(c) == {"name", "value", "limit", "verdict", "reason"} for c in h["checks"])
    return {c["name"]: c for c in h["checks"]}


def test_checks_are_one_row_per_rule_with_value_limit_and_verdict(train_means):
    training = training_from(train_means)
    fresh = np.random.default_rng(8).normal(100.0, 10.0, (40, 50))
    m = run(np.zeros(fresh.shape), mean_intensity=fresh, training=training)
    h = health_report(m)
    c = checks_by_name(h)
    assert {row["verdict"] for row in c.values()} == {"ok"}
    assert all(row["reason"] is None for row in c.values())
    assert c["PSI"]["value"] == m["drift"]["psi"] and c["PSI"]["limit"] == 0.2
    assert c["mean shift"]["value"] == abs(m["drift"]["mean_delta"])
    assert c["mean shift"]["limit"] == pytest.approx(0.5 * training["std"])
    assert c["std change"]["value"] == abs(m["drift"]["std_delta"])
    assert c["failure rate"] == {
        "name": "failure rate",
        "value": 0.0,
        "limit": 0.02,
        "verdict": "ok",
        "reason": None,
    }
    assert c["p95 tile latency ms"]["value"] == m["latency"]["tile_ms"]["p95"]


def test_checks_say_retrain_investigate_and_not_assessed_where_the_report_does(train_means):
    training = training_from(train_means)
    brighter = train_means + 8.0
    status = np.zeros(brighter.shape, dtype=np.uint8)
    status[:100] = FAILED
    m = run(status, mean_intensity=brighter, training=training)
    h = health_report(m)
    c = checks_by_name(h)
    assert c["PSI"]["verdict"] == c["mean shift"]["verdict"] == "retrain"
    assert c["std change"]["verdict"] == "ok"
    assert c["failure rate"]["verdict"] == "investigate"
    assert c["failure rate"]["reason"] == "5% of tiles failed (100 of 2000 attempted; limit 2%)"
    # every recommendation is a failing check's reason, in the checks' order
    failing = [row for row in h["checks"] if row["verdict"] in ("retrain", "investigate")]
    assert len(failing) == len(h["recommendations"]) == 3
    for row, text in zip(failing, h["recommendations"], strict=True):
        assert text.startswith(f"{row['verdict'].capitalize()}: {row['reason']}")

    no_training = checks_by_name(health_report(run(np.zeros(4))))
    for name in ("PSI", "mean shift", "std change"):
        assert no_training[name]["verdict"] == "not assessed"
        assert no_training[name]["value"] is None
        assert no_training[name]["reason"] == "no training statistics"
    # the PSI bound is the policy's own; the others scale with the training std
    assert no_training["PSI"]["limit"] == 0.2
    assert no_training["mean shift"]["limit"] is None is no_training["std change"]["limit"]
    no_histogram = health_report(run(np.zeros(4), training={"mean": 100.0, "std": 1.0}))
    psi_row = checks_by_name(no_histogram)["PSI"]
    assert psi_row["verdict"] == "not assessed" and psi_row["limit"] == 0.2
    assert psi_row["reason"] == "training statistics have no histogram"
    untimed = health_report(run(np.zeros(4), block_latency_ms=[], block_tiles=[]))
    assert checks_by_name(untimed)["p95 tile latency ms"]["verdict"] == "not assessed"


def test_a_zero_training_std_allows_no_std_change_at_all():
    same = {"mean": 100.0, "std": 0.0}
    h = health_report(run(np.zeros(4), training=same))  # every tile mean is 100: no change
    assert checks_by_name(h)["std change"] == {
        "name": "std change",
        "value": 0.0,
        "limit": 0.0,
        "verdict": "ok",
        "reason": None,
    }
    h = health_report(run(np.zeros(2), mean_intensity=[99.0, 101.0], training=same))
    assert checks_by_name(h)["std change"]["verdict"] == "retrain"


# --------------------------------------------------------------------------- failures, latency


def grid_with_failures(failed: int, attempted: int = 100) -> np.ndarray:
    status = np.full(attempted + 7, NODATA, dtype=np.uint8)  # nodata never counts
    status[:attempted] = OK
    status[:failed] = FAILED
    return status


def test_failure_rate_exactly_at_the_limit_is_fine():
    m = run(grid_with_failures(2))
    assert m["counts"]["failure_rate"] == 0.02
    h = health_report(m)
    assert h["status"] == "healthy" and h["recommendations"] == []


def test_failure_rate_above_the_limit_degrades():
    m = run(grid_with_failures(3))
    h = health_report(m)
    assert h["status"] == "degraded"
    assert not h["drift_detected"] and not should_retrain(h)
    assert h["recommendations"] == [
        "Investigate: 3% of tiles failed (3 of 100 attempted; limit 2%); see the run's errors."
    ]
    assert h["failure_rate"] == 0.03


def test_p95_tile_latency_over_the_bound_degrades():
    # 20 blocks of 4 tiles: 19 at 10 ms/tile, 1 at 400 ms/tile -> p95 = 10 + 0.05*390 = 29.5
    ms = [40.0] * 19 + [1600.0]
    m = run(np.zeros(80), block_latency_ms=ms, block_tiles=[4] * 20)
    assert m["latency"]["tile_ms"]["p95"] == pytest.approx(29.5)
    assert health_report(m)["status"] == "healthy"
    h = health_report(m, policy=HealthPolicy(max_p95_tile_latency_ms=20.0))
    assert h["status"] == "degraded" and not h["drift_detected"]
    assert h["recommendations"] == [
        "Investigate: p95 tile latency 29.5 ms exceeds 20 ms; check chunking and worker load."
    ]


def test_policy_is_frozen_keyword_only_and_checked():
    p = HealthPolicy()
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.psi_threshold = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        HealthPolicy(0.1)  # type: ignore[misc]
    with pytest.raises(MonitoringError, match="max_failure_rate"):
        HealthPolicy(max_failure_rate=-1.0)
    with pytest.raises(MonitoringError, match="psi_threshold"):
        HealthPolicy(psi_threshold=math.nan)


def test_monitoring_errors_belong_to_the_tree_and_stay_value_errors():
    assert issubclass(MonitoringError, SatdaskError) and issubclass(MonitoringError, ValueError)
    with pytest.raises(MonitoringError, match="run_seconds"):
        run(np.zeros(2), run_seconds=-1.0)
    with pytest.raises(MonitoringError, match="epsilon"):
        psi(edges=[0, 1], expected_counts=[1], actual=np.ones(1), epsilon=0.0)


# --------------------------------------------------------------------------- JSON, determinism


def test_output_is_strict_json_and_round_trips(train_means):
    training = training_from(train_means)
    status = np.zeros((10, 12), dtype=np.uint8)
    status[0, :3] = FAILED
    status[1, :] = NODATA
    mi = np.where(status == OK, np.random.default_rng(3).normal(110, 12, status.shape), np.nan)
    pred = np.where(status == OK, (mi > 100).astype(np.int8), -1).astype(np.int8)
    m = run(status, pred, mi.astype(np.float32), training=training)
    h = health_report(m)
    text = json.dumps({"monitoring": m, "health": h}, allow_nan=False)
    back = json.loads(text)
    assert back == {"monitoring": m, "health": h}
    assert health_report(back["monitoring"]) == h


def test_deterministic(train_means):
    training = training_from(train_means)
    rng = np.random.default_rng(5)
    status = rng.choice(
        np.array([OK, NODATA, FAILED], dtype=np.uint8), (30, 30), p=[0.9, 0.08, 0.02]
    )
    mi = np.where(status == OK, rng.normal(105, 11, status.shape), np.nan)
    pred = np.where(status == OK, (mi > 100).astype(np.int8), -1)
    kw = {"block_latency_ms": rng.uniform(5, 50, 9).tolist(), "block_tiles": [100] * 9}
    a = run(status, pred, mi, training=training, **kw)
    b = run(status.copy(), pred.copy(), mi.copy(), training=dict(training), **kw)
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert json.dumps(health_report(a)) == json.dumps(health_report(b))


# --------------------------------------------------------------------------- properties

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None, database=None)
@given(
    edges=st.lists(finite, min_size=2, max_size=12).map(sorted),
    data=st.data(),
    actual=hnp.arrays(np.float64, st.integers(1, 50), elements=finite),
)
def test_psi_is_non_negative(edges, data, actual):
    counts = data.draw(
        st.lists(st.integers(0, 1000), min_size=len(edges) - 1, max_size=len(edges) - 1).filter(
            lambda c: sum(c) > 0
        )
    )
    value = psi(edges=edges, expected_counts=counts, actual=actual)
    assert math.isfinite(value) and value >= 0.0


@settings(max_examples=60, deadline=None, database=None)
@given(
    status=hnp.arrays(
        np.uint8, hnp.array_shapes(min_dims=1, max_dims=2, max_side=12), elements=st.integers(0, 2)
    ),
    data=st.data(),
)
def test_summarize_counts_sum_to_tiles(status, data):
    mi = data.draw(
        hnp.arrays(np.float64, status.shape, elements=st.floats(-1e3, 1e3) | st.just(np.nan))
    )
    pred = data.draw(hnp.arrays(np.int8, status.shape, elements=st.integers(-1, 1)))
    m = summarize(
        status=status,
        prediction=pred,
        mean_intensity=mi,
        block_latency_ms=[1.0],
        block_tiles=[status.size],
        run_seconds=0.5,
        training={"mean": 0.0, "std": 100.0, "histogram": {"edges": [-1, 0, 1], "counts": [1, 1]}},
    )
    c, p = m["counts"], m["predictions"]
    assert c["ok"] + c["nodata"] + c["failed"] == c["tiles_total"] == status.size
    assert p["bright"] + p["dark"] + p["none"] == c["ok"]
    assert 0.0 <= c["failure_rate"] <= 1.0
    json.dumps(m, allow_nan=False)
    h = health_report(m)
    json.dumps(h, allow_nan=False)
    verdicts = {row["verdict"] for row in h["checks"]}
    assert h["drift_detected"] == ("retrain" in verdicts)
    if verdicts & {"retrain", "investigate"}:
        assert h["status"] == "degraded"
    elif c["ok"] == 0 and c["failed"] == 0:
        assert h["status"] == "no data"
    else:
        assert h["status"] == "healthy"
