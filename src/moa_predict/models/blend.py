"""Blends: several member models in one estimator (one bundle), and the tools that fit their weights.

``BlendModel`` fits every member on the same rows and predicts the weighted mean of their
probabilities, then calibrates each target and predicts the safeguarded targets by their prevalence.
The stack (weights, calibration factors, safeguarded targets) is a set of hyper-parameters, fit on
out-of-fold predictions by ``fit_stack`` (never on the rows a member was trained on): by ``moa train``
on the data it trains on (``evaluation.crossval.cross_validate``) and by the model benchmark.
The stack holds: weights non-negative and summing to 1 (``fit_blend_weights``, scipy SLSQP on the
competition metric), one temperature for all targets (``fit_temperature``) and the per-target
safeguard (``safeguard_factors``: weak targets shrunk towards, or replaced by, the prior), combined
into one calibration factor per target. ``nested_blend`` scores the whole stack honestly: fit on the
other folds' OOF, applied to each fold in turn.

Members are persisted under the prefixes ``m0.``, ``m1.``, ... of one bundle; no pickle.
"""

from __future__ import annotations

import os
import resource
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from .base import MoAModel, State
from .default import DEFAULT_MEMBERS, DEFAULT_MIN_GAIN, DEFAULT_WEIGHTS
from .members import make_member

EPS = 1e-15

_WORKER_DATA: tuple | None = None


def _context():
    """Worker processes forked from a fresh server that has imported the models (but started no
    OpenMP threads, so forking is safe): starting a worker then costs milliseconds, not an import of torch."""
    ctx = get_context("forkserver")
    ctx.set_forkserver_preload(["moa_predict.models.members"])
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
    model = make_member(name, **params).fit(X, Y, Y_aux)
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


class BlendModel(MoAModel):
    """Weighted mean of member models' probabilities (+ prior for the safeguarded targets).

    Parameters
    ----------
    members: list of ``[model name, {hyper-parameters}]`` (JSON-able, so bundles can rebuild them);
        the default is the default model's (``models.default``).
    weights: one non-negative weight per member (normalised to sum 1); None = equal weights.
    calibration: one factor per target (or None): the blended logit's distance from the target's prior
        logit is multiplied by it (< 1 shrinks towards the prevalence, > 1 sharpens); fit on OOF.
    prior_targets: target indices predicted by the training prevalence instead of the blend.
    stack_from_cv: cross-validation (``moa train``, ``evaluation.crossval.cross_validate``) fits weights, one
        temperature and the per-target safeguard on the members' out-of-fold predictions of the training data,
        scores them nested and hands them to the final model. ``fit`` itself uses the stack it is given.
    safeguard_min_gain: the safeguard's threshold for that fit (``safeguard_factors``; None: no safeguard).
    n_jobs: members fitted in parallel worker processes (1 torch thread each); 1 = in this process.
        Each member seeds itself, so the result does not depend on n_jobs. GPU fits run in-process.
    seed: added to every member's seed.

    ``fit(..., device=)`` / ``predict_proba(..., device=)`` pass the device to the members (a GPU fit runs
    in-process; worker processes fit on the CPU).
    """

    name = "blend"
    uses_aux_targets = True
    uses_device = True

    def __init__(self, members: Sequence[Any] = DEFAULT_MEMBERS, weights: Sequence[float] | None = DEFAULT_WEIGHTS,
                 calibration: Sequence[float] | None = None, prior_targets: Sequence[int] | None = None,
                 stack_from_cv: bool = True, safeguard_min_gain: float | None = DEFAULT_MIN_GAIN, n_jobs: int = 2,
                 seed: int = 0) -> None:
        self.members = members
        self.weights = weights
        self.calibration = calibration
        self.prior_targets = prior_targets
        self.stack_from_cv = stack_from_cv
        self.safeguard_min_gain = safeguard_min_gain
        self.n_jobs = n_jobs
        self.seed = seed

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
        model = make_member(name, **params)
        known = model.get_params(deep=False)
        if "seed" in known and self.seed:
            model.set_params(seed=int(known["seed"]) + int(self.seed))
        return model

    # -- MoAModel ------------------------------------------------------------------------
    def _fit(self, X: pd.DataFrame, Y: np.ndarray, Y_aux: np.ndarray | None, device: str = "cpu") -> None:
        self._check_stack(warn=True)
        weights = self._weights()
        self.members_ = [self._make_member(name, params) for name, params in self._member_specs()]
        todo = [i for i, w in enumerate(weights) if w > 0]  # a zero-weight member is never used: not fitted
        self.member_fit_seconds_ = [0.0] * len(self.members_)
        self.member_fit_cpu_seconds_ = [0.0] * len(self.members_)
        n_jobs = min(int(self.n_jobs or 1), len(todo), os.cpu_count() or 1)
        self.used_workers_ = not (n_jobs <= 1 or device.startswith("cuda"))
        if not self.used_workers_:
            for i in todo:
                c0, t0 = _cpu_seconds(), time.perf_counter()
                self.members_[i].fit(X, Y, Y_aux, device=device)
                self.member_fit_seconds_[i] = time.perf_counter() - t0
                self.member_fit_cpu_seconds_[i] = _cpu_seconds() - c0
        else:
            with ProcessPoolExecutor(n_jobs, mp_context=_context(), initializer=_worker_init,
                                     initargs=(X, Y, Y_aux, 1)) as pool:
                futures = {i: pool.submit(_fit_member_in_worker, self.members_[i].name,
                                          self.members_[i].get_params(deep=False)) for i in todo}
                for i, fut in futures.items():
                    settings, arrays, seconds, cpu = fut.result()
                    self.members_[i].set_state(settings, arrays)
                    self.member_fit_seconds_[i] = seconds
                    self.member_fit_cpu_seconds_[i] = cpu
        self.prevalence_ = smoothed_prevalence(Y).astype(np.float32)
        self.weights_ = weights

    def _preprocessing_groups(self) -> list[list[int]]:
        """Fitted members (weight > 0) grouped by identical fitted preprocessing (same parameters and state)."""
        cached = getattr(self, "_groups", None)
        if cached is not None and cached[0] is self.members_:
            return cached[1]
        groups: list[list[int]] = []
        keys: list[Any] = []
        for i, (model, w) in enumerate(zip(self.members_, self._weights())):
            if w <= 0 or not hasattr(model, "n_targets_"):
                continue
            pre = getattr(model, "preprocessor_", None)
            for g, key in zip(groups, keys):
                if pre is not None and key is not None and _same_preprocessing(pre, key):
                    g.append(i)
                    break
            else:
                groups.append([i])
                keys.append(pre)
        self._groups = (self.members_, groups)
        return groups

    # -- attributions: the whole stack as one differentiable function of the raw inputs ---------
    @property
    def supports_attributions(self) -> bool:
        if not hasattr(self, "members_"):
            return False
        used = [m for m, w in zip(self.members_, self._weights()) if w > 0]
        return bool(used) and all(getattr(m, "supports_attributions", False) for m in used)

    def attribution_forward(self, raw: Any) -> Any:
        """Weighted mean of the members' probabilities, calibrated, safeguarded targets constant."""
        import torch

        if not self.supports_attributions:
            raise NotImplementedError(self._no_attributions())
        p = sum(float(w) * m.attribution_forward(raw) for m, w in zip(self.members_, self._weights()) if w > 0)
        prev = torch.as_tensor(self.prevalence_, dtype=p.dtype)
        if self.calibration_ is not None:
            beta = torch.as_tensor(np.asarray(self.calibration_, dtype=np.float32), dtype=p.dtype)
            zp = torch.logit(prev.clamp(1e-7, 1 - 1e-7))
            p = torch.sigmoid(zp + beta * (torch.logit(p.clamp(1e-7, 1 - 1e-7)) - zp))
        if self.prior_targets_:
            mask = torch.zeros(p.shape[1], dtype=torch.bool)
            mask[list(self.prior_targets_)] = True
            p = torch.where(mask, prev.expand_as(p), p)
        return p

    def predict_members(self, X: pd.DataFrame, *, device: str = "cpu") -> list[np.ndarray | None]:
        """Each member's probabilities (None for a member that was not fitted: weight 0)."""
        return [m.predict_proba(X, device=device) if hasattr(m, "n_targets_") else None for m in self.members_]

    def _predict_proba(self, X: pd.DataFrame, device: str = "cpu") -> np.ndarray:
        proba = np.zeros((len(X), self.n_targets_), dtype=np.float32)
        weights = self._weights()
        rankgaussed: list[tuple[Any, np.ndarray]] = []  # one RankGauss per distinct fitted QuantileTransformer
        for group in self._preprocessing_groups():
            shared = None
            pre = getattr(self.members_[group[0]], "preprocessor_", None)
            if pre is not None:  # members with identical fitted preprocessing: transform the profiles once
                z = next((z for q, z in rankgaussed if _same_estimator(q, pre.quantile_)), None)
                if z is None and pre.quantile_ is not None:
                    z = pre.rankgauss_block(X)
                    rankgaussed.append((pre.quantile_, z))
                shared = pre.transform(X, rankgaussed=z)
            for i in group:
                model = self.members_[i]
                # controls are zeroed once, by MoAModel.predict_proba on the blend
                p = (model.predict_proba(X, device=device) if shared is None
                     else model.proba_from_inputs(shared, device=device))
                proba += np.float32(weights[i]) * p
        if self.calibration_ is not None:
            proba = calibrate(proba, self.prevalence_, np.asarray(self.calibration_, dtype=np.float32))
        if self.prior_targets_:
            idx = np.asarray(self.prior_targets_, dtype=np.int64)
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

    def _check_stack(self, warn: bool = False) -> None:
        """The calibration factors and safeguarded targets are per target (the default's: the 206 LISH-MoA
        targets in file order); for another number of targets they are left out, with a warning."""
        n = int(self.n_targets_)
        self.calibration_ = self.calibration
        self.prior_targets_ = list(self.prior_targets or [])
        if self.calibration is not None and len(self.calibration) != n:
            self.calibration_ = None
            if warn:
                warnings.warn(f"calibration has {len(self.calibration)} factors for {n} targets: not applied",
                              stacklevel=3)
        if self.prior_targets_ and max(self.prior_targets_) >= n:
            self.prior_targets_ = []
            if warn:
                warnings.warn(f"prior_targets names targets beyond the {n} targets: not applied", stacklevel=3)

    def _set_state(self, settings: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.prevalence_ = np.asarray(arrays["prevalence"], dtype=np.float32)
        self.weights_ = self._weights()
        self._check_stack()
        self.members_ = []
        for i, ((name, params), s) in enumerate(zip(self._member_specs(), settings["members"])):
            model = self._make_member(name, params)
            if s is not None:
                prefix = f"m{i}."
                model.set_state(s, {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)})
            self.members_.append(model)


def _same_estimator(a: Any, b: Any) -> bool:
    """Two fitted scikit-learn transformers with the same class, parameters and fitted arrays."""
    if a is b:
        return True
    if a is None or b is None or type(a) is not type(b) or a.get_params() != b.get_params():
        return False
    fa = {k: v for k, v in vars(a).items() if k.endswith("_") and not k.startswith("_")}
    fb = {k: v for k, v in vars(b).items() if k.endswith("_") and not k.startswith("_")}
    return fa.keys() == fb.keys() and all(np.array_equal(fa[k], fb[k]) if isinstance(fa[k], np.ndarray)
                                          else fa[k] == fb[k] for k in fa)


def _same_preprocessing(a: Any, b: Any) -> bool:
    if a is b:
        return True
    if type(a) is not type(b) or a.get_params() != b.get_params():
        return False
    (sa, aa), (sb, ab) = a.get_state("p."), b.get_state("p.")
    return sa == sb and aa.keys() == ab.keys() and all(np.array_equal(aa[k], ab[k]) for k in aa)


# -- weights, calibration and safeguards, fit on out-of-fold predictions ---------------------
def smoothed_prevalence(Y: np.ndarray) -> np.ndarray:
    """The prior model's prevalence, (positives + 0.5) / (rows + 1): never exactly 0 or 1."""
    Y = np.asarray(Y)
    return (Y.sum(axis=0) + 0.5) / (len(Y) + 1.0)


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
    from scipy.optimize import minimize_scalar

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
    lb, lp = columnwise_loss(Y, blend), columnwise_loss(Y, prior)
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


def fit_stack(P: np.ndarray, Y: np.ndarray, prior: np.ndarray, groups: np.ndarray | None = None,
              temperature: bool = True, min_gain: float | None = None) -> dict[str, Any]:
    """Weights, one temperature and the per-target safeguard, all fit on these OOF rows.

    The temperature and the safeguard combine into one calibration factor per target
    (``calibrate``: T, T · shrink or 0); targets with factor 0 are listed in ``prior_targets``."""
    w = fit_blend_weights(P, Y)
    blend = np.tensordot(w, P, axes=1)
    out: dict[str, Any] = {"weights": w, "temperature": None, "calibration": None, "prior_targets": []}
    beta = np.ones(Y.shape[1])
    if temperature:
        out["temperature"] = fit_temperature(blend, prior, Y)
        beta = np.full(Y.shape[1], out["temperature"])
        blend = calibrate(blend, prior, beta)
    if min_gain is not None:
        factor = safeguard_factors(blend, prior, Y, groups, min_gain)
        beta = beta * factor
        out["prior_targets"] = [int(t) for t in np.flatnonzero(factor == 0.0)]
    if temperature or min_gain is not None:
        out["calibration"] = beta
    return out


def apply_stack(P: np.ndarray, prior: np.ndarray, stack: dict[str, Any]) -> np.ndarray:
    out = np.tensordot(stack["weights"], P, axes=1)
    if stack["calibration"] is not None:
        out = calibrate(out, prior, stack["calibration"])
    if stack["prior_targets"]:
        idx = np.asarray(stack["prior_targets"])
        out[:, idx] = np.broadcast_to(prior, out.shape)[:, idx]
    return out


def nested_blend(P: np.ndarray, Y: np.ndarray, fold: np.ndarray, prior: np.ndarray | None = None,
                 groups: np.ndarray | None = None, temperature: bool = False,
                 min_gain: float | None = None) -> dict[str, Any]:
    """Honest score of the fitted stack: weights, temperature and safeguard fit on the other folds' OOF.

    P: (members, rows, targets) OOF probabilities of treated rows; fold: fold of each row; prior: the
    prior model's OOF probabilities (each fold's training prevalence), needed for temperature and safeguard;
    groups: drug of each row (for the safeguard). Returns the stacked OOF matrix, its score, each outer
    fold's stack and the stack fit on all folds.
    """
    P = np.asarray(P, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if prior is None:
        if temperature or min_gain is not None:
            raise ValueError("temperature and safeguard need the prior's OOF predictions")
        prior = np.broadcast_to(smoothed_prevalence(Y), Y.shape)
    prior = np.asarray(prior, dtype=np.float64)
    groups = None if groups is None else np.asarray(groups)
    out = np.zeros(Y.shape)
    folds = []
    for k in np.unique(fold):
        tr, va = fold != k, fold == k
        stack = fit_stack(P[:, tr], Y[tr], prior[tr], None if groups is None else groups[tr], temperature, min_gain)
        out[va] = apply_stack(P[:, va], prior[va], stack)
        folds.append({"weights": stack["weights"].tolist(), "temperature": stack["temperature"],
                      "prior_targets": stack["prior_targets"]})
    final = fit_stack(P, Y, prior, groups, temperature, min_gain)
    return {"oof": out, "score": float(columnwise_loss(Y, out).mean()), "folds": folds,
            "weights": final["weights"].tolist(), "temperature": final["temperature"],
            "calibration": None if final["calibration"] is None else [round(float(b), 4) for b in final["calibration"]],
            "prior_targets": final["prior_targets"]}
