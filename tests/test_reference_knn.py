"""``knn`` (nearest reference treatments): probabilities calibrated on multi-label data, single-label argmax kept."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from moa_predict.data.profiles import schema
from moa_predict.data.profiles.layout import ModelInputs
from moa_predict.trust.calibration import calibration_report, top1_outcomes
from moa_predict.evaluation.metrics import columnwise_log_loss, smoothed_prevalence
from moa_predict.models.registry import make_model


def _inputs(dims: int = 20, single: bool = False, treatment: tuple[str, ...] = ("compound",)) -> ModelInputs:
    """What the frames of ``_compounds`` are: one block of features, each compound its treatment and its group."""
    return ModelInputs(blocks={"f": [f"f{j}" for j in range(dims)]}, pca={"f": 0}, single_label=single,
                       treatment=list(treatment), group="compound")


def _compounds(n: int = 600, n_moas: int = 30, dims: int = 20, signal: float = 0.3, seed: int = 0,
               single: bool = False) -> tuple[pd.DataFrame, np.ndarray]:
    """One profile per compound (a consensus table): MoAs of very unequal frequency, a weak MoA signal under
    strong noise, so a compound's nearest other compound shares its MoA only now and then (as on real L1000)."""
    rng = np.random.default_rng(seed)
    freq = 1.0 / np.arange(1, n_moas + 1)
    Y = np.zeros((n, n_moas), dtype=np.float32)
    Y[np.arange(n), rng.choice(n_moas, n, p=freq / freq.sum())] = 1
    if not single:  # a fifth of the compounds carry a second MoA
        extra = rng.random(n) < 0.2
        Y[np.flatnonzero(extra), rng.integers(0, n_moas, extra.sum())] = 1
    centroids = rng.normal(size=(n_moas, dims))
    values = signal * (Y @ centroids) + rng.normal(size=(n, dims))
    columns = [f"f{j}" for j in range(dims)]
    frame = pd.DataFrame(values, columns=columns, index=[f"p{i}" for i in range(n)])
    frame.insert(0, "compound", [f"c{i}" for i in range(n)])
    frame.insert(0, schema.CP_TYPE, schema.TREATED)
    return frame, Y


def test_multilabel_vote_is_smoothed_to_what_neighbours_are_worth() -> None:
    X, Y = _compounds()
    train, test = np.arange(400), np.arange(400, 600)
    model = make_model("knn").fit(X.iloc[train], Y[train], inputs=_inputs())
    P = model.predict_proba(X.iloc[test])
    correct, confidence = top1_outcomes(Y[test], P)
    assert 0.05 < correct.mean() < 0.5  # a nearest compound helps, but is far from always right
    # before: every top call ≈ 0.91 whatever the neighbours are worth (top-call ECE 0.75 here)
    assert abs(confidence.mean() - correct.mean()) < 0.1
    assert calibration_report(Y[test], P, [str(j) for j in range(Y.shape[1])])["top1"]["ece"] < 0.15
    prior = np.broadcast_to(smoothed_prevalence(Y[train]), P.shape)
    assert columnwise_log_loss(Y[test], P).mean() < columnwise_log_loss(Y[test], prior).mean()
    assert 0.0 < model.vote_weight_ < 0.5


def test_multilabel_weight_is_learnt_without_the_compounds_own_profiles() -> None:
    """Two replicates per compound: a leave-one-profile-out weight would trust the twin (near 1); the weight is
    learnt among other compounds' references only, so it stays what a new compound's neighbours are worth."""
    X, Y = _compounds(n=300)
    twins = X.copy()
    twins.index = [f"q{i}" for i in range(len(X))]
    twins[[c for c in X.columns if c.startswith("f")]] += 0.05
    both = pd.concat([X, twins])
    # every profile its own reference
    weight = make_model("knn").fit(both, np.vstack([Y, Y]), inputs=_inputs(treatment=())).vote_weight_
    alone = make_model("knn").fit(X, Y, inputs=_inputs()).vote_weight_
    assert weight == pytest.approx(alone, abs=0.1)


def test_single_label_keeps_the_fixed_shrinkage_and_the_argmax() -> None:
    X, Y = _compounds(single=True)
    train, test = np.arange(400), np.arange(400, 600)
    model = make_model("knn").fit(X.iloc[train], Y[train], inputs=_inputs(single=True))
    fixed = make_model("knn", shrinkage=0.1).fit(X.iloc[train], Y[train], inputs=_inputs(single=True))
    np.testing.assert_allclose(model.predict_proba(X.iloc[test]), fixed.predict_proba(X.iloc[test]), atol=1e-6)
    q = X.iloc[test][[c for c in X.columns if c.startswith("f")]].to_numpy()
    r = X.iloc[train][[c for c in X.columns if c.startswith("f")]].to_numpy()
    cos = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (r / np.linalg.norm(r, axis=1, keepdims=True)).T
    nearest_class = Y[train][cos.argmax(axis=1)].argmax(axis=1)
    np.testing.assert_array_equal(model.predict_proba(X.iloc[test]).argmax(axis=1), nearest_class)


def test_learnt_weight_survives_a_bundle_round_trip() -> None:
    X, Y = _compounds(n=200)
    model = make_model("knn").fit(X, Y, inputs=_inputs())
    settings, arrays = model.get_state()
    again = type(model)(**model.get_params()).set_state(settings, arrays)
    np.testing.assert_array_equal(again.predict_proba(X), model.predict_proba(X))
