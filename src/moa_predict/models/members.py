"""Every model that can be a blend member, by name, and ``make_member`` to build one.

The networks are presets of ``network.NetworkModel``: a subclass naming the preset and holding its
default settings, nothing else (no copied hyper-parameters).

* ``mlp``: our tuned MLP (aux head, label smoothing, weight norm, BatchNorm, dropout, OneCycle).
* ``recipe-mlp``: a faithful single MLP of the best-known public recipe (RankGauss, PCA of 600 gene and
  50 cell components appended, VarianceThreshold(0.8), 3 weight-normed layers of 1500 with
  BatchNorm/dropout 0.2/0.5, label smoothing 0.001, Adam with weight decay 1e-5, OneCycle to 1e-2,
  25 epochs, batch 128); kept as a reference row.
* ``resnet``: residual MLP (``resnet.ResNetMLP``); ``cnn1d``: the 2nd-place 1D-CNN (``cnn1d.CNN1DNet``);
  ``logreg``: per-target L2 logistic regression (``linear.LogisticNet``), a linear family for diversity.
* ``paper-nn``: the paper's small Keras net (published private-LB score 0.01706), trained on all rows as
  published (``paper_nn.PaperNet``: 875 raw inputs, Adam 1e-3 with Keras' epsilon, batch 100, 75 epochs).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from torch import nn

from ..data.profiles.dataset import control_mask
from ..features.transforms import MoAPreprocessor
from .base import MoAModel
from .knn import BRkNNa, BRkNNb, MLkNN, paper_inputs
from .network import PAPER_INPUTS, NetworkModel
from .prior import PriorModel
from .reference_knn import ReferenceKNNModel
from .training import TrainConfig, predict_logits, sigmoid

_ONECYCLE = {"lr": 1e-3, "weight_decay": 1e-5, "label_smoothing": 0.001, "schedule": "onecycle"}


def _rankgauss_pca(g_pca: int = 50, c_pca: int = 15) -> MoAPreprocessor:
    # seed 0, not the model's seed: networks that differ only in their seed share one preprocessing
    # (a blend transforms each new profile once per distinct preprocessing, not once per member)
    return MoAPreprocessor(n_quantiles=100, g_pca=g_pca, c_pca=c_pca, keep_raw=True, variance_threshold=0.8, seed=0)


class MLPModel(NetworkModel):
    """Our MLP: RankGauss + PCA inputs, aux head on the non-scored targets, label smoothing, OneCycle."""

    name = "mlp"
    preset = {"module": "mlp", "inputs": _rankgauss_pca(),
              "module_params": {"hidden": (1024, 1024), "dropout_in": 0.2, "dropout": 0.4, "weight_norm": True,
                                "activation": "relu", "aux_weight": 1.0},
              "train": TrainConfig(epochs=20, batch_size=256, max_lr=5e-3, **_ONECYCLE), "aux": True}


class RecipeMLPModel(NetworkModel):
    """The public recipe's MLP, as published (see the module docstring); one seed by default."""

    name = "recipe-mlp"
    preset = {"module": "mlp", "inputs": _rankgauss_pca(600, 50),
              "module_params": {"hidden": (1500, 1500), "dropout_in": 0.2, "dropout": 0.5, "weight_norm": True,
                                "activation": "relu"},
              "train": TrainConfig(epochs=25, batch_size=128, max_lr=1e-2, **_ONECYCLE), "aux": False}

    @classmethod
    def _legacy(cls, params: dict[str, Any]) -> dict[str, Any]:
        """``hidden=W`` (an int, as this model always took it): the recipe's two hidden layers of width W."""
        if isinstance(params.get("hidden"), (int, np.integer)):
            params["hidden"] = (int(params["hidden"]),) * 2
        return params


class ResNetModel(NetworkModel):
    """Residual MLP with aux head, label smoothing and OneCycle."""

    name = "resnet"
    preset = {"module": "resnet", "inputs": _rankgauss_pca(),
              "module_params": {"width": 512, "n_blocks": 2, "dropout_in": 0.2, "dropout": 0.3, "weight_norm": True,
                                "activation": "relu", "aux_weight": 1.0},
              "train": TrainConfig(epochs=20, batch_size=256, max_lr=5e-3, **_ONECYCLE), "aux": True}


class CNN1DModel(NetworkModel):
    """1D-CNN over learnt feature maps, aux head, label smoothing, OneCycle."""

    name = "cnn1d"
    preset = {"module": "cnn1d", "inputs": _rankgauss_pca(),
              "module_params": {"channels": 64, "length": 16, "conv_channels": 128, "dropout_in": 0.1,
                                "dropout": 0.1, "dropout_head": 0.2, "weight_norm": True, "aux_weight": 1.0},
              "train": TrainConfig(epochs=20, batch_size=256, max_lr=5e-3, **_ONECYCLE), "aux": True}


class LogisticModel(NetworkModel):
    """Per-target L2 logistic regression on RankGauss + PCA features (a linear family for diversity)."""

    name = "logreg"
    preset = {"module": "logistic", "inputs": _rankgauss_pca(), "module_params": {},
              "train": TrainConfig(epochs=15, batch_size=512, max_lr=1e-2, **{**_ONECYCLE, "weight_decay": 1e-3}),
              "aux": False}


class PaperNN(NetworkModel):
    """The paper's small Keras net, trained on all rows (controls included) as published."""

    name = "paper-nn"
    trains_on_controls = True
    needs_full_layout = True
    preset = {"module": "paper", "inputs": PAPER_INPUTS, "module_params": {"hidden": (128, 64), "dropout": 0.5},
              "train": TrainConfig(epochs=75, batch_size=100, lr=1e-3, adam_eps=1e-7), "aux": False}

    def _on_epoch_end(self, seed_index: int, device: str):
        request = getattr(self, "_snapshot_request", None)
        if request is None:
            return None
        inputs, at, store, is_control = request

        def snapshot(epoch: int, module: nn.Module) -> None:
            if epoch in at:
                proba = sigmoid(predict_logits(module, inputs, device)[:, : self.n_targets_])
                proba[is_control] = 0.0
                store[epoch] = store.get(epoch, 0.0) + proba / self.n_seeds

        return snapshot

    def fit_snapshots(self, X: pd.DataFrame, Y: np.ndarray, X_val: pd.DataFrame, at_epochs: Sequence[int], *,
                      device: str = "cpu") -> tuple["PaperNN", dict[int, np.ndarray]]:
        """Fit a copy to max(at_epochs) epochs, returning it and the X_val probabilities after each listed epoch.

        With no learning-rate schedule, the snapshot at epoch e equals training for e epochs from the same
        seed, so one run gives the whole epochs table.
        """
        at = sorted({int(e) for e in at_epochs})
        est = clone(self)
        est.set_params(train=dataclasses.replace(est._setting("train"), epochs=at[-1]))
        store: dict[int, np.ndarray] = {}
        est.n_targets_ = np.asarray(Y).shape[1]
        est._snapshot_request = (paper_inputs(X_val), set(at), store, control_mask(X_val))
        try:
            est.fit(X, Y, device=device)
        finally:
            del est._snapshot_request
        return est, {e: store[e].astype(np.float32) for e in at}


MEMBERS: dict[str, type[MoAModel]] = {cls.name: cls for cls in (
    PriorModel, BRkNNa, BRkNNb, MLkNN, PaperNN, MLPModel, RecipeMLPModel, ResNetModel, CNN1DModel, LogisticModel,
    ReferenceKNNModel)}
"""Every model but the blend, by name (``moa train --model NAME``, blend member specs)."""


def make_member(name: str, **params: Any) -> MoAModel:
    """A fresh, unfitted model by name, from hyper-parameters as the CLI / member specs / bundles give them."""
    if name not in MEMBERS:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(sorted(MEMBERS))}")
    return MEMBERS[name].from_params(**params)
