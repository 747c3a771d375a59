"""Out-of-fold cross-validation of any registered model, scored on treated rows."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import pandas as pd
from sklearn.base import clone
from tqdm.auto import tqdm

from ..data.profiles.dataset import Dataset
from ..models.base import MoAModel
from ..runtime.workers import cpu_seconds
from ..evaluation.folds import DrugGroupedFolds
from ..evaluation.metrics import columnwise_log_loss


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


def fold_assignment(data: Dataset, n_splits: int, seed: int, fold: np.ndarray | None = None
                    ) -> tuple[np.ndarray, bool]:
    """`fold` if given (grouped when the data has drugs), else ``assign_folds``; targets are required."""
    if data.targets is None:
        raise ValueError("cross-validation needs targets")
    if fold is None:
        return assign_folds(data, n_splits, seed)
    return fold, data.drugs is not None


def describe_rows(data: Dataset) -> str:
    """'342 treated rows (trt_cp); 18 control rows excluded ...', in the words of the data's layout."""
    n_ctl = int(data.is_control.sum())
    n_trt = len(data.features) - n_ctl
    layout = data.layout
    controls = ("" if layout.controls is None
                else f" ({layout.controls.column} = {' or '.join(map(str, layout.controls.values))})")
    return f"{n_trt:,} treated rows; {n_ctl:,} control rows{controls} excluded and predicted 0"


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
        c0, t0 = cpu_seconds(), time.perf_counter()
        est.fit(data.features.iloc[train], Y[train], None if Y_aux is None else Y_aux[train], device=device,
                inputs=data.inputs)
        yield k, est, val, time.perf_counter() - t0, cpu_seconds() - c0


def cross_validate(model: MoAModel, data: Dataset, *, n_splits: int = 5, seed: int = 0,
                   fold: np.ndarray | None = None, progress: bool = True, device: str = "cpu") -> CVResult:
    """Fit a clone of `model` on each training fold and predict its validation fold (any model, as it is:
    a blend here uses its given weights; ``training.stacking`` cross-validates a blend with its stack fit)."""
    fold, grouped = fold_assignment(data, n_splits, seed, fold)
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
