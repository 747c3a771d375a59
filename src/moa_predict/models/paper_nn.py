"""The paper's Keras network, in PyTorch (trained as published by the ``paper-nn`` preset, ``members``).

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

from torch import nn


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
