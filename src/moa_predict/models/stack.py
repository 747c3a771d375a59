"""The blend's stack: how member probabilities become one prediction, fit on out-of-fold predictions.

A ``Stack`` holds non-negative member weights summing to 1 (``fit_blend_weights``: SLSQP on the competition
metric), one temperature for all targets (``fit_temperature``) and a per-target safeguard
(``safeguard_factors``: weak targets shrunk towards, or replaced by, the prior). Temperature and safeguard
combine into one calibration factor per target (``calibrate``); targets with factor 0 are predicted by the
prior. A stack is only ever fit on out-of-fold predictions (never on rows a member was trained on);
``nested_stack_score`` scores one honestly: fit on the other folds' OOF, applied to each fold in turn.

Arrays: ``P`` is (members, rows, targets) member probabilities, ``Y`` (rows, targets) 0/1, ``prior`` the
prevalence the stack shrinks towards: one row (targets,) or one per row (each fold's training prevalence).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from scipy.optimize import minimize, minimize_scalar

from ..evaluation.metrics import EPS, columnwise_log_loss, smoothed_prevalence


@dataclass
class Stack:
    """Settings (``temperature``, ``min_gain``) and, once fit, ``weights_``, ``temperature_``,
    ``calibration_`` (one factor per target, or None) and ``prior_targets_`` (indices predicted by the prior).

    ``Stack.fixed(weights)`` is the stack without cross-validation: given weights, no calibration."""

    temperature: bool = True
    min_gain: float | None = 0.05
    weights_: np.ndarray | None = field(default=None, repr=False)
    temperature_: float | None = None
    calibration_: np.ndarray | None = field(default=None, repr=False)
    prior_targets_: list[int] = field(default_factory=list)

    @classmethod
    def fixed(cls, weights: Sequence[float]) -> "Stack":
        return cls(temperature=False, min_gain=None, weights_=np.asarray(weights, dtype=np.float64))

    @property
    def fitted(self) -> bool:
        return self.weights_ is not None

    def fit(self, P: np.ndarray, Y: np.ndarray, prior: np.ndarray, groups: np.ndarray | None = None) -> "Stack":
        """Weights, then (optionally) the temperature, then (optionally) the safeguard, on these OOF rows."""
        w = fit_blend_weights(P, Y)
        blend = np.tensordot(w, P, axes=1)
        beta = np.ones(Y.shape[1])
        self.weights_, self.temperature_, self.calibration_, self.prior_targets_ = w, None, None, []
        if self.temperature:
            self.temperature_ = fit_temperature(blend, prior, Y)
            beta = np.full(Y.shape[1], self.temperature_)
            blend = calibrate(blend, prior, beta)
        if self.min_gain is not None:
            factor = safeguard_factors(blend, prior, Y, groups, self.min_gain)
            beta = beta * factor
            self.prior_targets_ = [int(t) for t in np.flatnonzero(factor == 0.0)]
        if self.temperature or self.min_gain is not None:
            self.calibration_ = beta
        return self

    def combine(self, P: np.ndarray) -> np.ndarray:
        """The weighted mean of the members' probabilities."""
        return np.tensordot(self.weights_, P, axes=1)

    def finish(self, blend: np.ndarray, prior: np.ndarray) -> np.ndarray:
        """Calibrate a weighted blend and put the prior on the safeguarded targets (in the blend's dtype)."""
        if self.calibration_ is not None:
            blend = calibrate(blend, prior, np.asarray(self.calibration_, dtype=blend.dtype))
        if self.prior_targets_:
            idx = np.asarray(self.prior_targets_, dtype=np.int64)
            blend[:, idx] = np.broadcast_to(np.asarray(prior, dtype=blend.dtype), blend.shape)[:, idx]
        return blend

    def apply(self, P: np.ndarray, prior: np.ndarray) -> np.ndarray:
        return self.finish(self.combine(P), prior)

    def check(self, n_members: int, n_targets: int) -> None:
        """A stack fit for another blend (other members or targets) is an error, not a silent misfit."""
        w = self.weights_
        if w is None or w.shape != (n_members,) or (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"stack weights must be {n_members} non-negative numbers with a positive sum, got "
                             f"{None if w is None else w.tolist()}")
        if self.calibration_ is not None and len(self.calibration_) != n_targets:
            raise ValueError(f"the stack has {len(self.calibration_)} calibration factors for {n_targets} targets")
        if self.prior_targets_ and max(self.prior_targets_) >= n_targets:
            raise ValueError(f"the stack's prior targets name targets beyond the {n_targets} targets")

    def rounded(self, decimals: int = 4) -> "Stack":
        """The calibration factors rounded for bundle.json (as shipped bundles have always stored them)."""
        cal = None if self.calibration_ is None else np.array([round(float(b), decimals) for b in self.calibration_])
        return Stack(self.temperature, self.min_gain, self.weights_, self.temperature_, cal, list(self.prior_targets_))

    def to_dict(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "min_gain": self.min_gain,
                "weights": None if self.weights_ is None else [float(x) for x in self.weights_],
                "fitted_temperature": self.temperature_,
                "calibration": None if self.calibration_ is None else [float(b) for b in self.calibration_],
                "prior_targets": list(self.prior_targets_)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Stack":
        return cls(bool(d["temperature"]), d["min_gain"],
                   None if d["weights"] is None else np.asarray(d["weights"], dtype=np.float64),
                   d.get("fitted_temperature"),
                   None if d["calibration"] is None else np.asarray(d["calibration"], dtype=np.float64),
                   [int(t) for t in d["prior_targets"]])


def nested_stack_score(template: Stack, P: np.ndarray, Y: np.ndarray, fold: np.ndarray,
                       prior: np.ndarray | None = None, groups: np.ndarray | None = None) -> dict[str, Any]:
    """Honest score of a stack: for each fold, a copy of `template` fit on the other folds' OOF and applied to
    this fold. Returns ``oof`` (stacked OOF), ``score``, ``folds`` (each outer fold's stack) and ``stack``
    (fit on all folds: what a final model uses)."""
    P = np.asarray(P, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if prior is None:
        if template.temperature or template.min_gain is not None:
            raise ValueError("temperature and safeguard need the prior's OOF predictions")
        prior = np.broadcast_to(smoothed_prevalence(Y), Y.shape)
    prior = np.asarray(prior, dtype=np.float64)
    groups = None if groups is None else np.asarray(groups)
    out = np.zeros(Y.shape)
    folds = []
    for k in np.unique(fold):
        tr, va = fold != k, fold == k
        stack = Stack(template.temperature, template.min_gain).fit(P[:, tr], Y[tr], prior[tr],
                                                                    None if groups is None else groups[tr])
        out[va] = stack.apply(P[:, va], prior[va])
        folds.append({"weights": stack.weights_.tolist(), "temperature": stack.temperature_,
                      "prior_targets": stack.prior_targets_})
    final = Stack(template.temperature, template.min_gain).fit(P, Y, prior, groups)
    return {"oof": out, "score": float(columnwise_log_loss(Y, out).mean()), "folds": folds, "stack": final}


# -- the pieces a stack is made of --------------------------------------------------------------
def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-7, 1.0 - 1e-7)
    return np.log(p) - np.log1p(-p)


def calibrate(proba: np.ndarray, prevalence: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """sigmoid(logit(prevalence) + beta * (logit(proba) - logit(prevalence))), per target."""
    zp = _logit(np.asarray(prevalence, dtype=proba.dtype))
    z = zp + beta * (_logit(proba) - zp)
    return (1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))).astype(proba.dtype)


def fit_temperature(blend: np.ndarray, prevalence: np.ndarray, Y: np.ndarray,
                    bounds: tuple[float, float] = (0.5, 2.0)) -> float:
    """One factor T for all targets minimising the log loss of ``calibrate(blend, prevalence, T)``.

    Averaging members (and label smoothing) leaves a blend slightly under-confident; one shared factor
    corrects that without the noise of a factor per target (on drug-grouped folds, per-target factors fit
    on four folds made the fifth worse)."""
    zp = _logit(np.broadcast_to(np.asarray(prevalence, dtype=np.float64), blend.shape))
    d = _logit(np.asarray(blend, dtype=np.float64)) - zp
    Y = np.asarray(Y, dtype=np.float64)

    def loss(t: float) -> float:
        q = np.clip(1.0 / (1.0 + np.exp(-np.clip(zp + t * d, -60, 60))), EPS, 1.0 - EPS)
        return float(-(Y * np.log(q) + (1.0 - Y) * np.log1p(-q)).mean())

    return float(minimize_scalar(loss, bounds=bounds, method="bounded", options={"xatol": 1e-4}).x)


def _loss_and_grad(w: np.ndarray, P: np.ndarray, Y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean column-wise log loss of sum_m w_m P_m and its gradient in w (P: members × rows × targets)."""
    p = np.tensordot(w, P, axes=1)
    p = np.clip(p, EPS, 1.0 - EPS)
    n = Y.shape[0] * Y.shape[1]
    loss = -(Y * np.log(p) + (1.0 - Y) * np.log1p(-p)).sum() / n
    dp = (-(Y / p) + (1.0 - Y) / (1.0 - p)) / n
    grad = np.einsum("mrt,rt->m", P, dp)
    return float(loss), grad


def fit_blend_weights(P: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Non-negative weights summing to 1 that minimise the log loss of the blended OOF predictions."""
    P = np.asarray(P, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    m = P.shape[0]
    if m == 1:
        return np.ones(1)
    res = minimize(_loss_and_grad, np.full(m, 1.0 / m), args=(P, Y), jac=True, method="SLSQP",
                   bounds=[(0.0, 1.0)] * m, constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0,
                                                         "jac": lambda w: np.ones_like(w)}],
                   options={"maxiter": 200, "ftol": 1e-12})
    w = np.clip(res.x, 0.0, None)
    return w / w.sum()


def safeguard_factors(blend: np.ndarray, prior: np.ndarray, Y: np.ndarray, groups: np.ndarray | None = None,
                      min_gain: float = 0.05, min_positives: int = 5, few_groups: int = 10,
                      shrink: float = 0.3) -> np.ndarray:
    """Per-target factor on the blend's deviation from the prior (1 = keep, 0 = predict the prior).

    A target is judged when the OOF rows hold at least `min_positives` positives; a judged target whose OOF
    log loss beats the prior's by less than `min_gain` (relative) is weak. A weak target whose positives
    come from at most `few_groups` drugs (`groups`: one id per row; None: every row its own group) gets the
    prior: with so few drugs the held-out drug is new and the model's signal rarely carries. Other weak
    targets are shrunk (`shrink`) towards the prior in logit space: switching them off outright threw away
    more real signal than it saved on the drug-grouped folds.
    """
    Y = np.asarray(Y)
    lb = columnwise_log_loss(Y, blend)
    lp = columnwise_log_loss(Y, np.broadcast_to(prior, Y.shape))
    weak = ((lp - lb) < min_gain * lp) & (Y.sum(axis=0) >= min_positives)
    if groups is None:
        n_groups = Y.sum(axis=0)
    else:
        groups = np.asarray(groups)
        n_groups = np.array([len(np.unique(groups[Y[:, t] > 0])) for t in range(Y.shape[1])])
    factor = np.ones(Y.shape[1])
    factor[weak] = shrink
    factor[weak & (n_groups <= few_groups)] = 0.0
    return factor
