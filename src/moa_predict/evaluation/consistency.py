"""A bundle's extra label sets at prediction (the protein targets beside the MoAs), and whether the two answers
agree with the training annotations' MoA -> target links.

The target model is a bundle of its own (``Bundle.label_sets``), read through the same layout: its probabilities
come from ``Bundle.predict_proba`` on the profiles the MoA model saw. The consistency check asks whether any of a
profile's top targets is a *usual* target of its top MoA: one carried by at least half of the training compounds of
that MoA that have targets (``training.train.label_links``). "called HMGCR inhibitor; top targets are not HMGCR"
says that the two answers disagree, so at least one is wrong for this profile.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..data.profiles.dataset import CONTROL_COLUMN, control_mask

USUAL_SHARE = 0.5
"""A target is usual for a MoA when at least this share of the MoA's training compounds with targets carry it."""
TOP_TARGETS = 5


def label_set_proba(part: Any, features: pd.DataFrame) -> np.ndarray:
    """The label set's probabilities (rows x labels) for profiles already read; control rows are 0 (no compound,
    no target), as for the MoAs."""
    proba = part.predict_proba(features)
    if CONTROL_COLUMN in features.columns:
        proba[control_mask(features)] = 0.0
    return proba


def top_labels(proba: np.ndarray, names: list[str], k: int = TOP_TARGETS) -> list[list[dict[str, Any]]]:
    """Per row, the k most probable labels with their probabilities (an all-zero row, a control: none)."""
    k = min(k, proba.shape[1])
    order = np.argsort(-proba, axis=1, kind="stable")[:, :k]
    return [[] if not row.any() else [{"target": names[j], "probability": round(float(row[j]), 6)} for j in idx]
            for row, idx in zip(proba, order)]


def usual_labels(links: dict[str, Any], moa: str, share: float = USUAL_SHARE) -> list[str]:
    """The usual targets of `moa` in the training annotations, most frequent first (empty: no compound of the MoA
    had targets)."""
    entry = links.get(moa)
    if not entry or not entry.get("compounds"):
        return []
    need = share * entry["compounds"]
    counts = entry["labels"]
    return sorted((t for t, n in counts.items() if n >= need), key=lambda t: (-counts[t], t))


def consistency(moa: str, targets: list[str], links: dict[str, Any]) -> dict[str, Any]:
    """Whether a top MoA and top targets agree: ``agree`` True (a top target is a usual target of the MoA), False
    (none is: the note says so) or None (the training annotations link no target to this MoA), and a note."""
    usual = usual_labels(links, moa)
    if not usual:
        return {"agree": None, "usual_targets": [],
                "note": f"no target is linked to {moa} in the training annotations"}
    hit = [t for t in targets if t in usual]
    if hit:
        return {"agree": True, "usual_targets": usual[:5], "note": f"{moa} and top target(s) {', '.join(hit)} agree"}
    shown = ", ".join(usual[:3]) + (" ..." if len(usual) > 3 else "")
    return {"agree": False, "usual_targets": usual[:5],
            "note": f"called {moa}; top targets are not {shown} (the usual targets of {moa}): the two answers "
                    "disagree"}


def agreement(moa_proba: np.ndarray, moa_names: list[str], target_proba: np.ndarray, target_names: list[str],
              links: dict[str, Any], k: int = TOP_TARGETS) -> np.ndarray:
    """Per row: 1 agree, 0 disagree, -1 no usual target for the top MoA (``consistency`` of the top MoA and the
    top-k targets); how often the two answers agree is measured with it in cross-validation."""
    top_moa = np.argmax(moa_proba, axis=1)
    tops = np.argsort(-target_proba, axis=1, kind="stable")[:, :k]
    out = np.empty(len(top_moa), np.int8)
    for i, (m, idx) in enumerate(zip(top_moa, tops)):
        agree = consistency(moa_names[m], [target_names[j] for j in idx], links)["agree"]
        out[i] = -1 if agree is None else int(agree)
    return out
