"""Turning fitted scikit-learn transformers and torch modules into JSON + arrays and back.

Bundles must never contain pickles (loading one runs code). A fitted scikit-learn
estimator is fully described by its parameters and its public fitted attributes
(names ending in ``_``), so we store those: numbers and strings in JSON, arrays in
safetensors. Only classes in ``ALLOWED`` can be rebuilt, so a bundle cannot name
arbitrary code.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.decomposition import PCA
from sklearn.feature_selection import VarianceThreshold
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.preprocessing import QuantileTransformer, StandardScaler

from .io import jsonable

ALLOWED: dict[str, type] = {c.__name__: c for c in (QuantileTransformer, PCA, VarianceThreshold, StandardScaler,
                                                     LogisticRegression, Ridge)}


def estimator_state(est: Any, prefix: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """JSON settings and arrays (keys start with `prefix`) describing a fitted estimator."""
    cls = type(est).__name__
    if cls not in ALLOWED:
        raise TypeError(f"cannot persist {cls}; add it to persist.ALLOWED if it is a plain sklearn estimator")
    params = {k: jsonable(v) for k, v in est.get_params(deep=False).items()}
    fitted: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {}
    for key, value in vars(est).items():
        if not key.endswith("_") or key.startswith("_"):
            continue
        if isinstance(value, np.ndarray):
            if value.dtype == object:
                fitted[key] = {"strings": [str(v) for v in value]}
            else:
                arrays[f"{prefix}{key}"] = np.ascontiguousarray(value)
        else:
            fitted[key] = jsonable(value)
    return {"class": cls, "params": params, "fitted": fitted, "prefix": prefix}, arrays


def estimator_from_state(settings: dict[str, Any], arrays: dict[str, np.ndarray]) -> Any:
    cls = ALLOWED.get(settings["class"])
    if cls is None:
        raise ValueError(f"bundle names estimator class {settings['class']!r}, which is not allowed")
    est = cls(**settings["params"])
    for key, value in settings["fitted"].items():
        if isinstance(value, dict) and "strings" in value:
            value = np.array(value["strings"], dtype=object)
        setattr(est, key, value)
    prefix = settings["prefix"]
    for key, value in arrays.items():
        if key.startswith(prefix) and key[len(prefix):].endswith("_") and "." not in key[len(prefix):]:
            setattr(est, key[len(prefix):], value)
    return est


def module_state(module: Any, prefix: str) -> dict[str, np.ndarray]:
    """A torch module's parameters and buffers as float arrays under `prefix`."""
    return {f"{prefix}{k}": v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}


def load_module_state(module: Any, arrays: dict[str, np.ndarray], prefix: str) -> None:
    import torch

    state = {k[len(prefix):]: torch.from_numpy(np.array(v)) for k, v in arrays.items() if k.startswith(prefix)}
    module.load_state_dict(state, strict=True)
