"""Out-of-fold cross-validation, the training pipeline, bundles and estimator persistence."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
from sklearn.decomposition import PCA
from sklearn.preprocessing import QuantileTransformer

from moa_predict.bundle import META_FILE, WEIGHTS_FILE, load_bundle, save_bundle
from moa_predict.data.profiles.dataset import load_dataset
from moa_predict.data.errors import DataError
from moa_predict.data.formats.io import DIR_MODE, FILE_MODE, write_table
from moa_predict.training.crossval import cross_validate
from moa_predict.evaluation.metrics import columnwise_log_loss
from moa_predict.models.base import MoAModel
from moa_predict.models.prior import PriorModel
from moa_predict.data.formats.persist import estimator_from_state, estimator_state
from moa_predict.training.train import train_bundle

K = 5


class _Recorder(MoAModel):
    """Predicts each target's training prevalence and records which rows it was fitted on and asked about."""

    name = "recorder"
    fitted_on: ClassVar[list[pd.Index]] = []
    predicted: ClassVar[list[pd.Index]] = []

    def _fit(self, X, Y, Y_aux):
        type(self).fitted_on.append(X.index)
        self.p_ = Y.mean(axis=0)

    def _predict_proba(self, X):
        type(self).predicted.append(X.index)
        return np.tile(self.p_, (len(X), 1))


@pytest.fixture(scope="module")
def cv(sim_dataset):
    _Recorder.fitted_on, _Recorder.predicted = [], []
    return cross_validate(_Recorder(), sim_dataset, n_splits=K, seed=0, progress=False)


def test_oof_covers_each_treated_row_once(cv, sim_dataset):
    control = sim_dataset.is_control
    predicted = np.concatenate([idx.to_numpy() for idx in _Recorder.predicted])
    assert len(predicted) == len(set(predicted)) == int((~control).sum())
    assert set(predicted) == set(sim_dataset.features.index[~control])
    assert (cv.fold[control] == -1).all() and set(cv.fold[~control]) == set(range(K))
    assert (cv.oof[control] == 0).all()
    assert (cv.oof[~control].sum(axis=1) > 0).all()


def test_folds_never_train_on_their_own_rows_or_controls(cv, sim_dataset):
    control_ids = set(sim_dataset.features.index[sim_dataset.is_control])
    for k, (train_ids, val_ids) in enumerate(zip(_Recorder.fitted_on, _Recorder.predicted)):
        assert not set(train_ids) & set(val_ids)
        assert not set(train_ids) & control_ids
        assert set(val_ids) == set(sim_dataset.features.index[cv.fold == k])


def test_cv_scores_treated_rows(cv, sim_dataset):
    treated = ~sim_dataset.is_control
    Y = sim_dataset.targets.to_numpy()
    assert cv.score == pytest.approx(columnwise_log_loss(Y[treated], cv.oof[treated]).mean())
    assert len(cv.fold_scores) == K and cv.grouped and cv.n_predicted == int(treated.sum())
    assert "treated rows" in cv.rows
    report = json.loads(json.dumps(cv.to_dict()))
    assert report["score"] == cv.score and len(report["per_target"]) == Y.shape[1]


def test_prior_cv_is_the_held_out_prevalence(sim_dataset):
    result = cross_validate(PriorModel(), sim_dataset, n_splits=K, seed=0, progress=False)
    treated = ~sim_dataset.is_control
    Y = sim_dataset.targets.to_numpy()
    k0 = result.fold == 0
    train = Y[(result.fold >= 0) & ~k0]
    expected = (train.sum(axis=0) + 0.5) / (len(train) + 1.0)  # smoothed so a held-out drug's target is never 0
    np.testing.assert_allclose(result.oof[k0][0], expected, rtol=1e-6)
    assert (result.oof[treated] > 0).all()
    assert result.score > columnwise_log_loss(Y[treated], np.tile(Y[treated].mean(axis=0), (treated.sum(), 1))).mean()


@pytest.fixture(scope="module")
def bundle_dir(sim_dataset, tmp_path_factory):
    bundle, result = train_bundle(PriorModel(), sim_dataset, n_splits=K, seed=0, progress=False, command="test")
    return save_bundle(bundle, tmp_path_factory.mktemp("bundles") / "prior"), bundle, result


def test_bundle_round_trip_predicts_identically(bundle_dir, sim_dir, sim_dataset):
    path, bundle, result = bundle_dir
    test = load_dataset(sim_dir, split="test").features
    loaded = load_bundle(path)
    np.testing.assert_array_equal(loaded.predict_proba(test), bundle.predict_proba(test))
    assert loaded.target_names == bundle.target_names and loaded.feature_columns == bundle.feature_columns
    assert loaded.info["cv"]["score"] == pytest.approx(result.score)
    assert loaded.info["training_data"]["rows"] == len(sim_dataset.features)
    assert loaded.info["training_data"]["fingerprint"] == sim_dataset.fingerprint()
    frame = loaded.predict_frame(test)
    assert list(frame.columns) == ["sig_id", *bundle.target_names] and len(frame) == len(test)
    assert (frame.loc[(test["cp_type"] == "ctl_vehicle").to_numpy(), bundle.target_names] == 0).all().all()


def test_bundle_is_not_private(bundle_dir, tmp_path):
    path = bundle_dir[0]
    assert stat.S_IMODE(os.stat(path).st_mode) == DIR_MODE
    out = write_table(pd.DataFrame({"a": [1]}), tmp_path / "t.csv")
    assert stat.S_IMODE(os.stat(out).st_mode) == FILE_MODE


def test_save_over_an_existing_bundle(bundle_dir, tmp_path):
    _, bundle, _ = bundle_dir
    target = tmp_path / "b"
    save_bundle(bundle, target)
    (target / "stale.txt").write_text("old")
    save_bundle(bundle, target)
    assert sorted(p.name for p in target.iterdir()) == [META_FILE, "gene_only", WEIGHTS_FILE]
    assert sorted(p.name for p in (target / "gene_only").iterdir()) == [META_FILE, WEIGHTS_FILE]
    assert [p.name for p in tmp_path.iterdir()] == ["b"], "no temporary directories left behind"


def _tampered(bundle_dir, tmp_path, edit) -> str:
    _, bundle, _ = bundle_dir
    path = save_bundle(bundle, tmp_path / "bundle")
    edit(path)
    with pytest.raises(DataError) as info:
        load_bundle(path)
    assert info.value.source == str(path)
    return str(info.value)


def _edit_meta(change):
    def edit(path):
        meta = json.loads((path / META_FILE).read_text())
        change(meta)
        (path / META_FILE).write_text(json.dumps(meta))
    return edit


@pytest.mark.parametrize(("edit", "expected"), [
    (lambda p: (p / META_FILE).write_text("{not json"), "is not valid JSON"),
    (lambda p: (p / META_FILE).write_text("[1, 2]"), "a JSON object is expected"),
    (lambda p: (p / WEIGHTS_FILE).unlink(), "is not a model bundle"),
    (lambda p: (p / META_FILE).unlink(), "is not a model bundle"),
    (lambda p: (p / WEIGHTS_FILE).write_bytes(b"\x00garbage" * 10), "weights.safetensors is unreadable"),
    (_edit_meta(lambda m: m.update(format="something-else")), "unsupported bundle format 'something-else'"),
    (_edit_meta(lambda m: m.update(format_version=99)), "unsupported bundle format"),
    (_edit_meta(lambda m: m.update(weights=["other"])), "does not hold the arrays"),
    (_edit_meta(lambda m: m.pop("model")), "lacks or garbles an entry"),
    (_edit_meta(lambda m: m.pop("target_names")), "lacks or garbles an entry"),
    (_edit_meta(lambda m: m["model"].update(name="no-such-model")), "cannot be built by this version"),
    (_edit_meta(lambda m: m["model"].update(params={"bogus": 1})), "cannot be built by this version"),
    (_edit_meta(lambda m: m["model"].pop("state")), "stored state does not fit"),
    (_edit_meta(lambda m: m.update(target_names=m["target_names"][:-1])), "lists 205 targets"),
])
def test_tampered_bundle_fails_with_data_error(bundle_dir, tmp_path, edit, expected):
    assert expected in _tampered(bundle_dir, tmp_path, edit)


def test_not_a_directory(tmp_path):
    with pytest.raises(DataError, match="is not a model bundle"):
        load_bundle(tmp_path / "missing")


@pytest.mark.parametrize("est", [QuantileTransformer(n_quantiles=50, output_distribution="normal", random_state=0),
                                 PCA(n_components=3, random_state=0)])
def test_estimator_persistence_round_trip(est):
    X = np.random.default_rng(0).normal(size=(200, 6)).astype(np.float32)
    est.fit(X)
    settings, arrays = estimator_state(est, "t.")
    settings = json.loads(json.dumps(settings))  # must survive JSON
    rebuilt = estimator_from_state(settings, arrays)
    np.testing.assert_array_equal(rebuilt.transform(X), est.transform(X))


def test_persistence_refuses_unknown_classes():
    with pytest.raises(ValueError, match="not allowed"):
        estimator_from_state({"class": "os.system", "params": {}, "fitted": {}, "prefix": ""}, {})


def test_a_v1_bundle_loads_and_predicts_as_it_did(tmp_path):
    """tests/data/v1_blend was written by moa-predict before the blend's stack became fitted state (bundle format
    v1: weights, calibration and safeguarded targets stored as hyper-parameters). It must load, with its stack
    migrated, and predict exactly what it predicted then (tests/data/v1_blend_predictions.csv, written by that
    version on the first 20 simulated test profiles)."""
    from moa_predict.data.profiles.dataset import load_features

    here = Path(__file__).parent / "data"
    bundle = load_bundle(here / "v1_blend")
    stack = bundle.model.stack_
    assert stack.weights_.tolist() == json.loads((here / "v1_blend" / "bundle.json").read_text())["model"][
        "params"]["weights"]
    assert len(stack.prior_targets_) == 25 and stack.calibration_ is not None
    expected = pd.read_csv(here / "v1_blend_predictions.csv").set_index("sig_id")
    got = bundle.predict_frame(load_features(here / "v1_blend_features.csv")).set_index("sig_id")
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), atol=1e-7)
    # written again, it is a v2 bundle that predicts the same
    again = load_bundle(save_bundle(bundle, tmp_path / "v2"))
    assert json.loads((tmp_path / "v2" / "bundle.json").read_text())["format_version"] == 2
    np.testing.assert_array_equal(again.predict_proba(load_features(here / "v1_blend_features.csv")),
                                  got.to_numpy())
