"""Torch mirrors of fitted transforms equal the numpy / scikit-learn transforms (features/torch_transforms.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA
from sklearn.feature_selection import VarianceThreshold
from sklearn.preprocessing import QuantileTransformer, StandardScaler

from moa_predict.data.profiles import schema
from moa_predict.features.torch_transforms import (META_NAMES, TorchMoAPreprocessor, TorchQuantileNormal,
                                                   TorchQuantileTable, mirror, no_response_baseline,
                                                   paper_inputs_torch, raw_inputs, raw_names, same_columnwise,
                                                   shared_columnwise)
from moa_predict.features.transforms import MoAPreprocessor, QuantileTable
from moa_predict.runtime.threads import limit_threads

TOL = 1e-4


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small tensors on a busy 2-core machine: one thread is much faster than two."""
    with limit_threads(1):
        yield


@pytest.fixture(scope="module")
def matrix(sim_data):
    x = sim_data.train_features[list(schema.FEATURE_COLUMNS)].to_numpy(np.float32)
    return x[:, ::8].copy()  # 109 columns keep the module fast; every kind of column is represented


def _queries(x: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(1)
    lo, hi = x.min(axis=0), x.max(axis=0)
    return np.vstack([
        x[:50],                                   # training values, exactly on quantiles for some
        x[50:100] * 1.3,                          # in between
        rng.normal(0, 3, (40, x.shape[1])),       # wide: beyond the fitted range on both ends
        np.tile(lo, (2, 1)), np.tile(hi, (2, 1)),  # exactly the ends
        np.round(x[100:140], 1),                  # ties with a rounded fit
    ]).astype(np.float32)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rounded", [False, True])
def test_quantile_normal_mirror_equals_sklearn(matrix, dtype, rounded):
    fit = np.round(matrix, 1) if rounded else matrix  # rounding makes repeated quantiles (ties)
    qt = QuantileTransformer(n_quantiles=100, output_distribution="normal", random_state=0).fit(fit.astype(dtype))
    q = _queries(matrix).astype(dtype)
    expected = qt.transform(q)
    got = TorchQuantileNormal(qt)(torch.as_tensor(q)).numpy()
    assert got.dtype == expected.dtype
    np.testing.assert_allclose(got, expected, atol=TOL, rtol=0)


def test_quantile_mirrors_are_differentiable_with_the_right_slope(matrix):
    qt = QuantileTransformer(n_quantiles=100, output_distribution="normal", random_state=0).fit(matrix)
    x = torch.as_tensor(matrix[:20].astype(np.float64) + 0.0123, dtype=torch.float64).requires_grad_()
    TorchQuantileNormal(qt)(x).sum().backward()
    h = 1e-7
    x0 = x.detach().numpy()
    right = (qt.transform(x0 + h) - qt.transform(x0)) / h
    left = (qt.transform(x0) - qt.transform(x0 - h)) / h
    numeric = (right + left) / 2
    assert torch.isfinite(x.grad).all()
    # away from the clipped tails and from knots (where the one-sided slopes differ)
    inside = (np.abs(numeric) < 50) & np.isclose(left, right, rtol=1e-4, atol=1e-4)
    assert inside.mean() > 0.9
    np.testing.assert_allclose(x.grad.numpy()[inside], numeric[inside], rtol=1e-3, atol=1e-3)
    table = QuantileTable(qt)
    y = torch.as_tensor(matrix[:20]).requires_grad_()
    TorchQuantileTable(table)(y).sum().backward()
    assert torch.isfinite(y.grad).all() and (y.grad >= 0).all()


def test_quantile_table_mirror_equals_the_table(matrix):
    qt = QuantileTransformer(n_quantiles=100, output_distribution="normal", random_state=0).fit(matrix)
    table = QuantileTable(qt)
    q = _queries(matrix)
    np.testing.assert_allclose(TorchQuantileTable(table)(torch.as_tensor(q)).numpy(), table.transform(q),
                               atol=TOL, rtol=0)


@pytest.mark.parametrize("whiten", [False, True])
def test_pca_scaler_and_variance_threshold_mirrors(matrix, whiten):
    q = _queries(matrix)
    pca = PCA(n_components=7, whiten=whiten, random_state=0).fit(matrix)
    scaler = StandardScaler().fit(matrix)
    selector = VarianceThreshold(float(np.median(matrix.var(axis=0)))).fit(matrix)
    for est in (pca, scaler, selector):
        got = mirror(est)(torch.as_tensor(q)).numpy()
        np.testing.assert_allclose(got, est.transform(q), atol=TOL, rtol=1e-5)


def test_preprocessor_mirror_equals_its_transform(sim_data):
    frame = sim_data.train_features
    pre = MoAPreprocessor(g_pca=12, c_pca=4, variance_threshold=0.8, seed=0).fit(frame)
    test = sim_data.test_features
    raw = torch.as_tensor(raw_inputs(test))
    np.testing.assert_allclose(TorchMoAPreprocessor(pre)(raw).numpy(), pre.transform(test), atol=TOL, rtol=1e-5)
    no_rankgauss = MoAPreprocessor(rankgauss=False, g_pca=5, c_pca=0, keep_raw=False,
                                   variance_threshold=None).fit(frame)
    np.testing.assert_allclose(mirror(no_rankgauss)(raw).numpy(), no_rankgauss.transform(test), atol=TOL, rtol=1e-5)


def test_columnwise_step_is_rankgauss_per_column(sim_data):
    """The space integrated gradients walks in: RankGauss of each g-/c- column, dose/time as they are."""
    frame = sim_data.train_features
    pre = MoAPreprocessor(g_pca=12, c_pca=4, variance_threshold=0.8, seed=0).fit(frame)
    test = sim_data.test_features
    raw = torch.as_tensor(raw_inputs(test))
    torch_pre = TorchMoAPreprocessor(pre)
    u = torch_pre.columnwise(raw)
    np.testing.assert_array_equal(u[:, :872].numpy(), pre.rankgauss_block(test))
    np.testing.assert_array_equal(u[:, 872:].numpy(), raw[:, 872:].numpy())
    np.testing.assert_array_equal(torch_pre.after_columnwise(u).numpy(), torch_pre(raw).numpy())
    twin = TorchMoAPreprocessor(MoAPreprocessor(g_pca=3, c_pca=2, seed=0).fit(frame))  # same RankGauss, other PCA
    other = TorchMoAPreprocessor(MoAPreprocessor(n_quantiles=50, seed=0).fit(frame))
    assert same_columnwise(torch_pre.columnwise, twin.columnwise)
    assert not same_columnwise(torch_pre.columnwise, other.columnwise)
    assert shared_columnwise([torch_pre.columnwise, twin.columnwise]) is torch_pre.columnwise
    assert shared_columnwise([torch_pre.columnwise, other.columnwise]) is None
    assert shared_columnwise([torch_pre.columnwise, None]) is None


def test_raw_layout_and_paper_inputs(sim_data):
    from moa_predict.models.knn import paper_inputs

    frame = sim_data.test_features
    treated = frame[frame[schema.CP_TYPE] == schema.TREATED]
    raw = raw_inputs(treated)
    names = raw_names()
    assert raw.shape == (len(treated), 877) and names[-5:] == list(META_NAMES) and names[:2] == ["g-0", "g-1"]
    assert (raw[:, -5:-2].sum(axis=1) == 1).all() and (raw[:, -2:].sum(axis=1) == 1).all()
    np.testing.assert_array_equal(paper_inputs_torch(torch.as_tensor(raw)).numpy(), paper_inputs(treated))
    base = no_response_baseline(raw)
    assert (base[:, :872] == 0).all() and (base[:, 872:] == raw[:, 872:]).all()  # no response, own dose/time
