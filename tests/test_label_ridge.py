"""``label-ridge``: the smoothing and ridge algebra, settings chosen by inner CV, probabilities, bundle round trip."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import Ridge

from moa_predict.bundle import Bundle, load_bundle, save_bundle
from moa_predict.data.profiles import schema
from moa_predict.data.profiles.layout import ModelInputs
from moa_predict.evaluation.field_metrics import micro_pr_auc
from moa_predict.models import make_model
from moa_predict.models.label_ridge import _RidgePath, cooccurrence_smoothed


DIMS = 40
INPUTS = ModelInputs(blocks={"f": [f"f{j}" for j in range(DIMS)]}, pca={"f": 0}, treatment=["compound"],
                     group="compound")


def _families(n: int = 300, n_families: int = 12, size: int = 3, dims: int = DIMS, signal: float = 0.6,
              seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """One profile per compound; labels come in families (as the tubulin genes do): a compound's profile says its
    family, and it carries each label of the family with probability 0.5 (at least one)."""
    rng = np.random.default_rng(seed)
    family = rng.integers(0, n_families, n)
    Y = np.zeros((n, n_families * size), dtype=np.float32)
    for i, f in enumerate(family):
        members = np.flatnonzero(rng.random(size) < 0.5)
        Y[i, f * size + (members if len(members) else rng.integers(0, size, 1))] = 1
    values = signal * rng.normal(size=(n_families, dims))[family] + rng.normal(size=(n, dims))
    columns = [f"f{j}" for j in range(dims)]
    frame = pd.DataFrame(values, columns=columns, index=[f"p{i}" for i in range(n)])
    frame.insert(0, "compound", [f"c{i}" for i in range(n)])
    frame.insert(0, schema.CP_TYPE, schema.TREATED)
    return frame, Y


def test_cooccurrence_smoothing_by_hand() -> None:
    # labels a and b always together on row 0; c alone on row 1; row 2 carries a only
    Y = np.array([[1, 1, 0], [0, 0, 1], [1, 0, 0]], dtype=float)
    # S[i, j] = share of label i's rows carrying j: a -> (1, 1/2, 0), b -> (1, 1, 0), c -> (0, 0, 1)
    smoothed = cooccurrence_smoothed(Y, 0.5)
    np.testing.assert_allclose(smoothed[0], 0.5 * np.array([1, 1, 0]) + 0.5 * np.array([2, 1.5, 0]) / 2)
    np.testing.assert_allclose(smoothed[1], [0, 0, 1])
    np.testing.assert_allclose(smoothed[2], 0.5 * np.array([1, 0, 0]) + 0.5 * np.array([1, 0.5, 0]))
    np.testing.assert_array_equal(cooccurrence_smoothed(Y, 0.0), Y)


@pytest.mark.parametrize("shape", [(30, 50), (80, 10)])
def test_ridge_path_is_sklearns_ridge(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=shape), rng.normal(size=(shape[0], 4))
    path = _RidgePath(X)
    W, offset = path.weights(Y, 0.7)
    expected = Ridge(alpha=0.7 * path.scale * shape[0]).fit(X, Y)
    np.testing.assert_allclose(W, expected.coef_.T, atol=1e-8)
    np.testing.assert_allclose((X - path.mean) @ W + offset, expected.predict(X), atol=1e-8)


def test_settings_chosen_inside_and_probabilities_keep_the_ridge_order() -> None:
    X, Y = _families()
    train, test = np.arange(200), np.arange(200, 300)
    model = make_model("label-ridge").fit(X.iloc[train], Y[train], inputs=INPUTS)
    # every grid point was scored by the inner CV, and the chosen one is the best of them
    assert len(model.inner_pr_auc_) == 12
    assert model.inner_pr_auc_[f"lambda={model.lambda_:g} beta={model.beta_:g}"] == max(model.inner_pr_auc_.values())
    assert model.beta_ > 0  # labels travel in families: sharing them wins inside
    P = model.predict_proba(X.iloc[test])
    assert P.dtype == np.float32 and ((P > 0) & (P < 1)).all()
    scores = model.decision_function(X.iloc[test])
    np.testing.assert_array_equal(np.argsort(-P.ravel(), kind="stable")[:50],
                                  np.argsort(-scores.ravel(), kind="stable")[:50])
    prior = np.broadcast_to(Y[train].mean(axis=0), P.shape)
    assert micro_pr_auc(Y[test], P) > micro_pr_auc(Y[test], prior) + 0.2
    no_sharing = make_model("label-ridge", betas=[0.0]).fit(X.iloc[train], Y[train], inputs=INPUTS)
    assert no_sharing.beta_ == 0.0 and len(no_sharing.inner_pr_auc_) == 4
    assert micro_pr_auc(Y[test], P) > micro_pr_auc(Y[test], no_sharing.predict_proba(X.iloc[test]))


def test_too_few_compounds_for_an_inner_cv_still_fits() -> None:
    X, Y = _families(n=4)
    model = make_model("label-ridge").fit(X, Y, inputs=INPUTS)
    assert model.inner_pr_auc_ == {} and (model.lambda_, model.beta_) == (0.3, 0.0)
    assert model.predict_proba(X).shape == Y.shape


def test_bundle_round_trip_and_controls(tmp_path) -> None:
    X, Y = _families(n=120)
    model = make_model("label-ridge", lambdas=[1.0, 3.0], betas=[0.0, 0.5]).fit(X, Y, inputs=INPUTS)
    query = X.iloc[:10].copy()
    query.iloc[0, query.columns.get_loc(schema.CP_TYPE)] = schema.CONTROL
    before = model.predict_proba(query)
    assert (before[0] == 0).all() and (before[1:] > 0).all()
    names = [f"t{j}" for j in range(Y.shape[1])]
    path = save_bundle(Bundle(model, names, [c for c in X.columns if c.startswith("f")]), tmp_path / "ridge")
    assert not list(path.glob("*.pkl"))
    loaded = load_bundle(path).model
    assert loaded.get_params() == model.get_params()
    assert (loaded.lambda_, loaded.beta_, loaded.inner_pr_auc_) == (model.lambda_, model.beta_, model.inner_pr_auc_)
    np.testing.assert_array_equal(loaded.predict_proba(query), before)


def test_attributions_add_up_to_the_prediction() -> None:
    """A linear model explains exactly: integrated gradients from the no-response baseline sum to p(x) - p(0)."""
    from moa_predict.explain.attributions import raw_layout
    import torch

    X, Y = _families(n=150)
    model = make_model("label-ridge", lambdas=[1.0], betas=[0.3]).fit(X, Y, inputs=INPUTS)
    assert model.supports_attributions
    layout = raw_layout(model)
    assert layout.names == [c for c in X.columns if c.startswith("f")] and layout.n_meta == 0
    raw = torch.as_tensor(layout.inputs(X.iloc[:3], model))
    np.testing.assert_allclose(model.attribution_forward(raw).numpy(), model.predict_proba(X.iloc[:3]), rtol=1e-5)
    steps = torch.linspace(0, 1, 201)[:, None, None] * raw[None]  # a straight path from 0 to each profile
    steps.requires_grad_(True)
    model.attribution_forward(steps.reshape(-1, raw.shape[1]))[:, 0].sum().backward()
    grads = steps.grad
    attributions = (raw * (grads[:-1] + grads[1:]).sum(0) / 2 / 200).sum(1).numpy()
    gap = (model.attribution_forward(raw) - model.attribution_forward(torch.zeros_like(raw)))[:, 0].detach().numpy()
    np.testing.assert_allclose(attributions, gap, atol=1e-4)
    with pytest.raises(KeyError, match="unknown model"):
        from moa_predict.models.members import make_member

        make_member("label-ridge")  # a standalone model, not a blend member
