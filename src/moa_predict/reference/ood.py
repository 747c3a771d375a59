"""Out-of-distribution warnings: profiles unlike anything the model was trained on.

Two checks, both calibrated at training time on the training profiles and stored in the bundle:

1. Distance: 1 − cosine, in the standardised feature space reduced to the reference components
   (reference/neighbours.py: NOT whitened, the part outside the components counted as unshared), to the
   nearest reference profile. Flagged above the ``ood_quantile`` (99th percentile) of the same distance for
   training profiles.
2. Structure: the share of the standardised profile's norm that the reference components capture. Real
   profiles are dominated by the correlated expression and viability programmes the components describe
   (≈ 0.94 on the real-label simulated set); noise or shuffled columns are not (≈ 0.45). Flagged below the
   0.1% quantile of training profiles'. This check does not need a dense reference set, so it still
   catches garbage when a bundle was trained on few profiles (where nearest distances are large for
   everyone).

``flag`` is true when either fires; ``reasons`` says which.

The calibration is leave-DRUG-out, not leave-one-out: a training profile's distance is to its nearest
reference of ANOTHER drug (another row for unknown drugs). A drug's own profiles (2 doses × 3 times) are near
copies, so plain leave-one-out distances are optimistic and would flag several percent of genuinely new but
ordinary compounds; leave-drug-out matches the question users ask ("is this new compound like anything
known?"). On the real-label simulated set the flag fires on about 1% of held-out new-drug profiles and on
all noise or feature-shuffled profiles (docs/explain/explain_benchmark.json).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .neighbours import require_reference


FAR = "far from every training profile"
STRUCTURE = "lacks the correlation structure of the training profiles"
SIMULATED_STRUCTURE = (STRUCTURE + " (the model's training profiles are SIMULATED: a real profile can lack their "
                       "structure and still be sound)")


def structure_reason(simulated: bool = False) -> str:
    """The structure check's reason: it compares with the TRAINING profiles, which may be simulated."""
    return SIMULATED_STRUCTURE if simulated else STRUCTURE


def is_simulated(bundle: Any) -> bool:
    """True when the bundle was trained on simulated profiles (its ``training_data.simulated`` marker)."""
    return bool(((getattr(bundle, "info", None) or {}).get("training_data") or {}).get("simulated"))


def _flags(index: Any, dist: np.ndarray, structure: np.ndarray, copy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(far, unstructured) per profile. A copy of a training profile (a training well sent again: its nearest
    reference is itself, similarity 1) is never flagged, whatever its structure (DMSO wells, mostly noise after
    plate normalisation, have the least of it: the 0.1 % of training profiles below the threshold are such)."""
    far = (dist > index.ood_threshold) & ~copy
    unstructured = (structure < index.structure_threshold) & ~copy
    return far, unstructured


def ood_scores(index: Any, X: pd.DataFrame | np.ndarray, simulated: bool = False) -> list[dict[str, Any]]:
    """Per profile: ``flag``, ``reasons``, the ``distance`` to the nearest reference with its training
    ``threshold`` and ``percentile`` among training profiles' distances, the ``structure`` with its
    ``structure_threshold``, and the nearest reference (sig_id, drug)."""
    dist, near, structure, copy = index.ood_components(X)
    far, unstructured = _flags(index, dist, structure, copy)
    pct = np.interp(dist, index.ood_distances, np.linspace(0, 100, len(index.ood_distances)))
    out = []
    for d, j, p, st, f, u in zip(dist, near, pct, structure, far, unstructured):
        reasons = [FAR] * bool(f) + [structure_reason(simulated)] * bool(u)
        out.append({"flag": bool(reasons), "reasons": reasons,
                    "distance": round(float(d), 4), "threshold": round(float(index.ood_threshold), 4),
                    "percentile": round(float(p), 2), "structure": round(float(st), 4),
                    "structure_threshold": round(float(index.structure_threshold), 4),
                    "nearest_sig_id": str(index.sig_ids[j]), "nearest_drug_id": str(index.drug_ids[j]) or None})
    return out


def ood_mask(index: Any, X: pd.DataFrame | np.ndarray) -> np.ndarray:
    """The flag alone, vectorised (True: out of distribution)."""
    dist, _, structure, copy = index.ood_components(X)
    far, unstructured = _flags(index, dist, structure, copy)
    return far | unstructured


def ood_columns(index: Any, X: pd.DataFrame | np.ndarray, simulated: bool = False) -> pd.DataFrame:
    """``ood`` (bool) and ``ood_reason`` (the reasons joined by "; ", empty when not flagged), vectorised: the
    columns ``moa predict`` writes."""
    dist, _, structure, copy = index.ood_components(X)
    far, unstructured = _flags(index, dist, structure, copy)
    reason = np.where(far & unstructured, f"{FAR}; {structure_reason(simulated)}",
                      np.where(far, FAR, np.where(unstructured, structure_reason(simulated), "")))
    return pd.DataFrame({"ood": far | unstructured, "ood_reason": reason.astype(object)},
                        index=X.index if isinstance(X, pd.DataFrame) else None)


def ood_flags(bundle: Any, features: pd.DataFrame) -> list[dict[str, Any]]:
    """For the web layer / CLI: per uploaded profile {sig_id, distance, threshold, flag, percentile, ...}."""
    index = require_reference(bundle)
    return [{"sig_id": str(s), **o} for s, o in zip(features.index, ood_scores(index, features, is_simulated(bundle)))]


OOD_MESSAGE = ("unlike the training profiles (too far from every reference, or without the correlation structure "
               "of the training profiles): their predictions are extrapolations; check the file (units, column "
               "order, normalisation) before trusting them")
