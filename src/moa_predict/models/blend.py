"""Blends: several member models in one estimator (one bundle).

``BlendModel`` fits every member on the same rows and combines their probabilities with its fitted
``Stack`` (``stack_``: weights, one temperature, per-target safeguard; models/stack.py). The stack is fit
on out-of-fold predictions, never on the rows a member was trained on: ``training.stacking`` fits it during
``moa train``'s cross-validation and hands it to ``fit(..., stack=...)``; without one, the blend uses its
``weights`` (default: the default model's) and no calibration.

Members are persisted under the prefixes ``m0.``, ``m1.``, ... of one bundle; no pickle.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..data.profiles.layout import ModelInputs
from ..evaluation.metrics import smoothed_prevalence
from ..runtime.workers import cpu_seconds, run_tasks, task_slots
from .base import MoAModel, State
from .default import DEFAULT_MEMBERS, DEFAULT_MIN_GAIN, DEFAULT_WEIGHTS
from .members import make_member
from .stack import Stack


def _fit_member(name: str, params: dict[str, Any], X: pd.DataFrame, Y: np.ndarray,
                Y_aux: np.ndarray | None, inputs: ModelInputs | None = None) -> tuple[dict, dict, float, float]:
    """Fit one member (in a worker process); return its persisted state, rebuilt by the caller."""
    c0, t0 = cpu_seconds(), time.perf_counter()
    model = make_member(name, **params).fit(X, Y, Y_aux, inputs=inputs)
    settings, arrays = model.get_state()
    return settings, arrays, time.perf_counter() - t0, cpu_seconds() - c0


def member_label(name: str, params: dict[str, Any], blocks: dict[str, int] | None = None) -> str:
    """'mlp 256-256 raw+PCA 150/20 25 ep seed 7': what distinguishes one member of a blend from another.
    `blocks` (a custom layout's block -> PCA components) replaces the LISH-MoA g-/c- PCA sizes, which such
    a layout does not use: 'PCA Cells 15, Nuclei 16'."""
    parts = [name]
    if "hidden" in params:
        parts.append("-".join(str(h) for h in params["hidden"]))
    if "width" in params:
        parts.append(f"{params['width']}x{params.get('n_blocks', '?')}")
    if "g_pca" in params or "c_pca" in params:
        raw = "raw+" if params.get("keep_raw") else ""
        if blocks is not None:
            parts.append(f"{raw}PCA " + ", ".join(f"{b} {k}" for b, k in blocks.items()))
        else:
            parts.append(f"{raw}PCA {params.get('g_pca', '-')}/{params.get('c_pca', '-')}")
    if "epochs" in params:
        parts.append(f"{params['epochs']} ep")
    if params.get("seed"):
        parts.append(f"seed {params['seed']}")
    return " ".join(parts)


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
    """Member models combined by a stack fit on their out-of-fold predictions.

    Parameters
    ----------
    members: list of ``[model name, {hyper-parameters}]`` (JSON-able, so bundles can rebuild them);
        the default is the default model's (``models.default``).
    weights: one non-negative weight per member (normalised to sum 1) used when ``fit`` is given no stack;
        None = equal weights.
    safeguard_min_gain: the per-target safeguard's threshold when a stack is fit for this blend
        (``stack.safeguard_factors``; None: no safeguard).
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
                 safeguard_min_gain: float | None = DEFAULT_MIN_GAIN, n_jobs: int = 2, seed: int = 0) -> None:
        self.members = members
        self.weights = weights
        self.safeguard_min_gain = safeguard_min_gain
        self.n_jobs = n_jobs
        self.seed = seed

    @property
    def needs_full_layout(self) -> bool:  # type: ignore[override]
        return any(make_member(name).needs_full_layout for name, _ in self.member_specs())

    # -- the stack --------------------------------------------------------------------------
    def member_labels(self, blocks: dict[str, int] | None = None) -> list[str]:
        """One short name per member for tables: registry name + the hyper-parameters that tell members apart
        (`blocks`: a custom layout's PCA components per block, see :func:`member_label`)."""
        return [member_label(name, params, blocks) for name, params in self.member_specs()]

    def member_specs(self) -> list[tuple[str, dict[str, Any]]]:
        """The members as (registry name, hyper-parameters)."""
        if not self.members:
            raise ValueError("a blend needs at least one member")
        return _as_members(self.members)

    def new_stack(self) -> Stack:
        """An unfitted stack with this blend's settings (what ``training.stacking`` fits on OOF)."""
        return Stack(temperature=True, min_gain=self.safeguard_min_gain)

    def default_stack(self) -> Stack:
        """The stack without cross-validation: the given weights (equal if None), no calibration."""
        n = len(self.member_specs())
        return Stack.fixed(np.full(n, 1.0 / n) if self.weights is None else self.weights)

    def _make_member(self, name: str, params: dict[str, Any]) -> MoAModel:
        model = make_member(name, **params)
        known = model.get_params(deep=False)
        if "seed" in known and self.seed:
            model.set_params(seed=int(known["seed"]) + int(self.seed))
        return model

    # -- MoAModel ------------------------------------------------------------------------
    def fit(self, X: pd.DataFrame, Y: np.ndarray, Y_aux: np.ndarray | None = None, *,
            stack: Stack | None = None, device: str = "cpu", inputs: ModelInputs | None = None) -> "BlendModel":
        """Fit the members on these rows and keep `stack` (fit on out-of-fold predictions of these rows'
        data) as ``stack_``; without one, ``default_stack()``. Members with weight 0 are not fitted."""
        stack = self.default_stack() if stack is None else stack
        stack.check(len(self.member_specs()), np.shape(Y)[1])
        self.stack_ = stack
        return super().fit(X, Y, Y_aux, device=device, inputs=inputs)

    def _fit(self, X: pd.DataFrame, Y: np.ndarray, Y_aux: np.ndarray | None, device: str = "cpu") -> None:
        weights = self._weights()
        self.members_ = [self._make_member(name, params) for name, params in self.member_specs()]
        todo = [i for i, w in enumerate(weights) if w > 0]  # a zero-weight member is never used: not fitted
        self.member_fit_seconds_ = [0.0] * len(self.members_)
        self.member_fit_cpu_seconds_ = [0.0] * len(self.members_)
        n_jobs = task_slots(self.n_jobs, len(todo))
        self.used_workers_ = n_jobs > 1 and not device.startswith("cuda")
        if not self.used_workers_:
            for i in todo:
                c0, t0 = cpu_seconds(), time.perf_counter()
                self.members_[i].fit(X, Y, Y_aux, device=device, inputs=self.inputs_)
                self.member_fit_seconds_[i] = time.perf_counter() - t0
                self.member_fit_cpu_seconds_[i] = cpu_seconds() - c0
        else:
            tasks = [(self.members_[i].name, self.members_[i].get_params(deep=False), X, Y, Y_aux, self.inputs_)
                     for i in todo]
            for i, (settings, arrays, seconds, cpu) in zip(todo, run_tasks(_fit_member, tasks, n_jobs)):
                self.members_[i].set_state(settings, arrays)
                self.member_fit_seconds_[i] = seconds
                self.member_fit_cpu_seconds_[i] = cpu
        self.prevalence_ = smoothed_prevalence(Y).astype(np.float32)
        self.weights_ = weights

    def _weights(self) -> np.ndarray:
        w = np.asarray(self.stack_.weights_, dtype=np.float64)
        return w / w.sum()

    def _preprocessing_groups(self) -> list[list[int]]:
        """Fitted members (weight > 0) grouped by identical fitted preprocessing (same parameters and state)."""
        cached = getattr(self, "_groups", None)
        if cached is not None and cached[0] is self.members_:
            return cached[1]
        groups: list[list[int]] = []
        keys: list[Any] = []
        for i, (model, w) in enumerate(zip(self.members_, self.weights_)):
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
    def gene_block_only(self) -> bool:
        """A gene-only companion: its network members were fit on LISH-MoA's gene block alone."""
        return any(getattr(m, "gene_block_only", False) for m in getattr(self, "members_", ()))

    @property
    def supports_attributions(self) -> bool:
        if not hasattr(self, "members_"):
            return False
        used = [m for m, w in zip(self.members_, self.weights_) if w > 0]
        return bool(used) and all(getattr(m, "supports_attributions", False) for m in used)

    def attribution_inputs(self, X: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
        """The raw attribution layout of the used members (they are fit on the same table, so on another layout
        than LISH-MoA they share its feature columns and meta inputs)."""
        if not self.supports_attributions:
            raise NotImplementedError(self._no_attributions())
        first = next(m for m, w in zip(self.members_, self.weights_) if w > 0)
        return first.attribution_inputs(X)

    def attribution_split(self) -> tuple[Any, Any]:
        """(columnwise, head) with ``attribution_forward(raw) == head(columnwise(raw))`` (see
        ``NetworkModel.attribution_split``): the members' shared RankGauss when every used member has the same
        one (the default blend's members fit identical ones), else None (the identity) and the members' whole
        functions in the head. The head is the weighted mean of the members' probabilities, calibrated, with the
        safeguarded targets constant (the prior), as ``predict_proba`` computes it."""
        import torch

        from ..features.torch_transforms import shared_columnwise

        if not self.supports_attributions:
            raise NotImplementedError(self._no_attributions())
        used = [(m, float(w)) for m, w in zip(self.members_, self.weights_) if w > 0]
        splits = [m.attribution_split() for m, _ in used]
        shared = shared_columnwise([c for c, _ in splits])
        parts = ([(h, w) for (_, h), (_, w) in zip(splits, used)] if shared is not None
                 else [(m.attribution_forward, w) for m, w in used])
        prev = np.asarray(self.prevalence_, dtype=np.float32)
        calibration = self.stack_.calibration_
        prior_targets = list(self.stack_.prior_targets_)

        def head(u: Any) -> Any:
            p = sum(w * f(u) for f, w in parts)
            prior = torch.as_tensor(prev, dtype=p.dtype)
            if calibration is not None:
                beta = torch.as_tensor(np.asarray(calibration, dtype=np.float32), dtype=p.dtype)
                zp = torch.logit(prior.clamp(1e-7, 1 - 1e-7))
                p = torch.sigmoid(zp + beta * (torch.logit(p.clamp(1e-7, 1 - 1e-7)) - zp))
            if prior_targets:
                mask = torch.zeros(p.shape[1], dtype=torch.bool)
                mask[prior_targets] = True
                p = torch.where(mask, prior.expand_as(p), p)
            return p

        return shared, head

    def attribution_forward(self, raw: Any) -> Any:
        """Weighted mean of the members' probabilities, calibrated, safeguarded targets constant."""
        columnwise, head = self.attribution_split()
        return head(raw if columnwise is None else columnwise(raw))

    def predict_members(self, X: pd.DataFrame, *, device: str = "cpu") -> list[np.ndarray | None]:
        """Each member's probabilities (None for a member that was not fitted: weight 0)."""
        return [m.predict_proba(X, device=device) if hasattr(m, "n_targets_") else None for m in self.members_]

    def _predict_proba(self, X: pd.DataFrame, device: str = "cpu") -> np.ndarray:
        proba = np.zeros((len(X), self.n_targets_), dtype=np.float32)
        weights = self.weights_
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
        return self.stack_.finish(proba, self.prevalence_)

    def _get_state(self) -> State:
        settings: dict[str, Any] = {"members": [], "stack": self.stack_.to_dict()}
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
        self.stack_ = Stack.from_dict(settings["stack"])
        self.stack_.check(len(self.member_specs()), int(self.n_targets_))
        self.weights_ = self._weights()
        self.members_ = []
        for i, ((name, params), s) in enumerate(zip(self.member_specs(), settings["members"])):
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


