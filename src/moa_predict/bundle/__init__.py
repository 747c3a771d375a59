"""The trained artifact on its own floor: the ``Bundle`` (model, targets, layout, calibration, reference index)
and its files. Training builds one; the CLI, streaming, Dask, the web app, explanations and the notebook API read
and predict with it, without importing ``training``."""

from .artifact import (FORMAT, FORMAT_VERSION, GENE_ONLY_DIR, LABEL_SETS_DIR, META_FILE, NORM_PREFIX, WEIGHTS_FILE,
                       Bundle, load_bundle, save_bundle, simulated_marker)
from .predictor import Predictor, Result

__all__ = ["Bundle", "Predictor", "Result", "load_bundle", "save_bundle", "simulated_marker", "FORMAT",
           "FORMAT_VERSION", "GENE_ONLY_DIR", "LABEL_SETS_DIR", "META_FILE", "NORM_PREFIX", "WEIGHTS_FILE"]
