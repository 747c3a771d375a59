"""Every model moa-predict ships, by name: the blend members, the blend itself, and ``label-ridge`` (a standalone
model for thin label spaces such as protein targets; not a blend member: it has no shared preprocessing to pool)."""

from __future__ import annotations

from typing import Any

from .base import MoAModel
from .blend import BlendModel
from .label_ridge import LabelRidgeModel
from .members import MEMBERS

MODELS: dict[str, type[MoAModel]] = {**MEMBERS, BlendModel.name: BlendModel,
                                     LabelRidgeModel.name: LabelRidgeModel}
"""Model classes by name (``moa train --model NAME``)."""


def make_model(name: str, **params: Any) -> MoAModel:
    """A fresh, unfitted model by name, from hyper-parameters as the CLI and bundles give them."""
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(sorted(MODELS))}")
    return MODELS[name].from_params(**params)


def available_models() -> list[str]:
    return sorted(MODELS)
