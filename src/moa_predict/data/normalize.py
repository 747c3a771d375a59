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


def robust_z(values: np.ndarray, controls: np.ndarray, floor: np.ndarray) -> np.ndarray:
    """(values - median) / scaled MAD of `controls`; a feature whose control MAD is ~0 uses `floor` instead."""
    med = np.nanmedian(controls, axis=0)
    mad = MAD_TO_SD * np.nanmedian(np.abs(controls - med), axis=0)
    mad = np.where(np.isfinite(mad) & (mad > floor), mad, floor)
    return (values - med) / mad


def normalize_plates(values: np.ndarray, plates: np.ndarray, is_control: np.ndarray, *, source: str = "profiles"
                     ) -> tuple[np.ndarray, str]:
    """Robust z-scores of `values` (rows x features) per plate against the plate's control rows. A plate with fewer
    than ``MIN_CONTROLS`` control wells is an error naming the plate (its scale cannot be estimated)."""
    out = np.empty_like(values, dtype=np.float64)
    plates = np.asarray(plates).astype(str)
    # a feature whose control wells barely vary on a plate is scaled by a small fraction of its spread over all
    # control wells, so a near-constant feature cannot blow up to huge z-scores
    all_ctl = values[is_control]
    spread = MAD_TO_SD * np.nanmedian(np.abs(all_ctl - np.nanmedian(all_ctl, axis=0)), axis=0)
    floor = np.maximum(np.where(np.isfinite(spread), spread, 0.0) * 0.1, 1e-6)
    names = sorted(set(plates.tolist()))
    for plate in names:
        rows = plates == plate
        ctl = rows & is_control
        if ctl.sum() < MIN_CONTROLS:
            raise DataError(f"plate {plate!r} has {int(ctl.sum())} control well(s); robust z-scores need at least "
                            f"{MIN_CONTROLS}. Drop the plate, or set normalize = 'none' in the layout if the profiles "
                            "are already normalised.", source=source)
        out[rows] = robust_z(values[rows], values[ctl], floor)
    return out, f"robust z-score to each plate's control wells ({len(names)} plates)"
