"""Blends: several member models in one estimator (one bundle), and the tools that fit their weights.

``BlendModel`` fits every member on the same rows and predicts the weighted mean of their
probabilities. Weights are hyper-parameters: they are fit on out-of-fold predictions by
``fit_blend_weights`` (non-negative, summing to 1, scipy SLSQP on the competition metric) in
the model benchmark, never on the rows a member was trained on. ``prior_targets`` names
targets that the blend predicts by their training prevalence (the per-target safeguard, chosen
on out-of-fold predictions: ``choose_prior_targets``).

Members are persisted under the prefixes ``m0.``, ``m1.``, ... of one bundle; no pickle.
"""

from __future__ import annotations

import os
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from .base import MoAModel, State, make_model, register
from .default import DEFAULT_MEMBERS, DEFAULT_PRIOR_TARGETS, DEFAULT_WEIGHTS

EPS = 1e-15

_WORKER_DATA: tuple | None = None


def _context():
    """Worker processes forked from a fresh server that has imported the models (but started no
    OpenMP threads, so forking is safe): starting a worker then costs milliseconds, not an import of torch."""
    ctx = get_context("forkserver")
    ctx.set_forkserver_preload(["moa_predict.models._load_all"])
    return ctx


def _worker_init(X: pd.DataFrame, Y: np.ndarray, Y_aux: np.ndarray | None, threads: int) -> None:
    import torch

    global _WORKER_DATA
    torch.set_num_threads(threads)
    _WORKER_DATA = (X, Y, Y_aux)


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _fit_member_in_worker(name: str, params: dict[str, Any]) -> tuple[dict, dict, float, float]:
    """Fit one member in a worker process; return its persisted state (rebuilt in the parent)."""
    X, Y, Y_aux = _WORKER_DATA
    c0, t0 = _cpu_seconds(), time.perf_counter()
    model = make_model(name, **params).fit(X, Y, Y_aux)
    settings, arrays = model.get_state()
    return settings, arrays, time.perf_counter() - t0, _cpu_seconds() - c0


def _as_members(members: Sequence[Any]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for m in members:
        if isinstance(m, str):
            out.append((m, {}))
        else:
            name, params = m
            out.append((str(name), dict(params or {})))
    return out


@register("blend")
class BlendModel(MoAModel):
    """Weighted mean of member models' probabilities (+ prior for the safeguarded targets).

    Parameters
    ----------
    members: list of ``[model name, {hyper-parameters}]`` (JSON-able, so bundles can rebuild them);
        the default is the default model's (``models.default``).
    weights: one non-negative weight per member (normalised to sum 1); None = equal weights.
    prior_targets: target indices predicted by the training prevalence instead of the blend.
    n_jobs: members fitted in parallel worker processes (1 torch thread each); 1 = in this process.
        Each member seeds itself, so the result does not depend on n_jobs. GPU fits run in-process.
    seed: added to every member's seed.
    device: passed to members that take a device.
    """

    uses_aux_targets = True

    def __init__(self, members: Sequence[Any] = DEFAULT_MEMBERS, weights: Sequence[float] | None = DEFAULT_WEIGHTS,
                 prior_targets: Sequence[int] | None = DEFAULT_PRIOR_TARGETS, n_jobs: int = 2, seed: int = 0,
                 device: str = "cpu") -> None:
        self.members = members
        self.weights = weights
        self.prior_targets = prior_targets
        self.n_jobs = n_jobs
        self.seed = seed
        self.device = device

    # -- helpers -------------------------------------------------------------------------
    def _member_specs(self) -> list[tuple[str, dict[str, Any]]]:
        if not self.members:
            raise ValueError("a blend needs at least one member")
        return _as_members(self.members)

    def _weights(self) -> np.ndarray:
        n = len(self._member_specs())
        w = np.full(n, 1.0 / n) if self.weights is None else np.asarray(self.weights, dtype=np.float64)
        if w.shape != (n,) or (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"weights must be {n} non-negative numbers with a positive sum, got {self.weights}")
        return w / w.sum()

    def _make_member(self, name: str, params: dict[str, Any]) -> MoAModel:
        model = make_model(name, **params)
        known = model.get_params(deep=False)
        update = {}
        if "device" in known:
            update["device"] = self.device
        if "seed" in known and self.seed:
            update["seed"] = int(known["seed"]) + int(self.seed)
        return model.set_params(**update) if update else model

    # -- MoAModel ------------------------------------------------------------------------
    def _fit(self, X: pd.DataFrame, Y: np.ndarray, Y_aux: np.ndarray | None) -> None:
        weights = self._weights()
        self.members_ = [self._make_member(name, params) for name, params in self._member_specs()]
        todo = [i for i, w in enumerate(weights) if w > 0]  # a zero-weight member is never used: not fitted
        self.member_fit_seconds_ = [0.0] * len(self.members_)
        n_jobs = min(int(self.n_jobs or 1), len(todo), os.cpu_count() or 1)
        if n_jobs <= 1 or str(self.device).startswith("cuda"):
            for i in todo:
                t0 = time.perf_counter()
                self.members_[i].fit(X, Y, Y_aux)
                self.member_fit_seconds_[i] = time.perf_counter() - t0
        else:
            with ProcessPoolExecutor(n_jobs, mp_context=_context(), initializer=_worker_init,
                                     initargs=(X, Y, Y_aux, 1)) as pool:
                futures = {i: pool.submit(_fit_member_in_worker, self.members_[i].name,
                                          self.members_[i].get_params(deep=False)) for i in todo}
                for i, fut in futures.items():
                    settings, arrays, seconds, _ = fut.result()
                    self.members_[i].set_state(settings, arrays)
                    self.member_fit_seconds_[i] = seconds
        self.prevalence_ = Y.mean(axis=0).astype(np.float32)

    def predict_members(self, X: pd.DataFrame) -> list[np.ndarray | None]:
        """Each member's probabilities (None for a member that was not fitted: weight 0)."""
        return [m.predict_proba(X) if hasattr(m, "n_targets_") else None for m in self.members_]

    def _predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        proba = np.zeros((len(X), self.n_targets_), dtype=np.float32)
        for model, w in zip(self.members_, self._weights()):
            if w > 0:
                proba += np.float32(w) * model.predict_proba(X)
        if self.prior_targets:
            idx = np.asarray(self.prior_targets, dtype=np.int64)
            proba[:, idx] = self.prevalence_[idx]
        return proba

    def _get_state(self) -> State:
        settings: dict[str, Any] = {"members": []}
        arrays: dict[str, np.ndarray] = {"prevalence": self.prevalence_}
        for i, model in enumerate(self.members_):
            if not hasattr(model, "n_targets_"):
                settings["members"].append(None)
                continue
            s, a = model.get_state()
            settings["members"].append(s)
            arrays.update({f"m{i}.{k}": v for k, v in a.items()})
        return settings, arrays

    def _set_state(self, settings: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.prevalence_ = np.asarray(arrays["prevalence"], dtype=np.float32)
        self.members_ = []
        for i, ((name, params), s) in enumerate(zip(self._member_specs(), settings["members"])):
            model = self._make_member(name, params)
            if s is not None:
                prefix = f"m{i}."
                model.set_state(s, {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)})
            self.members_.append(model)


# -- weights and safeguards, fit on out-of-fold predictions ---------------------------------
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
    """Non-negative weights summing to 1 that minimise the log loss of the blended OOF predictions.

    P: (members, rows, targets) out-of-fold probabilities; Y: (rows, targets) 0/1.
    """
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


def columnwise_loss(Y: np.ndarray, p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1.0 - EPS)
    Y = np.asarray(Y, dtype=np.float64)
    return -(Y * np.log(p) + (1.0 - Y) * np.log1p(-p)).mean(axis=0)


def choose_prior_targets(blend: np.ndarray, prior: np.ndarray, Y: np.ndarray, margin: float = 0.0) -> list[int]:
    """Targets whose blended OOF log loss is worse than the prior's OOF log loss (by more than `margin`)."""
    worse = columnwise_loss(Y, blend) > columnwise_loss(Y, prior) + margin
    return [int(i) for i in np.flatnonzero(worse)]


def nested_blend(P: np.ndarray, Y: np.ndarray, fold: np.ndarray, prior: np.ndarray | None = None,
                 safeguard: bool = False) -> dict[str, Any]:
    """Honest score of a weight-fitted blend: weights (and safeguarded targets) fit on the other folds' OOF.

    P: (members, rows, targets) OOF probabilities of treated rows; fold: fold of each row;
    prior: the prior's OOF probabilities (needed for the safeguard).
    Returns the blended OOF matrix, its score, the weights of each outer fold and the weights on all folds.
    """
    P = np.asarray(P, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    out = np.zeros(Y.shape)
    fold_weights, fold_prior_targets = [], []
    for k in np.unique(fold):
        tr, va = fold != k, fold == k
        w = fit_blend_weights(P[:, tr], Y[tr])
        fold_weights.append(w.tolist())
        out[va] = np.tensordot(w, P[:, va], axes=1)
        if safeguard and prior is not None:
            chosen = choose_prior_targets(np.tensordot(w, P[:, tr], axes=1), prior[tr], Y[tr])
            fold_prior_targets.append(chosen)
            out[np.ix_(va, chosen)] = prior[np.ix_(va, chosen)]
    w_all = fit_blend_weights(P, Y)
    result = {"oof": out, "score": float(columnwise_loss(Y, out).mean()), "fold_weights": fold_weights,
              "weights": w_all.tolist()}
    if safeguard and prior is not None:
        result["fold_prior_targets"] = fold_prior_targets
        result["prior_targets"] = choose_prior_targets(np.tensordot(w_all, P, axes=1), prior, Y)
    return result
