"""``knn``: nearest reference treatments by cosine (or correlation) on the profiles as the layout normalised them.

The image-based profiling field classifies a treatment by the MoA of its most similar reference treatment; this
model is that method as an estimator, for any layout. Training wells are averaged per treatment (the layout's
treatment columns; each row its own reference without them), and a profile's probabilities are a similarity-weighted
vote of its `k` nearest references, shrunk towards the training prevalence so that no MoA gets exactly 0 or 1.

How far the vote is shrunk: single-label, by the fixed ``shrinkage`` (0.1: the argmax, and so BBBC021's NSC / NSCB
accuracy, is the nearest reference's class). Multi-label (``shrinkage=None``, the default), by a weight learnt
in ``fit``: each reference's vote among the references of *other* compounds (the layout's compound column; each
reference its own compound without one) is compared with its labels, and the weight of the vote against the
prevalence that minimises their log loss is kept. On real L1000 consensus signatures a nearest compound shares a
MoA about one time in ten, so a fixed 0.1 made every top call ≈ 0.91 (top-call ECE 0.82); the learnt weight
makes a neighbour's MoA as probable as neighbours' MoAs turned out to be (``bench/knn_calibration.py``).
It works on the features as loaded (after the layout's plate normalisation / whitening), with no learnt transform:
scikit-learn's KNeighborsClassifier is single-label and has no treatment averaging or prevalence shrinkage, so the
vote is a few lines of numpy here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar

from ..data.profiles.reader import treatment_keys
from ..evaluation.metrics import smoothed_prevalence
from .base import MoAModel, State

SINGLE_LABEL_SHRINKAGE = 0.1
"""The prior's weight in a single-label vote (``shrinkage=None``): small, so the argmax is the vote's."""
CHUNK = 2048
"""References per block of the leave-one-compound-out similarity matrix (memory stays flat)."""


def _unit_vectors(x: np.ndarray, metric: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if metric == "correlation":
        x = x - x.mean(axis=1, keepdims=True)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class ReferenceKNNModel(MoAModel):
    """Parameters: k (neighbours voting; 1 = the field's 1-NN), metric (cosine / correlation), temperature (of the
    similarity weights exp(sim / temperature)), shrinkage (weight of the prevalence prior in the vote; None: 0.1
    single-label, learnt leave-one-compound-out multi-label)."""

    name = "knn"

    def __init__(self, k: int = 1, metric: str = "cosine", temperature: float = 0.1,
                 shrinkage: float | None = None) -> None:
        self.k = k
        self.metric = metric
        self.temperature = temperature
        self.shrinkage = shrinkage

    def _fit(self, X: pd.DataFrame, Y: np.ndarray, Y_aux: np.ndarray | None) -> None:
        if self.metric not in ("cosine", "correlation"):
            raise ValueError(f"metric must be cosine or correlation, not {self.metric!r}")
        self.columns_ = self.inputs_.feature_columns
        by = [c for c in self.inputs_.treatment if c in X.columns]
        group = self.inputs_.group if self.inputs_.group in X.columns else None
        values = X[self.columns_].to_numpy(np.float64)
        labelled = Y.sum(axis=1) > 0
        values, Y, keys = values[labelled], Y[labelled], X.loc[labelled]
        compounds = keys[group].astype(str).to_numpy() if group else np.arange(len(keys)).astype(str)
        if by:  # one reference per treatment: the mean of its wells, the union of their labels
            codes = pd.factorize(treatment_keys(keys, by))[0]
            n = codes.max() + 1
            sums = np.zeros((n, values.shape[1]))
            np.add.at(sums, codes, values)
            values = sums / np.bincount(codes)[:, None]
            labels = np.zeros((n, Y.shape[1]), np.float32)
            np.maximum.at(labels, codes, Y)
            Y = labels
            compounds = compounds[np.unique(codes, return_index=True)[1]]  # each treatment's: its first well's
        self.references_ = _unit_vectors(values, self.metric).astype(np.float32)
        self.labels_ = np.asarray(Y, np.float32)
        self.prevalence_ = smoothed_prevalence(self.labels_).astype(np.float32)
        self.vote_weight_ = self._learn_vote_weight(compounds)

    def _k(self) -> int:
        return int(min(max(self.k, 1), len(self.references_)))

    def _vote(self, sim: np.ndarray) -> np.ndarray:
        """The similarity-weighted label vote of each row's k most similar references (-inf: never a neighbour)."""
        k = self._k()
        top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        s = np.take_along_axis(sim, top, axis=1)
        w = np.exp((s - s.max(axis=1, keepdims=True)) / self.temperature)
        w = np.where(np.isfinite(s), w, 0.0)
        w /= np.maximum(w.sum(axis=1, keepdims=True), 1e-12)
        return np.einsum("nk,nkt->nt", w, self.labels_[top])

    def _learn_vote_weight(self, compounds: np.ndarray) -> float:
        """The weight of the vote against the prevalence: 1 / (1 + shrinkage) when shrinkage is given or the model
        is single-label; else the weight minimising the log loss of each reference's vote among the references of
        other compounds (leave-one-compound-out) mixed with the prevalence."""
        if self.shrinkage is not None or self.single_label_:
            shrink = SINGLE_LABEL_SHRINKAGE if self.shrinkage is None else float(self.shrinkage)
            return 1.0 / (1.0 + shrink)
        codes = pd.factorize(compounds)[0]
        votes, keep = [], []
        for i in range(0, len(self.references_), CHUNK):
            sim = self.references_[i:i + CHUNK] @ self.references_.T
            sim[codes[i:i + CHUNK, None] == codes[None, :]] = -np.inf  # never a neighbour of its own compound
            ok = np.isfinite(sim).sum(axis=1) >= self._k()
            votes.append(self._vote(sim[ok]))
            keep.append(self.labels_[i:i + CHUNK][ok])
        vote, Y = np.concatenate(votes), np.concatenate(keep)
        if not len(vote):  # one compound only: nothing to learn from
            return 1.0 / (1.0 + SINGLE_LABEL_SHRINKAGE)
        prior = self.prevalence_.astype(np.float64)

        def loss(weight: float) -> float:
            p = np.clip(weight * vote + (1.0 - weight) * prior, 1e-7, 1 - 1e-7)
            return float(-(Y * np.log(p) + (1 - Y) * np.log1p(-p)).mean())

        return float(minimize_scalar(loss, bounds=(0.0, 1.0), method="bounded", options={"xatol": 1e-4}).x)

    def _predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        q = _unit_vectors(X[self.columns_].to_numpy(np.float64), self.metric).astype(np.float32)
        vote = self._vote(q @ self.references_.T)
        prior = self.prevalence_ / (self.prevalence_.sum() if self.single_label_ else 1.0)
        return (self.vote_weight_ * vote + (1.0 - self.vote_weight_) * prior).astype(np.float32)

    def _get_state(self) -> State:
        return {"columns": list(self.columns_), "vote_weight": self.vote_weight_}, {
            "references": self.references_, "labels": self.labels_, "prevalence": self.prevalence_}

    def _set_state(self, settings: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.columns_ = list(settings["columns"])
        self.references_ = arrays["references"].astype(np.float32)
        self.labels_ = arrays["labels"].astype(np.float32)
        self.prevalence_ = arrays["prevalence"].astype(np.float32)
        # bundles from before the learnt weight: the fixed shrinkage they were fit with
        shrink = SINGLE_LABEL_SHRINKAGE if self.shrinkage is None else float(self.shrinkage)
        self.vote_weight_ = float(settings.get("vote_weight", 1.0 / (1.0 + shrink)))
