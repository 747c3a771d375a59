"""Tests of the LISH-MoA feature simulator: layout, determinism, label structure, files, statistics."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from moa_predict.data.profiles import schema
from moa_predict.simulate import (
    REAL_STATISTICS,
    SimulatedData,
    compare_statistics,
    feature_statistics,
    load_catalog,
    simulate,
    write_simulated,
)

SHARED = Path(os.environ.get("MOA_SHARED_DATA", Path(__file__).parents[1].parent / "shared" / "lish-moa"))
SIG_ID_RE = re.compile(r"^id_[0-9a-f]{9}$")
DRUG_ID_RE = re.compile(r"^[0-9a-f]{9}$")
FRAMES = ("train_features", "targets_scored", "targets_nonscored", "drugs", "test_features", "sample_submission",
          "test_targets_scored")


@pytest.fixture(scope="module")
def small() -> SimulatedData:
    return simulate(n_train=600, n_test=150, seed=1)


@pytest.fixture(scope="module")
def real_labels() -> SimulatedData:
    if not (SHARED / "train_targets_scored.csv").exists():
        pytest.skip(f"real label files not found in {SHARED} (set MOA_SHARED_DATA)")
    return simulate(seed=3, labels_from=SHARED)


def test_same_seed_same_data_different_seed_different(small: SimulatedData) -> None:
    again = simulate(n_train=600, n_test=150, seed=1)
    for name in FRAMES:
        pd.testing.assert_frame_equal(getattr(small, name), getattr(again, name))
    assert small.truth == again.truth
    other = simulate(n_train=600, n_test=150, seed=2)
    assert not small.train_features[schema.SIG_ID].equals(other.train_features[schema.SIG_ID])
    assert not np.array_equal(small.train_features[list(schema.GENE_COLUMNS)].to_numpy()[:50],
                              other.train_features[list(schema.GENE_COLUMNS)].to_numpy()[:50])


def _check_features(frame: pd.DataFrame, n: int) -> None:
    assert list(frame.columns) == list(schema.META_COLUMNS) + list(schema.FEATURE_COLUMNS)
    assert len(frame) == n
    assert frame[schema.SIG_ID].map(lambda s: bool(SIG_ID_RE.match(s))).all()
    assert frame[schema.SIG_ID].is_unique
    assert set(frame[schema.CP_TYPE]) <= set(schema.CP_TYPES)
    assert set(frame[schema.CP_TIME]) <= set(schema.CP_TIMES)
    assert pd.api.types.is_integer_dtype(frame[schema.CP_TIME])
    assert set(frame[schema.CP_DOSE]) <= set(schema.CP_DOSES)
    values = frame[list(schema.FEATURE_COLUMNS)]
    assert (values.dtypes == np.float32).all()
    x = values.to_numpy()
    assert np.isfinite(x).all()
    assert x.min() >= schema.CLIP_LOW and x.max() <= schema.CLIP_HIGH


def test_layout_is_exact(small: SimulatedData) -> None:
    catalog = load_catalog()
    _check_features(small.train_features, 600)
    _check_features(small.test_features, 150)
    assert not set(small.train_features[schema.SIG_ID]) & set(small.test_features[schema.SIG_ID])
    assert small.train_features[schema.SIG_ID].is_monotonic_increasing

    for frame, names in ((small.targets_scored, catalog["scored_targets"]),
                         (small.targets_nonscored, catalog["nonscored_targets"]),
                         (small.test_targets_scored, catalog["scored_targets"])):
        assert list(frame.columns) == [schema.SIG_ID] + names
        y = frame[names].to_numpy()
        assert pd.api.types.is_integer_dtype(y.dtype) and set(np.unique(y)) <= {0, 1}
    assert len(catalog["scored_targets"]) == 206 and len(catalog["nonscored_targets"]) == 402

    assert list(small.drugs.columns) == [schema.SIG_ID, schema.DRUG_ID]
    assert small.drugs[schema.DRUG_ID].map(lambda s: bool(DRUG_ID_RE.match(s))).all()
    for frame in (small.targets_scored, small.targets_nonscored, small.drugs):
        assert frame[schema.SIG_ID].equals(small.train_features[schema.SIG_ID])

    sub = small.sample_submission
    assert list(sub.columns) == [schema.SIG_ID] + catalog["scored_targets"]
    assert sub[schema.SIG_ID].equals(small.test_features[schema.SIG_ID])
    assert (sub[catalog["scored_targets"]].to_numpy() == 0.5).all()
    assert small.test_targets_scored[schema.SIG_ID].equals(small.test_features[schema.SIG_ID])


def test_labels_constant_within_drug_and_controls_empty(small: SimulatedData) -> None:
    names = list(small.targets_scored.columns[1:])
    by_drug = small.targets_scored[names].groupby(small.drugs[schema.DRUG_ID].to_numpy())
    assert (by_drug.nunique() <= 1).all().all()
    nonscored = small.targets_nonscored.drop(columns=schema.SIG_ID)
    assert (nonscored.groupby(small.drugs[schema.DRUG_ID].to_numpy()).nunique() <= 1).all().all()

    control = (small.train_features[schema.CP_TYPE] == schema.CONTROL).to_numpy()
    assert 0.05 < control.mean() < 0.11
    assert (small.drugs[schema.DRUG_ID].to_numpy()[control] == schema.CONTROL_DRUG_ID).all()
    assert (small.drugs[schema.DRUG_ID].to_numpy()[~control] != schema.CONTROL_DRUG_ID).all()
    assert small.targets_scored[names].to_numpy()[control].sum() == 0
    assert nonscored.to_numpy()[control].sum() == 0
    test_control = (small.test_features[schema.CP_TYPE] == schema.CONTROL).to_numpy()
    assert small.test_targets_scored[names].to_numpy()[test_control].sum() == 0
    # Treated rows do carry labels (about two thirds have at least one scored MoA).
    assert 0.4 < (small.targets_scored[names].to_numpy()[~control].sum(axis=1) > 0).mean() < 0.9


def test_each_drug_cycles_through_dose_time_combinations(small: SimulatedData) -> None:
    frame = small.train_features.assign(drug=small.drugs[schema.DRUG_ID].to_numpy())
    treated = frame[frame[schema.CP_TYPE] == schema.TREATED]
    combos = treated.groupby("drug").apply(lambda d: len(set(zip(d[schema.CP_DOSE], d[schema.CP_TIME]))))
    sizes = treated.groupby("drug").size()
    assert (combos == np.minimum(sizes, 6)).all()


def test_truth_is_json_and_names_signal_features(small: SimulatedData) -> None:
    truth = json.loads(json.dumps(small.truth))
    assert truth["seed"] == 1 and truth["mode"] == "synthetic"
    targets = truth["targets"]
    assert list(targets) == load_catalog()["scored_targets"]
    strong = targets["proteasome_inhibitor"]
    weak = targets["dopamine_receptor_antagonist"]
    assert strong["strength"] > 0.5 > weak["strength"]
    for info in (strong, weak):
        assert info["features"] and set(info["features"]) <= set(schema.FEATURE_COLUMNS)
        assert len(info["features"]) == len(info["weights"])
        assert np.all(np.diff(np.abs(info["weights"])) <= 1e-9)


def test_written_files_round_trip(small: SimulatedData, tmp_path: Path) -> None:
    paths = write_simulated(small, tmp_path / "sim")
    names = sorted(p.name for p in paths)
    assert names == sorted([
        "train_features.csv", "train_targets_scored.csv", "train_targets_nonscored.csv", "train_drug.csv",
        "test_features.csv", "sample_submission.csv", "test_targets_scored.csv", "simulation_truth.json",
        "SIMULATED.json",
    ])
    assert sorted(p.name for p in (tmp_path / "sim").iterdir()) == names  # no temp files left behind
    features = pd.read_csv(tmp_path / "sim" / "train_features.csv")
    assert list(features.columns) == list(small.train_features.columns)
    feature_cols = list(schema.FEATURE_COLUMNS)
    np.testing.assert_array_equal(features[feature_cols].to_numpy(np.float32),
                                  small.train_features[feature_cols].to_numpy())
    pd.testing.assert_frame_equal(features[list(schema.META_COLUMNS)],
                                  small.train_features[list(schema.META_COLUMNS)], check_dtype=False)
    for name, frame in (("train_targets_scored.csv", small.targets_scored), ("train_drug.csv", small.drugs),
                        ("sample_submission.csv", small.sample_submission),
                        ("test_targets_scored.csv", small.test_targets_scored),
                        ("train_targets_nonscored.csv", small.targets_nonscored)):
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "sim" / name), frame, check_dtype=False)
    assert json.loads((tmp_path / "sim" / "simulation_truth.json").read_text()) == json.loads(json.dumps(small.truth))
    line = (tmp_path / "sim" / "train_features.csv").read_text().splitlines()[1]
    assert all(v == "%.4g" % float(v) for v in line.split(",")[4:])  # 4 significant digits, like the real files


def test_written_files_get_the_same_mode_as_other_outputs(small: SimulatedData, tmp_path: Path) -> None:
    """Simulated files are as readable as a predictions.csv (``moa predict`` writes with ``write_table``) and
    a file open() creates, not private like a temporary file (0600)."""
    from moa_predict.data.formats.io import write_table

    paths = write_simulated(small, tmp_path / "sim")
    predictions = write_table(small.sample_submission, tmp_path / "predictions.csv")
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    mode = stat.S_IMODE(predictions.stat().st_mode)
    assert mode == stat.S_IMODE(plain.stat().st_mode)
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in paths} == {p.name: mode for p in paths}


def test_statistics_resemble_the_real_features() -> None:
    data = simulate(n_train=3000, n_test=0, seed=5)
    stats = compare_statistics(data.train_features)
    assert list(stats.columns) == ["simulated", "real"]
    assert set(stats.index) == set(REAL_STATISTICS.index)
    sim = stats["simulated"]
    assert sim["cc_corr_frac_positive"] == 1.0 and sim["cc_corr_min"] > 0.3
    for key, tol in (("g_q25", 0.1), ("g_median", 0.02), ("g_q75", 0.1), ("c_q25", 0.15), ("c_median", 0.05),
                     ("c_q75", 0.15), ("g_std", 0.3), ("c_mean", 0.3), ("control_frac", 0.01)):
        assert abs(sim[key] - REAL_STATISTICS[key]) < tol, (key, sim[key])
    assert 0.002 < sim["g_frac_exact_zero"] < 0.008
    assert 0.02 < sim["cytotoxic_profile_frac"] < 0.12
    assert 0.1 < sim["g_pc1_explained"] < 0.4
    # Controls vary less than treated profiles.
    f = data.train_features
    control = (f[schema.CP_TYPE] == schema.CONTROL).to_numpy()
    x = f[list(schema.FEATURE_COLUMNS)].to_numpy()
    assert x[control].std() < 0.6 * x[~control].std()
    only_genes = feature_statistics(f[list(schema.GENE_COLUMNS[:50])])
    assert "g_mean" in only_genes.index and "c_mean" not in only_genes.index


@pytest.mark.slow  # simulates the full 23,814-profile LISH-MoA label set
def test_labels_from_reproduces_the_real_files(real_labels: SimulatedData) -> None:
    scored = pd.read_csv(SHARED / "train_targets_scored.csv")
    nonscored = pd.read_csv(SHARED / "train_targets_nonscored.csv")
    drugs = pd.read_csv(SHARED / "train_drug.csv")
    submission = pd.read_csv(SHARED / "sample_submission.csv")
    pd.testing.assert_frame_equal(real_labels.targets_scored, scored, check_dtype=False)
    pd.testing.assert_frame_equal(real_labels.targets_nonscored, nonscored, check_dtype=False)
    pd.testing.assert_frame_equal(real_labels.drugs, drugs, check_dtype=False)
    pd.testing.assert_frame_equal(real_labels.sample_submission, submission, check_dtype=False)
    _check_features(real_labels.train_features, len(scored))
    _check_features(real_labels.test_features, len(submission))
    assert real_labels.train_features[schema.SIG_ID].equals(scored[schema.SIG_ID])
    assert real_labels.test_features[schema.SIG_ID].equals(submission[schema.SIG_ID])
    control = (drugs[schema.DRUG_ID] == schema.CONTROL_DRUG_ID).to_numpy()
    assert ((real_labels.train_features[schema.CP_TYPE] == schema.CONTROL).to_numpy() == control).all()
    assert real_labels.truth["mode"] == "labels_from"


def test_simulated_data_is_marked_and_the_mark_reaches_the_bundle(small: SimulatedData, tmp_path: Path) -> None:
    """The simulator marks its output; load_dataset keeps the mark and a bundle trained on it says so. A directory
    without the mark (real data) has none."""
    from moa_predict.data.profiles.dataset import load_dataset
    from moa_predict.models import make_model
    from moa_predict.training.train import train_bundle

    write_simulated(small, tmp_path / "sim")
    data = load_dataset(tmp_path / "sim")
    assert data.simulated["simulated"] is True and "SIMULATED" in data.simulated["note"]
    bundle, result = train_bundle(make_model("prior"), data, n_splits=3, progress=False, reference=False)
    assert bundle.info["training_data"]["simulated"] == data.simulated
    skill = bundle.info["cv"]["per_target_skill"]
    assert set(skill) == set(data.target_names)
    assert all(not s["predictable"] for s in skill.values())  # the prior never beats itself
    assert bundle.info["cv"]["not_predictable"] == data.target_names
    for name in ("SIMULATED.json", "simulation_truth.json", "test_targets_scored.csv"):
        (tmp_path / "sim" / name).unlink()
    assert load_dataset(tmp_path / "sim").simulated is None
