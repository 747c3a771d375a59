"""Out-of-fold cross-validation of any registered model, scored on treated rows."""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import pandas as pd
from sklearn.base import clone
from tqdm.auto import tqdm

from ..data import schema
from ..data.dataset import Dataset
from ..models.base import MoAModel
from .folds import DrugGroupedFolds
from .metrics import columnwise_log_loss


@dataclass
class CVResult:
    """Out-of-fold predictions and their scores; `rows` says which rows the scores cover."""

    oof: np.ndarray
    fold: np.ndarray
    score: float
    per_target: pd.Series
    fold_scores: list[float]
    rows: str
    grouped: bool
    n_splits: int
    seed: int
    fit_seconds: float
    predict_seconds: float
    n_predicted: int
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored in bundles and reports (without the OOF matrix)."""
        return {
            "metric": "mean column-wise log loss",
            "score": self.score,
            "rows": self.rows,
            "folds": self.n_splits,
            "grouped_by_drug": self.grouped,
            "seed": self.seed,
            "fold_scores": self.fold_scores,
            "fit_seconds": round(self.fit_seconds, 2),
            "predict_rows_per_second": round(self.n_predicted / max(self.predict_seconds, 1e-9), 1),
            "per_target": {k: float(v) for k, v in self.per_target.items()},
            **self.extra,
        }


def assign_folds(data: Dataset, n_splits: int = 5, seed: int = 0) -> tuple[np.ndarray, bool]:
    """Fold of every row (-1 for controls, which are never validated) and whether folds are drug-grouped."""
    treated = ~data.is_control
    fold = np.full(len(data.features), -1, dtype=np.int64)
    splitter = DrugGroupedFolds(n_splits=n_splits, seed=seed)
    groups = None if data.drugs is None else data.drugs.to_numpy()[treated]
    fold[treated] = splitter.assign(data.targets.to_numpy()[treated], groups)
    return fold, splitter.grouped_


def describe_rows(data: Dataset) -> str:
    n_ctl = int(data.is_control.sum())
    n_trt = len(data.features) - n_ctl
    return f"{n_trt:,} treated rows ({schema.TREATED}); {n_ctl:,} control rows excluded and predicted 0"


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def fold_fits(model: MoAModel, data: Dataset, fold: np.ndarray, n_splits: int, *, progress: bool = True,
              label: str = "", device: str = "cpu") -> Iterator[tuple[int, MoAModel, np.ndarray, float, float]]:
    """The one cross-validation training loop: per fold, a clone of `model` fit on the other folds' rows
    (their control rows included: models learn that controls carry no MoA). Yields the fold number, the
    fitted clone, the validation rows (treated rows of the fold), and the fit's wall and CPU seconds
    (CPU of this process; a model fitting in worker processes reports theirs itself)."""
    Y = data.targets.to_numpy(np.float32)
    Y_aux = None if data.nonscored is None else data.nonscored.to_numpy(np.float32)
    control = data.is_control
    for k in tqdm(range(n_splits), desc=label or model.name, disable=not progress, unit="fold", leave=False):
        train = np.flatnonzero((fold != k) & ((fold >= 0) | control))
        val = np.flatnonzero(fold == k)
        est = clone(model)
        c0, t0 = _cpu_seconds(), time.perf_counter()
        est.fit(data.features.iloc[train], Y[train], None if Y_aux is None else Y_aux[train], device=device)
        yield k, est, val, time.perf_counter() - t0, _cpu_seconds() - c0


def blend_oof(blend: MoAModel, data: Dataset, fold: np.ndarray, n_splits: int, *,
              progress: bool = True, device: str = "cpu") -> dict[str, Any]:
    """One cross-validation pass of a blend: per fold, every member is fitted on the training folds (in
    parallel, as ``moa train`` fits them) and predicts the fold's treated rows.

    Returns (all rows; controls stay 0) ``members``: the members' OOF probabilities (members × rows × targets),
    ``prevalence``: each fold's training prevalence on its rows (the prior a stack shrinks towards), ``oof``:
    the blend's own OOF under its current stack, and wall / CPU / prediction timings, in total and per member.
    A member with weight 0 is not fitted by the blend, so give every member a positive weight here."""
    Y = data.targets.to_numpy(np.float32)
    n_members = len(blend._member_specs())
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


def _cross_validate_stacked(model: MoAModel, data: Dataset, fold: np.ndarray, grouped: bool, n_splits: int,
                            seed: int, progress: bool, device: str = "cpu") -> CVResult:
    """A blend whose stack is fit here: members cross-validated once, the stack (weights, one temperature,
    the per-target safeguard) fit on their OOF predictions and scored nested (fit on the other folds' OOF,
    applied to each fold in turn). The stack fit on all folds is returned in ``extra["stack"]`` for the
    final model: per-target decisions learnt on this data, never on another data set."""
    from ..models.blend import nested_blend

    res = blend_oof(clone(model).set_params(weights=None), data, fold, n_splits, progress=progress, device=device)
    Y = data.targets.to_numpy(np.float32)
    treated = ~data.is_control
    drugs = None if data.drugs is None else np.asarray(data.drugs.to_numpy())[treated]
    nb = nested_blend(res["members"][:, treated], Y[treated], fold[treated], res["prevalence"][treated], drugs,
                      temperature=True, min_gain=model.safeguard_min_gain)
    oof = np.zeros(Y.shape, dtype=np.float32)
    oof[treated] = nb["oof"]
    fold_scores = [float(columnwise_log_loss(Y[fold == k], oof[fold == k]).mean()) for k in range(n_splits)]
    per_target = pd.Series(columnwise_log_loss(Y[treated], oof[treated]), index=data.targets.columns)
    member_scores = [float(columnwise_log_loss(Y[treated], P[treated]).mean()) for P in res["members"]]
    stack = {"nested": True, "weights": nb["weights"], "temperature": nb["temperature"],
             "calibration": nb["calibration"], "prior_targets": nb["prior_targets"],
             "safeguard_min_gain": model.safeguard_min_gain, "member_scores": member_scores,
             "fold_stacks": nb["folds"]}
    return CVResult(oof=oof, fold=fold, score=float(per_target.mean()), per_target=per_target,
                    fold_scores=fold_scores, rows=describe_rows(data), grouped=grouped, n_splits=n_splits,
                    seed=seed, fit_seconds=res["fit_seconds"], predict_seconds=res["predict_seconds"],
                    n_predicted=res["n_predicted"], extra={"stack": stack})


def cross_validate(model: MoAModel, data: Dataset, *, n_splits: int = 5, seed: int = 0,
                   fold: np.ndarray | None = None, progress: bool = True, device: str = "cpu") -> CVResult:
    """Fit a clone of `model` on each training fold and predict its validation fold.

    A model that fits its stack on out-of-fold predictions (the blend, ``stack_from_cv=True``) is scored nested
    and its fitted stack is returned in ``extra["stack"]`` (see ``_cross_validate_stacked``)."""
    if data.targets is None:
        raise ValueError("cross-validation needs targets")
    if fold is None:
        fold, grouped = assign_folds(data, n_splits, seed)
    else:
        grouped = data.drugs is not None
    if getattr(model, "stack_from_cv", False):
        return _cross_validate_stacked(model, data, fold, grouped, n_splits, seed, progress, device)
    Y = data.targets.to_numpy(np.float32)
    control = data.is_control
    oof = np.zeros(Y.shape, dtype=np.float32)
    fit_s = pred_s = 0.0
    fold_scores = []
    for _, est, val, fit_k, _ in fold_fits(model, data, fold, n_splits, progress=progress, label=f"CV {model.name}",
                                           device=device):
        t1 = time.perf_counter()
        oof[val] = est.predict_proba(data.features.iloc[val], device=device)
        pred_s += time.perf_counter() - t1
        fit_s += fit_k
        fold_scores.append(float(columnwise_log_loss(Y[val], oof[val]).mean()))
    treated = ~control
    per_target = pd.Series(columnwise_log_loss(Y[treated], oof[treated]), index=data.targets.columns)
    return CVResult(oof=oof, fold=fold, score=float(per_target.mean()), per_target=per_target,
                    fold_scores=fold_scores, rows=describe_rows(data), grouped=grouped, n_splits=n_splits,
                    seed=seed, fit_seconds=fit_s, predict_seconds=pred_s, n_predicted=int(treated.sum()))
