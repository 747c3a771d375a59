"""Our models: determinism, no leakage, controls at 0, aux targets, blend weights, bundle round trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone

from moa_predict.bundle import Bundle, load_bundle, save_bundle
from moa_predict.data.profiles import schema
from moa_predict.training.crossval import assign_folds
from moa_predict.models import DEFAULT_MODEL, make_model
from moa_predict.models.stack import (Stack, calibrate, fit_blend_weights, fit_temperature, nested_stack_score,
                                      safeguard_factors)

_FAST = {"epochs": 3, "batch_size": 64, "g_pca": 8, "c_pca": 4}  # >= 20 OneCycle steps on 600 rows
TINY = {
    "mlp": {"hidden": [32, 32], **_FAST},
    "resnet": {"width": 32, "n_blocks": 1, **_FAST},
    "cnn1d": {"channels": 8, "length": 8, "conv_channels": 8, **_FAST},
    "logreg": dict(_FAST),
    "recipe-mlp": {"hidden": 32, **_FAST},
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data(sim_dataset):
    return sim_dataset


def _xy(data):
    return data.features, data.targets.to_numpy(np.float32), data.nonscored.to_numpy(np.float32)


def _states_equal(a, b) -> None:
    sa, aa = a.get_state()
    sb, ab = b.get_state()
    assert sa == sb
    assert sorted(aa) == sorted(ab)
    for k in aa:
        np.testing.assert_array_equal(aa[k], ab[k], err_msg=k)


@pytest.fixture(scope="module")
def fitted(data):
    """Each tiny model fitted once on the whole small data set (shared by the tests below)."""
    X, Y, Ya = _xy(data)
    return {name: make_model(name, **params).fit(X, Y, Ya) for name, params in TINY.items()}


@pytest.mark.parametrize("name", sorted(TINY))
def test_controls_zero_and_shapes(data, fitted, name):
    X, Y, _ = _xy(data)
    p = fitted[name].predict_proba(X)
    assert p.shape == Y.shape and p.dtype == np.float32
    assert ((p >= 0) & (p <= 1)).all()
    ctl = (X[schema.CP_TYPE] == schema.CONTROL).to_numpy()
    assert ctl.any() and (p[ctl] == 0.0).all()


def test_deterministic_with_a_seed(data, fitted):
    X, Y, Ya = _xy(data)
    torch.manual_seed(123)  # whatever ran before must not matter: each fit seeds itself
    again = make_model("mlp", **TINY["mlp"]).fit(X, Y, Ya)
    np.testing.assert_array_equal(again.predict_proba(X), fitted["mlp"].predict_proba(X))
    _states_equal(again, fitted["mlp"])
    other = make_model("mlp", **{**TINY["mlp"], "seed": 1}).fit(X, Y, Ya)
    assert not np.array_equal(other.predict_proba(X), fitted["mlp"].predict_proba(X))


def test_aux_head_used_only_when_asked(data, fitted):
    X, Y, Ya = _xy(data)
    with_aux = fitted["mlp"]  # aux=True is the mlp's default
    without = fitted["recipe-mlp"]
    assert with_aux.n_outputs_ == Y.shape[1] + Ya.shape[1]
    assert without.n_outputs_ == Y.shape[1]
    assert with_aux.predict_proba(X).shape == Y.shape  # the aux head is skipped at prediction time


def test_fit_depends_only_on_training_rows(data):
    """Fit on rows A; perturbing the other rows B must change neither the fitted state nor predictions."""
    X, Y, Ya = _xy(data)
    fold, _ = assign_folds(data, 3, 0)
    A = np.flatnonzero((fold != 0) & ((fold >= 0) | data.is_control))
    B = np.flatnonzero(fold == 0)
    feats = list(schema.FEATURE_COLUMNS)
    X2 = X.copy()
    X2.iloc[B, [X2.columns.get_loc(c) for c in feats]] = X.iloc[B][feats].to_numpy() * 3.0 + 1.0
    for name in ("mlp",):
        a = make_model(name, **TINY[name]).fit(X.iloc[A], Y[A], Ya[A])
        b = make_model(name, **TINY[name]).fit(X2.iloc[A], Y[A], Ya[A])
        _states_equal(a, b)
        np.testing.assert_array_equal(a.predict_proba(X.iloc[B]), b.predict_proba(X.iloc[B]))
        # and a leaky fit (preprocessing on all rows) would differ: the check has teeth
        pre_all = a.preprocessor_.__class__(**a.preprocessor_.get_params()).fit(X2)
        assert not np.allclose(pre_all.transform(X.iloc[B]), a.preprocessor_.transform(X.iloc[B]))


def test_blend_weights_simplex_and_nested():
    rng = np.random.default_rng(0)
    Y = (rng.random((300, 6)) < 0.1).astype(float)
    good = np.clip(0.7 * Y + 0.05 + 0.05 * rng.random(Y.shape), 0, 1)
    noisy = np.clip(0.3 * Y + 0.3 * rng.random(Y.shape), 0, 1)
    flat = np.full(Y.shape, 0.5)
    P = np.stack([good, noisy, flat])
    w = fit_blend_weights(P, Y)
    assert w.shape == (3,) and (w >= 0).all() and abs(w.sum() - 1) < 1e-9
    assert w[0] > w[2]
    fold = np.arange(300) % 3
    prior = np.broadcast_to(Y.mean(axis=0), Y.shape)
    groups = np.arange(300) // 10  # 30 "drugs" of 10 rows
    res = nested_stack_score(Stack(temperature=True, min_gain=0.0), P, Y, fold, prior, groups)
    for f in res["folds"]:
        assert min(f["weights"]) >= 0 and abs(sum(f["weights"]) - 1) < 1e-9
    assert res["oof"].shape == Y.shape and np.isfinite(res["score"])
    assert len(res["stack"].calibration_) == Y.shape[1] and res["stack"].temperature_ > 0
    # nested: fold k's predictions come from a stack that never saw fold k's rows
    k0 = fold == 0
    own = Stack(temperature=True, min_gain=0.0).fit(P[:, ~k0], Y[~k0], prior[~k0], groups[~k0])
    np.testing.assert_allclose(res["oof"][k0], own.apply(P[:, k0], prior[k0]))


def test_safeguard_factors():
    rng = np.random.default_rng(2)
    Y = (rng.random((600, 4)) < 0.1).astype(float)
    prior = np.broadcast_to(Y.mean(axis=0), Y.shape)
    flat = np.full(Y.shape, 0.5)  # worse than the prior everywhere: every target is weak
    few = np.arange(600) // 100  # 6 drugs: at most 10 -> the prior
    np.testing.assert_array_equal(safeguard_factors(flat, prior, Y, few), np.zeros(4))
    many = np.arange(600)  # every row its own drug -> shrunk, not switched off
    np.testing.assert_array_equal(safeguard_factors(flat, prior, Y, many, shrink=0.3), np.full(4, 0.3))
    good = np.clip(0.8 * Y + 0.02, 0, 1)  # far better than the prior: kept
    np.testing.assert_array_equal(safeguard_factors(good, prior, Y, few), np.ones(4))
    Y_rare = Y.copy()
    Y_rare[:, 0] = 0
    Y_rare[:3, 0] = 1  # 3 positives < min_positives: not judged, kept
    assert safeguard_factors(flat, np.broadcast_to(Y_rare.mean(axis=0), Y.shape), Y_rare, few)[0] == 1.0
    stack = Stack(temperature=True, min_gain=0.05).fit(np.stack([flat, good]), Y, prior, few)
    assert stack.prior_targets_ == [] and stack.weights_[1] > 0.9


def test_temperature_and_calibrate():
    rng = np.random.default_rng(1)
    z = np.log(0.05 / 0.95) + 1.5 * rng.standard_normal((20000, 3))
    sharp = 1.0 / (1.0 + np.exp(-z))  # calibrated: Y is drawn from these probabilities
    Y = (rng.random(sharp.shape) < sharp).astype(float)
    prev = Y.mean(axis=0)
    assert abs(fit_temperature(sharp, prev, Y) - 1.0) < 0.15
    # an under-confident version (0.6 of the logit distance from the prevalence) is sharpened back
    soft = calibrate(sharp, prev, np.full(3, 0.6))
    assert abs(fit_temperature(soft, prev, Y) - 1 / 0.6) < 0.25
    np.testing.assert_allclose(calibrate(sharp, prev, np.zeros(3)), np.broadcast_to(prev, sharp.shape), rtol=1e-5)
    np.testing.assert_allclose(calibrate(sharp, prev, np.ones(3)), np.clip(sharp, 1e-7, 1 - 1e-7), rtol=1e-5)


def test_blend_bundle_round_trip_and_parallel_fit(data, tmp_path):
    X, Y, Ya = _xy(data)
    members = [["mlp", TINY["mlp"]], ["mlp", {**TINY["mlp"], "seed": 1}], ["logreg", TINY["logreg"]]]
    stack = Stack(weights_=np.array([0.4, 0.2, 0.4]), calibration_=np.full(Y.shape[1], 1.2), prior_targets_=[0, 3])
    blend = make_model("blend", members=members, n_jobs=1)
    blend.fit(X, Y, Ya, stack=stack)
    p = blend.predict_proba(X)
    assert blend._preprocessing_groups() == [[0, 1, 2]]  # the nets share one preprocessing
    separate = sum(w * m.predict_proba(X) for w, m in zip([0.4, 0.2, 0.4], blend.members_))
    expected = calibrate(separate.astype(np.float32), blend.prevalence_, np.full(Y.shape[1], 1.2, np.float32))
    expected[:, [0, 3]] = blend.prevalence_[[0, 3]]
    expected[data.is_control] = 0
    np.testing.assert_allclose(p, expected, atol=1e-6)
    ctl = data.is_control
    assert (p[ctl] == 0).all()
    prevalence = (Y[~ctl][:, 3].sum() + 0.5) / ((~ctl).sum() + 1)
    np.testing.assert_allclose(p[~ctl][:, 3], prevalence, rtol=1e-6)  # safeguarded target = (smoothed) prevalence
    # the differentiable form used for attributions computes the same probabilities (treated rows)
    from moa_predict.features.torch_transforms import raw_inputs

    assert blend.supports_attributions
    with torch.no_grad():
        forward = blend.attribution_forward(torch.as_tensor(raw_inputs(X[~ctl]))).numpy()
    np.testing.assert_allclose(forward, p[~ctl], atol=2e-5)
    path = save_bundle(Bundle(blend, data.target_names), tmp_path / "bundle")
    loaded = load_bundle(path)
    np.testing.assert_array_equal(loaded.model.predict_proba(X), p)
    # two worker processes (1 torch thread each) give the same model as one process, up to float rounding
    par = make_model("blend", members=members, n_jobs=2)
    np.testing.assert_allclose(par.fit(X, Y, Ya, stack=stack).predict_proba(X), p, atol=1e-6)


@pytest.mark.parametrize("name", ["cnn1d", "resnet"])
def test_single_model_bundle_round_trip(data, fitted, tmp_path, name):
    X, _, _ = _xy(data)
    model = fitted[name]
    path = save_bundle(Bundle(model, data.target_names), tmp_path / name)
    np.testing.assert_array_equal(load_bundle(path).model.predict_proba(X), model.predict_proba(X))


def test_default_model_is_our_blend():
    model = make_model(DEFAULT_MODEL)
    assert DEFAULT_MODEL == "blend"
    names = [m[0] for m in model.get_params()["members"]]
    assert len(names) >= 3 and {"mlp", "logreg"} <= set(names)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
def test_cuda_matches_cpu(data):
    X, Y, Ya = _xy(data)
    cpu = make_model("mlp", **TINY["mlp"]).fit(X, Y, Ya).predict_proba(X)
    gpu = make_model("mlp", **TINY["mlp"]).fit(X, Y, Ya, device="cuda").predict_proba(X, device="cuda")
    np.testing.assert_allclose(cpu, gpu, atol=1e-4)


def test_a_stack_for_another_blend_is_refused(data):
    X, Y, Ya = _xy(data)
    blend = make_model("blend", members=[["logreg", TINY["logreg"]]], weights=[1.0], n_jobs=1)
    with pytest.raises(ValueError, match="calibration factors for"):
        blend.fit(X, Y, Ya, stack=Stack(weights_=np.ones(1), calibration_=np.ones(5)))
    with pytest.raises(ValueError, match="beyond the"):
        blend.fit(X, Y, Ya, stack=Stack(weights_=np.ones(1), prior_targets_=[300]))
    with pytest.raises(ValueError, match="stack weights must be 1"):
        blend.fit(X, Y, Ya, stack=Stack.fixed([0.5, 0.5]))
    # one member, weight 1, no calibration: the blend is that member
    alone = make_model("logreg", **TINY["logreg"]).fit(X, Y, Ya)
    np.testing.assert_allclose(blend.fit(X, Y, Ya).predict_proba(X), alone.predict_proba(X), atol=1e-6)


@pytest.mark.slow  # fits the whole blend twice; the blend's round trip and stacking unit tests stay fast
def test_train_fits_the_blend_stack_on_its_own_data(data):
    """`moa train` fits weights, temperature and safeguard on this data's OOF predictions, scores them nested
    and ships them in the final model; without CV the given weights stay and the bundle says so."""
    from moa_predict.training.stacking import blend_oof
    from moa_predict.training.train import NO_CV_STACK, train_bundle

    members = [["mlp", TINY["mlp"]], ["logreg", TINY["logreg"]]]
    blend = make_model("blend", members=members, weights=[0.5, 0.5], n_jobs=1)
    bundle, result = train_bundle(blend, data, n_splits=3, seed=0, progress=False, reference=False)
    stack = result.extra["stack"]
    assert stack["nested"] and len(stack["fold_stacks"]) == 3
    w = np.asarray(stack["weights"])
    assert (w >= 0).all() and abs(w.sum() - 1) < 1e-9
    final = bundle.model.stack_.to_dict()
    assert final["weights"] == stack["weights"] and final["prior_targets"] == stack["prior_targets"]
    assert final["calibration"] == stack["calibration"] and len(stack["calibration"]) == data.targets.shape[1]
    assert "fit on this data" in bundle.info["stack"]
    assert bundle.model.get_params()["weights"] == [0.5, 0.5]  # hyper-parameters are never overwritten
    # the same folds, refit by hand: the reported score is the nested stack's, not the fold blends' own
    fold = result.fold
    res = blend_oof(clone(blend).set_params(weights=None), data, fold, 3, progress=False)
    t = ~data.is_control
    Y = data.targets.to_numpy(np.float64)[t]
    nb = nested_stack_score(Stack(temperature=True, min_gain=0.05), res["members"][:, t], Y, fold[t],
                            res["prevalence"][t], data.drugs.to_numpy()[t])
    assert abs(result.score - nb["score"]) < 1e-9 and nb["stack"].weights_.tolist() == stack["weights"]
    np.testing.assert_allclose(result.oof[t], nb["oof"], atol=1e-6)
    assert (result.oof[data.is_control] == 0).all()
    # without cross-validation: nothing to fit the stack on
    plain, none = train_bundle(blend, data, cv=False, progress=False, reference=False)
    assert none is None and plain.info["stack"] == NO_CV_STACK
    assert plain.model.stack_.weights_.tolist() == [0.5, 0.5] and plain.model.stack_.calibration_ is None
