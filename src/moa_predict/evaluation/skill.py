"""Per-MoA skill on held-out compounds, in the terms a biologist reads on a model card.

For each target: its log loss and the frequency-only prior's on the same out-of-fold rows (the prior of each
fold = the smoothed prevalence of that fold's treated training rows, exactly what the ``prior`` model
predicts), the relative gain over the prior, ROC AUC and average precision of the out-of-fold probabilities
(the compound was held out, so these measure the model on compounds it has not seen), and how many training
profiles and distinct compounds carry the MoA.

A target is judged only when each of its held-out compounds was predicted with at least ``MIN_TRAIN_COMPOUNDS``
other compounds of the MoA in training (a MoA of one or two compounds is learnt from one example or none when
held out: its AUC is noise around 0.5, whatever the gain says): otherwise it is *too few compounds to judge*. A
judged target is *predictable* when the model beats the prior on held-out compounds by at least ``MIN_GAIN`` of
the prior's log loss (a gain of a fraction of a percent is within the fold-to-fold noise of these losses), was
not handed to the prior by the blend's safeguard, and its held-out ROC AUC and average precision beat both the
prior's and the shuffled-label control's (``field_metrics``) on the same rows.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from .field_metrics import Scored
from .metrics import columnwise_log_loss, smoothed_prevalence

MIN_GAIN = 0.01
MIN_TRAIN_COMPOUNDS = 2
PREDICTABLE, NOT_PREDICTABLE, TOO_FEW = "predictable", "not predictable", "too few compounds to judge"


def prior_oof(Y: np.ndarray, fold: np.ndarray) -> np.ndarray:
    """The prior model's out-of-fold predictions on rows with fold >= 0 (treated rows; others 0)."""
    out = np.zeros(Y.shape, dtype=np.float64)
    for k in np.unique(fold[fold >= 0]):
        out[fold == k] = smoothed_prevalence(Y[(fold >= 0) & (fold != k)])
    return out


def training_compounds_when_held_out(Y: np.ndarray, fold: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
    """Per target: the fewest other compounds of the MoA in training when one of its compounds was held out
    (the minimum over the folds holding one out); -1 for a MoA without compounds. Rows with fold < 0 are
    ignored; `groups`: each row's compound (None: every row its own)."""
    rows = np.flatnonzero(fold >= 0)
    Y = np.asarray(Y)[rows] > 0
    f = np.asarray(fold)[rows]
    if groups is not None:
        _, first, inverse = np.unique(np.asarray(groups)[rows].astype(str), return_index=True, return_inverse=True)
        L = np.zeros((len(first), Y.shape[1]), dtype=bool)
        np.logical_or.at(L, inverse, Y)
        Y, f = L, f[first]
    total = Y.sum(axis=0)
    out = np.full(Y.shape[1], -1, dtype=np.int64)
    for k in np.unique(f):
        held = Y[f == k].sum(axis=0)
        train = np.where(held > 0, total - held, np.iinfo(np.int64).max)
        out = np.where(held > 0, np.where(out < 0, train, np.minimum(out, train)), out)
    return out


def _ranking(y: np.ndarray, p: np.ndarray) -> tuple[float | None, float | None]:
    if not 0 < int(y.sum()) < len(y):
        return None, None
    return float(roc_auc_score(y, p)), float(average_precision_score(y, p))


def _beats(value: float | None, *others: float | None) -> bool:
    return value is not None and all(o is None or value > o for o in others)


def per_target_skill(Y: np.ndarray, oof: np.ndarray, fold: np.ndarray, target_names: Sequence[str],
                     drugs: np.ndarray | None = None, prior_targets: Sequence[int] = (),
                     shuffled: Scored | None = None) -> dict[str, dict[str, Any]]:
    """Skill of each target on the treated out-of-fold rows (fold >= 0). `drugs`: compound of each row (None:
    every row its own compound); `prior_targets`: indices the model answers by the prior (blend safeguard);
    `shuffled`: the shuffled-label control's predictions and labels on all rows (``field_metrics``), whose ROC
    AUC and AP a predictable MoA must beat (None: no such control, only the prior's)."""
    rows = fold >= 0
    Y = np.asarray(Y, dtype=np.float64)
    Yt, Pt = Y[rows], np.asarray(oof, dtype=np.float64)[rows]
    prior = prior_oof(Y, fold)[rows]
    loss = columnwise_log_loss(Yt, Pt)
    prior_loss = columnwise_log_loss(Yt, prior)
    groups = None if drugs is None else np.asarray(drugs)[rows]
    in_training = training_compounds_when_held_out(Y, fold, drugs)
    handed = set(int(t) for t in prior_targets)
    out: dict[str, dict[str, Any]] = {}
    for t, name in enumerate(target_names):
        y = Yt[:, t]
        pos = int(y.sum())
        auc, ap = _ranking(y, Pt[:, t])
        prior_auc, prior_ap = _ranking(y, prior[:, t])
        s_auc = s_ap = None
        if shuffled is not None:
            s_auc, s_ap = _ranking(np.asarray(shuffled.Y)[rows][:, t], np.asarray(shuffled.P)[rows][:, t])
        gain = float(1.0 - loss[t] / prior_loss[t]) if prior_loss[t] > 0 else 0.0
        n_drugs = pos if groups is None else int(len(np.unique(groups[y > 0])))
        if in_training[t] < MIN_TRAIN_COMPOUNDS:
            judgement = TOO_FEW
        elif (gain >= MIN_GAIN and t not in handed and _beats(auc, prior_auc, s_auc)
              and _beats(ap, prior_ap, s_ap)):
            judgement = PREDICTABLE
        else:
            judgement = NOT_PREDICTABLE
        out[name] = {"log_loss": float(loss[t]), "prior_log_loss": float(prior_loss[t]), "gain": gain,
                     "auc": auc, "ap": ap, "positives": pos, "drugs": n_drugs,
                     "prior_auc": prior_auc, "prior_ap": prior_ap, "shuffled_auc": s_auc, "shuffled_ap": s_ap,
                     "training_compounds_when_held_out": int(in_training[t]),
                     "judgement": judgement, "predictable": judgement == PREDICTABLE}
    return out
