"""Compound-level calls: one ranked MoA list per compound, from all its profiles (doses × times).

A compound is usually profiled at 2 doses × 3 times. Each profile gets its own probabilities; the compound
call aggregates its TREATED profiles (controls carry no MoA):

- ``mean_probability`` (the ranking key), ``min_probability``, ``max_probability``;
- ``top_k_fraction``: the fraction of the compound's profiles in which the MoA is among the profile's
  ``top_k`` most probable MoAs: agreement across doses and times (1.0: every profile agrees);
- with ``min_probability`` (default 0: any call), a profile agrees only when the MoA's probability there is
  at least that (a confident call), and ``no_confident`` counts the compound's profiles whose best MoA is
  below it;
- ``n_profiles`` and the doses and times seen.

The compound column is the first of ``drug_id``, ``compound``, ``compound_id`` present in the upload (or the
one named explicitly: for a bundle of another layout, the layout's group column). Doses and times are listed
when the upload has LISH-MoA's ``cp_dose`` / ``cp_time`` columns, else left empty.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..data.profiles import schema
from ..data.profiles.dataset import control_mask, find_compound_column

def compound_calls(features: pd.DataFrame, proba: np.ndarray, target_names: Sequence[str], *,
                   column: str | None = None, top_k: int = 5, n_moas: int = 10,
                   min_probability: float = 0.0) -> pd.DataFrame:
    """One row per (compound, MoA) for each compound's `n_moas` best MoAs, ranked by mean probability.

    Columns: compound, rank, moa, mean_probability, min_probability, max_probability, top_k_fraction,
    n_profiles, no_confident, doses, times. Empty (with these columns) when there is no compound column or no
    treated row."""
    columns = ["compound", "rank", "moa", "mean_probability", "min_probability", "max_probability",
               "top_k_fraction", "n_profiles", "no_confident", "doses", "times"]
    col = find_compound_column(features, column)
    proba = np.asarray(proba, dtype=np.float64)
    if col is None:
        return pd.DataFrame(columns=columns)
    treated = ~control_mask(features)
    compounds = features[col].astype("string").str.strip()
    keep = treated & compounds.notna().to_numpy() & (compounds.fillna("") != "").to_numpy()
    if not keep.any():
        return pd.DataFrame(columns=columns)
    k = int(min(max(top_k, 1), proba.shape[1]))
    in_top = np.zeros_like(proba, dtype=bool)
    np.put_along_axis(in_top, np.argsort(-proba, axis=1, kind="stable")[:, :k], True, axis=1)
    in_top &= proba >= min_probability
    no_confident = proba.max(axis=1) < min_probability
    names = np.asarray(target_names, dtype=object)
    rows: list[dict[str, Any]] = []
    codes, uniques = pd.factorize(compounds[keep], sort=True)
    positions = np.flatnonzero(keep)
    for c, name in enumerate(uniques):
        idx = positions[codes == c]
        p = proba[idx]
        mean = p.mean(axis=0)
        order = np.argsort(-mean, kind="stable")[:n_moas]
        # dose and time exist in LISH-MoA uploads; another layout's table may have neither
        doses = (sorted(features[schema.CP_DOSE].iloc[idx].astype(str).unique())
                 if schema.CP_DOSE in features.columns else [])
        times = (sorted(int(t) for t in features[schema.CP_TIME].iloc[idx].unique())
                 if schema.CP_TIME in features.columns else [])
        for r, j in enumerate(order, start=1):
            rows.append({"compound": str(name), "rank": r, "moa": str(names[j]), "mean_probability": float(mean[j]),
                         "min_probability": float(p[:, j].min()), "max_probability": float(p[:, j].max()),
                         "top_k_fraction": float(in_top[idx, j].mean()), "n_profiles": int(len(idx)),
                         "no_confident": int(no_confident[idx].sum()),
                         "doses": ",".join(doses), "times": ",".join(map(str, times))})
    return pd.DataFrame(rows, columns=columns)


def compound_calls_json(calls: pd.DataFrame, top_k: int = 5) -> list[dict[str, Any]]:
    """The web/CLI form: ``[{compound, n_profiles, doses, times, moas: [{rank, moa, mean_probability,
    min_probability, max_probability, top_k_fraction}]}]``, compounds ordered by their best mean probability."""
    out = []
    for name, group in calls.groupby("compound", sort=False):
        first = group.iloc[0]
        out.append({
            "compound": str(name), "n_profiles": int(first["n_profiles"]),
            "no_confident": int(first["no_confident"]),
            "doses": [d for d in str(first["doses"]).split(",") if d],
            "times": [int(t) for t in str(first["times"]).split(",") if t],
            "top_k": int(top_k),
            "moas": [{"rank": int(r["rank"]), "moa": r["moa"], "mean_probability": round(r["mean_probability"], 6),
                      "min_probability": round(r["min_probability"], 6),
                      "max_probability": round(r["max_probability"], 6),
                      "top_k_fraction": round(r["top_k_fraction"], 4)} for _, r in group.iterrows()],
        })
    out.sort(key=lambda c: -c["moas"][0]["mean_probability"] if c["moas"] else 0.0)
    return out
