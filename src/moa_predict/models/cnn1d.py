"""The 2nd-place 1D-CNN (best single model of the competition), scaled to run on a CPU.

Tabular features have no order, so the net first *learns* one: a dense layer maps the inputs to
``channels × length`` values, reshaped into a 1-D "signal"; conv1d blocks then share weights
along it (BatchNorm/dropout before each conv, weight norm), a gated skip (the block's input times
its output), pooling, flatten, and a dense head. The original used 256 channels × 16 positions
(a 4096-wide dense layer) and 512-channel convolutions; the defaults here keep the layout with
fewer channels so a fold trains in a minute or two on 2 CPU cores.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm as _weight_norm

from .mlp import Dropout, Heads, linear


def conv(c_in: int, c_out: int, k: int, bias: bool = True, weight_norm: bool = True) -> nn.Module:
    layer = nn.Conv1d(c_in, c_out, kernel_size=k, padding=k // 2, bias=bias)
    return _weight_norm(layer) if weight_norm else layer


class CNN1DNet(nn.Module):
    def __init__(self, n_in: int, n_out: int, n_scored: int, channels: int = 64, length: int = 16,
                 conv_channels: int = 128, dropout_in: float = 0.1, dropout: float = 0.1, dropout_head: float = 0.2,
                 weight_norm: bool = True, celu_alpha: float = 0.06, aux_weight: float = 1.0) -> None:
        super().__init__()
        if length % 4:
            raise ValueError(f"length must be a multiple of 4, got {length}")
        self.channels, self.length = channels, length
        c2 = conv_channels
        self.dense = nn.Sequential(nn.BatchNorm1d(n_in), Dropout(dropout_in),
                                   linear(n_in, channels * length, weight_norm), nn.CELU(alpha=celu_alpha))
        self.conv1 = nn.Sequential(nn.BatchNorm1d(channels), Dropout(dropout),
                                   conv(channels, c2, 5, bias=False, weight_norm=weight_norm), nn.ReLU(),
                                   nn.AdaptiveAvgPool1d(length // 2))
        self.conv2 = nn.Sequential(nn.BatchNorm1d(c2), Dropout(dropout), conv(c2, c2, 3, weight_norm=weight_norm),
                                   nn.ReLU())
        self.conv3 = nn.Sequential(nn.BatchNorm1d(c2), Dropout(dropout * 3), conv(c2, c2, 3, weight_norm=weight_norm),
                                   nn.ReLU(), nn.BatchNorm1d(c2), Dropout(dropout * 2),
                                   conv(c2, c2, 5, weight_norm=weight_norm), nn.ReLU())
        self.pool = nn.MaxPool1d(kernel_size=4, stride=2, padding=1)
        n_flat = c2 * (length // 4)
        self.out = nn.Sequential(nn.Flatten(), nn.BatchNorm1d(n_flat), Dropout(dropout_head))
        self.heads = Heads(n_flat, n_out, n_scored, weight_norm, aux_weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dense(x).reshape(len(x), self.channels, self.length)
        h = self.conv2(self.conv1(h))
        h = self.conv3(h) * h  # the gated skip of the original
        return self.heads(self.out(self.pool(h)))
