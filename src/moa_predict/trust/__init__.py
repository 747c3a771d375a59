"""The trust stage: answers a scientist can trust, fit in training on compound-grouped out-of-fold predictions
and kept in the bundle — calibration (``calibration``), MoA sets with a recall guarantee (``conformal``),
confident calls at a chosen precision (``calls``), tied together by ``model.TrustModel`` (``fit_trust``)."""

from .calls import DEFAULT_PRECISION, CallModel
from .model import DEFAULT_LEVEL, TrustModel, fit_trust, trust_of

__all__ = ["CallModel", "DEFAULT_LEVEL", "DEFAULT_PRECISION", "TrustModel", "fit_trust", "trust_of"]
