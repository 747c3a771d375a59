"""The reference index: the training profiles, indexed once at training time and stored in the bundle, to find
the references most like an upload (``neighbours``: similar profiles, MoA enrichment) and to flag profiles unlike
all of them (``ood``: out-of-distribution flags and their calibration)."""

from .neighbours import ReferenceIndex, similar_profiles
from .ood import ood_flags

__all__ = ["ReferenceIndex", "ood_flags", "similar_profiles"]
