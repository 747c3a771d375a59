"""The multi-layer perceptron module and the layers our networks share (dropout, heads, weight norm).

Networks output the 206 scored logits first; with aux outputs they also learn the 402 non-scored
targets through a second head, used only in training (at prediction time the aux head is skipped,
so it costs nothing). The estimators that train these modules are ``network.NetworkModel`` presets
(``members``: ``mlp``, ``recipe-mlp``).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm as _weight_norm

ACTIVATIONS = {"relu": nn.ReLU, "silu": nn.SiLU, "elu": nn.ELU, "leaky_relu": nn.LeakyReLU, "gelu": nn.GELU}


class Dropout(nn.Module):
    """Inverted dropout whose masks come from torch's CPU generator whatever the device.

    ``nn.Dropout`` draws on the CUDA generator on a GPU, so a seeded run would give other
    networks on ``--device cuda`` than on the CPU; drawing the mask on the CPU (seeded by
    the training loop) keeps both devices on the same path, up to float rounding.
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p <= 0.0:
            return x
        keep = torch.empty(x.shape, dtype=x.dtype).bernoulli_(1.0 - self.p)
        return x * keep.to(x.device, non_blocking=True).div_(1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad * ctx.scale, None


def linear(n_in: int, n_out: int, weight_norm: bool = True, bias: bool = True) -> nn.Module:
    layer = nn.Linear(n_in, n_out, bias=bias)
    return _weight_norm(layer) if weight_norm else layer


class Heads(nn.Module):
    """The scored head (always) and the non-scored head (training only, when there are aux outputs).

    ``aux_weight`` scales the gradient that the non-scored targets send into the shared body
    (Adam makes the aux head's own updates independent of that scale): 402 rare aux columns
    would otherwise outweigh the 206 scored ones in the mean loss.
    """

    def __init__(self, n_hidden: int, n_out: int, n_scored: int, weight_norm: bool = True,
                 aux_weight: float = 1.0) -> None:
        super().__init__()
        self.head = linear(n_hidden, n_scored, weight_norm)
        self.aux = linear(n_hidden, n_out - n_scored, weight_norm) if n_out > n_scored else None
        self.aux_weight = float(aux_weight)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        out = self.head(h)
        if self.aux is not None and self.training:
            h_aux = _ScaleGrad.apply(h, self.aux_weight) if self.aux_weight != 1.0 else h
            out = torch.cat([out, self.aux(h_aux)], dim=1)
        return out


class MLPNet(nn.Module):
    """[BatchNorm → Dropout → Linear (weight norm) → activation] per hidden layer, then the heads."""

    def __init__(self, n_in: int, n_out: int, n_scored: int, hidden: tuple[int, ...] = (1500, 1500),
                 dropout_in: float = 0.2, dropout: float = 0.5, weight_norm: bool = True,
                 activation: str = "relu", aux_weight: float = 1.0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev, drop = n_in, dropout_in
        for width in hidden:
            layers += [nn.BatchNorm1d(prev), Dropout(drop), linear(prev, width, weight_norm), ACTIVATIONS[activation]()]
            prev, drop = width, dropout
        layers += [nn.BatchNorm1d(prev), Dropout(drop)]
        self.body = nn.Sequential(*layers)
        self.heads = Heads(prev, n_out, n_scored, weight_norm, aux_weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.heads(self.body(x))
