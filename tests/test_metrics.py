"""The competition metric: mean column-wise binary log loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import log_loss

from moa_predict.evaluation.metrics import EPS, columnwise_log_loss, mean_columnwise_log_loss


def test_hand_computed_case():
    y = np.array([[1, 0], [0, 0]])
    p = np.array([[0.8, 0.1], [0.4, 0.5]])
    col0 = -(math.log(0.8) + math.log(0.6)) / 2
    col1 = -(math.log(0.9) + math.log(0.5)) / 2
    np.testing.assert_allclose(columnwise_log_loss(y, p), [col0, col1], rtol=1e-12)
    assert mean_columnwise_log_loss(y, p) == pytest.approx((col0 + col1) / 2, rel=1e-12)


def test_matches_sklearn_per_column():
    rng = np.random.default_rng(0)
    y = (rng.random((300, 7)) < [0.01, 0.05, 0.1, 0.3, 0.5, 0.9, 0.02]).astype(np.int8)
    y[0] = 1  # every column has both classes, as sklearn needs
    y[1] = 0
    p = rng.random((300, 7)).astype(np.float32)
    ours = columnwise_log_loss(y, p)
    theirs = [log_loss(y[:, j], p[:, j].astype(np.float64), labels=[0, 1]) for j in range(y.shape[1])]
    np.testing.assert_allclose(ours, theirs, rtol=1e-10)


def test_float32_zero_and_one_probabilities_are_finite():
    y = np.array([[1, 0, 1, 0], [0, 1, 1, 0]], dtype=np.int8)
    p = np.array([[0, 1, 1, 0], [1, 0, 1, 0]], dtype=np.float32)  # two confident misses per column 0, 1
    per = columnwise_log_loss(y, p)
    assert np.isfinite(per).all()
    # -log(1e-15) for the missed 1, -log1p(-(1 - 1e-15)) for the missed 0 (1 - 1e-15 is inexact in float64)
    np.testing.assert_allclose(per[:2], -math.log(EPS), rtol=1e-4)
    np.testing.assert_allclose(per[2:], 0.0, atol=1e-12)
    # float32(1 - 1e-15) == 1.0: the clip must happen in float64
    assert np.isfinite(mean_columnwise_log_loss(y, p))


def test_perfect_and_prevalence_predictions():
    y = np.array([[1], [0], [0], [0]])
    assert mean_columnwise_log_loss(y, y.astype(np.float32)) < 1e-12
    prevalence = np.full(y.shape, 0.25)
    expected = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))  # the entropy of the prevalence
    assert mean_columnwise_log_loss(y, prevalence) == pytest.approx(expected)


@pytest.mark.parametrize(("y", "p"), [
    (np.zeros((3, 2)), np.zeros((3, 3))),
    (np.zeros((0, 2)), np.zeros((0, 2))),
    (np.zeros(3), np.zeros(3)),
])
def test_bad_shapes_raise(y, p):
    with pytest.raises(ValueError):
        columnwise_log_loss(y, p)
