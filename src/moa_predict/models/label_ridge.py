"""``label-ridge``: ridge regression onto co-occurrence-smoothed labels, its settings chosen by inner CV.

Why: a label space with hundreds of labels carried by two or three drugs each (the Drug Repurposing Hub's protein
targets) is too thin for one classifier per label. Labels that travel together (the tubulin family, DRD2 / HTR2A,
…) can share what each learns: every training drug's label vector is mixed with the labels its labels co-occur
with, ``Ỹ = (1 - β) Y + β (Y S) / |y|`` where ``S[i, j]`` is the share of label i's drugs that also carry label j
(training rows only), and one multi-output ridge regression maps the profiles onto ``Ỹ``. On the real L1000
reference's targets it beats one logistic regression per target (``bench/l1000_reference.py --targets``).

How much to smooth (β) and to shrink (λ, relative to the mean feature variance) are chosen by a compound-grouped
inner cross-validation on the training rows (micro PR-AUC of the inner out-of-fold scores), never on the data the
model is scored on; one SVD per inner fold serves every λ. The ridge scores become probabilities through one
monotone logistic map fitted on the same inner out-of-fold scores (rankings, and so top-k and PR-AUC, are the
ridge's). The fitted model is a linear map (genes × labels), saved as arrays; being differentiable, it explains its
predictions in genes (``explain.attributions``) on the layout's feature columns, as the networks do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from ..evaluation.field_metrics import micro_pr_auc
from ..evaluation.folds import DrugGroupedFolds
from .base import MoAModel, State

LAMBDAS = (0.3, 1.0, 3.0, 10.0)
BETAS = (0.0, 0.3, 0.6)


def cooccurrence_smoothed(Y: np.ndarray, beta: float) -> np.ndarray:
    """``(1 - β) Y + β (Y S) / |y|``, S[i, j] = the share of label i's rows that carry label j (rows of Y only)."""
    Y = np.asarray(Y, np.float64)
    if beta == 0:
        return Y
    C = Y.T @ Y
    S = C / np.maximum(np.diag(C), 1.0)[:, None]
    return (1.0 - beta) * Y + beta * (Y @ S) / np.maximum(Y.sum(axis=1, keepdims=True), 1.0)


class _RidgePath:
    """Ridge fits for several λ from one thin SVD of the centred training features (through the eigenvectors of
    the smaller Gram matrix: much faster than a general SVD for a few hundred drugs × 978 genes)."""

    def __init__(self, X: np.ndarray) -> None:
        self.mean = X.mean(axis=0)
        Xc = X - self.mean
        small = len(Xc) <= Xc.shape[1]
        e, Q = np.linalg.eigh(Xc @ Xc.T if small else Xc.T @ Xc)
        keep = e > e.max(initial=0.0) * 1e-10
        s = np.sqrt(e[keep])
        U, V = (Q[:, keep], Xc.T @ Q[:, keep] / s) if small else (Xc @ Q[:, keep] / s, Q[:, keep])
        self.U, self.s, self.V = U, s, V
        self.scale = float((s ** 2).sum() / max(len(X), 1) / X.shape[1])  # mean feature variance

    def shrink(self, lam: float) -> np.ndarray:
        """The ridge's factor per singular direction: s / (s² + λ·scale·n)."""
        return self.s / (self.s ** 2 + lam * self.scale * len(self.U))

    def weights(self, Y: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray]:
        """(W, intercept) minimising |Yc - Xc W|² + λ·scale·n |W|² (Yc: Y centred)."""
        offset = Y.mean(axis=0)
        return self.V @ (self.shrink(lam)[:, None] * (self.U.T @ (Y - offset))), offset


@dataclass
class LinearInputs:
    """The raw attribution layout of a model fitted on a layout's feature columns, with no meta inputs: what
    ``explain.attributions`` reads from a network's fitted preprocessor (``columns_``, ``blocks_``, ``meta``)."""

    columns_: list[str]
    blocks_: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    meta: bool = False
    meta_: dict[str, Any] = field(default_factory=lambda: {"categorical": {}, "numeric": []})

    @staticmethod
    def block_bounds(blocks: dict[str, list[str]]) -> dict[str, tuple[int, int, int]]:
        """Each block's (start, stop) in the feature columns, block after block (and a 0: no PCA)."""
        out, start = {}, 0
        for name, cols in blocks.items():
            out[name] = (start, start + len(cols), 0)
            start += len(cols)
        return out


class LabelRidgeModel(MoAModel):
    """Parameters: lambdas / betas (the grids the inner CV chooses from; one value each: no inner search),
    inner_splits, seed (of the inner folds)."""

    name = "label-ridge"

    def __init__(self, lambdas: Sequence[float] = LAMBDAS, betas: Sequence[float] = BETAS, inner_splits: int = 5,
                 seed: int = 0) -> None:
        self.lambdas = lambdas
        self.betas = betas
        self.inner_splits = inner_splits
        self.seed = seed

    def _groups(self, X: pd.DataFrame) -> np.ndarray:
        """The compound of each row (the layout's compound column; each row its own compound without one)."""
        group = self.inputs_.group
        if group is not None and group in X.columns:
            return X[group].astype(str).to_numpy()
        return np.arange(len(X)).astype(str)

    def _inner_scores(self, F: np.ndarray, Y: np.ndarray, groups: np.ndarray) -> dict[tuple[float, float], np.ndarray]:
        """Inner out-of-fold ridge scores of every (λ, β) of the grids."""
        fold = DrugGroupedFolds(n_splits=self.inner_splits, seed=self.seed).assign(Y, groups)
        out = {(lam, beta): np.zeros(Y.shape) for lam in self.lambdas for beta in self.betas}
        for k in np.unique(fold):
            val, tr = fold == k, fold != k
            path = _RidgePath(F[tr])
            Z = (F[val] - path.mean) @ path.V  # held-out rows in the singular directions: one product for all λ
            for beta in self.betas:
                target = cooccurrence_smoothed(Y[tr], beta)
                offset = target.mean(axis=0)
                UtY = path.U.T @ (target - offset)
                for lam in self.lambdas:
                    out[(lam, beta)][val] = (Z * path.shrink(lam)) @ UtY + offset
        return out

    def _fit(self, X: pd.DataFrame, Y: np.ndarray, Y_aux: np.ndarray | None) -> None:
        self.columns_ = list(self.inputs_.feature_columns)
        self.blocks_ = LinearInputs.block_bounds(self.inputs_.blocks)
        F = X[self.columns_].to_numpy(np.float64)
        Y = np.asarray(Y, np.float64)
        groups = self._groups(X)
        n_groups = len(np.unique(groups))
        grid = [(float(lam), float(beta)) for lam in self.lambdas for beta in self.betas]
        self.inner_pr_auc_: dict[str, float] = {}
        if n_groups >= max(self.inner_splits, 2) and Y.sum() > 0:
            scores = self._inner_scores(F, Y, groups)
            figures = {key: micro_pr_auc(Y, scores[key]) or 0.0 for key in grid}
            self.inner_pr_auc_ = {f"lambda={lam:g} beta={beta:g}": v for (lam, beta), v in figures.items()}
            self.lambda_, self.beta_ = max(grid, key=lambda key: figures[key])
            self.slope_, self.intercept_ = _logistic_map(scores[(self.lambda_, self.beta_)], Y)
        else:  # too few compounds for an inner CV: the grids' first values and an identity-like map
            self.lambda_, self.beta_ = grid[0]
            self.slope_, self.intercept_ = 1.0, 0.0
        path = _RidgePath(F)
        W, offset = path.weights(cooccurrence_smoothed(Y, self.beta_), self.lambda_)
        self.mean_ = path.mean.astype(np.float32)
        self.coef_ = W.astype(np.float32)
        self.offset_ = offset.astype(np.float32)

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        """The ridge scores (before the logistic map)."""
        F = X[self.columns_].to_numpy(np.float32)
        return (F - self.mean_) @ self.coef_ + self.offset_

    def _predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        z = self.slope_ * self.decision_function(X).astype(np.float64) + self.intercept_
        return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)

    # -- attributions: p = sigmoid(slope · ((x - mean) @ coef + offset) + intercept), differentiable ---------
    @property
    def preprocessor_(self) -> LinearInputs:
        """The raw attribution layout: the feature columns the model was fit on (no meta inputs)."""
        return LinearInputs(list(self.columns_), dict(self.blocks_))

    @property
    def supports_attributions(self) -> bool:
        return hasattr(self, "coef_")

    def attribution_inputs(self, X: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
        return X[self.columns_].to_numpy(np.float32), list(self.columns_)

    def attribution_forward(self, raw: Any) -> Any:
        import torch

        coef, mean, offset = (torch.as_tensor(a) for a in (self.coef_, self.mean_, self.offset_))
        z = (raw.to(torch.float32) - mean) @ coef + offset
        return torch.sigmoid(self.slope_ * z + self.intercept_)

    def _get_state(self) -> State:
        return {"columns": list(self.columns_), "lambda": self.lambda_, "beta": self.beta_, "slope": self.slope_,
                "intercept": self.intercept_, "inner_pr_auc": self.inner_pr_auc_,
                "blocks": {k: list(v) for k, v in self.blocks_.items()}}, {
            "mean": self.mean_, "coef": self.coef_, "offset": self.offset_}

    def _set_state(self, settings: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.columns_ = list(settings["columns"])
        self.lambda_, self.beta_ = float(settings["lambda"]), float(settings["beta"])
        self.slope_, self.intercept_ = float(settings["slope"]), float(settings["intercept"])
        self.inner_pr_auc_ = dict(settings.get("inner_pr_auc", {}))
        self.blocks_ = {k: tuple(v) for k, v in settings["blocks"].items()}
        self.mean_ = arrays["mean"].astype(np.float32)
        self.coef_ = arrays["coef"].astype(np.float32)
        self.offset_ = arrays["offset"].astype(np.float32)


def _logistic_map(scores: np.ndarray, Y: np.ndarray) -> tuple[float, float]:
    """(slope, intercept) of p = sigmoid(slope · score + intercept), fitted on flattened out-of-fold scores:
    monotone, so the ridge's rankings are kept."""
    s, y = scores.reshape(-1, 1), (np.asarray(Y) > 0).ravel()
    if y.all() or not y.any():
        return 1.0, 0.0
    fit = LogisticRegression(C=1e4, max_iter=1000).fit(s, y)
    slope = float(fit.coef_[0, 0])
    if slope <= 0:  # no signal inner: keep the order the ridge gives
        return 1.0, float(fit.intercept_[0])
    return slope, float(fit.intercept_[0])
