"""Treatment- and compound-level calls: the wells of a treatment (or of a compound) averaged into one profile,
then predicted. How image-based profiling reports MoA calls (replicate wells are noisy; their mean is not)."""

from __future__ import annotations

import pandas as pd

from ..data.errors import DataError
from ..data.io import Source
from ..data.profiles import treatment_keys, treatment_means
from ..training.bundle import Bundle

LEVELS = ("profile", "treatment", "compound")


def level_columns(bundle: Bundle, level: str) -> list[str]:
    """The columns whose values define one unit at `level` (the layout's treatment columns, or its compound)."""
    layout = bundle.layout
    if layout is None:
        raise DataError(f"--level {level} averages wells by the layout's treatment / compound columns; this bundle "
                        "was trained on the LISH-MoA layout, which has none. Use --level profile.")
    cols = list(layout.treatment) if level == "treatment" else [layout.group] if layout.group else []
    if not cols:
        raise DataError(f"the bundle's layout names no {'treatment' if level == 'treatment' else 'group'} column, so "
                        f"--level {level} cannot group wells.")
    return cols


def predict_level(bundle: Bundle, src: Source, level: str, *, name: str | None = None) -> pd.DataFrame:
    """One row per treatment / compound: its key, the number of wells averaged, then one probability per MoA."""
    by = level_columns(bundle, level)
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
    return pd.concat([frame[["sig_id"]].rename(columns={"sig_id": level}), keys,
                      n.reset_index(drop=True), frame.drop(columns=["sig_id"])], axis=1)
