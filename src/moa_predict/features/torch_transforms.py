"""Differentiable torch mirrors of FITTED feature transforms, for attributions in the raw input space.

Integrated gradients needs the whole path from the user's columns to the probabilities to be one
differentiable torch function. Each model's preprocessing is fitted with scikit-learn (or numpy); the
modules here evaluate the very same fitted function in torch, so attributions land on the user's own
columns (g-0 ... c-99, dose, time) instead of on PCA components or quantile scores.

The raw attribution layout (``RawLayout``) is: the g-/c- features in the model's column order, then five
floats: one-hot ``cp_time`` 24 / 48 / 72 and ``cp_dose`` D1 / D2 (the order of ``features.meta.onehot_meta``).
Treated profiles only: controls are predicted 0 by every model and never attributed.

Mirrors (each checked against the numpy/scikit-learn transform in tests/test_explain_torch_transforms.py):

- ``TorchQuantileNormal``: ``QuantileTransformer(output_distribution="normal").transform`` as scikit-learn
  computes it (``_transform_col``): the mean of the forward and the backward piecewise-linear interpolation
  of the fitted ``quantiles_`` onto ``references_`` (so repeated quantiles map to the middle of their run),
  values within 1e-7 of the ends set to 0 / 1, then the normal quantile function, clipped like scikit-learn.
- ``TorchQuantileTable``: ``features.transforms.QuantileTable`` (the lookup table our networks are trained
  through) — the same piecewise-linear function, bit for bit.
- ``TorchPCA`` (centre, project, optional whitening), ``TorchStandardScaler``, ``TorchVarianceThreshold``
  (column selection), and ``TorchMoAPreprocessor`` composing them like ``features.transforms.MoAPreprocessor``,
  in two steps: ``columnwise`` (``TorchColumnwise``: RankGauss per column, the space integrated gradients walks
  straight in) and ``after_columnwise`` (the rest).
- ``no_response_baseline``: the attribution baseline, zero response at the profile's own dose and time.
- ``paper_inputs_torch``: the paper's input (cp_type, cp_time 0/1/2, cp_dose 0/1, then the raw features),
  derived from the one-hot columns, which is linear, so gradients reach dose and time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..data.profiles import schema
from .meta import feature_matrix, onehot_meta

META_NAMES: tuple[str, ...] = tuple(f"{schema.CP_TIME}={t}" for t in schema.CP_TIMES) + tuple(
    f"{schema.CP_DOSE}={d}" for d in schema.CP_DOSES)
"""Names of the five one-hot columns that follow the g-/c- features in the raw attribution layout."""

N_META = len(META_NAMES)
_BOUNDS_THRESHOLD = 1e-7  # sklearn.preprocessing._data.BOUNDS_THRESHOLD


# -- the raw attribution layout ------------------------------------------------------------------------------
def is_generic(pre: Any) -> bool:
    """A preprocessor fitted on another layout than LISH-MoA (``data.profiles.layout``: named blocks, its own meta)."""
    return pre is not None and getattr(pre, "meta_", None) is not None


def meta_names(pre: Any = None) -> list[str]:
    """Names of the meta inputs that follow the features in the raw attribution layout: the five one-hot
    dose/time columns for LISH-MoA; for another layout (`pre` fitted on it) its categorical meta one-hot
    (``column=value``) then its standardised numeric meta columns, as ``MoAPreprocessor.meta_matrix`` makes them."""
    if not is_generic(pre):
        return list(META_NAMES)
    if not pre.meta:
        return []
    return ([f"{c}={v}" for c, cats in pre.meta_["categorical"].items() for v in cats]
            + list(pre.meta_["numeric"]))


def raw_names(feature_columns: Sequence[str] = schema.FEATURE_COLUMNS, pre: Any = None) -> list[str]:
    """Column names of the raw attribution layout: the features, then the meta inputs (``meta_names``). With a
    preprocessor fitted on another layout, its feature columns (bundle order) and meta inputs."""
    if is_generic(pre):
        return list(pre.columns_) + meta_names(pre)
    return list(feature_columns) + list(META_NAMES)


def raw_inputs(X: pd.DataFrame, feature_columns: Sequence[str] = schema.FEATURE_COLUMNS, pre: Any = None
               ) -> np.ndarray:
    """The raw attribution layout of a features frame, float32 (n, n_features + 5); with a preprocessor fitted
    on another layout, (n, its feature columns + its meta inputs)."""
    if is_generic(pre):
        meta = pre.meta_matrix(X) if pre.meta else np.zeros((len(X), 0), np.float32)
        return np.hstack([feature_matrix(X, tuple(pre.columns_)), meta]).astype(np.float32)
    return np.hstack([feature_matrix(X, tuple(feature_columns)), onehot_meta(X)]).astype(np.float32)


def no_response_baseline(raw: np.ndarray, n_features: int = schema.N_GENES + schema.N_CELLS,
                         n_meta: int = N_META) -> np.ndarray:
    """Per-profile attribution baselines for rows `raw` (raw layout): zero response for every g-/c- feature
    (the features are z-scores against vehicle controls) at the profile's OWN dose and time.

    Dose and time are held at the profile's values, so they move nothing along the path and get no
    attribution: networks only ever saw one-hot dose/time, and an "averaged" dose/time (1/3, 1/2) is an input
    no profile has, whose probability made dose and time rank first for some MoAs. Their effect is reported
    separately, as the probability at each real dose and time (``explain.attributions.dose_time_effects``)."""
    raw = np.asarray(raw, dtype=np.float32)
    if raw.ndim != 2 or raw.shape[1] != n_features + n_meta:
        raise ValueError(f"raw inputs have shape {raw.shape}; expected (n, {n_features} features + {n_meta} meta)")
    base = np.zeros_like(raw)
    base[:, n_features:] = raw[:, n_features:]
    return base


def split_raw(raw: torch.Tensor, n_features: int, n_meta: int = N_META) -> tuple[torch.Tensor, torch.Tensor]:
    """(features, meta) parts of a raw-layout tensor."""
    if raw.shape[-1] != n_features + n_meta:
        raise ValueError(f"raw inputs have {raw.shape[-1]} columns; expected {n_features} features + {n_meta} meta")
    return raw[:, :n_features], raw[:, n_features:]


def paper_inputs_torch(raw: torch.Tensor, n_features: int = schema.N_GENES + schema.N_CELLS) -> torch.Tensor:
    """``models.knn.paper_inputs`` from the raw layout: cp_type (0: treated), cp_time 0/1/2, cp_dose 0/1, features."""
    feats, meta = split_raw(raw, n_features)
    cp_type = torch.zeros_like(meta[:, :1])
    cp_time = meta[:, 1:2] + 2.0 * meta[:, 2:3]  # 24 h → 0, 48 h → 1, 72 h → 2
    cp_dose = meta[:, 4:5]  # D2 → 1
    return torch.cat([cp_type, cp_time, cp_dose, feats], dim=1)


# -- mirrors of fitted scikit-learn transformers --------------------------------------------------------------
def _buffer(module: nn.Module, name: str, value: Any, dtype: torch.dtype = torch.float64) -> None:
    module.register_buffer(name, torch.as_tensor(np.asarray(value), dtype=dtype).clone(), persistent=False)


class TorchQuantileNormal(nn.Module):
    """``QuantileTransformer(output_distribution="normal")`` as scikit-learn's ``transform`` computes it."""

    def __init__(self, qt: Any) -> None:
        super().__init__()
        if getattr(qt, "output_distribution", None) != "normal":
            raise ValueError("TorchQuantileNormal mirrors output_distribution='normal' only")
        q = np.asarray(qt.quantiles_, dtype=np.float64)  # (n_quantiles, p)
        _buffer(self, "quantiles", np.ascontiguousarray(q.T))  # (p, n_q): one sorted row per feature
        _buffer(self, "references", np.asarray(qt.references_, dtype=np.float64))
        lo_clip = np.float64(_BOUNDS_THRESHOLD) - np.spacing(1)
        self.u_min, self.u_max = float(lo_clip), float(1.0 - lo_clip)

    def _interp(self, xt: torch.Tensor, right: bool) -> torch.Tensor:
        """Row-wise np.interp of xt (p, n) on (quantiles → references); `right` picks the upper end of ties."""
        q, ref = self.quantiles, self.references
        n_q = q.shape[1]
        idx = torch.searchsorted(q, xt.detach().contiguous(), right=right)
        # right: the segment [q[j], q[j+1]) holding x (np.interp's choice: the last of a run of ties);
        # left: the segment (q[j], q[j+1]] (np.interp on the reversed, negated arrays: the first of the run)
        j = (idx - 1).clamp(0, n_q - 2)
        x0, x1 = torch.gather(q, 1, j), torch.gather(q, 1, j + 1)
        y0, y1 = ref[j], ref[j + 1]
        width = x1 - x0
        flat = width <= 0
        t = (xt - x0) / torch.where(flat, torch.ones_like(width), width)
        t = torch.where(flat, torch.ones_like(t) if right else torch.zeros_like(t), t)
        return y0 + t.clamp(0.0, 1.0) * (y1 - y0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        xt = x.to(torch.float64).T  # (p, n)
        u = 0.5 * (self._interp(xt, right=True) + self._interp(xt, right=False))
        lo, hi = self.quantiles[:, :1], self.quantiles[:, -1:]
        with torch.no_grad():  # like numpy, x ± 1e-7 is computed in the input's precision
            xd = x.detach().T
            at_lo = (xd - _BOUNDS_THRESHOLD).to(torch.float64) < lo
            at_hi = (xd + _BOUNDS_THRESHOLD).to(torch.float64) > hi
        u = torch.where(at_lo, torch.zeros_like(u), u)
        u = torch.where(at_hi, torch.ones_like(u), u)
        # scikit-learn writes u back into the input array (float32 inputs round it) before the ppf
        u = u.to(dtype).to(torch.float64)
        z = torch.special.ndtri(u.clamp(self.u_min, self.u_max))
        return z.T.to(dtype)


class TorchQuantileTable(nn.Module):
    """``features.transforms.QuantileTable``: the per-column lookup table, z = a[cell] + b[cell] · x."""

    def __init__(self, table: Any) -> None:
        super().__init__()
        self.grid = int(table.grid)
        _buffer(self, "lo", table.lo, torch.float32)
        _buffer(self, "scale", table.scale, torch.float32)
        _buffer(self, "shift", table.shift, torch.float32)
        _buffer(self, "a", table.a, torch.float32)
        _buffer(self, "b", table.b, torch.float32)
        _buffer(self, "offset", table.offset, torch.int64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.float32)
        with torch.no_grad():
            # the same float32 operations as QuantileTable.transform: identical cells
            cell = (x * self.scale + self.shift).clamp(0.0, self.grid + 1).to(torch.int64)
            cell = cell + self.offset
        return torch.take(self.b, cell) * x + torch.take(self.a, cell)


class TorchStandardScaler(nn.Module):
    def __init__(self, scaler: Any) -> None:
        super().__init__()
        n = int(scaler.n_features_in_)
        mean = scaler.mean_ if getattr(scaler, "with_mean", True) and scaler.mean_ is not None else np.zeros(n)
        scale = scaler.scale_ if getattr(scaler, "with_std", True) and scaler.scale_ is not None else np.ones(n)
        _buffer(self, "mean", mean, torch.float32)
        _buffer(self, "scale", scale, torch.float32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.scale


class TorchPCA(nn.Module):
    """``PCA.transform``: (x − mean_) @ components_.T, divided by sqrt(explained_variance_) when whitening."""

    def __init__(self, pca: Any) -> None:
        super().__init__()
        _buffer(self, "mean", pca.mean_, torch.float32)
        _buffer(self, "components", np.ascontiguousarray(np.asarray(pca.components_).T), torch.float32)
        self.whiten = bool(getattr(pca, "whiten", False))
        if self.whiten:
            _buffer(self, "scale", np.sqrt(np.asarray(pca.explained_variance_)), torch.float32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.mean) @ self.components
        return z / self.scale if self.whiten else z


class TorchVarianceThreshold(nn.Module):
    """``VarianceThreshold.transform``: keeps the selected columns."""

    def __init__(self, selector: Any) -> None:
        super().__init__()
        _buffer(self, "keep", np.flatnonzero(selector.get_support()), torch.int64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.index_select(1, self.keep)


def mirror(est: Any) -> nn.Module:
    """The torch mirror of a fitted transformer (scikit-learn, ``QuantileTable`` or ``MoAPreprocessor``)."""
    name = type(est).__name__
    if name == "QuantileTransformer":
        return TorchQuantileNormal(est)
    if name == "QuantileTable":
        return TorchQuantileTable(est)
    if name == "PCA":
        return TorchPCA(est)
    if name == "StandardScaler":
        return TorchStandardScaler(est)
    if name == "VarianceThreshold":
        return TorchVarianceThreshold(est)
    if name == "MoAPreprocessor":
        return TorchMoAPreprocessor(est)
    raise TypeError(f"no torch mirror for {name}; add one in features/torch_transforms.py")


class TorchColumnwise(nn.Module):
    """The raw layout with a per-column transform (RankGauss) applied to the g-/c- columns, dose/time unchanged.

    The first, per-column and monotone step of a preprocessing. Integrated gradients walks a straight line in
    THIS space (``explain.attributions``), which is a monotone path in each raw column: RankGauss jumps where a
    column's training values tie at its minimum or maximum (the ±10 floor and ceiling of clipped data), and a
    straight raw-space path ending on such a value integrates up to the jump and misses it."""

    def __init__(self, transform: nn.Module, n_features: int = schema.N_GENES + schema.N_CELLS,
                 n_meta: int = N_META) -> None:
        super().__init__()
        self.transform = transform
        self.n_features = int(n_features)
        self.n_meta = int(n_meta)

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        feats, meta = split_raw(raw, self.n_features, self.n_meta)
        z = self.transform(feats)
        return torch.cat([z, meta.to(z.dtype)], dim=1)


class TorchMoAPreprocessor(nn.Module):
    """``features.transforms.MoAPreprocessor.transform`` on the raw layout (features + one-hot dose/time).

    RankGauss goes through the same ``QuantileTable`` the network was trained on (``exact_rankgauss=True``
    uses scikit-learn's own interpolation instead: equal up to the table's interpolation error).
    """

    def __init__(self, pre: Any, exact_rankgauss: bool = False) -> None:
        super().__init__()
        from .transforms import QuantileTable

        # LISH-MoA: the 872 g-/c- columns and 5 one-hot dose/time; another layout: its feature columns (bundle
        # order, blocks contiguous) and its meta inputs (``meta_names``)
        self.n_features = len(pre.columns_) if is_generic(pre) else schema.N_GENES + schema.N_CELLS
        self.n_meta = len(meta_names(pre))
        self.block_slices = ({b: slice(int(v[0]), int(v[1])) for b, v in pre.blocks_.items()} if is_generic(pre)
                             else {"g": slice(0, schema.N_GENES), "c": slice(schema.N_GENES, self.n_features)})
        quantile = getattr(pre, "quantile_", None)
        if quantile is None:
            self.rankgauss = None
        elif exact_rankgauss:
            self.rankgauss = TorchQuantileNormal(quantile)
        else:
            table = getattr(pre, "_table", None)  # the preprocessor caches its table; building one takes ~1 s
            if table is None or getattr(pre, "_table_of", None) is not quantile:
                table = QuantileTable(quantile)
            self.rankgauss = TorchQuantileTable(table)
        self.keep_raw = bool(pre.keep_raw)
        self.blocks = nn.ModuleDict({b: TorchPCA(p) for b, p in getattr(pre, "pca_", {}).items()})
        selector = getattr(pre, "selector_", None)
        self.selector = None if selector is None else TorchVarianceThreshold(selector)
        self.meta = bool(pre.meta)
        self.columnwise = (None if self.rankgauss is None
                           else TorchColumnwise(self.rankgauss, self.n_features, self.n_meta))

    def after_columnwise(self, u: torch.Tensor) -> torch.Tensor:
        """The rest of the preprocessing (PCA, variance threshold, dose/time) on ``columnwise``'s output (on the
        raw layout itself when there is no RankGauss)."""
        z, meta = split_raw(u, self.n_features, self.n_meta)
        parts = [z] if self.keep_raw else []
        for block, cols in self.block_slices.items():
            if block in self.blocks:
                parts.append(self.blocks[block](z[:, cols]))
            elif not self.keep_raw:  # a block without PCA enters as its own columns (MoAPreprocessor's rule)
                parts.append(z[:, cols])
        body = torch.cat(parts, dim=1) if parts else z[:, :0]
        if self.selector is not None:
            body = self.selector(body)
        return torch.cat([body, meta], dim=1) if self.meta else body

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        return self.after_columnwise(raw if self.columnwise is None else self.columnwise(raw))


def same_columnwise(a: nn.Module | None, b: nn.Module | None) -> bool:
    """Two columnwise transforms computing the same function (same class and buffers; None is the identity)."""
    if a is b:
        return True
    if a is None or b is None or type(a) is not type(b):
        return False
    ba, bb = dict(a.named_buffers()), dict(b.named_buffers())
    return (ba.keys() == bb.keys() and all(torch.equal(ba[k], bb[k]) for k in ba)
            and all(getattr(a, k, None) == getattr(b, k, None) for k in ("grid", "u_min", "u_max")))


def shared_columnwise(transforms: Sequence[nn.Module | None]) -> nn.Module | None:
    """The columnwise transform all of `transforms` share (a blend's members), else None (the identity)."""
    first = transforms[0] if transforms else None
    if first is None or not all(same_columnwise(first, t) for t in transforms[1:]):
        return None
    return first
