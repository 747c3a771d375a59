"""Feature transforms of the top public recipes, fit inside each CV fold only.

``MoAPreprocessor`` turns the validated features frame into the network input matrix:

1. RankGauss: a ``QuantileTransformer(output_distribution="normal")`` per g-/c- column;
2. PCA components of the (RankGauss'd) g- block and of the c- block, appended;
3. a ``VarianceThreshold`` on the result (drops near-constant columns and low-variance components);
4. one-hot dose and time (``features.meta.onehot_meta``).

Every statistic is learnt in ``fit`` from the rows it is given, so a model that fits its
preprocessor inside its own ``fit`` never sees its validation fold. The fitted scikit-learn
estimators are persisted through ``persist.estimator_state`` (JSON + arrays, no pickle).

Scikit-learn's ``QuantileTransformer.transform`` loops over columns in Python with two binary
searches and an inverse normal CDF per value: about 2 s for 20,000 profiles, more than a whole
network's forward pass. ``QuantileTable`` tabulates the fitted transformer's exact output on a
fine grid per column (2,049 points) and interpolates: a few vectorised operations per value. It is
used for the training rows and for new rows alike (so train and predict see the same function);
a test bounds its difference from scikit-learn's transform.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.special import ndtri
from sklearn.base import BaseEstimator
from sklearn.decomposition import PCA
from sklearn.feature_selection import VarianceThreshold
from sklearn.preprocessing import QuantileTransformer
from threadpoolctl import threadpool_limits

from ..data import schema
from ..persist import estimator_from_state, estimator_state
from .meta import feature_matrix, onehot_meta

_BOUNDS = 1e-7  # sklearn.preprocessing._data.BOUNDS_THRESHOLD
_GRID = 2048
"""Cells per column of the RankGauss lookup table."""


def _exact_normal_quantiles(qt: QuantileTransformer, X: np.ndarray) -> np.ndarray:
    """``qt.transform(X)`` as scikit-learn computes it (float32 X), without its per-call overheads.

    The mean of the left and right interpolations (ties in the quantiles), the bounds, the
    inverse normal CDF and the clip: the steps of ``QuantileTransformer._transform_col``.
    """
    q_all, ref = np.asarray(qt.quantiles_), np.asarray(qt.references_, dtype=np.float64)
    out = np.empty(X.shape, dtype=np.float64)
    for j in range(X.shape[1]):
        x, q = X[:, j], q_all[:, j]
        lower = (x - np.float32(_BOUNDS)) < q[0]
        upper = (x + np.float32(_BOUNDS)) > q[-1]
        x64 = x.astype(np.float64)
        u = 0.5 * (np.interp(x64, q, ref) - np.interp(-x64, -q[::-1], -ref[::-1]))
        u[upper] = 1.0
        u[lower] = 0.0
        out[:, j] = u
    clip = -float(ndtri(_BOUNDS - np.spacing(1)))
    return np.clip(ndtri(out), -clip, clip)


class QuantileTable:
    """A fitted normal-output ``QuantileTransformer`` evaluated through a per-column lookup table.

    The exact transform is computed at ``grid + 1`` evenly spaced points between each column's
    lowest and highest quantile, and interpolated linearly in between (values outside that range
    get the transformer's clip values, as in scikit-learn). Lookup is a handful of vectorised
    operations per element instead of two binary searches and an inverse normal CDF.
    """

    def __init__(self, qt: QuantileTransformer, grid: int = _GRID) -> None:
        if qt.output_distribution != "normal":
            raise ValueError("QuantileTable implements output_distribution='normal' only")
        q = np.asarray(qt.quantiles_, dtype=np.float64)
        self.n_features = q.shape[1]
        self.grid = grid
        lo, hi = q[0], q[-1]
        width = np.where(hi > lo, hi - lo, 1.0)
        points = lo[None, :] + np.linspace(0.0, 1.0, grid + 1)[:, None] * width[None, :]
        points[-1] = hi  # exactly the top quantile despite rounding
        values = _exact_normal_quantiles(qt, points.astype(np.float32))  # (grid + 1, p)
        clip = -float(ndtri(_BOUNDS - np.spacing(1)))  # scikit-learn's clip of the normal output
        # cell k in 1..grid covers [points[k-1], points[k]); cells 0 and grid+1 hold the clip values
        slope = np.diff(values, axis=0) / (width / grid)[None, :]
        inter = values[:-1] - slope * points[:-1]
        a = np.vstack([np.full((1, self.n_features), -clip), inter, np.full((1, self.n_features), clip)])
        b = np.vstack([np.zeros((1, self.n_features)), slope, np.zeros((1, self.n_features))])
        constant = hi <= lo  # a constant training column: everything maps to its transformed value
        a[:, constant] = values[0, constant]
        b[:, constant] = 0.0
        self.lo = lo.astype(np.float32)
        # a hair under grid/width so that x == hi falls in the last interior cell, like scikit-learn
        self.scale = (grid / width * (1.0 - 1e-6)).astype(np.float32)
        self.a = torch.as_tensor(np.ascontiguousarray(a.T, dtype=np.float32).ravel())  # (p * (grid + 2),)
        self.b = torch.as_tensor(np.ascontiguousarray(b.T, dtype=np.float32).ravel())
        self.offset = torch.arange(self.n_features, dtype=torch.int64) * (grid + 2)

    def transform(self, X: np.ndarray, chunk: int = 4096) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        if not X.flags.writeable:
            X = X.copy()
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"expected {self.n_features} columns, got shape {X.shape}")
        out = np.empty(X.shape, dtype=np.float32)
        lo, scale = torch.as_tensor(self.lo), torch.as_tensor(self.scale)
        for i in range(0, len(X), chunk):  # row chunks stay in cache
            x = torch.as_tensor(X[i:i + chunk])
            cell = ((x - lo) * scale).floor_().add_(1.0).clamp_(0.0, self.grid + 1).to(torch.int64)
            cell += self.offset
            z = torch.take(self.b, cell).mul_(x).add_(torch.take(self.a, cell))
            out[i:i + chunk] = torch.where(torch.isnan(x), x, z).numpy()
        return out


class MoAPreprocessor(BaseEstimator):
    """RankGauss + block PCA + variance threshold + one-hot dose/time; fit on training rows only.

    Parameters
    ----------
    rankgauss: apply RankGauss to the g-/c- columns (else they pass through unchanged).
    n_quantiles: quantiles of the RankGauss transformer (the public recipe used 100).
    g_pca, c_pca: number of PCA components of the g- and c- blocks appended (0: none).
    keep_raw: keep the (RankGauss'd) g-/c- columns; False gives PCA components (+ meta) only.
    variance_threshold: drop columns whose training variance is at most this (None: keep all).
    meta: append the 5 one-hot dose/time columns.
    seed: random state of the quantile subsampling and the randomised PCA.
    """

    def __init__(self, rankgauss: bool = True, n_quantiles: int = 100, g_pca: int = 50, c_pca: int = 15,
                 keep_raw: bool = True, variance_threshold: float | None = 0.8, meta: bool = True,
                 seed: int = 0) -> None:
        self.rankgauss = rankgauss
        self.n_quantiles = n_quantiles
        self.g_pca = g_pca
        self.c_pca = c_pca
        self.keep_raw = keep_raw
        self.variance_threshold = variance_threshold
        self.meta = meta
        self.seed = seed

    # -- fitting -------------------------------------------------------------------------
    def fit(self, X: pd.DataFrame, y: Any = None) -> "MoAPreprocessor":
        self.fit_transform(X)
        return self

    def fit_transform(self, X: pd.DataFrame, y: Any = None) -> np.ndarray:
        # one BLAS thread: these matrices are small, and multi-threaded BLAS on a busy machine
        # spins for seconds (a 400 x 772 SVD took 13 s with 2 threads under load, 0.2 s with 1)
        with threadpool_limits(1, user_api="blas"):
            return self._fit_transform(X)

    def _fit_transform(self, X: pd.DataFrame) -> np.ndarray:
        raw = feature_matrix(X)
        self.quantile_ = None
        if self.rankgauss:
            self.quantile_ = QuantileTransformer(n_quantiles=min(self.n_quantiles, len(raw)),
                                                 output_distribution="normal", random_state=self.seed,
                                                 subsample=100_000).fit(raw)
        z = self._rankgauss(raw)
        self.pca_ = {}
        for block, n_comp in (("g", self.g_pca), ("c", self.c_pca)):
            cols = self._block(block)
            n_comp = min(int(n_comp), cols.stop - cols.start, len(raw) - 1)
            if n_comp > 0:
                self.pca_[block] = PCA(n_components=n_comp, random_state=self.seed).fit(z[:, cols])
        body = self._body(z)
        self.selector_ = None
        if self.variance_threshold is not None:
            # a column is dropped only if it is near-constant on the training rows; never drop everything
            threshold = min(float(self.variance_threshold), float(np.var(body, axis=0).max()) * 0.999)
            self.selector_ = VarianceThreshold(threshold).fit(body)
            body = body[:, self.selector_.get_support()]
        self.n_features_out_ = body.shape[1] + (5 if self.meta else 0)
        return self._finish(body, X)

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        with threadpool_limits(1, user_api="blas"):
            body = self._body(self._rankgauss(feature_matrix(X)))
            if self.selector_ is not None:
                body = body[:, self.selector_.get_support()]
            return self._finish(body, X)

    # -- pieces --------------------------------------------------------------------------
    @staticmethod
    def _block(block: str) -> slice:
        return slice(0, schema.N_GENES) if block == "g" else slice(schema.N_GENES, schema.N_GENES + schema.N_CELLS)

    def _rankgauss(self, raw: np.ndarray) -> np.ndarray:
        if self.quantile_ is None:
            return raw
        if getattr(self, "_table", None) is None or self._table_of is not self.quantile_:
            self._table, self._table_of = QuantileTable(self.quantile_), self.quantile_
        return self._table.transform(raw)

    def _body(self, z: np.ndarray) -> np.ndarray:
        parts = [z] if self.keep_raw else []
        for block in ("g", "c"):
            pca = self.pca_.get(block)
            if pca is not None:
                cols = self._block(block)
                # contiguous float32 copies: the fitted and the reloaded estimator then take the same BLAS path
                mean = np.ascontiguousarray(pca.mean_, dtype=np.float32)
                proj = np.ascontiguousarray(pca.components_.T, dtype=np.float32)
                parts.append((z[:, cols] - mean) @ proj)
        if not parts:
            return np.zeros((len(z), 0), dtype=np.float32)
        return np.ascontiguousarray(np.hstack(parts), dtype=np.float32)

    def _finish(self, body: np.ndarray, X: pd.DataFrame) -> np.ndarray:
        if self.meta:
            body = np.hstack([body, onehot_meta(X)])
        return np.ascontiguousarray(body, dtype=np.float32)

    # -- persistence (no pickle) ---------------------------------------------------------
    def get_state(self, prefix: str = "pre.") -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        settings: dict[str, Any] = {"n_features_out_": int(self.n_features_out_)}
        arrays: dict[str, np.ndarray] = {}
        for key, est in (("quantile", self.quantile_), ("selector", self.selector_),
                         ("pca_g", self.pca_.get("g")), ("pca_c", self.pca_.get("c"))):
            if est is None:
                settings[key] = None
                continue
            settings[key], est_arrays = estimator_state(est, f"{prefix}{key}.")
            arrays.update(est_arrays)
        return settings, arrays

    def set_state(self, settings: dict[str, Any], arrays: dict[str, np.ndarray]) -> "MoAPreprocessor":
        def load(key: str):
            return None if settings.get(key) is None else estimator_from_state(settings[key], arrays)

        self.quantile_ = load("quantile")
        self._table = None
        if self.quantile_ is not None:  # build the lookup table now, not inside the first prediction
            self._table, self._table_of = QuantileTable(self.quantile_), self.quantile_
        self.selector_ = load("selector")
        self.pca_ = {b: est for b in ("g", "c") if (est := load(f"pca_{b}")) is not None}
        self.n_features_out_ = int(settings["n_features_out_"])
        return self
