"""Plate normalisation: each plate's features as robust z-scores against that plate's own control wells.

The practice of image-based profiling (pycytominer's ``normalize(method="mad_robustize", samples=controls)``):
``(x - median(controls)) / (1.4826 * MAD(controls))``, per plate and feature. Hand-written because it is a few lines
of numpy on an array already in memory and must run identically in training, in ``moa predict`` and in the web app
without pulling pycytominer's dependencies. Nothing is learned across plates, so it cannot leak between folds: a
plate's wells are scaled by statistics of that plate's control wells only.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import DataError

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


def _z_score(values: np.ndarray, controls: np.ndarray) -> np.ndarray:
    sd = np.nanstd(controls, axis=0, ddof=1)
    return (values - np.nanmean(controls, axis=0)) / np.where(sd > 1e-12, sd, 1.0)


def _centred(values: np.ndarray, controls: np.ndarray) -> np.ndarray:
    return values - np.nanmedian(controls, axis=0)


def per_plate(values: np.ndarray, plates: np.ndarray, is_control: np.ndarray,
              step: Callable[[np.ndarray, np.ndarray], np.ndarray], source: str) -> tuple[np.ndarray, int]:
    """``step(plate rows, plate control rows)`` on every plate (a plate needs ``MIN_CONTROLS`` control wells);
    returns the transformed values and the number of plates."""
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
        out[rows] = step(values[rows], values[ctl])
    return out, len(names)


def pooled_scale(centred: np.ndarray, is_control: np.ndarray) -> np.ndarray:
    """Scaled MAD of every control well after per-plate centring: one scale per feature, pooled over plates (stable
    when each plate has only a few control wells); features constant on the controls get 1."""
    ctl = centred[is_control]
    mad = MAD_TO_SD * np.nanmedian(np.abs(ctl - np.nanmedian(ctl, axis=0)), axis=0)
    return np.where(np.isfinite(mad) & (mad > 1e-12), mad, 1.0)


def normalize_plates(values: np.ndarray, plates: np.ndarray, is_control: np.ndarray, *, source: str = "profiles",
                     pooled: bool = False, scale: np.ndarray | None = None, mean_sd: bool = False
                     ) -> tuple[np.ndarray, str, np.ndarray | None]:
    """Robust z-scores of `values` (rows x features) against control wells: centred on each plate's control
    median, scaled by that plate's control MAD (default), or with `pooled` by one scale per feature over all control
    wells: `scale` when given (learnt on the training table, stored in the bundle), else fit here. With `mean_sd`,
    the classic z-score: each plate's control mean and standard deviation.

    Returns (normalised values, a sentence for reports, the pooled scale or None)."""
    if mean_sd:
        out, n = per_plate(values, plates, is_control, _z_score, source)
        return out, f"z-score to each plate's control wells (mean, standard deviation; {n} plates)", None
    if not pooled:
        out, n = per_plate(values, plates, is_control, robust_z, source)
        return out, f"robust z-score to each plate's control wells ({n} plates)", None
    centred, n = per_plate(values, plates, is_control, _centred, source)
    fitted = scale is None
    scale = pooled_scale(centred, is_control) if fitted else np.asarray(scale, dtype=np.float64)
    how = "fit on this table's control wells" if fitted else "learnt on the training table"
    return (centred / scale, f"centred on each plate's control median ({n} plates), scaled by the control "
                             f"wells' pooled MAD ({how})", scale)


def whiten_fit(controls: np.ndarray, components: int, reg: float) -> dict[str, np.ndarray]:
    """Typical-variation normalisation (TVN; Ando et al. 2017): PCA fit on the control wells only, each of the top
    `components` directions divided by sqrt(its variance + `reg` x the mean variance). Learnt at training and stored
    in the bundle."""
    from sklearn.decomposition import PCA

    k = int(min(components, controls.shape[0] - 1, controls.shape[1]))
    pca = PCA(k, svd_solver="full", random_state=0).fit(controls)
    var = pca.explained_variance_
    return {"mean": pca.mean_, "components": pca.components_, "divisor": np.sqrt(var + reg * var.mean())}


def whiten(values: np.ndarray, state: dict[str, np.ndarray]) -> np.ndarray:
    """TVN coordinates (rows x components)."""
    return (values - state["mean"]) @ state["components"].T / state["divisor"]


def align_batches(y: np.ndarray, batches: np.ndarray, is_control: np.ndarray, alpha: float, source: str
                  ) -> np.ndarray:
    """Per-batch CORAL (as in Ando et al. 2017's TVN + CORAL): each batch's wells re-centred on its control wells and
    re-sphered with their covariance, shrunk by `alpha` x mean variance towards the identity. Only that batch's
    control wells are used, so nothing is learnt across batches and nothing needs storing."""
    out = np.empty_like(y)
    batches = np.asarray(batches).astype(str)
    for b in sorted(set(batches.tolist())):
        rows = batches == b
        ref = y[rows & is_control]
        if len(ref) < MIN_CONTROLS:
            raise DataError(f"batch {b!r} has {len(ref)} control well(s); aligning batches needs at least "
                            f"{MIN_CONTROLS}. Turn align_batches off in the layout.", source=source)
        cov = np.cov(ref.T)
        cov = cov + alpha * np.trace(cov) / cov.shape[0] * np.eye(cov.shape[0])
        ev, vec = np.linalg.eigh(cov)
        out[rows] = (y[rows] - ref.mean(axis=0)) @ (vec @ np.diag(ev ** -0.5) @ vec.T)
    return out


def scale_profiles(values: np.ndarray) -> np.ndarray:
    """Each row centred on its mean and divided by its standard deviation over its features (a constant row
    becomes 0). A consensus signature (a Stouffer-style sum over replicates: sd ≈ 3.4 on L1000) and one level-5
    signature (sd ≈ 1) are then on one scale; no statistic is learnt, so nothing leaks between profiles."""
    x = np.asarray(values, dtype=np.float64)
    centred = x - x.mean(axis=1, keepdims=True)
    sd = centred.std(axis=1, keepdims=True)
    return np.divide(centred, sd, out=np.zeros_like(centred), where=sd > 0)


class ProfileNormalizer:
    """The profile-level normalisation of a layout, in pycytominer's order: per-plate normalisation to control wells
    (``normalize``), optional clipping, optional whitening on control wells (TVN), optional per-batch alignment
    (CORAL). What is learnt on the training table (the pooled control scale, the TVN directions) is kept here and
    stored in the bundle, so an upload is transformed exactly as the training table was.

    Whitened profiles are mapped back into the feature space (``components.T``: orthonormal rows, so distances and
    cosines are those of the TVN coordinates) and keep their feature names: attributions still name real features.
    """

    def __init__(self, method: str = "none", clip: float | None = None, whiten_components: int = 0,
                 whiten_reg: float = 0.1, align_alpha: float | None = None, profile_scale: str = "none") -> None:
        self.method = method
        self.profile_scale = profile_scale
        self.clip = clip
        self.whiten_components = whiten_components
        self.whiten_reg = whiten_reg
        self.align_alpha = align_alpha
        self.scale_: np.ndarray | None = None
        self.whiten_: dict[str, np.ndarray] | None = None

    @property
    def fitted(self) -> bool:
        needs_scale = self.method == "robust_z_pooled"
        return (self.scale_ is not None or not needs_scale) and (self.whiten_ is not None or not self.whiten_components)

    @property
    def row_local(self) -> bool:
        """Whether every step transforms one profile at a time (clipping, per-profile scaling), so a table can be
        read in row chunks with a whole read's answers; plate normalisation and whitening need whole plates."""
        return self.method == "none" and not self.whiten_components

    def transform(self, values: np.ndarray, plates: np.ndarray | None, batches: np.ndarray | None,
                  is_control: np.ndarray, *, source: str = "profiles", fit: bool = False) -> tuple[np.ndarray, list[str]]:
        """(normalised values, sentences for reports). `fit`: learn the scale / whitening on these control wells."""
        notes: list[str] = []
        x = values
        if self.method != "none":
            if plates is None or not is_control.any():
                notes.append("plate normalisation not applied: no plate column or no control wells; the profiles are "
                             "taken as already normalised")
            else:
                x, sentence, scale = normalize_plates(x, plates, is_control, source=source,
                                                      pooled=self.method == "robust_z_pooled",
                                                      scale=None if fit else self.scale_,
                                                      mean_sd=self.method == "z")
                if fit:
                    self.scale_ = scale
                notes.append(sentence)
        if self.clip:
            x = np.clip(x, -self.clip, self.clip)
            notes.append(f"clipped to ±{self.clip:g}")
        if self.whiten_components:
            if fit:
                if is_control.sum() <= MIN_CONTROLS:
                    raise DataError("whitening (TVN) is fit on the control wells, and this table has too few.",
                                    source=source)
                self.whiten_ = whiten_fit(x[is_control], self.whiten_components, self.whiten_reg)
            y = whiten(x, self.whiten_)
            notes.append(f"whitened on control wells (TVN, {y.shape[1]} components)")
            if self.align_alpha is not None:
                if batches is None or not is_control.any():
                    notes.append("batch alignment not applied: no batch column or no control wells")
                else:
                    y = align_batches(y, batches, is_control, self.align_alpha, source)
                    notes.append(f"each batch aligned to its control wells (CORAL, alpha {self.align_alpha:g})")
            x = y @ self.whiten_["components"]  # back in feature coordinates, same geometry
        if self.profile_scale == "zscore":
            x = scale_profiles(x)
            notes.append("each profile centred and scaled to unit standard deviation over its features")
        return x, notes

    def get_state(self, prefix: str = "normalizer.") -> tuple[dict, dict[str, np.ndarray]]:
        arrays: dict[str, np.ndarray] = {}
        if self.scale_ is not None:
            arrays[prefix + "scale"] = np.asarray(self.scale_, np.float64)
        for k, v in (self.whiten_ or {}).items():
            arrays[f"{prefix}whiten.{k}"] = np.asarray(v, np.float64)
        settings = {"method": self.method, "clip": self.clip, "whiten_components": self.whiten_components,
                    "whiten_reg": self.whiten_reg, "align_alpha": self.align_alpha}
        if self.profile_scale != "none":
            settings["profile_scale"] = self.profile_scale
        return settings, arrays

    @classmethod
    def from_state(cls, settings: dict, arrays: dict[str, np.ndarray], prefix: str = "normalizer.") -> "ProfileNormalizer":
        norm = cls(**settings)
        norm.scale_ = arrays.get(prefix + "scale")
        if f"{prefix}whiten.mean" in arrays:
            norm.whiten_ = {k: arrays[f"{prefix}whiten.{k}"] for k in ("mean", "components", "divisor")}
        return norm
