"""A residual MLP on RankGauss + PCA features (the ResNet-style tabular net of the top solutions).

An input projection, then ``n_blocks`` residual blocks ``h + f(h)`` with
``f = BN → Dropout → Linear → act → BN → Dropout → Linear``, then the heads (aux head in training).
Skip connections let a deeper net train as easily as a shallow one and change the inductive bias
enough to blend well with the plain MLP.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import register
from .mlp import ACTIVATIONS, Dropout, Heads, PreprocessedNet, linear


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


@register("resnet")
class ResNetModel(PreprocessedNet):
    """Residual MLP with aux head, label smoothing and OneCycle."""

    def __init__(self, width: int = 512, n_blocks: int = 2, dropout_in: float = 0.2, dropout: float = 0.3,
                 weight_norm: bool = True, activation: str = "relu", g_pca: int = 50, c_pca: int = 15,
                 variance_threshold: float | None = 0.8, keep_raw: bool = True, epochs: int = 20,
                 batch_size: int = 256, lr: float = 1e-3,
                 max_lr: float = 5e-3, weight_decay: float = 1e-5, label_smoothing: float = 0.001,
                 schedule: str = "onecycle", aux: bool = True, aux_weight: float = 1.0, n_seeds: int = 1,
                 seed: int = 0, device: str = "cpu") -> None:
        self.width = width
        self.n_blocks = n_blocks
        self.dropout_in = dropout_in
        self.dropout = dropout
        self.weight_norm = weight_norm
        self.activation = activation
        self.g_pca = g_pca
        self.c_pca = c_pca
        self.variance_threshold = variance_threshold
        self.keep_raw = keep_raw
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.max_lr = max_lr
        self.weight_decay = weight_decay
        self.label_smoothing = label_smoothing
        self.schedule = schedule
        self.aux = aux
        self.aux_weight = aux_weight
        self.n_seeds = n_seeds
        self.seed = seed
        self.device = device

    def _build_module(self, n_in: int, n_out: int) -> nn.Module:
        return ResNetMLP(n_in, n_out, self._n_scored(), self.width, self.n_blocks, self.dropout_in, self.dropout,
                         self.weight_norm, self.activation, self.aux_weight)
