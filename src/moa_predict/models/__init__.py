"""Models: the estimator contract, a registry by name, and every model moa-predict ships."""

from .base import MODELS, MoAModel, available_models, make_model, register

__all__ = ["MODELS", "MoAModel", "available_models", "make_model", "register"]

DEFAULT_MODEL = "blend"
"""What ``moa train`` fits without --model."""
