"""Per-MoA skill on held-out compounds, in the terms a biologist reads on a model card.

For each target: its log loss and the frequency-only prior's on the same out-of-fold rows (the prior of each
fold = the smoothed prevalence of that fold's treated training rows, exactly what the ``prior`` model
predicts), the relative gain over the prior, ROC AUC and average precision of the out-of-fold probabilities
(the compound was held out, so these measure the model on compounds it has not seen), and how many training
profiles and distinct compounds carry the MoA. A target is *predictable* when the model beats the prior on
held-out compounds by at least ``MIN_GAIN`` of the prior's log loss and was not handed to the prior by the
blend's safeguard (a gain of a fraction of a percent is within the fold-to-fold noise of these losses).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from .metrics import columnwise_log_loss, smoothed_prevalence

MIN_GAIN = 0.01


def prior_oof(Y: np.ndarray, fold: np.ndarray) -> np.ndarray:
    """The prior model's out-of-fold predictions on rows with fold >= 0 (treated rows; others 0)."""
    out = np.zeros(Y.shape, dtype=np.float64)
    for k in np.unique(fold[fold >= 0]):
        out[fold == k] = smoothed_prevalence(Y[(fold >= 0) & (fold != k)])
    return out


def per_target_skill(Y: np.ndarray, oof: np.ndarray, fold: np.ndarray, target_names: Sequence[str],
                     drugs: np.ndarray | None = None, prior_targets: Sequence[int] = ()) -> dict[str, dict[str, Any]]:
    """Skill of each target on the treated out-of-fold rows (fold >= 0). `drugs`: compound of each row (None:
    every row its own compound); `prior_targets`: indices the model answers by the prior (blend safeguard)."""
    rows = fold >= 0
    Yt, Pt = np.asarray(Y, dtype=np.float64)[rows], np.asarray(oof, dtype=np.float64)[rows]
    loss = columnwise_log_loss(Yt, Pt)
    prior_loss = columnwise_log_loss(Yt, prior_oof(np.asarray(Y, dtype=np.float64), fold)[rows])
    groups = None if drugs is None else np.asarray(drugs)[rows]
    handed = set(int(t) for t in prior_targets)
    out: dict[str, dict[str, Any]] = {}
    for t, name in enumerate(target_names):
        y = Yt[:, t]
        pos = int(y.sum())
        auc = ap = None
        if 0 < pos < len(y):
            auc = float(roc_auc_score(y, Pt[:, t]))
            ap = float(average_precision_score(y, Pt[:, t]))
        gain = float(1.0 - loss[t] / prior_loss[t]) if prior_loss[t] > 0 else 0.0
        n_drugs = pos if groups is None else int(len(np.unique(groups[y > 0])))
        out[name] = {"log_loss": float(loss[t]), "prior_log_loss": float(prior_loss[t]), "gain": gain,
                     "auc": auc, "ap": ap, "positives": pos, "drugs": n_drugs,
                     "predictable": bool(gain >= MIN_GAIN and t not in handed)}
    return out
