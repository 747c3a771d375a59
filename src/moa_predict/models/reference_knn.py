"""``knn``: nearest reference treatments by cosine (or correlation) on the profiles as the layout normalised them.

The image-based profiling field classifies a treatment by the MoA of its most similar reference treatment; this
model is that method as an estimator, for any layout. Training wells are averaged per treatment (the layout's
treatment columns; each row its own reference without them), and a profile's probabilities are a similarity-weighted
vote of its `k` nearest references, shrunk towards the training prevalence so that no MoA gets exactly 0 or 1.
It works on the features as loaded (after the layout's plate normalisation / whitening), with no learnt transform:
scikit-learn's KNeighborsClassifier is single-label and has no treatment averaging or prevalence shrinkage, so the
vote is a few lines of numpy here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..data import schema
from ..data.layout import layout_spec, spec_feature_columns
from ..data.profiles import treatment_keys
from ..evaluation.metrics import smoothed_prevalence
from .base import MoAModel, State


def _unit_vectors(x: np.ndarray, metric: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if metric == "correlation":
        x = x - x.mean(axis=1, keepdims=True)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class ReferenceKNNModel(MoAModel):
    """Parameters: k (neighbours voting; 1 = the field's 1-NN), metric (cosine / correlation), temperature (of the
    similarity weights exp(sim / temperature)), shrinkage (weight of the prevalence prior in the vote)."""

    name = "knn"

    def __init__(self, k: int = 1, metric: str = "cosine", temperature: float = 0.1, shrinkage: float = 0.1) -> None:
        self.k = k
        self.metric = metric
        self.temperature = temperature
        self.shrinkage = shrinkage

    def _columns(self, X: pd.DataFrame) -> list[str]:
        spec = layout_spec(X)
        return spec_feature_columns(spec) if spec is not None else [c for c in schema.FEATURE_COLUMNS if c in X]

    def _fit(self, X: pd.DataFrame, Y: np.ndarray, Y_aux: np.ndarray | None) -> None:
        if self.metric not in ("cosine", "correlation"):
            raise ValueError(f"metric must be cosine or correlation, not {self.metric!r}")
        self.columns_ = self._columns(X)
        spec = layout_spec(X) or {}
        by = [c for c in spec.get("treatment", []) if c in X.columns]
        values = X[self.columns_].to_numpy(np.float64)
        labelled = Y.sum(axis=1) > 0
        values, Y, keys = values[labelled], Y[labelled], X.loc[labelled]
        if by:  # one reference per treatment: the mean of its wells, the union of their labels
            codes = pd.factorize(treatment_keys(keys, by))[0]
            n = codes.max() + 1
            sums = np.zeros((n, values.shape[1]))
            np.add.at(sums, codes, values)
            values = sums / np.bincount(codes)[:, None]
            labels = np.zeros((n, Y.shape[1]), np.float32)
            np.maximum.at(labels, codes, Y)
            Y = labels
        self.references_ = _unit_vectors(values, self.metric).astype(np.float32)
        self.labels_ = np.asarray(Y, np.float32)
        self.prevalence_ = smoothed_prevalence(self.labels_).astype(np.float32)

    def _predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        q = _unit_vectors(X[self.columns_].to_numpy(np.float64), self.metric).astype(np.float32)
        sim = q @ self.references_.T
        k = int(min(max(self.k, 1), len(self.references_)))
        top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        s = np.take_along_axis(sim, top, axis=1)
        w = np.exp((s - s.max(axis=1, keepdims=True)) / self.temperature)
        w /= w.sum(axis=1, keepdims=True)
        vote = np.einsum("nk,nkt->nt", w, self.labels_[top])
        prior = self.prevalence_ / (self.prevalence_.sum() if self.single_label_ else 1.0)
        return ((vote + self.shrinkage * prior) / (1.0 + self.shrinkage)).astype(np.float32)

    def _get_state(self) -> State:
        return {"columns": list(self.columns_)}, {"references": self.references_, "labels": self.labels_,
                                                  "prevalence": self.prevalence_}

    def _set_state(self, settings: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.columns_ = list(settings["columns"])
        self.references_ = arrays["references"].astype(np.float32)
        self.labels_ = arrays["labels"].astype(np.float32)
        self.prevalence_ = arrays["prevalence"].astype(np.float32)
