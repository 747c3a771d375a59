"""The competition metric: mean column-wise binary log loss."""

from __future__ import annotations

import numpy as np

EPS = 1e-15


def columnwise_log_loss(y_true: np.ndarray, y_pred: np.ndarray, eps: float = EPS) -> np.ndarray:
    """Log loss of each target (column), averaged over rows.

    Computed in float64 after clipping to [eps, 1-eps]: float32 probabilities of exactly
    0 or 1 would otherwise give inf or NaN.
    """
    y = np.asarray(y_true, dtype=np.float64)
    p = np.clip(np.asarray(y_pred, dtype=np.float64), eps, 1.0 - eps)
    if y.shape != p.shape:
        raise ValueError(f"targets {y.shape} and predictions {p.shape} differ in shape")
    if y.ndim != 2 or y.shape[0] == 0:
        raise ValueError("expected a non-empty (rows, targets) matrix")
    return -(y * np.log(p) + (1.0 - y) * np.log1p(-p)).mean(axis=0)


def mean_columnwise_log_loss(y_true: np.ndarray, y_pred: np.ndarray, eps: float = EPS) -> float:
    """Mean over targets of each target's mean log loss (lower is better)."""
    return float(columnwise_log_loss(y_true, y_pred, eps).mean())
