"""Shared fixtures: one small simulated data set per test session, and the real label files when present."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pytest

SIM_TRAIN_ROWS, SIM_TEST_ROWS, SIM_SEED = 600, 100, 0

# Never the user's real data directory: `moa serve` without --data-dir keeps results under $XDG_DATA_HOME.
os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="moa-tests-data-")
atexit.register(shutil.rmtree, os.environ["XDG_DATA_HOME"], ignore_errors=True)
os.environ.pop("MOA_TOKEN", None)


@pytest.fixture(scope="session")
def sim_data():
    """The simulated data set in memory (600 train rows, 100 test rows, seed 0)."""
    from moa_predict.simulate import simulate

    return simulate(n_train=SIM_TRAIN_ROWS, n_test=SIM_TEST_ROWS, seed=SIM_SEED)


@pytest.fixture(scope="session")
def sim_dir(sim_data, tmp_path_factory) -> Path:
    """The same data set written in the LISH-MoA layout. Read-only: copy a file before changing it."""
    from moa_predict.simulate import write_simulated

    out = tmp_path_factory.mktemp("sim")
    write_simulated(sim_data, out)
    return out


@pytest.fixture(scope="session")
def sim_dataset(sim_dir):
    """The training part of `sim_dir`, loaded and validated."""
    from moa_predict.data.dataset import load_dataset

    return load_dataset(sim_dir)


@pytest.fixture()
def raw_features(sim_dir) -> pd.DataFrame:
    """The first 20 rows of train_features.csv as pandas reads them (a fresh copy for each test to damage)."""
    return pd.read_csv(sim_dir / "train_features.csv", nrows=20)


@pytest.fixture(scope="session")
def shared_labels_dir() -> Path:
    """The real LISH-MoA label files (targets, drugs; no features). Override with MOA_SHARED_DATA."""
    path = Path(os.environ.get("MOA_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "lish-moa")
    if not (path / "train_targets_scored.csv").is_file() or not (path / "train_drug.csv").is_file():
        pytest.skip(f"real label files not found in {path} (set MOA_SHARED_DATA)")
    return path
