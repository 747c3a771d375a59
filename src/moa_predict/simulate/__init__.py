"""A realistic simulator of the LISH-MoA feature files (the real features cannot be obtained here).

- ``generate``: the simulated world, drugs and profiles (``simulate`` -> ``SimulatedData``; the generative
  model is described there);
- ``write``: ``write_simulated``, the files in the LISH-MoA layout;
- ``layout``: ``simulate_profiles``, a Cell Painting table in a CellProfiler-style layout (not LISH-MoA) with the
  ``layout.toml`` that reads it;
- ``check``: ``feature_statistics`` / ``compare_statistics`` against the real data's published statistics.
"""

from .check import REAL_STATISTICS, compare_statistics, feature_statistics
from .generate import SimulatedData, load_catalog, simulate
from .layout import cellpainting_layout, simulate_profiles
from .write import write_simulated

__all__ = [
    "REAL_STATISTICS",
    "SimulatedData",
    "cellpainting_layout",
    "compare_statistics",
    "feature_statistics",
    "load_catalog",
    "simulate",
    "simulate_profiles",
    "write_simulated",
]
