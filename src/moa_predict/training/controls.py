"""The controls every cross-validated figure is shown beside: the prior and a shuffled-label control.

The shuffled-label control answers "what would this pipeline score if profiles said nothing about MoAs?". Its
labels are permuted across compounds (``evaluation.field_metrics.permute_by_compound``: each compound takes
another compound's MoAs, so class sizes and compound structure stay). Two ways to get its predictions:

- ``refit``: the same model cross-validated on the permuted labels, on the same folds, and scored against the
  true labels (what the model learns from labels that carry no signal: the honest control, and it also catches a
  pipeline that leaks labels); it costs one more cross-validation, so ``auto`` uses it on small data;
- ``permute``: the model's own out-of-fold predictions scored against the permuted labels (the permutation null
  of each figure; free).

``auto`` refits for a screen read through a layout with at most ``REFIT_MAX_ROWS`` treated profiles (a real
reference screen, where the control matters most and costs little) and permutes for the LISH-MoA layout (its
training sets are large, and its CV numbers and training time stay as they were).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from ..data.profiles.dataset import Dataset
from ..evaluation.field_metrics import Scored, field_report, permute_by_compound
from ..evaluation.metrics import smoothed_prevalence
from ..evaluation.skill import MIN_TRAIN_COMPOUNDS, prior_oof, training_compounds_when_held_out
from ..models.base import MoAModel
from ..models.blend import BlendModel
from .crossval import CVResult, cross_validate
from .stacking import cross_validate_blend

SHUFFLED_MODES = ("auto", "refit", "permute")
REFIT_MAX_ROWS = 5_000
"""``auto`` refits the shuffled-label control of a layout's screen with at most this many treated profiles."""


def permuted_dataset(data: Dataset, seed: int) -> Dataset:
    """The same profiles with their treated rows' labels (scored and auxiliary, one permutation) permuted
    across compounds; control rows keep theirs."""
    treated = np.flatnonzero(~data.is_control)
    groups = None if data.drugs is None else data.drugs.to_numpy()[treated]

    def permute(table: pd.DataFrame | None) -> pd.DataFrame | None:
        if table is None:
            return None
        values = table.to_numpy().copy()
        values[treated] = permute_by_compound(values[treated], groups, seed)
        return pd.DataFrame(values, index=table.index, columns=table.columns)

    return dataclasses.replace(data, targets=permute(data.targets), nonscored=permute(data.nonscored))


def resolve_mode(mode: str, data: Dataset) -> str:
    """``auto`` → ``refit`` for a layout's screen of at most REFIT_MAX_ROWS treated profiles, else ``permute``."""
    if mode not in SHUFFLED_MODES:
        raise ValueError(f"shuffled-label control {mode!r}: expected one of {', '.join(SHUFFLED_MODES)}")
    if mode == "auto":
        small = int((~data.is_control).sum()) <= REFIT_MAX_ROWS
        # the fixed-column (LISH-MoA) figures were published with the permuted control
        return "refit" if small and not data.layout.fixed_columns else "permute"
    return mode


def shuffled_control(model: MoAModel, data: Dataset, result: CVResult, *, mode: str = "auto", seed: int = 0,
                     progress: bool = True, device: str = "cpu") -> tuple[Scored, str]:
    """The shuffled-label control's predictions and the labels they are scored against (all rows), and a
    sentence saying how it was made."""
    mode = resolve_mode(mode, data)
    shuffled = permuted_dataset(data, seed)
    if mode == "permute":
        return (Scored(shuffled.targets.to_numpy(np.float64), result.oof),
                "the model's out-of-fold predictions scored against labels permuted across compounds")
    if isinstance(model, BlendModel):
        control, _ = cross_validate_blend(clone(model), shuffled, n_splits=result.n_splits, seed=result.seed,
                                          fold=result.fold, progress=progress, device=device)
    else:
        control = cross_validate(clone(model), shuffled, n_splits=result.n_splits, seed=result.seed,
                                 fold=result.fold, progress=progress, device=device)
    return (Scored(data.targets.to_numpy(np.float64), control.oof),
            "the same model cross-validated on the same folds with labels permuted across compounds, scored "
            "against the true labels")


def cv_field_report(model: MoAModel, data: Dataset, result: CVResult, *, mode: str = "auto", seed: int = 0,
                    progress: bool = True, device: str = "cpu", retrieval: bool = True
                    ) -> tuple[dict[str, Any], Scored]:
    """The field's figures on the treated out-of-fold rows for the model, the prior and the shuffled-label
    control (``evaluation.field_metrics``), and the control (for the per-MoA judgement)."""
    control, how = shuffled_control(model, data, result, mode=mode, seed=seed, progress=progress, device=device)
    rows = result.fold >= 0
    Y = data.targets.to_numpy(np.float64)
    prior = prior_oof(Y, result.fold)
    drugs = None if data.drugs is None else data.drugs.to_numpy()
    groups = None if drugs is None else drugs[rows]
    # the prior's fold-wise vectors differ only by which compounds each fold held out, so comparing them would
    # retrieve by those compounds' labels: its retrieval compares one prevalence vector (chance, ties broken)
    flat = np.broadcast_to(smoothed_prevalence(Y[rows]), (int(rows.sum()), Y.shape[1]))
    scored = {"model": Scored(Y[rows], result.oof[rows]), "prior": Scored(Y[rows], prior[rows], flat),
              "shuffled": Scored(control.Y[rows], control.P[rows])}
    judged = training_compounds_when_held_out(Y, result.fold, drugs) >= MIN_TRAIN_COMPOUNDS
    inputs = data.features[data.feature_columns].to_numpy(np.float64)[rows] if retrieval else None
    report = field_report(Y[rows], scored, groups=groups, target_names=data.target_names, inputs=inputs, seed=seed,
                          retrieval=retrieval, judged=judged,
                          notes={"prior": "each fold's training prevalence of every MoA (the prior model's "
                                          "out-of-fold predictions; for retrieval, one prevalence vector for "
                                          "every compound)",
                                 "shuffled": how, "shuffled_mode": resolve_mode(mode, data),
                                 "level": "profiles (the cross-validation's rows); retrieval on compounds, "
                                          "their profiles' predictions averaged"})
    return report, control
