"""Threaded batch prediction (parallel.map_row_chunks via Bundle.predict_proba)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from moa_predict.bundle import Bundle
from moa_predict.data.profiles import schema
from moa_predict.models import make_model
from moa_predict.runtime.threads import map_row_chunks


@pytest.mark.parametrize("n_rows, n_threads, chunk", [(0, 2, 256), (1, 2, 256), (1000, 1, 256), (1000, 3, 256),
                                                      (1000, 2, 10_000)])
def test_chunks_cover_every_row_once_in_order(n_rows, n_threads, chunk):
    before = torch.get_num_threads()
    parts = map_row_chunks(lambda a, b: (a, b), n_rows, n_threads, chunk)
    assert torch.get_num_threads() == before
    covered = [i for a, b in parts for i in range(a, b)]
    assert covered == list(range(n_rows))


def test_an_error_in_a_chunk_propagates_and_restores_threads():
    before = torch.get_num_threads()

    def fail(a, b):
        if a > 0:
            raise ValueError("chunk failed")
        return a

    with pytest.raises(ValueError, match="chunk failed"):
        map_row_chunks(fail, 2000, 2, 256)
    assert torch.get_num_threads() == before


@pytest.mark.slow  # fits a blend to compare thread counts; the other parallel tests stay fast
def test_threaded_bundle_prediction_equals_one_thread(sim_dataset, sim_dir):
    from moa_predict.data.profiles.dataset import load_features

    X, Y = sim_dataset.features, sim_dataset.targets.to_numpy(np.float32)
    blend = make_model("blend", members=[["mlp", {"hidden": [32], "epochs": 2, "g_pca": 8, "c_pca": 4}],
                                         ["logreg", {"epochs": 2, "g_pca": 8, "c_pca": 4}]],
                       weights=[0.6, 0.4], n_jobs=1).fit(X, Y, sim_dataset.nonscored.to_numpy(np.float32))
    bundle = Bundle(blend, list(sim_dataset.target_names))
    test = load_features(sim_dir / "test_features.csv")
    one = bundle.predict_proba(test, n_threads=1)
    many = bundle.predict_proba(test, n_threads=2, chunk=7)  # many small chunks, in two threads
    direct = blend.predict_proba(test)
    np.testing.assert_allclose(many, one, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(one, direct, rtol=1e-5, atol=1e-7)
    control = (test[schema.CP_TYPE] == schema.CONTROL).to_numpy()
    assert control.any() and (many[control] == 0).all()
