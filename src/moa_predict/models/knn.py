"""The paper's three multi-label kNN models, vectorised on scikit-learn's ``NearestNeighbors``.

* ``brknn-a`` / ``brknn-b``: binary-relevance kNN (Spyromitros, Tsoumakas & Vlahavas 2008). Each label's
  confidence is its frequency among the k nearest training profiles. BRkNN-a outputs every label with
  confidence >= 0.5 and, when that set is empty, the single most confident label; BRkNN-b outputs the
  round(s) most confident labels, s being the mean label-set size of the k neighbours.
* ``ml-knn``: multi-label kNN (Zhang & Zhou 2007): per label, a prior and the likelihood of "j of my k
  neighbours carry the label" for carriers and non-carriers, counted on the training rows with each row's
  k neighbours among the *other* training rows (leave-one-out) and Laplace-smoothed with s; the output is
  the posterior P(label | count).

As in the paper, inputs are the 875 raw columns (cp_type, cp_time, cp_dose in its Table 2 encoding, then
the 872 g-/c- features), unscaled, with Euclidean distance. scikit-multilearn is not used (unmaintained,
broken on current scikit-learn). The building blocks (``neighbour_label_counts``, ``brknn_a_labels``,
``brknn_b_labels``, ``mlknn_tables``) are public so the paper benchmark can evaluate every k from one
neighbour list.

Conventions fixed here (the papers leave them open):
* round(s) is round-half-to-even (``numpy.rint``, Python's ``round``): s = 2.5 gives 2 labels.
* Ties between equally confident labels go to the lower target index.
* BRkNN-a's fallback picks the most confident label only when some neighbour carries a label: when every
  confidence is 0 there is no "most confident" label and the row gets the empty set.
* ML-kNN's MAP rule calls a label present when P(H1)P(E|H1) >= P(H0)P(E|H0).
* Like every moa-predict model (and unlike the paper's net), these are fitted on treated rows only:
  controls are not neighbours, and control rows are predicted 0.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.neighbors import NearestNeighbors

from ..data.profiles.dataset import control_mask
from ..features.meta import feature_matrix, paper_meta
from .base import MoAModel, State

PREDICT_CHUNK = 2048
"""Query rows per neighbour search, so that memory stays flat for large k and large inputs."""


def paper_inputs(X: pd.DataFrame) -> np.ndarray:
    """The paper's 875 raw inputs: cp_type, cp_time, cp_dose (Table 2 encoding), then g-0..g-771, c-0..c-99."""
    return np.hstack([paper_meta(X), feature_matrix(X)]).astype(np.float32)


def build_index(train: np.ndarray, metric: str = "euclidean") -> NearestNeighbors:
    """An exact (brute-force) neighbour index over the training matrix."""
    return NearestNeighbors(algorithm="brute", metric=metric).fit(train)


def query_neighbours(index: NearestNeighbors, queries: np.ndarray | None, k: int,
                     chunk: int = PREDICT_CHUNK) -> np.ndarray:
    """Indices of the k nearest training rows, nearest first (n_queries, k).

    ``queries=None`` gives each training row's k neighbours among the *other* training rows (leave-one-out).
    """
    if queries is None:
        return index.kneighbors(None, n_neighbors=k, return_distance=False)
    parts = [index.kneighbors(queries[i:i + chunk], n_neighbors=k, return_distance=False)
             for i in range(0, len(queries), chunk)]
    return np.concatenate(parts) if parts else np.zeros((0, k), dtype=np.int64)


def label_matrix(Y: np.ndarray) -> sp.csr_matrix:
    """The 0/1 training labels as a sparse matrix (LISH-MoA rows carry ~0.7 labels each)."""
    return sp.csr_matrix(np.asarray(Y, dtype=np.float32))


def neighbour_label_counts(neighbours: np.ndarray, labels: sp.csr_matrix) -> np.ndarray:
    """For each query row and label, how many of the given neighbours carry the label (int32)."""
    n, k = neighbours.shape
    hits = sp.csr_matrix((np.ones(n * k, dtype=np.float32), neighbours.ravel(), np.arange(0, n * k + 1, k)),
                         shape=(n, labels.shape[0]))
    return np.rint((hits @ labels).toarray()).astype(np.int32)


def mean_set_size(neighbours: np.ndarray, set_sizes: np.ndarray) -> np.ndarray:
    """s: the mean label-set size of each query row's neighbours."""
    return set_sizes[neighbours].mean(axis=1)


def brknn_a_labels(confidence: np.ndarray) -> np.ndarray:
    """BRkNN-a: labels with confidence >= 0.5; if none, the single most confident one (if any is > 0)."""
    labels = confidence >= 0.5
    empty = ~labels.any(axis=1) & (confidence.max(axis=1, initial=0.0) > 0)
    rows = np.flatnonzero(empty)
    labels[rows, confidence[rows].argmax(axis=1)] = True
    return labels


def brknn_a_labels_skmultilearn(confidence: np.ndarray) -> np.ndarray:
    """scikit-multilearn's BRkNNaClassifier rule, for comparison: ``rint(confidence)`` (confidence > 0.5, an exact
    0.5 rounding to 0) and no empty-set fallback. Not the published BRkNN-a, but what a Python paper likely ran."""
    return np.rint(confidence) >= 1


def brknn_b_labels(confidence: np.ndarray, s: np.ndarray) -> np.ndarray:
    """BRkNN-b: the round(s) most confident labels of each row (s = neighbours' mean label-set size)."""
    n, n_labels = confidence.shape
    m = np.minimum(np.rint(np.asarray(s, dtype=np.float64)), n_labels).astype(np.int64)
    order = np.argsort(-confidence, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.broadcast_to(np.arange(n_labels), (n, n_labels)), axis=1)
    return rank < m[:, None]


def mlknn_tables(train_counts: np.ndarray, Y: np.ndarray, k: int, s: float = 1.0
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ML-kNN's fitted tables from the training rows' leave-one-out neighbour counts (n, L) in 0..k.

    Returns ``prior`` (L,) = P(H1), and ``like1``, ``like0`` (L, k+1) = P(E_j | H1), P(E_j | H0): the
    probability that exactly j of the k neighbours carry the label, given the row does / does not.
    """
    Y = np.asarray(Y) > 0.5
    n, n_labels = Y.shape
    prior = (s + Y.sum(axis=0)) / (2.0 * s + n)
    flat = train_counts.astype(np.int64) + (k + 1) * np.arange(n_labels)
    c1 = np.bincount(flat[Y], minlength=n_labels * (k + 1)).reshape(n_labels, k + 1)
    c0 = np.bincount(flat[~Y], minlength=n_labels * (k + 1)).reshape(n_labels, k + 1)
    like1 = (s + c1) / (s * (k + 1) + c1.sum(axis=1, keepdims=True))
    like0 = (s + c0) / (s * (k + 1) + c0.sum(axis=1, keepdims=True))
    return prior, like1, like0


def mlknn_posterior_table(prior: np.ndarray, like1: np.ndarray, like0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(L, k+1) posterior P(H1 | j neighbours carry the label) and the MAP 0/1 decision for each j."""
    a = prior[:, None] * like1
    b = (1.0 - prior)[:, None] * like0
    return a / (a + b), a >= b


def lookup(table: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """table[label, count] for each (row, label) of `counts`."""
    return table[np.arange(table.shape[0]), counts]


class _KNNModel(MoAModel):
    """Shared state of the kNN models: the training matrix, its labels and a neighbour index."""

    default_output: ClassVar[str] = ""
    outputs: ClassVar[tuple[str, ...]] = ()
    needs_full_layout = True

    def _check(self) -> None:
        if int(self.k) < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if self.output not in self.outputs:
            raise ValueError(f"output must be one of {', '.join(self.outputs)}; got {self.output!r}")

    def _store(self, X: pd.DataFrame, Y: np.ndarray) -> None:
        self._check()
        self.train_ = paper_inputs(X)
        self.labels_ = (np.asarray(Y) > 0.5).astype(np.uint8)
        self._index = build_index(self.train_, self.metric)
        self._labels_sparse = label_matrix(self.labels_)

    def _neighbours(self, X: pd.DataFrame) -> np.ndarray:
        return query_neighbours(self._index, paper_inputs(X), self.k_)

    def _get_state(self) -> State:
        return self._extra_state(), {"train": self.train_, "labels": self.labels_, **self._extra_arrays()}

    def _set_state(self, settings: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.k_ = int(settings["k_"])
        self.train_ = np.asarray(arrays["train"], dtype=np.float32)
        self.labels_ = np.asarray(arrays["labels"], dtype=np.uint8)
        self._index = build_index(self.train_, self.metric)
        self._labels_sparse = label_matrix(self.labels_)
        self._set_extra(settings, arrays)

    def _extra_state(self) -> dict[str, Any]:
        return {"k_": self.k_}

    def _extra_arrays(self) -> dict[str, np.ndarray]:
        return {}

    def _set_extra(self, settings: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        pass


class _BRkNN(_KNNModel):
    outputs: ClassVar[tuple[str, ...]] = ("labels", "frequencies")

    def __init__(self, k: int = 5, output: str = "labels", metric: str = "euclidean") -> None:
        self.k = k
        self.output = output
        self.metric = metric

    def _fit(self, X: pd.DataFrame, Y: np.ndarray, Y_aux: np.ndarray | None) -> None:
        self._store(X, Y)
        self.k_ = min(int(self.k), len(self.train_))

    def neighbour_frequencies(self, X: pd.DataFrame) -> np.ndarray:
        """Each label's frequency among the k nearest training profiles (the BR confidences)."""
        return self._frequencies(self._neighbours(X))

    def _frequencies(self, neighbours: np.ndarray) -> np.ndarray:
        return neighbour_label_counts(neighbours, self._labels_sparse) / np.float32(self.k_)

    def predict_labels(self, X: pd.DataFrame) -> np.ndarray:
        """The paper's hard 0/1 label sets (controls get none)."""
        labels = np.zeros((len(X), self.n_targets_), dtype=np.float32)
        for i in range(0, len(X), PREDICT_CHUNK):
            part = X.iloc[i:i + PREDICT_CHUNK]
            labels[i:i + len(part)] = self._rule(self._neighbours(part))
        labels[control_mask(X)] = 0.0
        return labels

    def _rule(self, neighbours: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        out = np.zeros((len(X), self.n_targets_), dtype=np.float32)
        for i in range(0, len(X), PREDICT_CHUNK):
            nb = self._neighbours(X.iloc[i:i + PREDICT_CHUNK])
            out[i:i + len(nb)] = self._rule(nb) if self.output == "labels" else self._frequencies(nb)
        return out


class BRkNNa(_BRkNN):
    """BRkNN-a: labels in at least half of the k neighbours, else the most confident one (paper best k=5).

    ``output="labels"`` (default, as the paper scored it) gives hard 0/1 sets from ``predict_proba``;
    ``output="frequencies"`` gives the neighbour label frequencies, which log loss treats far better.
    """

    name = "brknn-a"

    def __init__(self, k: int = 5, output: str = "labels", metric: str = "euclidean") -> None:
        super().__init__(k=k, output=output, metric=metric)

    def _rule(self, neighbours: np.ndarray) -> np.ndarray:
        return brknn_a_labels(self._frequencies(neighbours))


class BRkNNb(_BRkNN):
    """BRkNN-b: the round(s) most confident labels, s = mean label-set size of the k neighbours (paper best k=2000).

    ``output="labels"`` (default, as the paper) or ``"frequencies"`` (neighbour label frequencies).
    """

    name = "brknn-b"

    def __init__(self, k: int = 2000, output: str = "labels", metric: str = "euclidean") -> None:
        super().__init__(k=k, output=output, metric=metric)

    def _fit(self, X: pd.DataFrame, Y: np.ndarray, Y_aux: np.ndarray | None) -> None:
        super()._fit(X, Y, Y_aux)
        self._set_sizes = self.labels_.sum(axis=1).astype(np.float64)

    def _set_extra(self, settings: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self._set_sizes = self.labels_.sum(axis=1).astype(np.float64)

    def _rule(self, neighbours: np.ndarray) -> np.ndarray:
        return brknn_b_labels(self._frequencies(neighbours), mean_set_size(neighbours, self._set_sizes))


class MLkNN(_KNNModel):
    """ML-kNN (Zhang & Zhou 2007) with Laplace smoothing s (paper best k=20).

    ``output="probabilities"`` (default) gives the posterior P(label | neighbour count);
    ``output="labels"`` gives the MAP 0/1 decisions, as scikit-multilearn's ``predict`` (and the paper) did.
    """

    name = "ml-knn"

    outputs: ClassVar[tuple[str, ...]] = ("probabilities", "labels")

    def __init__(self, k: int = 20, s: float = 1.0, output: str = "probabilities", metric: str = "euclidean") -> None:
        self.k = k
        self.s = s
        self.output = output
        self.metric = metric

    def _fit(self, X: pd.DataFrame, Y: np.ndarray, Y_aux: np.ndarray | None) -> None:
        self._store(X, Y)
        if len(self.train_) < 2:
            raise ValueError("ML-kNN needs at least 2 training rows")
        self.k_ = min(int(self.k), len(self.train_) - 1)
        loo = query_neighbours(self._index, None, self.k_)
        counts = neighbour_label_counts(loo, self._labels_sparse)
        self.prior_, self.like1_, self.like0_ = mlknn_tables(counts, self.labels_, self.k_, float(self.s))
        self._tables()

    def _tables(self) -> None:
        self.posterior_, self.decision_ = mlknn_posterior_table(self.prior_, self.like1_, self.like0_)

    def _counts(self, X: pd.DataFrame) -> np.ndarray:
        return neighbour_label_counts(self._neighbours(X), self._labels_sparse)

    def _predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        table = self.decision_ if self.output == "labels" else self.posterior_
        out = np.zeros((len(X), self.n_targets_), dtype=np.float32)
        for i in range(0, len(X), PREDICT_CHUNK):
            counts = self._counts(X.iloc[i:i + PREDICT_CHUNK])
            out[i:i + len(counts)] = lookup(table, counts)
        return out

    def _extra_arrays(self) -> dict[str, np.ndarray]:
        return {"prior": self.prior_, "like1": self.like1_, "like0": self.like0_}

    def _set_extra(self, settings: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.prior_ = np.asarray(arrays["prior"], dtype=np.float64)
        self.like1_ = np.asarray(arrays["like1"], dtype=np.float64)
        self.like0_ = np.asarray(arrays["like0"], dtype=np.float64)
        self._tables()
