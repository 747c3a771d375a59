"""One estimator for every neural MoA model: inputs, architecture and training as hyper-parameters.

``NetworkModel`` fits its input preprocessing on the training rows inside ``fit`` (so a CV fold never
sees its validation rows), builds the architecture named by ``module`` with ``module_params``, trains
it ``n_seeds`` times through the one torch loop (``training.train_network``, seeded by ``seed + i``)
and averages the seeds' probabilities. Persistence is safetensors + JSON, never pickle.

The registered network names (``mlp``, ``recipe-mlp``, ``resnet``, ``cnn1d``, ``logreg``, ``paper-nn``)
are presets of this one class (``members``): a thin subclass holding a name and default settings.
``from_params`` accepts those settings nested (``train=TrainConfig(...)``, ``train__epochs=5``) or flat
(``epochs=5``, ``hidden=[64, 64]``), as the CLI, blend member specs and older bundles give them.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import fields
from typing import Any, Callable, ClassVar

import numpy as np
import pandas as pd
import torch
from sklearn.base import clone
from torch import nn

from ..features.torch_transforms import (TorchMoAPreprocessor, is_generic, paper_inputs_torch, raw_inputs,
                                         raw_names)
from ..features.transforms import MoAPreprocessor
from ..data.formats.persist import load_module_state, module_state
from .base import MoAModel, State, gene_only_no_attributions
from .cnn1d import CNN1DNet
from .knn import paper_inputs
from .linear import LogisticNet, prevalence_logit
from .mlp import MLPNet
from .paper_nn import PaperNet
from .resnet import ResNetMLP
from .training import TrainConfig, predict_logits, sigmoid, softmax, train_network

ARCHITECTURES: dict[str, type[nn.Module]] = {
    "mlp": MLPNet, "resnet": ResNetMLP, "cnn1d": CNN1DNet, "logistic": LogisticNet, "paper": PaperNet,
}
"""``module`` names → torch modules, each built as ``net(n_in, n_out, **module_params)``."""
DATA_KWARGS = ("n_scored", "prior_logit")
"""Module arguments that come from the data, not from ``module_params``: the number of scored targets and
the targets' prevalence logits (for the nets whose signature takes them)."""
PAPER_INPUTS = "paper"
"""``inputs`` value for the paper's 875 raw, unscaled inputs (``knn.paper_inputs``)."""
_NESTED = ("module", "module_params", "inputs", "train", "aux", "n_seeds", "seed")


def module_kwargs(module: str) -> list[str]:
    """The hyper-parameters of architecture `module` (its constructor's arguments, less the data's)."""
    if module not in ARCHITECTURES:
        raise KeyError(f"unknown network module {module!r}; available: {', '.join(ARCHITECTURES)}")
    sig = inspect.signature(ARCHITECTURES[module])
    return [p for p in list(sig.parameters)[2:] if p not in DATA_KWARGS]


class NetworkModel(MoAModel):
    """A torch network on preprocessed profiles, several seeds averaged.

    Parameters (None: the preset's value, ``preset``)
    ----------
    module: architecture name (``ARCHITECTURES``).
    module_params: the architecture's keyword arguments (``module_kwargs(module)``).
    inputs: an unfitted ``features.transforms.MoAPreprocessor`` (RankGauss/PCA/variance threshold/keep_raw,
        fit in ``fit``), or ``"paper"`` for the paper's raw inputs.
    train: ``training.TrainConfig``: epochs, batch size, optimiser, schedule, label smoothing...
    aux: learn the non-scored targets too (a training-only head; the module must support it).
    n_seeds: networks trained, seeds ``seed .. seed + n_seeds - 1``, probabilities averaged.
    seed: seeds each network's weights, dropout masks and data order (and nothing else).

    The device is not a hyper-parameter: ``fit(..., device=)`` / ``predict_proba(..., device=)``.
    """

    name: ClassVar[str] = "network"
    uses_aux_targets = True  # receives Y_aux; the `aux` parameter decides whether it is learnt
    uses_device = True
    preset: ClassVar[dict[str, Any]] = {}
    """Default settings of a registered name, used for parameters left None."""
    _DEFAULTS: ClassVar[dict[str, Callable[[], Any]]] = {
        "module": lambda: "mlp", "module_params": dict, "inputs": MoAPreprocessor, "train": TrainConfig,
        "aux": lambda: False}

    def __init__(self, module: str | None = None, module_params: dict[str, Any] | None = None,
                 inputs: MoAPreprocessor | str | None = None, train: TrainConfig | None = None,
                 aux: bool | None = None, n_seeds: int = 1, seed: int = 0) -> None:
        self.module = module
        self.module_params = module_params
        self.inputs = inputs
        self.train = train
        self.aux = aux
        self.n_seeds = n_seeds
        self.seed = seed

    # -- construction from the CLI / member specs / bundles -----------------------------
    @classmethod
    def from_params(cls, **params: Any) -> "NetworkModel":
        """The preset with `params` applied: nested (``train=``, ``train__epochs=``; dicts as JSON gives them)
        or flat (``epochs=``, ``g_pca=``, ``hidden=``: each goes to train, inputs or module_params)."""
        spec = {k: copy.deepcopy(v) for k, v in cls.preset.items()}
        for key in ("module", "module_params", "inputs", "train", "aux"):
            spec.setdefault(key, cls._DEFAULTS[key]())
        params = cls._legacy(dict(params))
        for key in _NESTED:  # the nested form first, so that flat keys refine it
            if key in params:
                spec[key] = _coerce(key, copy.deepcopy(params.pop(key)))
        nested = {k: params.pop(k) for k in [k for k in params if "__" in k]}
        train_keys = {f.name for f in fields(TrainConfig)}
        net_keys = module_kwargs(spec["module"])
        spec["module_params"] = dict(spec["module_params"] or {})
        for key, value in params.items():
            if key in train_keys:
                spec["train"].set_params(**{key: value})
            elif isinstance(spec["inputs"], MoAPreprocessor) and key in spec["inputs"].get_params():
                spec["inputs"].set_params(**{key: value})
            elif key in net_keys:
                spec["module_params"][key] = value
            elif key == "device":
                raise TypeError("the device is not a hyper-parameter: give it to fit / predict_proba "
                                "(moa train --device)")
            else:
                known = sorted(set(_NESTED) | train_keys | set(net_keys)
                               | set(spec["inputs"].get_params() if isinstance(spec["inputs"], MoAPreprocessor)
                                     else ()))
                raise TypeError(f"model {cls.name!r} has no parameter {key!r}; known: {', '.join(known)}")
        return cls(**spec).set_params(**nested)

    @classmethod
    def _legacy(cls, params: dict[str, Any]) -> dict[str, Any]:
        """Hook: translate a preset's historical flat parameters (see RecipeMLPModel)."""
        return params

    def _setting(self, key: str) -> Any:
        value = getattr(self, key)
        if value is None:
            value = copy.deepcopy(self.preset[key]) if key in self.preset else self._DEFAULTS[key]()
        return value

    # -- inputs and module ---------------------------------------------------------------
    def _fit_inputs(self, X: pd.DataFrame) -> np.ndarray:
        inputs = self._setting("inputs")
        if inputs == PAPER_INPUTS:
            return paper_inputs(X)
        self.preprocessor_ = clone(inputs)
        return self.preprocessor_.fit_transform(X, inputs=self.inputs_)

    def _inputs(self, X: pd.DataFrame) -> np.ndarray:
        pre = getattr(self, "preprocessor_", None)
        return paper_inputs(X) if pre is None else pre.transform(X)

    def _fit_targets(self, Y: np.ndarray, Y_aux: np.ndarray | None) -> np.ndarray:
        if self._setting("aux") and Y_aux is not None:
            return np.hstack([Y, Y_aux]).astype(np.float32)
        return Y

    def _build_module(self, targets: np.ndarray | None = None) -> nn.Module:
        module = self._setting("module")
        net = ARCHITECTURES[module]
        accepted = inspect.signature(net).parameters
        data = {"n_scored": int(self.n_targets_),
                "prior_logit": None if targets is None else prevalence_logit(targets)}
        kwargs = {k: v for k, v in data.items() if k in accepted}
        return net(self.n_inputs_, self.n_outputs_, **kwargs, **self._setting("module_params"))

    # -- MoAModel ------------------------------------------------------------------------
    def _fit(self, X: pd.DataFrame, Y: np.ndarray, Y_aux: np.ndarray | None, device: str = "cpu") -> None:
        inputs = self._fit_inputs(X)
        targets = self._fit_targets(Y, Y_aux)
        self.n_inputs_ = inputs.shape[1]
        self.n_outputs_ = targets.shape[1]
        cfg = self._setting("train")
        self.modules_, self.history_ = [], []
        for s in range(self.n_seeds):
            module, history = train_network(lambda: self._build_module(targets), inputs, targets, cfg,
                                            seed=self.seed + s, device=device, softmax=self.single_label_,
                                            on_epoch_end=self._on_epoch_end(s, device))
            self.modules_.append(module)
            self.history_.append(history)

    def _on_epoch_end(self, seed_index: int, device: str) -> Callable[[int, nn.Module], None] | None:
        """Optional per-epoch hook ``(epoch, module) -> None`` for seed number `seed_index` (None: no hook)."""
        return None

    def _predict_proba(self, X: pd.DataFrame, device: str = "cpu") -> np.ndarray:
        return self.proba_from_inputs(self._inputs(X), device=device)

    def proba_from_inputs(self, inputs: np.ndarray, *, device: str = "cpu") -> np.ndarray:
        """Probabilities from an input matrix already built by ``_inputs`` (a blend shares one matrix
        between members with identical preprocessing). Control rows are not zeroed here."""
        proba = np.zeros((len(inputs), self.n_targets_), dtype=np.float32)
        link = softmax if self.single_label_ else sigmoid
        for module in self.modules_:
            proba += link(predict_logits(module, inputs, device)[:, : self.n_targets_])
        return proba / len(self.modules_)

    # -- attributions --------------------------------------------------------------------
    @property
    def supports_attributions(self) -> bool:
        """Fitted, on the full LISH-MoA layout (the torch mirrors of the raw attribution layout cover the 872
        features) or on another layout (its feature columns and meta inputs: ``features.torch_transforms``); a
        LISH-MoA gene-only model explains through similar references only."""
        pre = getattr(self, "preprocessor_", None)
        return hasattr(self, "modules_") and (pre is None or pre.full_layout or is_generic(pre))

    def attribution_inputs(self, X: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
        """The raw attribution layout of X and its names; on another layout than LISH-MoA: the layout's feature
        columns (bundle order), then its meta inputs (``features.torch_transforms.raw_inputs``)."""
        pre = getattr(self, "preprocessor_", None)
        if self.supports_attributions and is_generic(pre):
            return raw_inputs(X, pre=pre), raw_names(pre=pre)
        return super().attribution_inputs(X)

    @property
    def gene_block_only(self) -> bool:
        """Fitted on LISH-MoA's gene block alone (the gene-only companion of a bundle, for CMap signatures)."""
        pre = getattr(self, "preprocessor_", None)
        return hasattr(self, "modules_") and pre is not None and not pre.full_layout and not is_generic(pre)

    def _no_attributions(self) -> str:
        return gene_only_no_attributions(self.name) if self.gene_block_only else super()._no_attributions()

    def _torch_mirror(self) -> TorchMoAPreprocessor | None:
        """Differentiable mirror of the fitted preprocessing (features.torch_transforms), built once."""
        pre = getattr(self, "preprocessor_", None)
        if pre is None:
            return None
        mirror = getattr(self, "_attr_mirror", None)
        if mirror is None or mirror[0] is not pre:
            mirror = self._attr_mirror = (pre, TorchMoAPreprocessor(pre))
        return mirror[1]

    def attribution_split(self) -> tuple[nn.Module | None, Callable[[torch.Tensor], torch.Tensor]]:
        """(columnwise, head) with ``attribution_forward(raw) == head(columnwise(raw))``: ``columnwise`` is the
        per-column RankGauss of the raw layout (None: identity, e.g. the paper's raw inputs), ``head`` the
        differentiable rest. Integrated gradients walks a straight line in the columnwise space
        (explain.attributions), so attributions stay per raw column and RankGauss's jumps are not missed."""
        if not self.supports_attributions:
            raise NotImplementedError(self._no_attributions())
        mirror = self._torch_mirror()

        def head(u: torch.Tensor) -> torch.Tensor:
            """Mean over seeds of the sigmoid of the scored logits, as ``predict_proba`` computes them."""
            inputs = paper_inputs_torch(u) if mirror is None else mirror.after_columnwise(u)
            out = 0.0
            for module in self.modules_:
                module.cpu().eval()
                logits = module(inputs)[:, : self.n_targets_]
                out = out + (torch.softmax(logits, dim=1) if self.single_label_ else torch.sigmoid(logits))
            return out / len(self.modules_)

        return (None if mirror is None else mirror.columnwise), head

    def attribution_forward(self, raw: torch.Tensor) -> torch.Tensor:
        """raw layout → probabilities, as ``predict_proba`` computes them (``attribution_split`` composed)."""
        columnwise, head = self.attribution_split()
        return head(raw if columnwise is None else columnwise(raw))

    # -- persistence ---------------------------------------------------------------------
    def _get_state(self) -> State:
        pre = getattr(self, "preprocessor_", None)
        settings, arrays = ({}, {}) if pre is None else pre.get_state("pre.")
        for i, module in enumerate(self.modules_):
            arrays.update(module_state(module, f"net{i}."))
        return {"n_inputs_": self.n_inputs_, "n_outputs_": self.n_outputs_, "n_modules": len(self.modules_),
                "preprocess": settings}, arrays

    def _set_state(self, settings: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.n_inputs_ = int(settings["n_inputs_"])
        self.n_outputs_ = int(settings["n_outputs_"])
        inputs = self._setting("inputs")
        if inputs != PAPER_INPUTS:
            self.preprocessor_ = clone(inputs).set_state(settings["preprocess"], arrays)
        self.modules_ = []
        for i in range(int(settings["n_modules"])):
            module = self._build_module()
            load_module_state(module, arrays, f"net{i}.")
            self.modules_.append(module.eval())


def _coerce(key: str, value: Any) -> Any:
    """Nested settings as JSON gives them back (dicts) → their objects."""
    if key == "train" and isinstance(value, dict):
        return TrainConfig(**value)
    if key == "inputs" and isinstance(value, dict):
        return MoAPreprocessor(**value)
    if key == "module_params" and value is not None:
        return dict(value)
    return value
