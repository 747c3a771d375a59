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


def plate_medians(values: np.ndarray, plates: np.ndarray, is_control: np.ndarray, source: str
                  ) -> tuple[np.ndarray, list[str]]:
    """Each row minus its plate's control median (a plate needs ``MIN_CONTROLS`` control wells)."""
    out = np.empty_like(values, dtype=np.float64)
    plates = np.asarray(plates).astype(str)
    names = sorted(set(plates.tolist()))
    for plate in names:
        rows = plates == plate
        ctl = rows & is_control
        if ctl.sum() < MIN_CONTROLS:
            raise DataError(f"plate {plate!r} has {int(ctl.sum())} control well(s); normalising to controls needs at "
                            f"least {MIN_CONTROLS}. Drop the plate, or set normalize = 'none' in the layout if the "
                            "profiles are already normalised.", source=source)
        out[rows] = values[rows] - np.nanmedian(values[ctl], axis=0)
    return out, names


def pooled_scale(centred: np.ndarray, is_control: np.ndarray) -> np.ndarray:
    """Scaled MAD of every control well after per-plate centring: one scale per feature, pooled over plates (stable
    when each plate has only a few control wells); features constant on the controls get 1."""
    ctl = centred[is_control]
    mad = MAD_TO_SD * np.nanmedian(np.abs(ctl - np.nanmedian(ctl, axis=0)), axis=0)
    return np.where(np.isfinite(mad) & (mad > 1e-12), mad, 1.0)


def normalize_plates(values: np.ndarray, plates: np.ndarray, is_control: np.ndarray, *, source: str = "profiles",
                     pooled: bool = False, scale: np.ndarray | None = None) -> tuple[np.ndarray, str, np.ndarray | None]:
    """Robust z-scores of `values` (rows x features) against control wells: centred on each plate's control
    median, scaled by that plate's control MAD (default), or with `pooled` by one scale per feature over all control
    wells: `scale` when given (learnt on the training table, stored in the bundle), else fit here.

    Returns (normalised values, a sentence for reports, the pooled scale or None)."""
    if not pooled:
        out = np.empty_like(values, dtype=np.float64)
        plates = np.asarray(plates).astype(str)
        _, names = plate_medians(values, plates, is_control, source)  # checks every plate has controls
        for plate in names:
            rows = plates == plate
            out[rows] = robust_z(values[rows], values[rows & is_control])
        return out, f"robust z-score to each plate's control wells ({len(names)} plates)", None
    centred, names = plate_medians(values, plates, is_control, source)
    fitted = scale is None
    scale = pooled_scale(centred, is_control) if fitted else np.asarray(scale, dtype=np.float64)
    how = "fit on this table's control wells" if fitted else "learnt on the training table"
    return (centred / scale, f"centred on each plate's control median ({len(names)} plates), scaled by the control "
                             f"wells' pooled MAD ({how})", scale)
