"""Models: the estimator contract (``base``), every model moa-predict ships, and their names (``registry``)."""

from .base import MoAModel
from .registry import MODELS, available_models, make_model

__all__ = ["DEFAULT_MODEL", "MODELS", "MoAModel", "available_models", "make_model"]

DEFAULT_MODEL = "blend"
"""What ``moa train`` fits without --model."""
