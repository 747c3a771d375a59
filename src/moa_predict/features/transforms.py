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
from scipy.special import ndtri
from sklearn.base import BaseEstimator
from sklearn.decomposition import PCA
from sklearn.feature_selection import VarianceThreshold
from sklearn.preprocessing import QuantileTransformer

from ..data.profiles import schema
from ..data.profiles.layout import ModelInputs
from ..runtime.threads import limit_threads
from ..data.formats.persist import estimator_from_state, estimator_state
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
        # cell of x = floor((x - lo) * scale) + 1 = trunc(x * scale + shift) once clipped to [0, grid + 1]
        self.shift = (1.0 - lo * self.scale.astype(np.float64)).astype(np.float32)
        # (intercept, slope) pairs side by side: one 8-byte gather per element instead of two 4-byte ones
        ab = np.stack([a.T, b.T], axis=-1).astype(np.float32)  # (p, grid + 2, 2)
        self.ab = np.ascontiguousarray(ab).reshape(-1, 2).view(np.complex64).ravel()
        self.offset = (np.arange(self.n_features, dtype=np.int32) * (grid + 2)).astype(np.int32)

    @property
    def a(self) -> np.ndarray:
        """Intercepts, flat (feature-major: cell k of feature j at j * (grid + 2) + k)."""
        return self.ab.view(np.float32)[0::2]

    @property
    def b(self) -> np.ndarray:
        """Slopes, same layout as ``a``."""
        return self.ab.view(np.float32)[1::2]

    def transform(self, X: np.ndarray, chunk: int = 1024) -> np.ndarray:
        """Row chunks that stay in the core's cache, single-threaded numpy (callers parallelise over rows),
        int32 cell indices; NaN stays NaN."""
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"expected {self.n_features} columns, got shape {X.shape}")
        out = np.empty(X.shape, dtype=np.float32)
        top = np.float32(self.grid + 1)
        for i in range(0, len(X), chunk):
            x = X[i:i + chunk]
            c = x * self.scale
            c += self.shift
            nan = np.isnan(c)
            has_nan = bool(nan.any())
            if has_nan:
                c[nan] = 0.0
            np.clip(c, 0.0, top, out=c)
            cell = c.astype(np.int32)  # truncation == floor: c >= 0
            cell += self.offset
            ab = np.take(self.ab, cell).view(np.float32).reshape(*x.shape, 2)
            z = np.multiply(ab[..., 1], x, out=out[i:i + chunk])
            z += ab[..., 0]
            if has_nan:
                z[nan] = np.nan
        return out


class MoAPreprocessor(BaseEstimator):
    """RankGauss + block PCA + variance threshold + one-hot dose/time; fit on training rows only.

    Parameters
    ----------
    rankgauss: apply RankGauss to the g-/c- columns (else they pass through unchanged).
    n_quantiles: quantiles of the RankGauss transformer (the public recipe used 100).
    g_pca, c_pca: number of PCA components of the g- and c- blocks appended (0: none).
    keep_raw: keep the (RankGauss'd) g-/c- columns; False gives PCA components (+ meta) only, except that a block
        without PCA (pca = 0) then enters as its own columns: a layout block is never dropped from the inputs.
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
    def fit(self, X: pd.DataFrame, y: Any = None, *, inputs: ModelInputs | None = None) -> "MoAPreprocessor":
        self.fit_transform(X, inputs=inputs)
        return self

    def fit_transform(self, X: pd.DataFrame, y: Any = None, *, inputs: ModelInputs | None = None) -> np.ndarray:
        """Fit on X, whose columns `inputs` describes (``Dataset.inputs``; default: LISH-MoA profiles), and
        return its input matrix."""
        # one thread: these matrices are small, and multi-threaded BLAS on a busy machine
        # spins for seconds (a 400 x 772 SVD took 13 s with 2 threads under load, 0.2 s with 1)
        with limit_threads(1):
            return self._fit_transform(X, inputs or ModelInputs.lish_moa(list(X.columns)))

    def _fit_transform(self, X: pd.DataFrame, inputs: ModelInputs) -> np.ndarray:
        if inputs.fixed_columns:
            # the public recipe's inputs: the g-/c- columns X has, in schema order (all 872 for LISH-MoA profiles,
            # the 772 genes for a gene-only model: CMap signatures have no viability block), the g_pca / c_pca
            # components and one-hot dose and time
            self.columns_ = [c for c in schema.FEATURE_COLUMNS if c in X.columns]
            if not self.columns_:
                raise ValueError("no g- or c- feature columns to fit on")
            n_genes = sum(1 for c in self.columns_ if c.startswith("g-"))
            self.blocks_ = {"g": [0, n_genes, int(self.g_pca)], "c": [n_genes, len(self.columns_), int(self.c_pca)]}
            self.meta_ = None
        else:
            # any other layout (``data.profiles.layout``): its named blocks, each with its own PCA, and its meta columns
            self.columns_ = inputs.feature_columns
            self.blocks_, start = {}, 0
            for name, cols in inputs.blocks.items():
                self.blocks_[name] = [start, start + len(cols), int(inputs.pca.get(name, 0))]
                start += len(cols)
            self.meta_ = _fit_meta(X, inputs, self.meta)
        raw = feature_matrix(X, self.columns_)
        self.quantile_ = None
        if self.rankgauss:
            self.quantile_ = QuantileTransformer(n_quantiles=min(self.n_quantiles, len(raw)),
                                                 output_distribution="normal", random_state=self.seed,
                                                 subsample=100_000).fit(raw)
        z = self._rankgauss(raw)
        self.pca_ = {}
        for block, (_, _, n_comp) in self.blocks_.items():
            cols = self._block(block)
            n_comp = min(int(n_comp), cols.stop - cols.start, len(raw) - 1)
            if n_comp > 0:
                self.pca_[block] = PCA(n_components=n_comp, random_state=self.seed).fit(z[:, cols])
        self.selector_ = None
        self._plan = None
        if self.variance_threshold is not None:
            body = self._body(z)
            # a column is dropped only if it is near-constant on the training rows; never drop everything
            threshold = min(float(self.variance_threshold), float(np.var(body, axis=0).max()) * 0.999)
            self.selector_ = VarianceThreshold(threshold).fit(body)
            del body
        self.n_features_out_ = self._output_plan()["n_out"]
        return self._transform(z, X)

    def rankgauss_block(self, X: pd.DataFrame) -> np.ndarray:
        """The RankGauss'd g-/c- block of X (the first step of ``transform``)."""
        return self._rankgauss(feature_matrix(X, self.columns_))

    @property
    def full_layout(self) -> bool:
        """Fit on all 872 LISH-MoA features (not a gene-only model, not another layout)."""
        return self.meta_ is None and len(self.columns_) == len(schema.FEATURE_COLUMNS)

    def transform(self, X: pd.DataFrame, rankgaussed: np.ndarray | None = None) -> np.ndarray:
        """The input matrix of X; `rankgaussed` (``rankgauss_block(X)`` of an identical fitted RankGauss)
        skips that step."""
        with limit_threads(1):
            z = self._rankgauss(feature_matrix(X, self.columns_)) if rankgaussed is None else rankgaussed
            return self._transform(z, X)

    def _output_plan(self) -> dict[str, Any]:
        """Where each output column comes from (cached): kept RankGauss columns, kept PCA components, meta."""
        plan = getattr(self, "_plan", None)
        pcas = {b: id(p) for b, p in self.pca_.items()}
        if plan is not None and plan["of"] is self.selector_ and plan["pca"] == pcas:
            return plan
        n_in = len(self.columns_)
        keep = np.ones(0, dtype=bool) if self.selector_ is None else self.selector_.get_support()
        pos, parts = 0, []
        if self.keep_raw:
            kept = np.arange(n_in) if self.selector_ is None else np.flatnonzero(keep[:n_in])
            parts.append(("raw", None if len(kept) == n_in else kept, slice(pos, pos + len(kept))))
            pos += len(kept)
        start = n_in if self.keep_raw else 0
        for block in self.blocks_:
            pca = self.pca_.get(block)
            if pca is None:
                if not self.keep_raw:  # a block without PCA enters as its own columns (never silently dropped)
                    cols = self._block(block)
                    idx = np.arange(cols.start, cols.stop)
                    kept = idx if self.selector_ is None else idx[keep[start:start + len(idx)]]
                    start += len(idx)
                    parts.append(("raw", kept, slice(pos, pos + len(kept))))
                    pos += len(kept)
                continue
            k = pca.components_.shape[0]
            comps = np.arange(k) if self.selector_ is None else np.flatnonzero(keep[start:start + k])
            start += k
            # contiguous float32 copies: the fitted and the reloaded estimator take the same BLAS path
            proj = np.ascontiguousarray(np.asarray(pca.components_)[comps].T, dtype=np.float32)
            bias = (np.asarray(pca.mean_, dtype=np.float64) @ proj.astype(np.float64)).astype(np.float32)
            parts.append((block, (bias, proj), slice(pos, pos + len(comps))))
            pos += len(comps)
        n_out = pos + (self._n_meta() if self.meta else 0)
        self._plan = {"of": self.selector_, "pca": {b: id(p) for b, p in self.pca_.items()}, "parts": parts,
                      "n_out": n_out}
        return self._plan

    def _transform(self, z: np.ndarray, X: pd.DataFrame) -> np.ndarray:
        """The output matrix written in place: no intermediate concatenations or column selections."""
        plan = self._output_plan()
        out = np.empty((len(z), plan["n_out"]), dtype=np.float32)
        for kind, how, cols in plan["parts"]:
            if kind == "raw":
                out[:, cols] = z if how is None else z[:, how]
            else:
                bias, proj = how  # (z - mean) @ proj without the centred copy
                np.matmul(z[:, self._block(kind)], proj, out=out[:, cols])
                out[:, cols] -= bias
        if self.meta:
            out[:, plan["n_out"] - self._n_meta():] = self.meta_matrix(X)
        return out

    def _n_meta(self) -> int:
        if self.meta_ is None:  # LISH-MoA: cp_time 24/48/72 and cp_dose D1/D2
            return 5
        return sum(len(v) for v in self.meta_["categorical"].values()) + len(self.meta_["numeric"])

    def meta_matrix(self, X: pd.DataFrame) -> np.ndarray:
        """The meta inputs: one-hot dose and time for LISH-MoA; for other layouts one-hot categorical meta columns
        (categories seen in training; unseen ones get all zeros) and standardised numeric meta columns."""
        if self.meta_ is None:
            return onehot_meta(X)
        cols = []
        for col, cats in self.meta_["categorical"].items():
            values = X[col].astype(str).to_numpy()
            cols += [(values == c).astype(np.float32) for c in cats]
        for col, (mean, std) in self.meta_["numeric"].items():
            cols.append(((pd.to_numeric(X[col], errors="coerce").fillna(mean).to_numpy(np.float64) - mean) / std)
                        .astype(np.float32))
        return np.column_stack(cols) if cols else np.zeros((len(X), 0), np.float32)

    # -- pieces --------------------------------------------------------------------------
    def _block(self, block: str) -> slice:
        start, stop, _ = self.blocks_[block]
        return slice(start, stop)

    def _rankgauss(self, raw: np.ndarray) -> np.ndarray:
        if self.quantile_ is None:
            return raw
        if getattr(self, "_table", None) is None or self._table_of is not self.quantile_:
            self._table, self._table_of = QuantileTable(self.quantile_), self.quantile_
        return self._table.transform(raw)

    def _body(self, z: np.ndarray) -> np.ndarray:
        parts = [z] if self.keep_raw else []
        for block in self.blocks_:
            pca = self.pca_.get(block)
            if pca is None and not self.keep_raw:
                parts.append(z[:, self._block(block)])
            elif pca is not None:
                cols = self._block(block)
                # contiguous float32 copies: the fitted and the reloaded estimator then take the same BLAS path
                mean = np.ascontiguousarray(pca.mean_, dtype=np.float32)
                proj = np.ascontiguousarray(pca.components_.T, dtype=np.float32)
                parts.append((z[:, cols] - mean) @ proj)
        if not parts:
            return np.zeros((len(z), 0), dtype=np.float32)
        return np.ascontiguousarray(np.hstack(parts), dtype=np.float32)

    # -- persistence (no pickle) ---------------------------------------------------------
    def get_state(self, prefix: str = "pre.") -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        settings: dict[str, Any] = {"n_features_out_": int(self.n_features_out_)}
        if not self.full_layout:  # bundles of the full layout keep their old form
            settings["columns"] = list(self.columns_)
        if self.meta_ is not None:  # another layout: its blocks and meta encoding
            settings["blocks"] = {k: list(v) for k, v in self.blocks_.items()}
            settings["meta"] = self.meta_
        arrays: dict[str, np.ndarray] = {}
        for key, est in (("quantile", self.quantile_), ("selector", self.selector_),
                         *((f"pca_{b}", self.pca_.get(b)) for b in self.blocks_)):
            if est is None:
                settings[key] = None
                continue
            settings[key], est_arrays = estimator_state(est, f"{prefix}{key}.")
            arrays.update(est_arrays)
        return settings, arrays

    def set_state(self, settings: dict[str, Any], arrays: dict[str, np.ndarray]) -> "MoAPreprocessor":
        def load(key: str):
            return None if settings.get(key) is None else estimator_from_state(settings[key], arrays)

        self.columns_ = list(settings.get("columns", schema.FEATURE_COLUMNS))
        self.meta_ = settings.get("meta")
        if "blocks" in settings:
            self.blocks_ = {k: list(v) for k, v in settings["blocks"].items()}
        else:
            n_genes = sum(1 for c in self.columns_ if c.startswith("g-"))
            self.blocks_ = {"g": [0, n_genes, int(self.g_pca)], "c": [n_genes, len(self.columns_), int(self.c_pca)]}
        self.quantile_ = load("quantile")
        self._table = None
        if self.quantile_ is not None:  # build the lookup table now, not inside the first prediction
            self._table, self._table_of = QuantileTable(self.quantile_), self.quantile_
        self.selector_ = load("selector")
        self.pca_ = {b: est for b in self.blocks_ if (est := load(f"pca_{b}")) is not None}
        self._plan = None
        self.n_features_out_ = int(settings["n_features_out_"])
        return self


def _fit_meta(X: pd.DataFrame, inputs: ModelInputs, use: bool) -> dict[str, Any]:
    """The meta encoding of a non-LISH layout, learnt on the training rows: categories of each categorical meta
    column, mean and standard deviation of each numeric one (log10 of positive values such as concentrations is the
    caller's choice: the layout can name a log column)."""
    if not use:
        return {"categorical": {}, "numeric": {}}
    categorical = {c: sorted(X[c].astype(str).unique().tolist()) for c in inputs.meta_categorical}
    numeric = {}
    for c in inputs.meta_numeric:
        v = pd.to_numeric(X[c], errors="coerce").to_numpy(np.float64)
        mean = float(np.nanmean(v)) if np.isfinite(v).any() else 0.0
        std = float(np.nanstd(v)) if np.isfinite(v).any() else 1.0
        numeric[c] = [mean, std if std > 0 else 1.0]
    return {"categorical": categorical, "numeric": numeric}
