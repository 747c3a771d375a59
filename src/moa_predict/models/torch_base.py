"""Shared fit/predict/persist logic for every neural MoA model.

A subclass says how to turn the features frame into an input matrix
(``_fit_inputs`` / ``_inputs``, e.g. RankGauss + PCA, or the paper's raw features),
how to build the network (``_build_module``) and how to train it (``_train_config``);
this class handles several seeds (predictions averaged), the optional auxiliary
non-scored head, device placement and safetensors persistence.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..training.persist import load_module_state, module_state
from .base import MoAModel, State
from .training import TrainConfig, fit_network, predict_logits, seed_everything, sigmoid


class TorchMoAModel(MoAModel):
    """Base for networks. Subclass parameters must include ``n_seeds``, ``seed`` and ``device``."""

    n_seeds: int = 1
    seed: int = 0
    device: str = "cpu"

    # -- subclass hooks ----------------------------------------------------------------
    def _fit_inputs(self, X: pd.DataFrame) -> np.ndarray:
        """Fit any preprocessing on the training rows and return their input matrix."""
        return self._inputs(X)

    def _inputs(self, X: pd.DataFrame) -> np.ndarray:
        raise NotImplementedError

    def _build_module(self, n_in: int, n_out: int) -> nn.Module:
        raise NotImplementedError

    def _train_config(self, seed: int) -> TrainConfig:
        raise NotImplementedError

    def _preprocess_state(self) -> State:
        return {}, {}

    def _set_preprocess_state(self, settings: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        pass

    def _on_epoch_end(self, seed_index: int):
        """Optional per-epoch hook ``(epoch, module) -> None`` for seed number `seed_index` (None: no hook)."""
        return None

    def _fit_targets(self, Y: np.ndarray, Y_aux: np.ndarray | None) -> np.ndarray:
        """Training targets: the scored ones, then the non-scored ones when the model uses them."""
        if Y_aux is not None and self.uses_aux_targets:
            return np.hstack([Y, Y_aux])
        return Y

    def _torch_inputs(self, raw: torch.Tensor) -> torch.Tensor:
        """Differentiable mirror of ``_inputs`` on the raw attribution layout (see features.torch_transforms):
        (n, 872 features + 5 one-hot dose/time) → the network's input. Implementing it enables attributions.
        The default mirrors a fitted ``MoAPreprocessor`` held as an attribute (our RankGauss/PCA networks)."""
        mirror = getattr(self, "_attr_mirror", None)
        pre = self._fitted_preprocessor()
        if pre is None:
            raise NotImplementedError(self._no_attributions())
        if mirror is None or mirror[0] is not pre:
            from ..features.torch_transforms import TorchMoAPreprocessor

            mirror = self._attr_mirror = (pre, TorchMoAPreprocessor(pre))
        return mirror[1](raw)

    def _fitted_preprocessor(self) -> Any:
        from ..features.transforms import MoAPreprocessor

        found = [v for k, v in vars(self).items() if k.endswith("_") and isinstance(v, MoAPreprocessor)]
        return found[0] if len(found) == 1 and hasattr(found[0], "n_features_out_") else None

    @property
    def supports_attributions(self) -> bool:
        if not hasattr(self, "modules_"):
            return False
        return type(self)._torch_inputs is not TorchMoAModel._torch_inputs or self._fitted_preprocessor() is not None

    def attribution_forward(self, raw: torch.Tensor) -> torch.Tensor:
        """Mean over seeds of the sigmoid of the scored logits, as ``predict_proba`` computes them."""
        if not self.supports_attributions:
            raise NotImplementedError(self._no_attributions())
        inputs = self._torch_inputs(raw)
        out = 0.0
        for module in self.modules_:
            module.cpu().eval()
            out = out + torch.sigmoid(module(inputs)[:, : self.n_targets_])
        return out / len(self.modules_)

    # -- MoAModel ----------------------------------------------------------------------
    def _fit(self, X: pd.DataFrame, Y: np.ndarray, Y_aux: np.ndarray | None) -> None:
        inputs = self._fit_inputs(X)
        targets = self._fit_targets(Y, Y_aux)
        self.n_inputs_ = inputs.shape[1]
        self.n_outputs_ = targets.shape[1]
        self.modules_ = []
        self.history_ = []
        for s in range(self.n_seeds):
            cfg = self._train_config(self.seed + s)
            seed_everything(cfg.seed)  # the weight initialisation is seeded too
            module = self._build_module(self.n_inputs_, self.n_outputs_)
            self.history_.append(fit_network(module, inputs, targets, cfg, on_epoch_end=self._on_epoch_end(s)))
            self.modules_.append(module.cpu())

    def _predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return self.proba_from_inputs(self._inputs(X))

    def proba_from_inputs(self, inputs: np.ndarray) -> np.ndarray:
        """Probabilities from an input matrix already built by ``_inputs`` (a blend shares one matrix
        between members with identical preprocessing). Control rows are not zeroed here."""
        proba = np.zeros((len(inputs), self.n_targets_), dtype=np.float32)
        for module in self.modules_:
            proba += sigmoid(predict_logits(module, inputs, self.device)[:, : self.n_targets_])
        if self.device != "cpu":
            for module in self.modules_:
                module.cpu()
        return proba / len(self.modules_)

    def _get_state(self) -> State:
        settings, arrays = self._preprocess_state()
        for i, module in enumerate(self.modules_):
            arrays.update(module_state(module, f"net{i}."))
        return {"n_inputs_": self.n_inputs_, "n_outputs_": self.n_outputs_, "n_modules": len(self.modules_),
                "preprocess": settings}, arrays

    def _set_state(self, settings: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.n_inputs_ = int(settings["n_inputs_"])
        self.n_outputs_ = int(settings["n_outputs_"])
        self._set_preprocess_state(settings["preprocess"], arrays)
        self.modules_ = []
        for i in range(int(settings["n_modules"])):
            module = self._build_module(self.n_inputs_, self.n_outputs_)
            load_module_state(module, arrays, f"net{i}.")
            self.modules_.append(module.eval())
