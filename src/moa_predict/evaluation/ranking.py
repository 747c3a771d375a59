"""The figures the field reports for MoA prediction on real profiles (Way et al. 2022, Cell Systems 13:911):
top-k accuracy, micro-averaged PR-AUC over the flattened compound × MoA matrix, macro ROC-AUC."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from .metrics import mean_columnwise_log_loss


def top_k_accuracy(proba: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Share of rows with a true MoA among their `k` most probable (rows without any true MoA left out)."""
    truth = np.asarray(truth) > 0
    rows = truth.any(axis=1)
    if not rows.any():
        return float("nan")
    top = np.argsort(-np.asarray(proba)[rows], axis=1, kind="stable")[:, :k]
    return float(np.take_along_axis(truth[rows], top, axis=1).any(axis=1).mean())


def field_figures(proba: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """top-1, top-5, micro PR-AUC, macro ROC-AUC (over MoAs with positives and negatives) and log loss."""
    proba, truth = np.asarray(proba, np.float64), (np.asarray(truth) > 0).astype(np.int8)
    cols = [j for j in range(truth.shape[1]) if 0 < truth[:, j].sum() < len(truth)]
    return {"top1": top_k_accuracy(proba, truth, 1), "top5": top_k_accuracy(proba, truth, 5),
            "micro_pr_auc": float(average_precision_score(truth.ravel(), proba.ravel())),
            "macro_roc_auc": float(np.mean([roc_auc_score(truth[:, j], proba[:, j]) for j in cols])) if cols
            else float("nan"),
            "log_loss": float(mean_columnwise_log_loss(truth, proba))}
