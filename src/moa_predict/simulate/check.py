"""How close simulated features are to the real ones: pooled distribution and correlation statistics next to
the published statistics of the real train features (backs ``moa simulate --check``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..data.profiles import schema

REAL_STATISTICS: pd.Series = pd.Series(
    {
        "g_mean": 0.009,
        "g_std": 1.24,
        "g_q25": -0.49,
        "g_median": 0.00,
        "g_q75": 0.51,
        "g_min": -10.0,
        "g_max": 10.0,
        "g_frac_exact_zero": 0.0047,
        "c_mean": -0.43,
        "c_std": 1.9,
        "c_q25": -0.56,
        "c_median": -0.005,
        "c_q75": 0.46,
        "c_min": -10.0,
        "c_max": 6.4,
        "cytotoxic_profile_frac": 0.065,
        "cc_corr_min": 0.61,
        "cc_corr_max": 0.93,
        "cc_corr_frac_above_0.8": 0.85,
        "cc_corr_frac_positive": 1.0,
        "gg_abs_corr_frac_below_0.2": 0.63,
        "gg_abs_corr_frac_0.4_to_0.6": 0.09,
        "g_pc1_explained": 0.25,
        "control_frac": 0.078,
    },
    name="real",
)
"""Published statistics of the real train features (all rows pooled).  ``cytotoxic_profile_frac`` is the
middle of the published 5-8 % range (profiles whose mean c- value is below -4)."""


def _distribution(prefix: str, block: np.ndarray) -> dict[str, float]:
    """Mean, spread, quartiles and range of all values of a block, as ``{prefix}_mean`` etc."""
    flat = block.ravel()
    q = np.quantile(flat, [0.25, 0.5, 0.75])
    stats = {"mean": flat.mean(), "std": flat.std(), "q25": q[0], "median": q[1], "q75": q[2], "min": flat.min(),
             "max": flat.max()}
    return {f"{prefix}_{k}": float(v) for k, v in stats.items()}


def feature_statistics(features: pd.DataFrame) -> pd.DataFrame:
    """Pooled distribution and correlation statistics of a g-/c- feature frame (one column, ``value``)."""
    g_cols = [c for c in schema.GENE_COLUMNS if c in features.columns]
    c_cols = [c for c in schema.CELL_COLUMNS if c in features.columns]
    out: dict[str, float] = {}
    if g_cols:
        g = features[g_cols].to_numpy(dtype=np.float64)
        out.update(_distribution("g", g), g_frac_exact_zero=float(np.mean(g == 0)))
    if c_cols:
        c = features[c_cols].to_numpy(dtype=np.float64)
        out.update(_distribution("c", c), cytotoxic_profile_frac=float(np.mean(c.mean(axis=1) < -4)))
        if len(c_cols) > 1:
            r = _upper(np.corrcoef(c, rowvar=False))
            out.update(
                cc_corr_min=r.min(), cc_corr_max=r.max(), **{"cc_corr_frac_above_0.8": float(np.mean(r > 0.8))},
                cc_corr_frac_positive=float(np.mean(r > 0)),
            )
    if len(g_cols) > 1:
        corr = np.corrcoef(g, rowvar=False)
        corr = np.nan_to_num(corr)
        r = np.abs(_upper(corr))
        out["gg_abs_corr_frac_below_0.2"] = float(np.mean(r < 0.2))
        out["gg_abs_corr_frac_0.4_to_0.6"] = float(np.mean((r >= 0.4) & (r < 0.6)))
        eig = np.linalg.eigvalsh(corr)
        out["g_pc1_explained"] = float(eig[-1] / eig.sum())
    if schema.CP_TYPE in features.columns:
        out["control_frac"] = float(np.mean(features[schema.CP_TYPE] == schema.CONTROL))
    return pd.DataFrame({"value": pd.Series(out, dtype=float)})


def _upper(m: np.ndarray) -> np.ndarray:
    i, j = np.triu_indices(m.shape[0], k=1)
    return m[i, j]


def compare_statistics(features: pd.DataFrame) -> pd.DataFrame:
    """Statistics of ``features`` next to the real data's (rows = statistic, columns = simulated, real)."""
    sim = feature_statistics(features)["value"]
    return pd.DataFrame({"simulated": sim, "real": REAL_STATISTICS.reindex(sim.index)})
