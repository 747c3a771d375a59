"""Treatment- and compound-level calls: the wells of a treatment (or of a compound) averaged into one profile,
then predicted. How image-based profiling reports MoA calls (replicate wells are noisy; their mean is not).

The confident call of a treatment / compound pools its wells' own predictions (mean logit; the compound-level
map for compounds), exactly as its threshold was fit on the wells' out-of-fold predictions (``trust.model``),
so the measured precision is that of the procedure that answers."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..data.profiles.dataset import Dataset
from ..data.errors import DataError
from ..data.formats.io import Source
from ..data.profiles.reader import treatment_keys, treatment_means
from ..trust.calibration import sigmoid
from ..trust.model import pool_logits
from ..bundle import Bundle
from ..bundle.predictor import call_model_of, ood_mask

LEVELS = ("profile", "treatment", "compound")


def level_columns(bundle: Bundle, level: str) -> list[str]:
    """The columns whose values define one unit at `level` (the layout's treatment columns, or its compound)."""
    layout = bundle.layout
    if layout.is_lish_moa:  # its files are read as LISH-MoA files, without the layout's treatment table
        raise DataError(f"--level {level} averages wells by the layout's treatment / compound columns; this bundle "
                        "was trained on the LISH-MoA layout, which has none. Use --level profile.")
    cols = list(layout.treatment) if level == "treatment" else [layout.group] if layout.group else []
    if not cols:
        raise DataError(f"the bundle's layout names no {'treatment' if level == 'treatment' else 'group'} column, so "
                        f"--level {level} cannot group wells.")
    return cols


def predict_level(bundle: Bundle, src: Source, level: str, *, name: str | None = None,
                  call_precision: float | None = None) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """One row per treatment / compound: its key, the number of wells averaged, then one probability per MoA;
    with `call_precision`, also each unit's confident call (``level_calls``)."""
    by = level_columns(bundle, level)
    calls_model = None
    if call_precision is not None:  # no calls, or a bad level, fail before any work
        calls_model = call_model_of(bundle)
        calls_model.level_index(call_precision)
        if level not in calls_model.units():
            raise DataError(f"this bundle has no calls fit at the {level} level (its training data had no "
                            f"{'treatment columns' if level == 'treatment' else 'compounds'}); use --level "
                            f"{' or '.join(calls_model.units())}.", source=str(bundle.path or "bundle"))
    data = bundle.read_dataset(src, name=name)
    missing = [c for c in by if c not in data.features.columns]
    if missing:
        raise DataError(f"column {missing[0]!r} (needed to group wells at --level {level}) is not in the file.",
                        source=name or str(src), column=missing[0])
    means = treatment_means(data, by)
    treated = data.features.loc[~data.is_control]
    n = treatment_keys(treated, by).value_counts().reindex(means.features.index).rename("n_profiles")
    frame = bundle.predict_frame(means.features)
    keys = means.features[by].reset_index(drop=True)
    out = pd.concat([frame[["sig_id"]].rename(columns={"sig_id": level}), keys,
                     n.reset_index(drop=True), frame.drop(columns=["sig_id"])], axis=1)
    calls = None if call_precision is None else level_calls(bundle, data, by, level, call_precision)
    if calls is not None:
        calls = calls.reindex(out[level].to_numpy()).rename_axis(level).reset_index()
    return out, calls


def level_calls(bundle: Bundle, data: Dataset, by: list[str], level: str, precision: float) -> pd.DataFrame:
    """Per treatment / compound (indexed by its key): call, kind, estimated_precision, reason, from its wells'
    predictions pooled (mean logit; the compound map at the compound level). A unit all of whose wells are out of
    distribution gets no call."""
    trust = bundle.trust
    treated = data.features.loc[~data.is_control]
    P = bundle.predict_proba(treated)
    codes, uniques = pd.factorize(treatment_keys(treated, by), sort=True)
    zbar, n = pool_logits(np.asarray(P, dtype=np.float64), codes, len(uniques))
    pooled = trust.pool(zbar, n) if level == "compound" else sigmoid(zbar)
    ood = ood_mask(bundle, treated)
    unit_ood = None
    if ood is not None:
        unit_ood = np.bincount(codes, weights=np.asarray(ood, dtype=float), minlength=len(uniques)) >= n
    calls = call_model_of(bundle).call(pooled, bundle.target_names, precision, level, ood=unit_ood)
    calls.index = pd.Index(uniques, name=level)
    return calls[["call", "kind", "estimated_precision", "reason"]]
