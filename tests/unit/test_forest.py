"""The compiled trees give LightGBM's own probabilities, bit for bit, or refuse the model.

Models are trained here with lightgbm on seeded data, so the trees are real LightGBM
output (the s2cloudless file itself is compared in tests/integration/test_cloud_mask.py).
"""

from __future__ import annotations

import lightgbm
import numpy as np
import pytest

from satdask.errors import ModelError
from satdask.models.forest import Forest, float32_below


def _train(x: np.ndarray, y: np.ndarray, **params: object) -> lightgbm.Booster:
    base = {"objective": "binary", "num_leaves": 63, "verbose": -1, "seed": 1, "num_threads": 1}
    return lightgbm.train({**base, **params}, lightgbm.Dataset(x, y), num_boost_round=40)


def _data(rows: int, features: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] * x[:, 2] + rng.normal(scale=0.5, size=rows) > 0).astype(int)
    return x, y


def test_probabilities_equal_lightgbm_bit_for_bit() -> None:
    x, y = _data(5000)
    booster = _train(x, y)
    forest = Forest.parse(booster.model_to_string())
    fresh, _ = _data(20_003, seed=7)  # not a multiple of the 8 rows walked together
    expected = booster.predict(fresh, num_threads=1)
    got = forest.probability(fresh)
    assert got.dtype == np.float64 and np.array_equal(got, expected)
    assert 0.05 < (got > 0.5).mean() < 0.95, "both classes occur"
    forest.check(booster)


def test_values_on_a_threshold_go_left_as_in_lightgbm() -> None:
    x, y = _data(3000)
    booster = _train(x, y)
    forest = Forest.parse(booster.model_to_string())
    on = np.repeat(x[:64], 4, axis=0)
    picks = np.arange(on.shape[0]) % forest.thresholds.size
    on[np.arange(on.shape[0]), forest.nodes[picks, 1]] = forest.thresholds[picks]
    assert np.array_equal(forest.probability(on), booster.predict(on, num_threads=1))


def test_zeros_and_nan_read_as_lightgbm_reads_them() -> None:
    x, y = _data(3000)
    booster = _train(x, y)
    forest = Forest.parse(booster.model_to_string())
    near = x[:400].copy()
    near[::4, 0], near[1::4, 1], near[2::4, 2] = 1e-36, -1e-35, np.nan
    near[3::4, 0] = -0.0
    assert np.array_equal(forest.probability(near), booster.predict(near, num_threads=1))


def test_float32_below_decides_as_the_float64_threshold() -> None:
    rng = np.random.default_rng(3)
    thresholds = np.concatenate([rng.normal(size=2000), [1e300, -1e300, 0.0, 1e-40, 0.1]])
    below = float32_below(thresholds)
    assert below.dtype == np.float32 and (below.astype(np.float64) <= thresholds).all()
    with np.errstate(over="ignore"):
        up = np.nextafter(below, np.float32(np.inf))
    assert (up.astype(np.float64) > thresholds).all(), "no float32 lies in between"


def test_a_tampered_forest_fails_its_check() -> None:
    x, y = _data(3000)
    booster = _train(x, y)
    forest = Forest.parse(booster.model_to_string())
    forest.leaves[0] += 1e-9
    with pytest.raises(ModelError, match="disagree with LightGBM"):
        forest.check(booster)


def test_models_it_would_compute_otherwise_are_refused() -> None:
    x, y = _data(3000)
    with pytest.raises(ModelError, match="not a binary LightGBM classifier"):
        Forest.parse(
            _train(x, y + (x[:, 3] > 1), objective="multiclass", num_class=3).model_to_string()
        )
    holes = x.copy()
    holes[::7, 0] = np.nan  # missing values give splits with a missing-value rule
    with pytest.raises(ModelError, match="other than numerical <="):
        Forest.parse(_train(holes, y).model_to_string())
    with pytest.raises(ModelError, match="takes 6 features"):
        Forest.parse(_train(x, y).model_to_string()).probability(x[:, :5])
