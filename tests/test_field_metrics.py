"""The field's figures (``evaluation.field_metrics``), the shuffled-label control (``training.controls``) and the
per-MoA judgement (``evaluation.skill``): hand-checked values, controls that behave as nulls, and the figures in
``moa train``'s report, ``moa evaluate`` and the model card."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score

from moa_predict.data.profiles.layout import load_layout
from moa_predict.data.profiles.reader import load_profiles
from moa_predict.evaluation.field_metrics import (Scored, field_report, macro_roc_auc, micro_pr_auc,
                                                  permute_by_compound, random_ranking_ap, retrieval_map,
                                                  topk_accuracy)
from moa_predict.evaluation.skill import (NOT_PREDICTABLE, PREDICTABLE, TOO_FEW, per_target_skill,
                                          training_compounds_when_held_out)

SMALL = dict(n_compounds=12, n_moas=4, plates=3, wells_per_plate=96, controls_per_plate=12,
             n_features_per_block={"Cells": 16, "Nuclei": 12, "Cytoplasm": 12})


def test_topk_accuracy_counts_a_true_moa_among_the_top_k_of_labelled_rows():
    Y = np.array([[1, 0, 0], [0, 0, 1], [0, 1, 1], [0, 0, 0]])
    P = np.array([[.9, .1, 0], [.5, .4, .1], [.2, .3, .5], [.9, 0, 0]])
    assert topk_accuracy(Y, P, 1) == pytest.approx(2 / 3)  # the unlabelled last row is not counted
    assert topk_accuracy(Y, P, 2) == pytest.approx(2 / 3)
    assert topk_accuracy(Y, P, 3) == 1.0
    assert topk_accuracy(np.zeros((2, 3)), P[:2], 1) is None


def test_micro_pr_auc_is_average_precision_of_the_flattened_matrix_and_macro_auc_skips_one_class_moas():
    rng = np.random.default_rng(0)
    Y = (rng.random((40, 5)) < 0.3).astype(int)
    Y[:, 4] = 0  # no positive: no AUC for it
    P = rng.random((40, 5))
    assert micro_pr_auc(Y, P) == pytest.approx(average_precision_score(Y.ravel(), P.ravel()))
    P_perfect = Y + 0.01 * rng.random(Y.shape)
    assert macro_roc_auc(Y, P_perfect) == 1.0
    assert macro_roc_auc(Y, 1 - P_perfect) == 0.0
    assert macro_roc_auc(Y, P_perfect, targets=np.array([1, 0, 0, 0, 0], bool)) == 1.0


def test_labels_permuted_across_compounds_keep_each_compound_whole():
    groups = np.array(["a", "a", "b", "c", "c", "c", "d"])
    Y = np.array([[1, 0], [1, 0], [0, 1], [1, 1], [1, 1], [1, 1], [0, 0]])
    perm = permute_by_compound(Y, groups, seed=3)
    assert np.array_equal(perm, permute_by_compound(Y, groups, seed=3))  # seeded
    for g in np.unique(groups):  # every profile of a compound gets the same (donor) labels
        assert len({tuple(r) for r in perm[groups == g]}) == 1
    donors = sorted(tuple(perm[groups == g][0]) for g in np.unique(groups))
    assert donors == sorted(tuple(Y[groups == g][0]) for g in np.unique(groups))  # the compounds' label rows, reshuffled
    assert sorted(map(tuple, permute_by_compound(Y, None, seed=0))) == sorted(map(tuple, Y))


def test_random_ranking_ap_is_the_mean_ap_of_random_rankings():
    rng = np.random.default_rng(0)
    for R, N in [(1, 10), (3, 12), (5, 5), (2, 40)]:
        aps = []
        for _ in range(20000):
            rel = np.zeros(N, bool)
            rel[rng.choice(N, R, replace=False)] = True
            aps.append(np.mean((np.cumsum(rel) / np.arange(1, N + 1))[rel]))
        assert random_ranking_ap(np.array([R]), np.array([N]))[0] == pytest.approx(np.mean(aps), abs=0.01)


def test_retrieval_map_finds_moas_that_profiles_carry_and_a_constant_retrieves_by_chance():
    rng = np.random.default_rng(0)
    n, k = 60, 4
    Y = np.zeros((n, k), int)
    Y[np.arange(n), np.arange(n) % k] = 1
    names = [f"m{j}" for j in range(k)]
    signal = Y * 3.0 + rng.normal(0, 0.3, (n, k))
    good = retrieval_map(signal, Y, None, names, seed=0, null_size=200)
    assert good["map"] > 0.95 and good["map_significant"] == 1.0 and good["moas"] == k
    flat = retrieval_map(np.ones((n, k)), Y, None, names, seed=0, null_size=200)  # ties must not rank positives first
    assert flat["map"] < 0.5 and flat["map_significant"] == 0.0
    # one vector for all, averaged over compounds of different sizes (float rounding differs by size): still chance
    groups = np.repeat(np.arange(n), np.arange(n) % 5 + 1).astype(str)
    rows = np.repeat(np.arange(n), np.arange(n) % 5 + 1)
    prior = np.broadcast_to(np.array([0.1, 0.3, 0.7, 0.01]), (len(rows), k))
    Yr = np.zeros((n, k), int)
    Yr[np.arange(n), (np.arange(n) % 5 + 1) % k] = 1  # MoA follows the compound's size: rounding would retrieve it
    sized = retrieval_map(prior, Yr[rows], groups, names, seed=0, null_size=200)
    assert sized["map_significant"] == 0.0 and sized["map"] < 0.5
    few = retrieval_map(signal[:3], np.eye(3, k, dtype=int), None, names)
    assert few["map"] is None and "nothing to retrieve" in few["note"]
    sampled = retrieval_map(signal, Y, None, names, seed=0, null_size=200, max_compounds=20)
    assert sampled["sampled"] and sampled["compounds"] == 20


def test_field_report_puts_the_model_beside_its_controls():
    rng = np.random.default_rng(1)
    n, k = 80, 4
    Y = np.zeros((n, k))
    Y[np.arange(n), np.arange(n) % k] = 1
    groups = np.repeat(np.arange(n // 2), 2).astype(str)  # two profiles per compound
    P = 0.6 * Y + 0.4 * rng.random((n, k))
    prior = np.full((n, k), 0.25)
    report = field_report(Y, {"model": Scored(Y, P), "prior": Scored(Y, prior),
                              "shuffled": Scored(permute_by_compound(Y, groups, 0), P)},
                          groups=groups, target_names=list("abcd"), inputs=Y + rng.normal(0, .1, Y.shape))
    f = report["figures"]
    assert report["compounds"] == n // 2 and report["labelled_rows"] == n
    assert f["top1_accuracy"]["model"] == 1.0 and f["top1_accuracy"]["shuffled"] < 0.6
    assert f["micro_pr_auc"]["model"] > f["micro_pr_auc"]["shuffled"] and f["micro_pr_auc"]["prior"] == 0.25
    assert f["map"]["model"] > 0.9 > f["map"]["prior"]
    assert f["log_loss"]["model"] < f["log_loss"]["prior"]
    assert report["retrieval"]["input_profiles"]["map"] > 0.9
    assert "macro_roc_auc_judged" not in f  # only with a per-MoA judgement


def test_a_moa_is_judged_only_with_two_other_compounds_in_training_and_must_beat_both_controls():
    # compounds c0..c5 in folds 0,1,2,0,1,2; MoA 0 on c0,c1,c2 (one per fold: 2 others in training when held out),
    # MoA 1 on c3 only (none), MoA 2 on c4,c5 (1 other)
    groups = np.repeat([f"c{i}" for i in range(6)], 4)
    fold = np.repeat([0, 1, 2, 0, 1, 2], 4)
    Y = np.zeros((24, 3))
    Y[np.isin(groups, ["c0", "c1", "c2"]), 0] = 1
    Y[groups == "c3", 1] = 1
    Y[np.isin(groups, ["c4", "c5"]), 2] = 1
    assert list(training_compounds_when_held_out(Y, fold, groups)) == [2, 0, 1]
    P = np.clip(0.05 + 0.8 * Y, 0, 1)  # ranks every MoA perfectly
    skill = per_target_skill(Y, P, fold, ["a", "b", "c"], groups)
    assert [skill[m]["judgement"] for m in "abc"] == [PREDICTABLE, TOO_FEW, TOO_FEW]
    assert not skill["b"]["predictable"] and skill["a"]["prior_auc"] is not None
    # a shuffled control that ranks MoA a as well as the model: no evidence of skill
    beaten = per_target_skill(Y, P, fold, ["a", "b", "c"], groups, shuffled=Scored(Y, P))
    assert beaten["a"]["judgement"] == NOT_PREDICTABLE and beaten["a"]["shuffled_auc"] == 1.0


@pytest.fixture(scope="module")
def cellpainting(tmp_path_factory) -> Path:
    from moa_predict.simulate import simulate_profiles

    return simulate_profiles(tmp_path_factory.mktemp("cp") / "single", label_mode="single", seed=0, **SMALL)


@pytest.mark.slow  # a refit shuffled control is a second cross-validation; test_evaluate_and_the_card_show_the_field_figures stays fast
def test_cv_report_has_the_field_figures_beside_the_prior_and_a_refit_shuffled_control(cellpainting):
    from moa_predict.models.registry import make_model
    from moa_predict.training.train import train_bundle

    data = load_profiles(cellpainting / "profiles.csv.gz", load_layout(cellpainting / "layout.toml"))
    bundle, result = train_bundle(make_model("logreg", seed=0), data, n_splits=3, progress=False, reference=False)
    cv = bundle.info["cv"]
    f = cv["field"]["figures"]
    assert f["log_loss"]["model"] == pytest.approx(cv["score"]) and cv["prior_score"] == f["log_loss"]["prior"]
    assert cv["field"]["notes"]["shuffled_mode"] == "refit"  # small data: the model refit on permuted labels
    # the simulated MoA signal is learnt; with labels permuted across compounds nothing is
    assert f["top1_accuracy"]["model"] > f["top1_accuracy"]["shuffled"] + 0.3
    assert f["micro_pr_auc"]["model"] > max(f["micro_pr_auc"]["prior"], f["micro_pr_auc"]["shuffled"])
    assert f["map"]["model"] > f["map"]["shuffled"] and f["map_significant"]["model"] == 1.0
    skill = cv["per_target_skill"]
    assert cv["field"]["judged_moas"] == sum(s["judgement"] != TOO_FEW for s in skill.values())
    assert "macro_roc_auc_judged" in f
    assert all(s["judgement"] in (PREDICTABLE, NOT_PREDICTABLE, TOO_FEW) for s in skill.values())
    assert set(cv["not_predictable"]) == {m for m, s in skill.items() if not s["predictable"]}
    assert set(cv["too_few_to_judge"]) == {m for m, s in skill.items() if s["judgement"] == TOO_FEW}
    assert all(s["shuffled_auc"] is not None for s in skill.values())


@pytest.mark.slow  # two cross-validations of the same model
def test_permute_control_scores_the_same_predictions_and_changes_no_cv_number(sim_dataset):
    """On the LISH-MoA layout the figures are only added: the CV score, per-target losses and the blend-free
    model's predictions are the same whichever control is asked for."""
    from moa_predict.models.registry import make_model
    from moa_predict.training.train import train_bundle

    kw = dict(n_splits=3, progress=False, reference=False, gene_only=False)
    a, ra = train_bundle(make_model("prior"), sim_dataset, shuffled="permute", **kw)
    b, rb = train_bundle(make_model("prior"), sim_dataset, shuffled="refit", **kw)
    assert a.info["cv"]["score"] == b.info["cv"]["score"] and np.array_equal(ra.oof, rb.oof)
    assert a.info["cv"]["per_target"] == b.info["cv"]["per_target"]
    fa = a.info["cv"]["field"]
    assert fa["notes"]["shuffled_mode"] == "permute"
    assert fa["figures"]["log_loss"]["model"] == pytest.approx(fa["figures"]["log_loss"]["prior"])  # the prior is the prior
    assert b.info["cv"]["field"]["notes"]["shuffled_mode"] == "refit"
    from moa_predict.training.controls import resolve_mode

    assert resolve_mode("auto", sim_dataset) == "permute"  # LISH-MoA layout: no second CV unless asked for


def test_evaluate_and_the_card_show_the_field_figures(cellpainting, tmp_path, capsys):
    from moa_predict.cli.main import main
    from moa_predict.bundle import load_bundle
    from moa_predict.web.services.card import model_card

    bundle = tmp_path / "b"
    assert main(["train", "--features", str(cellpainting / "profiles.csv.gz"), "--layout",
                 str(cellpainting / "layout.toml"), "--model", "logreg", "--folds", "3", "--no-gene-only",
                 "--shuffled-control", "permute", "--out", str(bundle)]) == 0
    printed = capsys.readouterr().out
    assert "top-5 accuracy" in printed and "shuffled labels" in printed and "micro PR-AUC" in printed
    report = json.loads((bundle / "cv_report.json").read_text(encoding="utf-8"))
    assert report["field"]["notes"]["shuffled_mode"] == "permute"
    card = model_card(load_bundle(bundle))
    rows = {r["figure"]: r for r in card["cv"]["field"]["rows"]}
    assert {"top-1 accuracy", "top-5 accuracy", "micro PR-AUC", "macro ROC-AUC", "retrieval mAP",
            "log loss"} <= set(rows)
    assert rows["log loss"]["model"] == f"{report['score']:.5f}" and card["cv"]["prior_score"] is not None
    assert all(t["judgement"] for t in card["targets"])

    # moa evaluate on LISH-MoA-style files: the same figures, the prior and permuted labels beside
    rng = np.random.default_rng(0)
    ids = [f"id_{i}" for i in range(40)]
    Y = np.zeros((40, 3), int)
    Y[np.arange(40), np.arange(40) % 3] = 1
    pd.DataFrame(Y, index=pd.Index(ids, name="sig_id"), columns=list("abc")).to_csv(tmp_path / "t.csv")
    P = 0.7 * Y + 0.3 * rng.random(Y.shape)
    pd.DataFrame(P, index=pd.Index(ids, name="sig_id"), columns=list("abc")).to_csv(tmp_path / "p.csv")
    assert main(["evaluate", "--predictions", str(tmp_path / "p.csv"), "--targets", str(tmp_path / "t.csv"),
                 "--out", str(tmp_path / "e.json")]) == 0
    ev = json.loads((tmp_path / "e.json").read_text(encoding="utf-8"))
    fig = ev["field"]["figures"]
    assert fig["top1_accuracy"]["model"] == 1.0 and fig["top1_accuracy"]["shuffled"] < 0.7
    assert fig["log_loss"]["model"] == pytest.approx(ev["score"]) and fig["log_loss"]["prior"] == pytest.approx(
        ev["prior_score"])
    assert fig["map"]["model"] > 0.9 and "profiles" in ev["field"]["notes"]["shuffled"]
