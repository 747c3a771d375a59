"""Data layer: the LISH-MoA layout, readers with validation (the simulator is `moa_predict.simulate`)."""

from .dataset import Dataset, control_mask, load_dataset, load_features, load_targets
from .errors import DataError
from .io import read_table, write_table

__all__ = ["DataError", "Dataset", "control_mask", "load_dataset", "load_features", "load_targets",
           "read_table", "write_table"]
