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


def smoothed_prevalence(Y: np.ndarray) -> np.ndarray:
    """Each target's training frequency, smoothed: (positives + 0.5) / (rows + 1), never exactly 0 or 1.

    A target carried by a single drug has no positive at all when that drug's fold is held out: a raw 0
    would be clipped to 1e-15 and cost 34.5 per positive. The prior model and the blend's stack use it."""
    Y = np.asarray(Y)
    return (Y.sum(axis=0) + 0.5) / (len(Y) + 1.0)


def columnwise_ranking(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[list[float | None], list[float | None]]:
    """Per target: ROC AUC and average precision, None where the target has no positive (or no negative).

    What a biologist reads beside the log loss: does the model rank this MoA's profiles first, whatever its
    calibration? Undefined without both classes, so None rather than sklearn's warning and NaN."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = np.asarray(y_true)
    p = np.asarray(y_pred, dtype=np.float64)
    auc: list[float | None] = []
    ap: list[float | None] = []
    for j in range(y.shape[1]):
        n_pos = int(y[:, j].sum())
        if n_pos == 0 or n_pos == len(y):
            auc.append(None)
            ap.append(None)
        else:
            auc.append(float(roc_auc_score(y[:, j], p[:, j])))
            ap.append(float(average_precision_score(y[:, j], p[:, j])))
    return auc, ap


def single_label_scores(Y: np.ndarray, P: np.ndarray, rows: np.ndarray | None = None,
                        ks: tuple[int, ...] = (1, 3)) -> dict[str, float]:
    """Accuracy and top-k accuracy of single-label predictions (one MoA per profile; rows without a label are
    skipped), with the multi-class log loss: what the field reports for data such as BBBC021."""
    Y = np.asarray(Y)
    P = np.asarray(P, dtype=np.float64)
    keep = Y.sum(axis=1) == 1
    if rows is not None:
        keep &= np.asarray(rows, dtype=bool)
    Y, P = Y[keep], P[keep]
    if len(Y) == 0:
        return {"profiles": 0}
    truth = Y.argmax(axis=1)
    order = np.argsort(-P, axis=1)
    out: dict[str, float] = {"profiles": int(len(Y)), "accuracy": float(np.mean(order[:, 0] == truth))}
    for k in ks:
        if k > 1:
            out[f"top{k}_accuracy"] = float(np.mean((order[:, :k] == truth[:, None]).any(axis=1)))
    p_true = np.clip(P[np.arange(len(Y)), truth] / np.maximum(P.sum(axis=1), 1e-15), 1e-15, 1.0)
    out["multiclass_log_loss"] = float(-np.mean(np.log(p_true)))
    return out
