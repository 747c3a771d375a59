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


def free_port() -> int:
    """A port no program holds now: tests never bind a fixed one (a `make demo` may be serving 8000)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def port() -> int:
    return free_port()


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
def prior_bundle(sim_dir, tmp_path_factory) -> Path:
    """A prior-model bundle trained on `sim_dir` through the CLI (cross-validated: trust, sets and calls), once per
    session for the modules that test what users read from a bundle. Read-only."""
    from moa_predict.cli import main

    out = tmp_path_factory.mktemp("prior_bundle") / "bundle"
    assert main(["train", "--data", str(sim_dir), "--model", "prior", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def noisy_upload(sim_dir) -> pd.DataFrame:
    """30 test profiles of `sim_dir` plus one garbage row ('noise_row': out of distribution). Copy before changing."""
    import numpy as np

    from moa_predict.data.profiles import schema

    test = pd.read_csv(sim_dir / "test_features.csv", dtype={"sig_id": str}).head(30).copy()
    noise = test.iloc[[0]].copy()
    noise[schema.SIG_ID] = "noise_row"
    noise[schema.CP_TYPE] = schema.TREATED
    cols = [c for c in test.columns if c.startswith(("g-", "c-"))]
    noise[cols] = np.random.default_rng(0).uniform(-10, 10, (1, len(cols)))
    return pd.concat([test, noise], ignore_index=True)


@pytest.fixture(scope="session")
def sim_dataset(sim_dir):
    """The training part of `sim_dir`, read and validated through the LISH-MoA layout."""
    from moa_predict.data.profiles.layout import Layout
    from moa_predict.data.profiles.reader import load_profiles

    return load_profiles(sim_dir, Layout.lish_moa())


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


# ------------------------------------------------------------------------------------------------
# A hand-made per-MoA skill report, so the web tests know exactly which MoAs are "not predictable" without the
# seconds of a cross-validation (keys as `moa train` writes them: training_data.simulated, cv.per_target_skill,
# cv.not_predictable; tests/test_simulate.py checks that training writes them for real).
# ------------------------------------------------------------------------------------------------


def _with_display_info(bundle, every: int = 3):
    """`bundle` with a simulator marker and a per-MoA skill report: every `every`-th MoA (ids 3, 6, ...)
    not predictable. Deterministic; returns the same bundle."""
    names = list(bundle.target_names)
    skill = {}
    for i, name in enumerate(names):
        ok = (i + 1) % every != 0
        prior = 0.02 + 0.0001 * i
        loss = prior * (0.8 if ok else 1.01)
        skill[name] = {"log_loss": loss, "prior_log_loss": prior, "gain": 1 - loss / prior,
                       "auc": 0.9 if ok else 0.5, "ap": 0.3 if ok else 0.01, "positives": 10 + i, "drugs": 1 + i % 7,
                       "predictable": ok}
    bundle.info.setdefault("training_data", {}).setdefault(
        "simulated", {"simulated": True, "mode": "labels-from", "seed": 0, "note": "test fixture"})
    cv = bundle.info.get("cv") or {"metric": "mean column-wise log loss", "score": 0.0421, "folds": 3,
                                   "grouped_by_drug": True, "seed": 0, "rows": "treated rows only"}
    cv["per_target_skill"] = skill  # replaces a real (tiny-model) report: the tests need to know which MoAs
    cv["not_predictable"] = [m for m, s in skill.items() if not s["predictable"]]
    bundle.info["cv"] = cv
    return bundle


@pytest.fixture(scope="session")
def with_display_info():
    """A function adding a hand-made skill report (see above) to a test bundle."""
    return _with_display_info


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny networks train fastest on one thread (and multi-threaded OpenMP crawls on a busy machine): for a
    test module, ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    from moa_predict.runtime.threads import limit_threads

    with limit_threads(1):
        yield
