"""The paper's Keras network, in PyTorch, trained as published.

875 raw inputs (cp_type, cp_time, cp_dose in its Table 2 encoding, then the 872 g-/c- features, unscaled)
→ Dense 128 ReLU → Dropout 0.5 → BatchNorm → Dense 64 ReLU → Dropout 0.5 → BatchNorm → Dense 206 (sigmoid);
Adam (lr 1e-3), binary cross-entropy, batch 100, 75 epochs, trained on every row, controls included.

Keras defaults are mimicked: Dense weights glorot-uniform with zero bias; BatchNorm momentum 0.99
(torch's ``momentum=0.01``) and epsilon 1e-3; Adam epsilon 1e-7. The module outputs logits and the loss is
BCE-with-logits, numerically the same as the paper's sigmoid + binary cross-entropy.

Parameters (the paper's Table 6, Keras counting BatchNorm's moving mean/variance): 112,128 + 512 + 8,256 +
256 + 13,390 = 134,542.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.base import clone
from torch import nn

from ..data.dataset import control_mask
from .base import register
from .knn import paper_inputs
from .torch_base import TorchMoAModel
from .training import TrainConfig, predict_logits, sigmoid


class PaperNet(nn.Module):
    """875 → 128 → 64 → 206 with ReLU, dropout 0.5 and Keras-style BatchNorm after each hidden layer."""

    def __init__(self, n_in: int = 875, n_out: int = 206, hidden: Sequence[int] = (128, 64),
                 dropout: float = 0.5) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = n_in
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout),
                       nn.BatchNorm1d(h, eps=1e-3, momentum=0.01)]
            width = h
        layers.append(nn.Linear(width, n_out))
        self.layers = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, nn.Linear):  # Keras Dense defaults
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        return self.layers(x)


def keras_parameter_counts(module: nn.Module) -> list[tuple[str, int]]:
    """Parameters per Dense / BatchNorm layer as Keras counts them (BatchNorm: gamma, beta, moving mean, variance)."""
    counts = []
    for name, m in module.named_modules():
        if isinstance(m, nn.Linear):
            counts.append((f"dense {name}", sum(p.numel() for p in m.parameters())))
        elif isinstance(m, nn.BatchNorm1d):
            counts.append((f"batchnorm {name}", sum(p.numel() for p in m.parameters())
                           + m.running_mean.numel() + m.running_var.numel()))
    return counts


@register("paper-nn")
class PaperNN(TorchMoAModel):
    """The paper's small Keras net (published private-LB score 0.01706), trained on all rows as published."""

    trains_on_controls = True

    def __init__(self, epochs: int = 75, batch_size: int = 100, lr: float = 1e-3, n_seeds: int = 1, seed: int = 0,
                 device: str = "cpu", progress: bool = False) -> None:
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.n_seeds = n_seeds
        self.seed = seed
        self.device = device
        self.progress = progress

    def _inputs(self, X: pd.DataFrame) -> np.ndarray:
        return paper_inputs(X)

    def _torch_inputs(self, raw):
        """Attributions: the paper's input from the raw layout (features.torch_transforms.paper_inputs_torch)."""
        from ..features.torch_transforms import paper_inputs_torch

        return paper_inputs_torch(raw)

    def _build_module(self, n_in: int, n_out: int) -> nn.Module:
        return PaperNet(n_in, n_out)

    def _train_config(self, seed: int) -> TrainConfig:
        return TrainConfig(epochs=int(self.epochs), batch_size=int(self.batch_size), lr=float(self.lr),
                           adam_eps=1e-7, seed=seed, device=self.device, progress=bool(self.progress))

    def _on_epoch_end(self, seed_index: int):
        request = getattr(self, "_snapshot_request", None)
        if request is None:
            return None
        inputs, at, store, is_control = request

        def snapshot(epoch: int, module: nn.Module) -> None:
            if epoch in at:
                proba = sigmoid(predict_logits(module, inputs, self.device)[:, : self.n_targets_])
                proba[is_control] = 0.0
                store[epoch] = store.get(epoch, 0.0) + proba / self.n_seeds

        return snapshot

    def fit_snapshots(self, X: pd.DataFrame, Y: np.ndarray, X_val: pd.DataFrame,
                      at_epochs: Sequence[int]) -> tuple["PaperNN", dict[int, np.ndarray]]:
        """Fit a copy to max(at_epochs) epochs, returning it and the X_val probabilities after each listed epoch.

        With no learning-rate schedule, the snapshot at epoch e equals training for e epochs from the same
        seed, so one run gives the whole epochs table.
        """
        at = sorted({int(e) for e in at_epochs})
        est = clone(self).set_params(epochs=at[-1])
        store: dict[int, np.ndarray] = {}
        est.n_targets_ = np.asarray(Y).shape[1]
        est._snapshot_request = (paper_inputs(X_val), set(at), store, control_mask(X_val))
        try:
            est.fit(X, Y)
        finally:
            del est._snapshot_request
        return est, {e: store[e].astype(np.float32) for e in at}
