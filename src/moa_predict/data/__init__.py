"""Data layer: everything that reads or writes files — LISH-MoA tables and CMap files with validation, gene and
cell-line identities, chunked reading, and the persisted form of fitted estimators (``persist``: JSON + arrays,
never pickle). The simulator is ``moa_predict.simulate``."""

from .profiles.dataset import Dataset, control_mask, load_dataset, load_features, load_targets
from .errors import DataError
from .formats.io import read_table, write_table

__all__ = ["DataError", "Dataset", "control_mask", "load_dataset", "load_features", "load_targets",
           "read_table", "write_table"]
