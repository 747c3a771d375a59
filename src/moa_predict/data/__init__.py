"""Data layer: everything that reads or writes files. ``formats`` (CSV, Parquet, GCTX, GCT, h5ad; row chunks,
cluster partitions, atomic writes, fitted estimators as JSON + arrays, never pickle) apart from ``profiles`` (what a
table's columns are: its ``Layout``, LISH-MoA's shipped with the package; the one reader ``load_profiles`` into a
``Dataset`` that carries its layout; validation, gene identities, normalisation). The simulator is
``moa_predict.simulate``."""

from .errors import DataError
from .formats.io import read_table, write_table
from .profiles.dataset import Dataset, control_mask, load_dataset, load_features, load_targets
from .profiles.layout import Layout
from .profiles.reader import load_profiles

__all__ = ["DataError", "Dataset", "Layout", "control_mask", "load_dataset", "load_features", "load_profiles",
           "load_targets", "read_table", "write_table"]
