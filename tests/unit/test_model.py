from __future__ import annotations

import numpy as np
import pytest

from satdask import ModelError, ThresholdModel
from satdask.models import model_from_dict


def test_threshold_is_the_mean_of_tile_means_and_nan_is_ignored() -> None:
    model = ThresholdModel.fit(np.array([[1.0, 2.0], [3.0, np.nan]]))
    assert model.threshold == 2.0
    assert model.training["tile_count"] == 3
    assert model.training["std"] == pytest.approx(np.std([1.0, 2.0, 3.0]))
    hist = model.training["histogram"]
    assert sum(hist["counts"]) == 3 and len(hist["edges"]) == len(hist["counts"]) + 1


def test_predict_is_one_strictly_above_the_threshold_and_minus_one_when_not_ok() -> None:
    model = ThresholdModel(threshold=2.0)
    pred = model.predict(np.array([1.0, 2.0, 3.0, 9.0]), ok=np.array([True, True, True, False]))
    assert pred.dtype == np.int8
    np.testing.assert_array_equal(pred, [0, 0, 1, -1])


def test_training_without_valid_tiles_is_refused() -> None:
    with pytest.raises(ModelError, match="no valid tile"):
        ThresholdModel.fit(np.array([np.nan, np.nan]))


def test_constant_training_means_still_give_a_usable_histogram() -> None:
    model = ThresholdModel.fit(np.full(5, 7.0))
    assert model.training["histogram"]["edges"] == [6.5, 7.5]
    assert model.training["histogram"]["counts"] == [5]


@pytest.mark.parametrize("threshold", [float("nan"), float("inf"), "3", True])
def test_bad_thresholds_are_refused(threshold: object) -> None:
    with pytest.raises(ModelError, match="threshold must be"):
        ThresholdModel(threshold=threshold)  # type: ignore[arg-type]


def test_round_trip_through_dict() -> None:
    model = ThresholdModel.fit(np.arange(20.0))
    again = model_from_dict("threshold", model.to_dict())
    assert again == model and again.training == model.training


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ModelError, match="unknown model kind 'cnn'"):
        model_from_dict("cnn", {})
