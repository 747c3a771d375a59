"""Drug-grouped, multilabel-stratified folds: the invariants the CV numbers rely on."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from moa_predict.data.profiles import schema
from moa_predict.training.crossval import assign_folds
from moa_predict.evaluation.folds import DrugGroupedFolds

K = 5


@pytest.fixture(scope="module")
def real_structure(shared_labels_dir):
    """Treated rows of the real label files: (labels, drug ids). Controls are the vehicle 'drug'."""
    y = pd.read_csv(shared_labels_dir / "train_targets_scored.csv").set_index(schema.SIG_ID)
    drugs = pd.read_csv(shared_labels_dir / "train_drug.csv").set_index(schema.SIG_ID)[schema.DRUG_ID]
    drugs = drugs.loc[y.index]
    treated = (drugs != schema.CONTROL_DRUG_ID).to_numpy()
    return y.to_numpy()[treated], drugs.to_numpy()[treated]


@pytest.fixture(scope="module")
def synthetic_structure():
    """A LISH-MoA-like structure without files: ~600 drugs of 6 profiles (a few of 3-18), 4 large drugs
    split by rows, 30 targets of 5-60 drugs each, a drug's label vector shared by all its profiles."""
    rng = np.random.default_rng(0)
    sizes = np.concatenate([np.full(560, 6), rng.integers(1, 19, 40), [24, 60, 150, 400]])
    drug_labels = np.zeros((len(sizes), 30), dtype=np.int8)
    for j in range(30):
        drug_labels[rng.choice(len(sizes), rng.integers(5, 61), replace=False), j] = 1
    drug_of_row = np.repeat(np.arange(len(sizes)), sizes)
    return drug_labels[drug_of_row], np.array([f"drug{d:04d}" for d in drug_of_row])


@pytest.fixture(scope="module")
def sim_structure(sim_dataset):
    treated = ~sim_dataset.is_control
    return sim_dataset.targets.to_numpy()[treated], sim_dataset.drugs.to_numpy()[treated]


def _check_invariants(Y: np.ndarray, drugs: np.ndarray, fold: np.ndarray, common_min_drugs: int | None) -> None:
    assert fold.shape == (len(Y),) and set(np.unique(fold)) == set(range(K))
    sizes = np.bincount(fold, minlength=K) / len(fold)
    assert sizes.min() > 0.6 / K and sizes.max() < 1.4 / K, sizes
    frame = pd.DataFrame({"drug": drugs, "fold": fold})
    per_drug = frame.groupby("drug")["fold"].agg(["nunique", "size"])
    small = per_drug[per_drug["size"] <= 18]
    assert (small["nunique"] == 1).all(), "a drug with <= 18 profiles straddles two folds"
    large = per_drug[per_drug["size"] > 18]
    assert (large["nunique"] == K).all(), "large drugs are split by rows over every fold"
    if common_min_drugs is None:
        return
    # a target carried by many drugs must be validated in every fold
    n_drugs = pd.DataFrame(Y).groupby(drugs).max().sum(axis=0).to_numpy()
    common = np.flatnonzero(n_drugs >= common_min_drugs)
    assert len(common) > 0
    for k in range(K):
        assert (Y[fold == k][:, common].sum(axis=0) > 0).all(), f"fold {k} lacks positives of a common target"


def test_real_label_structure(real_structure):
    Y, drugs = real_structure
    splitter = DrugGroupedFolds(n_splits=K, seed=0)
    fold = splitter.assign(Y, drugs)
    assert splitter.grouped_ is True
    _check_invariants(Y, drugs, fold, common_min_drugs=10)


@pytest.mark.parametrize("seed", [0, 1])
def test_synthetic_label_structure(synthetic_structure, seed):
    Y, drugs = synthetic_structure
    fold = DrugGroupedFolds(n_splits=K, seed=seed).assign(Y, drugs)
    _check_invariants(Y, drugs, fold, common_min_drugs=10)


def test_simulated_label_structure(sim_structure):
    # 600 rows: every drug is small and no target spans enough drugs to reach every fold
    Y, drugs = sim_structure
    fold = DrugGroupedFolds(n_splits=K, seed=0).assign(Y, drugs)
    _check_invariants(Y, drugs, fold, common_min_drugs=None)


def test_deterministic_by_seed(sim_structure):
    Y, drugs = sim_structure
    a = DrugGroupedFolds(n_splits=K, seed=3).assign(Y, drugs)
    b = DrugGroupedFolds(n_splits=K, seed=3).assign(Y, drugs)
    c = DrugGroupedFolds(n_splits=K, seed=4).assign(Y, drugs)
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()


def test_split_yields_disjoint_covering_folds(sim_structure):
    Y, drugs = sim_structure
    seen = np.zeros(len(Y), dtype=int)
    for train, val in DrugGroupedFolds(n_splits=K, seed=0).split(None, Y, drugs):
        assert len(np.intersect1d(train, val)) == 0 and len(train) + len(val) == len(Y)
        seen[val] += 1
    assert (seen == 1).all()


def test_controls_get_fold_minus_one(sim_dataset):
    fold, grouped = assign_folds(sim_dataset, n_splits=K, seed=0)
    control = sim_dataset.is_control
    assert control.any() and grouped
    assert (fold[control] == -1).all()
    assert set(np.unique(fold[~control])) == set(range(K))


def test_no_drug_ids_falls_back_to_rows_with_a_warning(sim_dataset):
    from dataclasses import replace

    splitter = DrugGroupedFolds(n_splits=K, seed=0)
    Y = sim_dataset.targets.to_numpy()
    with pytest.warns(UserWarning, match="no drug ids"):
        fold = splitter.assign(Y)
    assert splitter.grouped_ is False
    assert set(np.unique(fold)) == set(range(K))
    with pytest.warns(UserWarning, match="no drug ids"):
        _, grouped = assign_folds(replace(sim_dataset, drugs=None), n_splits=K, seed=0)
    assert grouped is False


def test_fewer_drugs_than_folds():
    Y = np.array([[1, 0], [0, 1], [1, 1], [0, 0], [1, 0], [0, 1]])
    drugs = np.array(["a", "a", "b", "b", "c", "c"])
    fold = DrugGroupedFolds(n_splits=K, seed=0).assign(Y, drugs)
    assert all(len(set(fold[drugs == d])) == 1 for d in "abc")
    assert len(set(fold)) == 3
