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


def prevalence_logit(targets: np.ndarray) -> np.ndarray:
    """Each target's smoothed training prevalence as a logit (never ±inf): LogisticNet's ``prior_logit``."""
    p = (targets.sum(axis=0) + 0.5) / (len(targets) + 1.0)
    return np.log(p / (1.0 - p)).astype(np.float32)
