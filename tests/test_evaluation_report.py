"""``evaluation.report``: what ``moa evaluate`` prints and writes, built outside the CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from moa_predict.data.errors import DataError
from moa_predict.evaluation.metrics import columnwise_log_loss, smoothed_prevalence
from moa_predict.evaluation.report import OWN_PRIOR_NOTE, read_scored, score_predictions


@pytest.fixture()
def files(sim_dir, tmp_path):
    """Targets, noisy predictions of them (rows shuffled), and features with the drug column joined in."""
    targets = pd.read_csv(sim_dir / "train_targets_scored.csv", index_col="sig_id")
    rng = np.random.default_rng(0)
    preds = (0.5 * targets + 0.5 * rng.random(targets.shape) * 0.05).sample(frac=1.0, random_state=0)
    preds.to_csv(tmp_path / "p.csv")
    features = pd.read_csv(sim_dir / "train_features.csv").merge(pd.read_csv(sim_dir / "train_drug.csv"),
                                                                 on="sig_id")
    features.to_csv(tmp_path / "f.csv", index=False)
    return sim_dir / "train_targets_scored.csv", tmp_path / "p.csv", tmp_path / "f.csv", targets, features


def test_controls_are_left_out_and_rows_aligned_with_compounds(files):
    t, p, f, targets, features = files
    every = read_scored(t, p)
    assert every.rows.startswith(f"all {len(targets):,} rows") and every.groups is None
    assert np.array_equal(every.y, targets.to_numpy())  # the shuffled predictions put back in the targets' order
    treated = read_scored(t, p, f)
    n_ctl = int((features["cp_type"] == "ctl_vehicle").sum())
    assert n_ctl > 0 and len(treated.y) == len(targets) - n_ctl
    assert treated.rows == f"{len(targets) - n_ctl:,} treated rows ({n_ctl:,} controls excluded)"
    drugs = features.set_index("sig_id").loc[targets.index, "drug_id"].to_numpy()
    assert list(treated.groups) == list(drugs[(features.set_index("sig_id").loc[targets.index, "cp_type"]
                                               != "ctl_vehicle").to_numpy()])


def test_scores_against_the_prior_given_or_the_targets_own_frequency(files):
    t, p, f, targets, _ = files
    data = read_scored(t, p, f)
    own = score_predictions(data, retrieval=False)
    assert own.prior_note == OWN_PRIOR_NOTE and "optimistic" in own.prior_note
    expected = columnwise_log_loss(data.y, np.broadcast_to(smoothed_prevalence(data.y), data.y.shape))
    assert own.prior_score == pytest.approx(expected.mean()) and own.score < own.prior_score
    flat = np.full(data.y.shape[1], 0.01)
    given = score_predictions(data, flat, "a flat 1 %", retrieval=False)
    assert given.prior_note == "a flat 1 %" and given.score == own.score and given.prior_score != own.prior_score
    assert given.field["notes"]["prior"] == "every profile given a flat 1 %"
    assert "map" not in given.field["figures"] and "compounds" in given.field["notes"]["shuffled"]
    hardest = given.hardest(3)
    assert list(given.per[hardest]) == sorted(given.per, reverse=True)[:3]
    assert [int(given.positives[j]) for j in hardest] == [int(data.y[:, j].sum()) for j in hardest]
    report = given.to_json()
    assert set(report) == {"score", "prior_score", "prior", "rows", "per_target", "per_target_prior",
                           "per_target_auc", "per_target_ap", "field"}
    assert list(report["per_target"]) == list(targets.columns) and report["score"] == given.score
    mean_auc, mean_ap, defined = given.ranking()
    assert defined == int((data.y.sum(axis=0) > 0).sum()) and 0.5 < mean_auc <= 1.0 and 0 < mean_ap <= 1.0


def test_no_target_with_a_positive_has_no_ranking(files):
    t, p, f, _, _ = files
    data = read_scored(t, p)
    data.y = np.zeros_like(data.y)
    assert score_predictions(data, retrieval=False).ranking() is None


def test_predictions_of_other_profiles_are_refused(files, tmp_path):
    t, p, _, targets, _ = files
    pd.read_csv(p, index_col="sig_id").iloc[:-1].to_csv(tmp_path / "short.csv")
    with pytest.raises(DataError, match="sig_id"):
        read_scored(t, tmp_path / "short.csv")
