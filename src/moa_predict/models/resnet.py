"""A residual MLP on RankGauss + PCA features (the ResNet-style tabular net of the top solutions).

An input projection, then ``n_blocks`` residual blocks ``h + f(h)`` with
``f = BN → Dropout → Linear → act → BN → Dropout → Linear``, then the heads (aux head in training).
Skip connections let a deeper net train as easily as a shallow one and change the inductive bias
enough to blend well with the plain MLP.
"""

from __future__ import annotations

import torch
from torch import nn

from .mlp import ACTIVATIONS, Dropout, Heads, linear


class ResidualBlock(nn.Module):
    def __init__(self, width: int, dropout: float, weight_norm: bool, activation: str) -> None:
        super().__init__()
        self.f = nn.Sequential(nn.BatchNorm1d(width), Dropout(dropout), linear(width, width, weight_norm),
                               ACTIVATIONS[activation](), nn.BatchNorm1d(width), Dropout(dropout),
                               linear(width, width, weight_norm))
        self.act = ACTIVATIONS[activation]()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.act(h + self.f(h))


class ResNetMLP(nn.Module):
    def __init__(self, n_in: int, n_out: int, n_scored: int, width: int = 512, n_blocks: int = 2,
                 dropout_in: float = 0.2, dropout: float = 0.3, weight_norm: bool = True,
                 activation: str = "relu", aux_weight: float = 1.0) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.BatchNorm1d(n_in), Dropout(dropout_in), linear(n_in, width, weight_norm),
                                  ACTIVATIONS[activation]())
        self.blocks = nn.Sequential(*[ResidualBlock(width, dropout, weight_norm, activation)
                                      for _ in range(n_blocks)])
        self.out = nn.Sequential(nn.BatchNorm1d(width), Dropout(dropout))
        self.heads = Heads(width, n_out, n_scored, weight_norm, aux_weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.heads(self.out(self.blocks(self.stem(x))))
