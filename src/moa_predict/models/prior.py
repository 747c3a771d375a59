"""The prevalence baseline: every profile gets each target's training frequency."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .base import MoAModel, State, register


@register("prior")
class PriorModel(MoAModel):
    """Predicts training prevalence; the floor every real model must beat (≈0.0222 on LISH-MoA)."""

    def _fit(self, X: pd.DataFrame, Y: np.ndarray, Y_aux: np.ndarray | None) -> None:
        self.prevalence_ = Y.mean(axis=0).astype(np.float32)

    def _predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return np.broadcast_to(self.prevalence_, (len(X), len(self.prevalence_))).copy()

    def _get_state(self) -> State:
        return {}, {"prevalence": self.prevalence_}

    def _set_state(self, settings, arrays) -> None:
        self.prevalence_ = arrays["prevalence"].astype(np.float32)
