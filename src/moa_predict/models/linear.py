"""Per-target logistic regression: a different model family for the blend.

One L2-penalised logistic regression per target on the in-fold preprocessed inputs (RankGauss'd
g-/c- columns, their PCA components, one-hot dose/time). The 206 regressions share nothing, so
they are fitted together as one linear layer by the common torch loop (the loss is a sum of
per-target losses, the penalty a sum of per-target penalties): same optimum as 206 separate
fits, in seconds. Optionally an extra block of inputs multiplies the PCA components by the
effect-size proxy of dose and time (a linear model cannot form that interaction itself).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .base import register
from .mlp import PreprocessedNet


class LogisticNet(nn.Module):
    """Standardised inputs → one linear logit per target, offset from the target's prior logit.

    The intercept is ``prior_logit + b``: the optimiser's weight decay (the L2 penalty) then pulls
    a target towards its training prevalence, not towards p = 0.5.
    """

    def __init__(self, n_in: int, n_out: int, n_scored: int, prior_logit: np.ndarray | None = None) -> None:
        super().__init__()
        self.n_scored = n_scored
        self.norm = nn.BatchNorm1d(n_in, affine=False)  # standardises inputs with the training statistics
        self.linear = nn.Linear(n_in, n_out)
        nn.init.zeros_(self.linear.bias)
        prior = torch.zeros(n_out) if prior_logit is None else torch.as_tensor(prior_logit, dtype=torch.float32)
        self.register_buffer("prior_logit", prior)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        if self.training:
            return self.linear(x) + self.prior_logit
        k = self.n_scored
        return x @ self.linear.weight[:k].T + (self.linear.bias[:k] + self.prior_logit[:k])


@register("logreg")
class LogisticModel(PreprocessedNet):
    """Per-target L2 logistic regression on RankGauss + PCA features (a linear family for diversity)."""

    def __init__(self, g_pca: int = 50, c_pca: int = 15, keep_raw: bool = True,
                 variance_threshold: float | None = 0.8, epochs: int = 15, batch_size: int = 512, lr: float = 1e-3,
                 max_lr: float = 1e-2, weight_decay: float = 1e-3, label_smoothing: float = 0.001,
                 schedule: str = "onecycle", aux: bool = False, n_seeds: int = 1, seed: int = 0,
                 device: str = "cpu") -> None:
        self.g_pca = g_pca
        self.c_pca = c_pca
        self.keep_raw = keep_raw
        self.variance_threshold = variance_threshold
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.max_lr = max_lr
        self.weight_decay = weight_decay
        self.label_smoothing = label_smoothing
        self.schedule = schedule
        self.aux = aux
        self.n_seeds = n_seeds
        self.seed = seed
        self.device = device

    def _fit_targets(self, Y: np.ndarray, Y_aux: np.ndarray | None) -> np.ndarray:
        targets = super()._fit_targets(Y, Y_aux)
        p = (targets.sum(axis=0) + 0.5) / (len(targets) + 1.0)  # smoothed prevalence, never 0 or 1
        self._prior_logit = np.log(p / (1.0 - p)).astype(np.float32)
        return targets

    def _build_module(self, n_in: int, n_out: int) -> nn.Module:
        prior = getattr(self, "_prior_logit", None)
        return LogisticNet(n_in, n_out, self._n_scored(), prior if prior is not None and len(prior) == n_out else None)
