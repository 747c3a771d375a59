"""The estimator contract every MoA model follows (the names are in ``members`` and ``registry``).

Models are scikit-learn estimators: hyper-parameters in ``__init__``, learned state with
a trailing underscore, ``fit(X, Y)`` returning self and ``predict_proba(X)`` returning an
(n_rows, n_targets) float32 array. X is the validated features frame (meta columns, g-/c-
columns, by name). Control rows are handled here, once, for every model: dropped before
fitting (unless the model was published as trained on them) and predicted exactly 0.
The torch device is an argument of ``fit`` and ``predict_proba``, never a hyper-parameter
(so a bundle trained on a GPU loads anywhere).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from ..data.profiles.dataset import control_mask
from ..data.profiles.layout import ModelInputs

State = tuple[dict[str, Any], dict[str, np.ndarray]]
"""A model's persisted form: JSON-able settings and named arrays (saved as safetensors)."""


def gene_only_no_attributions(name: str) -> str:
    """Why a gene-only model (a bundle's companion for CMap signatures) has no attributions: the attribution path
    needs the full LISH-MoA inputs, which a CMap signature does not have; similar references still explain it."""
    return (f"model {name!r} answered with its gene-only companion (trained on the gene block alone, for profiles "
            "without cell-viability columns, such as CMap signatures): its predictions are explained by similar "
            "reference profiles, not by feature attributions, which need the full LISH-MoA input layout")


class MoAModel(BaseEstimator):
    """Base class: subclasses implement ``_fit``, ``_predict_proba``, ``_get_state``, ``_set_state``."""

    name: ClassVar[str] = ""
    trains_on_controls: ClassVar[bool] = False
    """The paper's net was trained on all rows, controls included; our models drop them."""
    uses_aux_targets: ClassVar[bool] = False
    """Models that learn from the non-scored targets too (pre-training or auxiliary head)."""
    needs_full_layout: ClassVar[bool] = False
    """Models whose inputs are the paper's fixed 875 columns (kNN, the paper's net): they cannot be trained on a
    subset of the features, such as the gene block alone (``training.train``'s gene-only model)."""
    uses_device: ClassVar[bool] = False
    """Models whose ``_fit`` / ``_predict_proba`` take a ``device`` keyword (networks, the blend); others
    ignore the device given to ``fit`` / ``predict_proba``."""

    @classmethod
    def from_params(cls, **params: Any) -> "MoAModel":
        """The model from hyper-parameters as the CLI, blend member specs and bundles give them (JSON
        values); networks also take their settings flat (``network.NetworkModel.from_params``)."""
        return cls(**params)

    def fit(self, X: pd.DataFrame, Y: np.ndarray, Y_aux: np.ndarray | None = None, *,
            device: str = "cpu", inputs: ModelInputs | None = None) -> "MoAModel":
        """Fit on the rows of X; `inputs` says what X's columns are (``Dataset.inputs``: the layout's blocks, meta
        columns, treatment and compound columns, single- or multi-label), else X is taken for LISH-MoA profiles."""
        self.inputs_ = inputs or ModelInputs.lish_moa(list(X.columns))
        if not self.inputs_.feature_columns:
            raise ValueError("X has none of the feature columns: a frame read through a layout other than LISH-MoA "
                             "is fit with inputs=dataset.inputs (what its columns are)")
        Y = np.asarray(Y, dtype=np.float32)
        if len(X) != len(Y):
            raise ValueError(f"X has {len(X)} rows but Y has {len(Y)}")
        if not self.trains_on_controls:
            keep = ~control_mask(X)
            X, Y = X.loc[keep], Y[keep]
            Y_aux = None if Y_aux is None else np.asarray(Y_aux, dtype=np.float32)[keep]
        if len(X) == 0:
            raise ValueError("no treated rows to train on")
        self.n_targets_ = Y.shape[1]
        # single-label data (one MoA per profile, e.g. BBBC021's 12 classes): networks train a softmax head
        self.single_label_ = bool(self.inputs_.single_label)
        self._fit(X, Y, Y_aux if self.uses_aux_targets else None, **self._device_kw(device))
        return self

    def predict_proba(self, X: pd.DataFrame, *, device: str = "cpu") -> np.ndarray:
        check_is_fitted(self, "n_targets_")
        proba = np.asarray(self._predict_proba(X, **self._device_kw(device)), dtype=np.float32)
        if self.single_label_:  # rows of a single-label model sum to 1 (a blend's stack may nudge them)
            proba /= np.maximum(proba.sum(axis=1, keepdims=True), 1e-12)
        proba[control_mask(X)] = 0.0
        return proba

    def _device_kw(self, device: str) -> dict[str, str]:
        return {"device": str(device)} if self.uses_device else {}

    # -- attributions (optional capability, used by explain.attributions) -------------
    @property
    def supports_attributions(self) -> bool:
        """True when ``attribution_forward`` is implemented (networks do; kNN and the prior do not)."""
        return False

    def attribution_inputs(self, X: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
        """The raw attribution layout of X and its column names: the g-/c- features (bundle order), then
        one-hot cp_time 24/48/72 and cp_dose D1/D2 as floats (``features.torch_transforms.raw_inputs``)."""
        if not self.supports_attributions:
            raise NotImplementedError(self._no_attributions())
        from ..features.torch_transforms import raw_inputs, raw_names

        return raw_inputs(X), raw_names()

    def attribution_forward(self, raw: Any) -> Any:
        """torch (n, 877) raw layout → (n, n_targets) probabilities, differentiable (treated profiles)."""
        raise NotImplementedError(self._no_attributions())

    def _no_attributions(self) -> str:
        if getattr(self, "gene_block_only", False):
            return gene_only_no_attributions(self.name)
        return (f"model {self.name!r} cannot explain its predictions by feature attributions (it is not a "
                "differentiable network); similar reference profiles and compound calls still work")

    # -- persistence (safetensors + JSON, never pickle) -------------------------------
    def get_state(self) -> State:
        check_is_fitted(self, "n_targets_")
        settings, arrays = self._get_state()
        extra = {"single_label_": True} if self.single_label_ else {}  # multi-label bundles keep their old form
        return {"n_targets_": int(self.n_targets_), **extra, **settings}, arrays

    def set_state(self, settings: dict[str, Any], arrays: dict[str, np.ndarray]) -> "MoAModel":
        self.n_targets_ = int(settings["n_targets_"])
        self.single_label_ = bool(settings.get("single_label_", False))
        self._set_state(settings, arrays)
        return self

    # -- to implement -----------------------------------------------------------------
    def _fit(self, X: pd.DataFrame, Y: np.ndarray, Y_aux: np.ndarray | None) -> None:
        """Fit on treated rows, whose columns ``self.inputs_`` describes (``uses_device`` models also get
        ``device=``)."""
        raise NotImplementedError

    def _predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        raise NotImplementedError

    def _get_state(self) -> State:
        raise NotImplementedError

    def _set_state(self, settings: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        raise NotImplementedError
