"""``moa evaluate``'s report: a predictions file scored against true 0/1 targets, beside the prior, with per-target
log loss, ROC AUC and average precision and the field's figures (``field_metrics``).

Built here so that the CLI only reads its options, prints and writes; two steps, because the prior may come from a
bundle (``training``, above this package): ``read_scored`` reads and aligns the files, then ``score_predictions``
scores them against the prior it is given (without one, the targets' own frequency: optimistic, and said so).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .field_metrics import Scored, field_report, permute_by_compound
from .metrics import columnwise_log_loss, columnwise_ranking, smoothed_prevalence

OWN_PRIOR_NOTE = ("each MoA's frequency in these targets; optimistic: a real prior knows only the training data, "
                  "give --bundle for its training frequency")


@dataclass
class ScoredFiles:
    """Predictions aligned to their targets' rows; controls left out when the features said which they are."""

    names: list[str]
    y: np.ndarray
    p: np.ndarray
    groups: np.ndarray | None
    rows: str
    """Which rows were scored, in words (all of them, or the treated ones)."""


def read_scored(targets: str | Path, predictions: str | Path, features: str | Path | None = None) -> ScoredFiles:
    """The targets, the predictions of the same rows and, with `features`, the control rows left out and each
    row's compound (for labels permuted across compounds and retrieval by compound). Bad files raise DataError."""
    from ..data.profiles.dataset import control_mask, find_compound_column, load_predictions, load_targets
    from ..data.profiles.layout import Layout
    from ..data.profiles.reader import load_profiles
    from ..data.profiles.validate import align_to

    truth = load_targets(targets)
    preds = load_predictions(predictions, columns=list(truth.columns))
    preds = align_to(truth.index, preds, Path(predictions).name, Path(targets).name)
    rows = f"all {len(truth):,} rows (no --features given, so controls could not be excluded)"
    keep = groups = None
    if features:
        feats = load_profiles(features, Layout.lish_moa(), labels=False).features
        is_ctl = align_to(truth.index, pd.Series(control_mask(feats), index=feats.index), Path(features).name,
                          Path(targets).name)
        keep = ~is_ctl.to_numpy(bool)
        rows = f"{int(keep.sum()):,} treated rows ({int((~keep).sum()):,} controls excluded)"
        compound = find_compound_column(feats)
        if compound is not None:
            groups = align_to(truth.index, feats[compound], Path(features).name,
                              Path(targets).name).astype(str).to_numpy()
    y, p = truth.to_numpy(), preds.to_numpy()
    if keep is not None:
        y, p = y[keep], p[keep]
        groups = None if groups is None else groups[keep]
    return ScoredFiles(list(truth.columns), y, p, groups, rows)


@dataclass
class PredictionReport:
    """Per-target figures of the model and the prior, and the field's figures; ``to_json`` is the written report."""

    names: list[str]
    per: np.ndarray
    per_prior: np.ndarray
    auc: list[float | None]
    ap: list[float | None]
    positives: np.ndarray
    prior_note: str
    rows: str
    field: dict[str, Any]

    @property
    def score(self) -> float:
        return float(self.per.mean())

    @property
    def prior_score(self) -> float:
        return float(self.per_prior.mean())

    def ranking(self) -> tuple[float, float, int] | None:
        """(mean ROC AUC, mean average precision, targets with a positive); None when no target has one."""
        defined = [a for a in self.auc if a is not None]
        if not defined:
            return None
        return float(np.mean(defined)), float(np.mean([a for a in self.ap if a is not None])), len(defined)

    def hardest(self, top: int) -> list[int]:
        """The `top` targets of largest log loss, hardest first."""
        return sorted(range(len(self.per)), key=lambda j: -self.per[j])[:top]

    def to_json(self) -> dict[str, Any]:
        names = self.names
        return {"score": self.score, "prior_score": self.prior_score, "prior": self.prior_note,
                "rows": self.rows, "per_target": dict(zip(names, map(float, self.per))),
                "per_target_prior": dict(zip(names, map(float, self.per_prior))),
                "per_target_auc": dict(zip(names, self.auc)), "per_target_ap": dict(zip(names, self.ap)),
                "field": self.field}


def score_predictions(data: ScoredFiles, prior: np.ndarray | None = None, prior_note: str = "", *,
                      retrieval: bool = True) -> PredictionReport:
    """Score `data` against the truth and the `prior` (each target's probability for every profile; None: the
    targets' own frequency), with a shuffled-label control: the labels permuted across compounds (seed 0)."""
    y, p, groups = data.y, data.p, data.groups
    if prior is None:
        prior, prior_note = smoothed_prevalence(y), OWN_PRIOR_NOTE
    per = columnwise_log_loss(y, p)
    per_prior = columnwise_log_loss(y, np.broadcast_to(prior, y.shape))
    auc, ap = columnwise_ranking(y, p)
    y_perm = permute_by_compound(y, groups, seed=0)
    field = field_report(y, {"model": Scored(y, p), "prior": Scored(y, np.broadcast_to(prior, y.shape)),
                             "shuffled": Scored(y_perm, p)}, groups=groups, target_names=data.names,
                         retrieval=retrieval,
                         notes={"prior": f"every profile given {prior_note}",
                                "shuffled": "these predictions scored against the labels permuted across "
                                            + ("compounds" if groups is not None else "profiles (no compound "
                                               "column in --features)"),
                                "shuffled_mode": "permute",
                                "level": "profiles; retrieval on " + ("compounds, their profiles' predictions "
                                         "averaged" if groups is not None else "profiles")})
    return PredictionReport(data.names, per, per_prior, auc, ap, y.sum(axis=0), prior_note, data.rows, field)
