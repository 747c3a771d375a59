"""The trust layer: calibration, MoA sets with a recall guarantee on new compounds, abstention, compound pooling,
and their place in bundles and ``moa predict``."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from moa_predict.data.profiles import schema
from moa_predict.data.errors import DataError
from moa_predict.trust.calibration import Recalibrator, nested_recalibration, reliability
from moa_predict.trust.conformal import (crc_threshold, grouped_coverage, prediction_sets, set_recall,
                                              single_label_quantile, single_label_sets, thresholds)
from moa_predict.trust.model import CONTROL, NO_CONFIDENT, NO_NARROW, UNLIKE, TrustModel, fit_trust


def _compounds(n_compounds=1500, per=6, n_moas=20, seed=0):
    """Compounds with 6 profiles each and at most one MoA; a profile's scores share its compound's offset, so
    profiles of one compound are NOT exchangeable with each other (as in real data)."""
    rng = np.random.default_rng(seed)
    moa = rng.integers(-1, n_moas, n_compounds)  # -1: no MoA
    groups = np.repeat(np.arange(n_compounds), per)
    Y = np.zeros((n_compounds * per, n_moas), dtype=np.int8)
    rows = np.flatnonzero(moa[groups] >= 0)
    Y[rows, moa[groups][rows]] = 1
    compound_effect = rng.normal(0, 1.5, (n_compounds, n_moas))[groups]
    z = -4 + 3.5 * Y + compound_effect + rng.normal(0, 0.7, Y.shape)
    P = 1 / (1 + np.exp(-z))
    outer = rng.permutation(n_compounds) % 5
    return P, Y, groups, outer[groups]


def test_crc_threshold_is_the_known_conformal_quantile():
    # 100 compounds, one positive each, scores 0.01 ... 1.00: at 90 %, C=100, B=1 -> (0.1*101 - 1)/100 = 0.091
    # of the positives may be missed -> 9 misses -> λ = 0.10, and the calibration recall is 91 %
    P = np.linspace(0.01, 1.0, 100)[:, None]
    Y = np.ones((100, 1))
    lam = crc_threshold(P, Y, np.arange(100), 0.9)
    assert lam == pytest.approx(0.10)
    assert set_recall(Y, prediction_sets(P, lam))["pooled_recall"] == pytest.approx(0.91)


@pytest.mark.parametrize("level", [0.8, 0.9, 0.95])
def test_sets_reach_the_level_on_held_out_compounds(level):
    P, Y, groups, outer = _compounds()
    m = grouped_coverage(P, Y, groups, outer, (level,))[0]
    assert level - 0.02 <= m["pooled_recall"] <= level + 0.02
    assert m["mean_set_size"] < P.shape[1]


def test_per_profile_control_reaches_the_level_per_profile():
    P, Y, groups, outer = _compounds()
    m = grouped_coverage(P, Y, groups, outer, (0.9,), control="per_profile")[0]
    assert 0.88 <= m["per_profile_recall"] <= 0.92


def test_sets_are_nested_as_the_level_rises():
    P, Y, groups, _ = _compounds(n_compounds=300)
    levels = (0.5, 0.8, 0.9, 0.95, 0.99)
    lam = thresholds(P, Y, groups, levels)
    assert np.all(np.diff(lam) <= 0)
    sets = [prediction_sets(P, t) for t in lam]
    for small, large in zip(sets, sets[1:]):
        assert not (small & ~large).any()


def test_single_label_sets_cover_the_true_class():
    rng = np.random.default_rng(1)
    n, k = 4000, 8
    logits = rng.normal(0, 2, (n, k))
    P = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(k, p=p) for p in P])  # the probabilities are the truth
    for method in ("lac", "aps"):
        q = single_label_quantile(P[:2000], labels[:2000], 0.9, method=method)
        S = single_label_sets(P[2000:], q, method)
        assert 0.88 <= S[np.arange(2000), labels[2000:]].mean() <= 0.93, method


def test_recalibration_fixes_overconfidence_without_hurting_log_loss():
    rng = np.random.default_rng(2)
    z = rng.normal(-3, 2, (3000, 10))
    Y = (rng.random(z.shape) < 1 / (1 + np.exp(-z))).astype(float)
    P = 1 / (1 + np.exp(-2.5 * z))  # overconfident
    report, after = nested_recalibration(Y, P, np.arange(3000) % 5)
    assert report["chosen"] != "identity"
    assert report["methods"][report["chosen"]]["log_loss"] < report["methods"]["identity"]["log_loss"]
    assert reliability(Y, after)["ece"] < reliability(Y, P)["ece"]
    platt = Recalibrator("platt").fit(Y, P)
    assert Recalibrator.from_dict(json.loads(json.dumps(platt.to_dict()))).transform(P) == pytest.approx(
        platt.transform(P))


@pytest.fixture(scope="module")
def trained(sim_dataset, tmp_path_factory):
    from moa_predict.models.prior import PriorModel
    from moa_predict.bundle import save_bundle
    from moa_predict.training.train import train_bundle

    bundle, _ = train_bundle(PriorModel(), sim_dataset, n_splits=5, seed=0, progress=False, command="test")
    return save_bundle(bundle, tmp_path_factory.mktemp("trust") / "prior"), bundle


def test_bundle_round_trips_the_trust_layer(trained):
    from moa_predict.bundle import load_bundle

    path, bundle = trained
    loaded = load_bundle(path)
    assert isinstance(loaded.trust, TrustModel)
    assert loaded.trust.to_dict() == json.loads(json.dumps(bundle.trust.to_dict()))
    assert "trust" not in loaded.info and loaded.info["cv"]["trust"]["sets"][1]["level"] == 0.9
    P = np.random.default_rng(0).random((5, len(bundle.target_names)))
    assert (loaded.trust.sets(P, 0.9) == bundle.trust.sets(P, 0.9)).all()


def test_a_bundle_without_sets_still_loads(trained, tmp_path):
    import shutil

    from moa_predict.bundle import load_bundle

    path, _ = trained
    old = tmp_path / "old"
    shutil.copytree(path, old)
    meta = json.loads((old / "bundle.json").read_text())
    del meta["trust"]
    (old / "bundle.json").write_text(json.dumps(meta))
    assert load_bundle(old).trust is None


def _trust(levels=(0.5, 0.9), lam=(0.5, 0.2), compound=None):
    return TrustModel(levels=list(levels), thresholds=list(lam), compound=compound,
                      measured=[{"level": lv, "pooled_recall": lv + 0.004} for lv in levels])


def test_abstention_says_why_there_is_no_set():
    trust = _trust()
    P = np.array([[0.9, 0.1, 0, 0], [0.05, 0.1, 0, 0], [0.9, 0.9, 0, 0], [0.9, 0.3, 0, 0], [0.9, 0.8, 0.7, 0]])
    S, why = trust.profile_sets(P, 0.9, control=[False, False, True, False, False],
                                ood=[False, False, False, True, False])
    assert why == [None, NO_CONFIDENT, CONTROL, UNLIKE, NO_NARROW]  # a set of half the MoAs or more: not shown
    assert S.tolist() == [[True, False, False, False]] + [[False] * 4] * 4
    with pytest.raises(DataError, match="outside"):
        trust.sets(P, 1.5)
    assert "90.4 %" in trust.sentence(0.9) and "SIMULATED" in trust.sentence(0.9, simulated=True)


def test_pooling_a_compound_with_one_profile_gives_that_profile():
    trust = _trust(compound={"platt": {"a": 1.7, "b": -0.4}, "thresholds": [0.6, 0.05]})
    P = np.array([[0.7, 0.3, 0.01], [0.2, 0.25, 0.4], [0.3, 0.2, 0.45], [0.9, 0.9, 0.9]])
    P = np.hstack([P, np.full((4, 4), 0.001)])  # 7 MoAs: sets of up to 3 narrow things down
    features = pd.DataFrame({schema.CP_TYPE: [schema.TREATED] * 3 + [schema.CONTROL],
                             "compound": ["solo", "pair", "pair", ""]})
    calls = {c["compound"]: c for c in trust.compound_consensus(features, P, list("abcdefg"), 0.9)}
    assert set(calls) == {"solo", "pair"}
    solo = calls["solo"]
    assert [t["probability"] for t in solo["top"]][:3] == pytest.approx([0.7, 0.3, 0.01], abs=1e-6)
    assert [m["moa"] for m in solo["set"]] == ["a", "b"]  # the profile's own set at λ = 0.2
    assert all(m["agreement"] == 1.0 for m in solo["set"])
    pair = calls["pair"]
    assert pair["n_profiles"] == 2 and pair["abstention"] is None
    assert pair["set"] and {m["moa"] for m in pair["set"]} <= {"a", "b", "c"}


def test_fit_trust_on_cross_validation(sim_dataset):
    from moa_predict.training.crossval import cross_validate
    from moa_predict.models.prior import PriorModel

    result = cross_validate(PriorModel(), sim_dataset, n_splits=5, seed=0, progress=False)
    trust = fit_trust(result, sim_dataset)
    assert trust.grouped and len(trust.levels) == len(trust.thresholds) == len(trust.measured)
    assert np.all(np.diff(trust.thresholds) <= 0)
    assert trust.compound is not None and trust.compound["gain"]["compounds"] > 0
    summary = trust.summary()
    assert [s["level"] for s in summary["sets"]] == [0.8, 0.9, 0.95]


def test_top_k_comparison_finds_the_smallest_list_with_that_recall():
    from moa_predict.trust.conformal import positive_ranks, top_k_for_recall

    P = np.array([[0.9, 0.1, 0.5], [0.2, 0.3, 0.1]])
    Y = np.array([[0, 1, 1], [1, 0, 0]])  # true pairs ranked 3rd, 2nd and 2nd
    ranks = positive_ranks(Y, P)
    assert top_k_for_recall(ranks, 0.6) == {"k": 2, "pooled_recall": pytest.approx(2 / 3)}
    assert top_k_for_recall(ranks, 1.0)["k"] == 3


def test_one_profile_per_compound_reports_pooling_not_applicable_without_warnings():
    """A consensus table (one profile per compound): no RuntimeWarning reaches the user, the report says why."""
    import warnings
    from types import SimpleNamespace

    from moa_predict.trust.model import NOT_APPLICABLE_POOLING

    P, Y, _, _ = _compounds(n_compounds=400, per=1)
    fold = np.arange(len(P)) % 5
    data = SimpleNamespace(targets=pd.DataFrame(Y), drugs=pd.Series([f"d{i}" for i in range(len(P))]),
                           target_names=[f"m{j}" for j in range(Y.shape[1])])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trust = fit_trust(SimpleNamespace(oof=P, fold=fold), data)
        summary = trust.summary()
    assert summary["compound_pooling"] == NOT_APPLICABLE_POOLING
    pooled = trust.pool(np.array([[0.0, 1.0]]), np.array([1]))  # a single profile passes through unchanged
    assert pooled == pytest.approx(1 / (1 + np.exp(-np.array([[0.0, 1.0]]))))


def test_sets_are_calibrated_on_compounds_held_out_whole_only():
    """A drug with more than 18 profiles is split by rows across the folds: its out-of-fold scores come from a model
    that saw it. Made perfectly confident here, it must not move the sets' thresholds nor their measured recall
    (with it, they promised more recall than they kept on new drugs)."""
    from types import SimpleNamespace

    P, Y, groups, outer = _compounds(n_compounds=600)
    names = [f"m{j}" for j in range(Y.shape[1])]
    drugs = np.array([f"d{g}" for g in groups])

    def fit(P, Y, drugs, fold):
        data = SimpleNamespace(targets=pd.DataFrame(Y), drugs=pd.Series(drugs), target_names=names)
        return fit_trust(SimpleNamespace(oof=P, fold=fold), data)

    base = fit(P, Y, drugs, outer)
    big = 400  # one drug with 400 profiles, its true MoA seen by every fold model: p = 0.99
    Y_big = np.zeros((big, Y.shape[1]), dtype=Y.dtype)
    Y_big[:, 0] = 1
    P_big = np.full(Y_big.shape, 0.001)
    P_big[:, 0] = 0.99
    leaky = fit(np.vstack([P, P_big]), np.vstack([Y, Y_big]), np.concatenate([drugs, ["big"] * big]),
                np.concatenate([outer, np.arange(big) % 5]))
    assert leaky.thresholds == pytest.approx(base.thresholds)
    assert [m["pooled_recall"] for m in leaky.measured] == pytest.approx([m["pooled_recall"] for m in base.measured])
