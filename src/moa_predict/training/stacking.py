"""The blend-specific training step: its members' out-of-fold predictions and the stack fit on them.

A blend's stack (weights, temperature, per-target safeguard) must be fit on predictions of rows the members
never saw, so ``moa train`` cross-validates the members once (``blend_oof``: per fold, one blend clone fits
every member, in parallel), fits the stack on their OOF predictions, scores it nested (fit on the other
folds' OOF, applied to each fold in turn) and hands the stack fit on all folds to the final model
(``BlendModel.fit(..., stack=...)``). Per-target decisions are always learnt on the data being trained on.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from ..data.profiles.dataset import Dataset
from .crossval import CVResult, describe_rows, fold_assignment, fold_fits
from ..evaluation.metrics import columnwise_log_loss
from ..models.blend import BlendModel
from ..models.stack import Stack, nested_stack_score


def blend_oof(blend: BlendModel, data: Dataset, fold: np.ndarray, n_splits: int, *,
              progress: bool = True, device: str = "cpu") -> dict[str, Any]:
    """One cross-validation pass of a blend: per fold, a clone fits every member on the training folds (in
    parallel, as ``moa train`` fits them) and they predict the fold's treated rows.

    Returns (all rows; controls stay 0) ``members``: the members' OOF probabilities (members × rows × targets),
    ``prevalence``: each fold's training prevalence on its rows (the prior a stack shrinks towards), ``oof``:
    the blend's own OOF under its given weights, and wall / CPU / prediction timings, in total and per member.
    A member with weight 0 is not fitted by the blend, so give every member a positive weight here."""
    Y = data.targets.to_numpy(np.float32)
    n_members = len(blend.member_specs())
    out: dict[str, Any] = {"oof": np.zeros(Y.shape, dtype=np.float32),
                           "members": np.zeros((n_members, *Y.shape), dtype=np.float32),
                           "prevalence": np.zeros(Y.shape, dtype=np.float32),
                           "fit_seconds": 0.0, "fit_cpu_seconds": 0.0, "predict_seconds": 0.0, "n_predicted": 0,
                           "member_fit_seconds": np.zeros(n_members), "member_fit_cpu_seconds": np.zeros(n_members),
                           "member_predict_seconds": np.zeros(n_members)}
    for _, est, val, fit_k, cpu_k in fold_fits(blend, data, fold, n_splits, progress=progress, label="CV blend",
                                               device=device):
        # this process's CPU time (which includes in-process members) + the worker processes' members
        out["fit_cpu_seconds"] += cpu_k + (sum(est.member_fit_cpu_seconds_) if est.used_workers_ else 0.0)
        out["member_fit_cpu_seconds"] += np.asarray(est.member_fit_cpu_seconds_)
        out["member_fit_seconds"] += np.asarray(est.member_fit_seconds_)
        out["fit_seconds"] += fit_k
        Xv = data.features.iloc[val]
        t1 = time.perf_counter()
        out["oof"][val] = est.predict_proba(Xv, device=device)
        out["predict_seconds"] += time.perf_counter() - t1
        for i, m in enumerate(est.members_):
            if not hasattr(m, "n_targets_"):
                raise ValueError(f"member {i} has weight 0 and was not fitted: give every member a positive weight")
            t3 = time.perf_counter()
            out["members"][i, val] = m.predict_proba(Xv, device=device)
            out["member_predict_seconds"][i] += time.perf_counter() - t3
        out["prevalence"][val] = est.prevalence_
        out["n_predicted"] += len(val)
    return out


def cross_validate_blend(blend: BlendModel, data: Dataset, *, n_splits: int = 5, seed: int = 0,
                         fold: np.ndarray | None = None, progress: bool = True,
                         device: str = "cpu") -> tuple[CVResult, Stack]:
    """The members cross-validated once, the blend's stack fit on their OOF predictions and scored nested.

    Returns the CV result (the nested stack's OOF and score; ``extra["stack"]`` describes the stack, each
    member's own score and each outer fold's stack) and the stack fit on all folds, for the final model."""
    fold, grouped = fold_assignment(data, n_splits, seed, fold)
    every = clone(blend).set_params(weights=None)  # equal weights: every member is fitted in each fold
    res = blend_oof(every, data, fold, n_splits, progress=progress, device=device)
    Y = data.targets.to_numpy(np.float32)
    treated = ~data.is_control
    drugs = None if data.drugs is None else np.asarray(data.drugs.to_numpy())[treated]
    nested = nested_stack_score(blend.new_stack(), res["members"][:, treated], Y[treated], fold[treated],
                                res["prevalence"][treated], drugs)
    stack = nested["stack"].rounded()
    oof = np.zeros(Y.shape, dtype=np.float32)
    oof[treated] = nested["oof"]
    fold_scores = [float(columnwise_log_loss(Y[fold == k], oof[fold == k]).mean()) for k in range(n_splits)]
    per_target = pd.Series(columnwise_log_loss(Y[treated], oof[treated]), index=data.targets.columns)
    member_scores = [float(columnwise_log_loss(Y[treated], P[treated]).mean()) for P in res["members"]]
    d = stack.to_dict()
    extra = {"stack": {"nested": True, "weights": d["weights"], "temperature": stack.temperature_,
                       "calibration": d["calibration"], "prior_targets": d["prior_targets"],
                       "safeguard_min_gain": blend.safeguard_min_gain, "member_scores": member_scores,
                       "fold_stacks": nested["folds"]}}
    result = CVResult(oof=oof, fold=fold, score=float(per_target.mean()), per_target=per_target,
                      fold_scores=fold_scores, rows=describe_rows(data), grouped=grouped, n_splits=n_splits,
                      seed=seed, fit_seconds=res["fit_seconds"], predict_seconds=res["predict_seconds"],
                      n_predicted=res["n_predicted"], extra=extra)
    return result, stack

