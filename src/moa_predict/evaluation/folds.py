"""Cross-validation folds grouped by drug, multilabel-stratified.

A drug's profiles share its labels and its idiosyncratic response, so a row split leaks
the drug into its own validation fold and reads optimistically. Drugs with at most
`max_drug_size` profiles are assigned whole, stratified on their label vectors; the few
large drugs (controls excepted, which are never scored) are split by rows.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np
from iterstrat.ml_stratifiers import MultilabelStratifiedKFold


class DrugGroupedFolds:
    """scikit-learn style splitter: ``split(X, Y, groups=drug_ids)``.

    Without groups it falls back to a row-level multilabel stratified split and sets
    ``grouped_`` to False, so reports can say so.
    """

    def __init__(self, n_splits: int = 5, seed: int = 0, max_drug_size: int = 18) -> None:
        self.n_splits = n_splits
        self.seed = seed
        self.max_drug_size = max_drug_size

    def get_n_splits(self, X=None, Y=None, groups=None) -> int:
        return self.n_splits

    def assign(self, Y: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
        """Fold number (0..n_splits-1) of every row."""
        Y = np.asarray(Y)
        n = len(Y)
        fold = np.full(n, -1, dtype=np.int64)
        if groups is None:
            self.grouped_ = False
            warnings.warn("no drug ids: folds are split by rows, which reads optimistic "
                          "(a drug's profiles can straddle train and validation)", stacklevel=2)
            self._stratify_rows(Y, np.arange(n), fold, self.seed)
            return fold
        self.grouped_ = True
        groups = np.asarray(groups).astype(str)
        uniq, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
        small = counts[inverse] <= self.max_drug_size
        if small.any():
            drugs = np.flatnonzero(counts <= self.max_drug_size)
            drug_labels = np.zeros((len(uniq), Y.shape[1]))
            np.add.at(drug_labels, inverse, Y)
            drug_labels = (drug_labels[drugs] > 0).astype(np.int8)
            drug_fold = np.full(len(uniq), -1, dtype=np.int64)
            if len(drugs) >= self.n_splits:
                mskf = MultilabelStratifiedKFold(n_splits=self.n_splits, shuffle=True, random_state=self.seed)
                for k, (_, val) in enumerate(mskf.split(drug_labels, drug_labels)):
                    drug_fold[drugs[val]] = k
            else:
                drug_fold[drugs] = np.arange(len(drugs)) % self.n_splits
            fold[small] = drug_fold[inverse[small]]
        if (~small).any():
            self._stratify_rows(Y, np.flatnonzero(~small), fold, self.seed)
        return fold

    def _stratify_rows(self, Y: np.ndarray, rows: np.ndarray, fold: np.ndarray, seed: int) -> None:
        if len(rows) < self.n_splits:
            fold[rows] = np.arange(len(rows)) % self.n_splits
            return
        mskf = MultilabelStratifiedKFold(n_splits=self.n_splits, shuffle=True, random_state=seed)
        for k, (_, val) in enumerate(mskf.split(rows, Y[rows])):
            fold[rows[val]] = k

    def split(self, X=None, Y=None, groups=None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        fold = self.assign(Y, groups)
        for k in range(self.n_splits):
            yield np.flatnonzero(fold != k), np.flatnonzero(fold == k)
