"""Multi-layer perceptrons on RankGauss + PCA features, and the shared base of our networks.

``PreprocessedNet`` is the base of every network of ours (MLP, ResNet, 1D-CNN, logistic): it fits a
``features.transforms.MoAPreprocessor`` on the training rows inside ``fit`` (so a CV fold never
sees its validation rows), persists it without pickle, and trains through the one torch loop
(``training.fit_network``) with the settings of ``_train_config``.

Networks output the 206 scored logits first; models with ``aux=True`` also learn the 402
non-scored targets through a second head, used only in training (at prediction time the aux
head is skipped, so it costs nothing).

* ``mlp``: our tuned MLP (aux head, label smoothing, weight norm, BatchNorm, dropout).
* ``recipe-mlp``: a faithful single MLP of the best-known public recipe (RankGauss, PCA of 600 gene and
  50 cell components appended, VarianceThreshold(0.8), 3 weight-normed layers of 1500 with
  BatchNorm/dropout 0.2/0.5, label smoothing 0.001, Adam with weight decay 1e-5, OneCycle to 1e-2,
  25 epochs, batch 128); kept as a reference row.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm as _weight_norm

from ..features.transforms import MoAPreprocessor
from .base import State, register
from .torch_base import TorchMoAModel
from .training import TrainConfig

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


class PreprocessedNet(TorchMoAModel):
    """Base for our networks: in-fold preprocessing, aux targets, one training config per seed.

    Subclasses define ``__init__`` (every hyper-parameter stored unchanged) and ``_build_module``.
    Expected attributes: the preprocessing ones (``g_pca``, ``c_pca``, ``variance_threshold``,
    ``keep_raw``), the training ones (``epochs``, ``batch_size``, ``lr``, ``max_lr``, ``weight_decay``,
    ``label_smoothing``, ``schedule``, ``optimizer``) and ``aux``, ``n_seeds``, ``seed``, ``device``.
    """

    uses_aux_targets = True  # receives Y_aux; the `aux` parameter decides whether it is learnt
    keep_raw: bool = True
    optimizer: str = "adam"
    n_quantiles: int = 100

    def _fit(self, X: pd.DataFrame, Y: np.ndarray, Y_aux: np.ndarray | None) -> None:
        # the networks' initial weights come from torch's global generator: seed it here, so a fit
        # depends on this model's seed only (not on what ran before in the process)
        torch.manual_seed(self.seed)
        super()._fit(X, Y, Y_aux)

    def _make_preprocessor(self) -> MoAPreprocessor:
        # seed 0, not the model's seed: networks that differ only in their seed share one preprocessing
        # (a blend transforms each new profile once per distinct preprocessing, not once per member)
        return MoAPreprocessor(n_quantiles=self.n_quantiles, g_pca=self.g_pca, c_pca=self.c_pca,
                               keep_raw=self.keep_raw, variance_threshold=self.variance_threshold, seed=0)

    def _fit_inputs(self, X: pd.DataFrame) -> np.ndarray:
        self.preprocessor_ = self._make_preprocessor()
        return self.preprocessor_.fit_transform(X)

    def _inputs(self, X: pd.DataFrame) -> np.ndarray:
        return self.preprocessor_.transform(X)

    def _fit_targets(self, Y: np.ndarray, Y_aux: np.ndarray | None) -> np.ndarray:
        if self.aux and Y_aux is not None:
            return np.hstack([Y, Y_aux]).astype(np.float32)
        return Y

    def _train_config(self, seed: int) -> TrainConfig:
        if str(self.device).startswith("cuda"):
            # TF32 would make GPU results differ from the CPU's by more than float rounding
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, max_lr=self.max_lr,
                           weight_decay=self.weight_decay, optimizer=self.optimizer, schedule=self.schedule,
                           label_smoothing=self.label_smoothing, seed=seed, device=self.device)

    def _preprocess_state(self) -> State:
        return self.preprocessor_.get_state("pre.")

    def _set_preprocess_state(self, settings: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.preprocessor_ = self._make_preprocessor().set_state(settings, arrays)

    def _n_scored(self) -> int:
        return int(self.n_targets_)


@register("mlp")
class MLPModel(PreprocessedNet):
    """Our MLP: RankGauss + PCA inputs, aux head on the non-scored targets, label smoothing, OneCycle."""

    def __init__(self, hidden: tuple[int, ...] | list[int] = (1024, 1024), dropout_in: float = 0.2,
                 dropout: float = 0.4, weight_norm: bool = True, activation: str = "relu",
                 g_pca: int = 50, c_pca: int = 15, variance_threshold: float | None = 0.8,
                 epochs: int = 20, batch_size: int = 256, lr: float = 1e-3, max_lr: float = 5e-3,
                 weight_decay: float = 1e-5, label_smoothing: float = 0.001, schedule: str = "onecycle",
                 aux: bool = True, aux_weight: float = 1.0, keep_raw: bool = True, n_seeds: int = 1, seed: int = 0,
                 device: str = "cpu") -> None:
        self.hidden = hidden
        self.dropout_in = dropout_in
        self.dropout = dropout
        self.weight_norm = weight_norm
        self.activation = activation
        self.g_pca = g_pca
        self.c_pca = c_pca
        self.variance_threshold = variance_threshold
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.max_lr = max_lr
        self.weight_decay = weight_decay
        self.label_smoothing = label_smoothing
        self.schedule = schedule
        self.aux = aux
        self.aux_weight = aux_weight
        self.keep_raw = keep_raw
        self.n_seeds = n_seeds
        self.seed = seed
        self.device = device

    def _build_module(self, n_in: int, n_out: int) -> nn.Module:
        return MLPNet(n_in, n_out, self._n_scored(), tuple(self.hidden), self.dropout_in, self.dropout,
                      self.weight_norm, self.activation, self.aux_weight)


@register("recipe-mlp")
class RecipeMLPModel(PreprocessedNet):
    """The public recipe's MLP, as published (see the module docstring); one seed by default."""

    uses_aux_targets = False

    def __init__(self, hidden: int = 1500, g_pca: int = 600, c_pca: int = 50, variance_threshold: float = 0.8,
                 epochs: int = 25, batch_size: int = 128, lr: float = 1e-3, max_lr: float = 1e-2,
                 weight_decay: float = 1e-5, label_smoothing: float = 0.001, n_seeds: int = 1, seed: int = 0,
                 device: str = "cpu") -> None:
        self.hidden = hidden
        self.g_pca = g_pca
        self.c_pca = c_pca
        self.variance_threshold = variance_threshold
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.max_lr = max_lr
        self.weight_decay = weight_decay
        self.label_smoothing = label_smoothing
        self.n_seeds = n_seeds
        self.seed = seed
        self.device = device

    schedule = "onecycle"
    aux = False

    def _build_module(self, n_in: int, n_out: int) -> nn.Module:
        return MLPNet(n_in, n_out, self._n_scored(), (self.hidden, self.hidden), 0.2, 0.5, True, "relu")
