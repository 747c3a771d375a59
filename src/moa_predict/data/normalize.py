"""Plate normalisation: each plate's features as robust z-scores against that plate's own control wells.

The practice of image-based profiling (pycytominer's ``normalize(method="mad_robustize", samples=controls)``):
``(x - median(controls)) / (1.4826 * MAD(controls))``, per plate and feature. Hand-written because it is a few lines
of numpy on an array already in memory and must run identically in training, in ``moa predict`` and in the web app
without pulling pycytominer's dependencies. Nothing is learned across plates, so it cannot leak between folds: a
plate's wells are scaled by statistics of that plate's control wells only.
"""

from __future__ import annotations

import numpy as np

from .errors import DataError

MAD_TO_SD = 1.4826
MIN_CONTROLS = 3


def robust_z(values: np.ndarray, controls: np.ndarray) -> np.ndarray:
    """(values - median) / scaled MAD of `controls`. A feature whose control MAD is 0 on this plate (a count that
    barely varies) is scaled by its controls' standard deviation instead, and left unscaled (only centred) when the
    controls are constant: the plate's own controls decide, nothing from other plates."""
    med = np.nanmedian(controls, axis=0)
    mad = MAD_TO_SD * np.nanmedian(np.abs(controls - med), axis=0)
    tiny = 1e-9 * np.maximum(np.abs(med), 1.0)
    sd = np.nanstd(controls, axis=0)
    scale = np.where(mad > tiny, mad, np.where(sd > tiny, sd, 1.0))
    return (values - med) / scale


def normalize_plates(values: np.ndarray, plates: np.ndarray, is_control: np.ndarray, *, source: str = "profiles"
                     ) -> tuple[np.ndarray, str]:
    """Robust z-scores of `values` (rows x features) per plate against the plate's control rows. A plate with fewer
    than ``MIN_CONTROLS`` control wells is an error naming the plate (its scale cannot be estimated)."""
    out = np.empty_like(values, dtype=np.float64)
    plates = np.asarray(plates).astype(str)
    names = sorted(set(plates.tolist()))
    for plate in names:
        rows = plates == plate
        ctl = rows & is_control
        if ctl.sum() < MIN_CONTROLS:
            raise DataError(f"plate {plate!r} has {int(ctl.sum())} control well(s); robust z-scores need at least "
                            f"{MIN_CONTROLS}. Drop the plate, or set normalize = 'none' in the layout if the profiles "
                            "are already normalised.", source=source)
        out[rows] = robust_z(values[rows], values[ctl])
    return out, f"robust z-score to each plate's control wells ({len(names)} plates)"
