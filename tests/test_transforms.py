"""The in-fold preprocessing: RankGauss lookup table, PCA blocks, variance threshold, persistence, no leakage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import QuantileTransformer

from moa_predict.data.profiles import schema
from moa_predict.features.transforms import MoAPreprocessor, QuantileTable


def _frame(rng: np.random.Generator, n: int) -> pd.DataFrame:
    x = rng.standard_normal((n, len(schema.FEATURE_COLUMNS))).astype(np.float32)
    x[:, -100:] = np.clip(x[:, -100:] * 3, -10, 10)  # a pile at the clip value, like real c- columns
    x[rng.random(x.shape) < 0.02] = 0.0  # ties inside the range
    frame = pd.DataFrame(np.round(x, 3), columns=list(schema.FEATURE_COLUMNS))
    frame.insert(0, schema.CP_DOSE, rng.choice(schema.CP_DOSES, n))
    frame.insert(0, schema.CP_TIME, rng.choice(schema.CP_TIMES, n))
    frame.insert(0, schema.CP_TYPE, schema.TREATED)
    frame.index = pd.Index([f"id_{i}" for i in range(n)], name=schema.SIG_ID)
    return frame


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(0)
    return _frame(rng, 400), _frame(rng, 150)


def test_quantile_table_matches_sklearn(frames):
    train, test = frames
    X = train[list(schema.FEATURE_COLUMNS)].to_numpy(np.float32)
    qt = QuantileTransformer(n_quantiles=100, output_distribution="normal", random_state=0).fit(X)
    table = QuantileTable(qt)
    for rows in (X, test[list(schema.FEATURE_COLUMNS)].to_numpy(np.float32)):
        ref, got = qt.transform(rows), table.transform(rows)
        diff = np.abs(ref - got)
        assert diff.mean() < 2e-3
        assert np.quantile(diff, 0.999) < 0.05  # only values right beside a pile of ties differ more
    # out of the training range: the transformer's clip values, like scikit-learn
    extreme = np.vstack([X.min(axis=0) - 5, X.max(axis=0) + 5]).astype(np.float32)
    np.testing.assert_allclose(table.transform(extreme), qt.transform(extreme), atol=1e-4)


def test_preprocessor_shapes_and_meta(frames):
    train, test = frames
    pre = MoAPreprocessor(g_pca=20, c_pca=5, variance_threshold=0.8)
    Z = pre.fit_transform(train)
    assert Z.dtype == np.float32 and Z.shape == (len(train), pre.n_features_out_)
    np.testing.assert_array_equal(pre.transform(train), Z)
    # the last 5 columns are the one-hot dose and time
    assert set(np.unique(Z[:, -5:])) == {0.0, 1.0}
    np.testing.assert_array_equal(Z[:, -5:].sum(axis=1), 2.0)
    # PCA-only inputs without the threshold keep every component
    only = MoAPreprocessor(g_pca=20, c_pca=5, keep_raw=False, variance_threshold=None).fit(train)
    assert only.n_features_out_ == 20 + 5 + 5


def test_preprocessor_fit_depends_only_on_its_rows(frames):
    """Fitted on rows A, the state must not change when other rows B are perturbed (no leakage)."""
    train, test = frames
    a = MoAPreprocessor(g_pca=10, c_pca=5).fit(train)
    combined = pd.concat([train, test])
    b = MoAPreprocessor(g_pca=10, c_pca=5).fit(combined.iloc[: len(train)])
    shuffled = test.copy()
    shuffled[list(schema.FEATURE_COLUMNS)] = shuffled[list(schema.FEATURE_COLUMNS)].to_numpy()[::-1] * 7.0
    np.testing.assert_array_equal(a.transform(test), b.transform(test))
    # transforming other rows never changes the fitted state
    before = a.get_state()[1]
    a.transform(shuffled)
    after = a.get_state()[1]
    assert sorted(before) == sorted(after)
    for k in before:
        np.testing.assert_array_equal(before[k], after[k])


def test_preprocessor_persistence_round_trip(frames):
    train, test = frames
    pre = MoAPreprocessor(g_pca=15, c_pca=4).fit(train)
    settings, arrays = pre.get_state("p.")
    import json

    json.dumps(settings)  # JSON-able: no pickles anywhere
    assert all(k.startswith("p.") for k in arrays)
    loaded = MoAPreprocessor(g_pca=15, c_pca=4).set_state(settings, arrays)
    np.testing.assert_array_equal(loaded.transform(test), pre.transform(test))
