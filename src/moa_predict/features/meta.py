"""Numeric encodings of the meta columns (cp_type, cp_time, cp_dose)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..data.profiles import schema


def paper_meta(X: pd.DataFrame) -> np.ndarray:
    """The paper's Table 2 mapping: trt_cp→0, ctl_vehicle→1; 24/48/72→0/1/2; D1→0, D2→1."""
    cp_type = (X[schema.CP_TYPE] == schema.CONTROL).to_numpy(np.float32)
    cp_time = X[schema.CP_TIME].map({t: i for i, t in enumerate(schema.CP_TIMES)}).to_numpy(np.float32)
    cp_dose = (X[schema.CP_DOSE] == "D2").to_numpy(np.float32)
    return np.column_stack([cp_type, cp_time, cp_dose])


def onehot_meta(X: pd.DataFrame) -> np.ndarray:
    """One-hot dose and time (5 columns); cp_type is left out because only treated rows are modelled."""
    cols = [(X[schema.CP_TIME] == t).to_numpy(np.float32) for t in schema.CP_TIMES]
    cols += [(X[schema.CP_DOSE] == d).to_numpy(np.float32) for d in schema.CP_DOSES]
    return np.column_stack(cols)


def feature_matrix(X: pd.DataFrame, columns: list[str] | tuple[str, ...] = schema.FEATURE_COLUMNS) -> np.ndarray:
    """The g-/c- block as float32, selected by name (never by position)."""
    return X.loc[:, list(columns)].to_numpy(np.float32)
