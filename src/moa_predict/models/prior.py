"""The prevalence baseline: every profile gets each target's training frequency."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..evaluation.metrics import smoothed_prevalence
from .base import MoAModel, State


class PriorModel(MoAModel):
    """Predicts training prevalence; the floor every real model must beat (≈0.0222 on LISH-MoA).

    The prevalence is smoothed, (positives + 0.5) / (rows + 1), because a target carried by a
    single drug has no positive at all when that drug's fold is held out: a raw 0 would be
    clipped to 1e-15 and cost 34.5 per positive.
    """

    name = "prior"

    def _fit(self, X: pd.DataFrame, Y: np.ndarray, Y_aux: np.ndarray | None) -> None:
        self.prevalence_ = smoothed_prevalence(Y).astype(np.float32)

    def _predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return np.broadcast_to(self.prevalence_, (len(X), len(self.prevalence_))).copy()

    def _get_state(self) -> State:
        return {}, {"prevalence": self.prevalence_}

    def _set_state(self, settings, arrays) -> None:
        self.prevalence_ = arrays["prevalence"].astype(np.float32)
