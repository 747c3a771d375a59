"""BRkNN-a, BRkNN-b and ML-kNN: hand-worked toy cases, output rules, a direct count-based ML-kNN, bundles."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from moa_predict.bundle import Bundle, load_bundle, save_bundle
from moa_predict.data.profiles import schema
from moa_predict.models import make_model
from moa_predict.models.knn import brknn_a_labels, brknn_a_labels_skmultilearn, brknn_b_labels, paper_inputs


def frame(xs, cp_type=None) -> pd.DataFrame:
    """Treated 24 h D1 profiles whose only non-zero feature is g-0 = x (so distance = |x - x'|)."""
    n = len(xs)
    feats = np.zeros((n, len(schema.FEATURE_COLUMNS)), dtype=np.float32)
    feats[:, 0] = xs
    df = pd.DataFrame(feats, columns=list(schema.FEATURE_COLUMNS))
    df.insert(0, schema.CP_DOSE, "D1")
    df.insert(0, schema.CP_TIME, 24)
    df.insert(0, schema.CP_TYPE, cp_type if cp_type is not None else [schema.TREATED] * n)
    df.index = pd.Index([f"id_{i:09x}" for i in range(n)], name=schema.SIG_ID)
    return df


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """A tiny simulated data set in the LISH-MoA layout: (training Dataset, test features)."""
    from moa_predict.data.profiles.dataset import load_dataset
    from moa_predict.simulate import simulate, write_simulated

    d = tmp_path_factory.mktemp("sim")
    write_simulated(simulate(n_train=300, n_test=50, seed=0), d)
    return load_dataset(d), load_dataset(d, split="test").features


# training set 1: two clusters, three labels
X1 = frame([0, 1, 2, 10, 11, 12])
Y1 = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1], [0, 1, 1]])


def test_paper_inputs_are_875_raw_columns():
    x = paper_inputs(frame([3.5], cp_type=[schema.CONTROL]))
    assert x.shape == (1, 875)
    assert x[0, :3].tolist() == [1.0, 0.0, 0.0]  # ctl_vehicle→1, 24 h→0, D1→0 (paper's Table 2)
    assert x[0, 3] == 3.5  # then g-0


def test_brknn_hand_worked():
    # query 0.9, k=3: neighbours x=1 {0,1}, x=0 {0}, x=2 {1} -> confidences (2/3, 2/3, 0)
    # query 11.2, k=3: neighbours x=11 {2}, x=12 {1,2}, x=10 {2} -> confidences (0, 1/3, 1)
    q = frame([0.9, 11.2])
    freq = make_model("brknn-a", k=3, output="frequencies").fit(X1, Y1).predict_proba(q)
    np.testing.assert_allclose(freq, [[2 / 3, 2 / 3, 0], [0, 1 / 3, 1]], rtol=1e-6)
    a = make_model("brknn-a", k=3).fit(X1, Y1)
    np.testing.assert_array_equal(a.predict_proba(q), [[1, 1, 0], [0, 0, 1]])
    # BRkNN-b: s = (2+1+1)/3 and (1+2+1)/3 = 1.33 -> 1 label; the tie (labels 0 and 1 at 2/3) goes to label 0
    b = make_model("brknn-b", k=3).fit(X1, Y1)
    np.testing.assert_array_equal(b.predict_proba(q), [[1, 0, 0], [0, 0, 1]])
    np.testing.assert_array_equal(b.predict_labels(q), b.predict_proba(q))


def test_brknn_a_fallback_to_most_confident_label():
    X = frame([0, 1, 2, 3, 4])
    Y = np.array([[1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]])
    # query 2, k=5: every row is a neighbour, confidences (.2, .4, .2): none >= .5 -> the most confident, label 1
    a = make_model("brknn-a", k=5).fit(X, Y)
    np.testing.assert_array_equal(a.predict_proba(frame([2.0])), [[0, 1, 0]])
    # s = 4/5 -> round to 1 label
    np.testing.assert_array_equal(make_model("brknn-b", k=5).fit(X, Y).predict_proba(frame([2.0])), [[0, 1, 0]])
    # k=1 next to the unlabelled row: every confidence is 0 -> no "most confident" label, empty set
    np.testing.assert_array_equal(make_model("brknn-a", k=1).fit(X, Y).predict_proba(frame([4.2])), [[0, 0, 0]])


def test_brknn_rules_directly():
    conf = np.array([[0.5, 0.2, 0.1], [0.4, 0.45, 0.0], [0.0, 0.0, 0.0], [0.6, 0.7, 0.1]])
    np.testing.assert_array_equal(brknn_a_labels(conf), [[1, 0, 0], [0, 1, 0], [0, 0, 0], [1, 1, 0]])
    # scikit-multilearn's variant: rint (0.5 rounds to 0) and no fallback
    np.testing.assert_array_equal(brknn_a_labels_skmultilearn(conf), [[0, 0, 0], [0, 0, 0], [0, 0, 0], [1, 1, 0]])
    conf = np.tile([[0.1, 0.9, 0.3, 0.5]], (6, 1))
    s = np.array([0.4, 0.6, 1.5, 2.5, 2.51, 9.0])  # round half to even: 0, 1, 2, 2, 3, capped at 4
    out = brknn_b_labels(conf, s)
    assert out.sum(axis=1).tolist() == [0, 1, 2, 2, 3, 4]
    np.testing.assert_array_equal(out[4], [0, 1, 1, 1])  # the 3 most confident labels
    np.testing.assert_array_equal(out[2], [0, 1, 0, 1])


def test_mlknn_hand_worked():
    # k=1, s=1. Leave-one-out neighbours: 0<->1, 10<->11. Label A = (1,1,0,0): counts (1,1,0,0);
    # prior (1+2)/(2+4) = 1/2; P(E1|H1) = (1+2)/(1*2+2) = 3/4, P(E0|H1) = 1/4, P(E0|H0) = 3/4, P(E1|H0) = 1/4.
    # Label B = (0,0,0,1): counts (0,0,1,0); prior 2/6; P(E0|H1) = 2/3, P(E1|H1) = 1/3; P(E0|H0) = 3/5, P(E1|H0) = 2/5.
    X = frame([0, 1, 10, 11])
    Y = np.array([[1, 0], [1, 0], [0, 0], [0, 1]])
    m = make_model("ml-knn", k=1).fit(X, Y)
    p = m.predict_proba(frame([0.4, 10.4, 11.4]))
    # 0.4 -> x=0 (A): A 3/4, B count 0: (1/3*2/3)/(1/3*2/3 + 2/3*3/5) = 5/14
    # 10.4 -> x=10 (none): A 1/4, B 5/14;   11.4 -> x=11 (B): A 1/4, B (1/9)/(1/9 + 4/15) = 5/17
    np.testing.assert_allclose(p, [[3 / 4, 5 / 14], [1 / 4, 5 / 14], [1 / 4, 5 / 17]], rtol=1e-6)
    labels = make_model("ml-knn", k=1, output="labels").fit(X, Y).predict_proba(frame([0.4, 11.4]))
    np.testing.assert_array_equal(labels, [[1, 0], [0, 0]])


def direct_mlknn(Xtr, Y, Xq, k, s=1.0):
    """ML-kNN written out with loops, straight from Zhang & Zhou (2007)."""
    n, L = Y.shape
    d = np.abs(Xtr[:, None] - Xtr[None, :])
    np.fill_diagonal(d, np.inf)
    C = np.array([[Y[np.argsort(d[i], kind="stable")[:k], l].sum() for l in range(L)] for i in range(n)])
    dq = np.abs(Xq[:, None] - Xtr[None, :])
    Cq = np.array([[Y[np.argsort(dq[i], kind="stable")[:k], l].sum() for l in range(L)] for i in range(len(Xq))])
    out = np.zeros((len(Xq), L))
    for l in range(L):
        p1 = (s + Y[:, l].sum()) / (2 * s + n)
        c1 = [sum(1 for i in range(n) if Y[i, l] == 1 and C[i, l] == j) for j in range(k + 1)]
        c0 = [sum(1 for i in range(n) if Y[i, l] == 0 and C[i, l] == j) for j in range(k + 1)]
        for t in range(len(Xq)):
            j = Cq[t, l]
            e1 = (s + c1[j]) / (s * (k + 1) + sum(c1))
            e0 = (s + c0[j]) / (s * (k + 1) + sum(c0))
            out[t, l] = p1 * e1 / (p1 * e1 + (1 - p1) * e0)
    return out


def test_mlknn_matches_direct_counting():
    rng = np.random.default_rng(0)
    xs = rng.permutation(60).astype(np.float32) + rng.uniform(0, 0.5, 60).astype(np.float32)  # distinct distances
    Y = (rng.random((60, 4)) < np.array([0.1, 0.3, 0.5, 0.05])).astype(int)
    Y[:30, 1] = 1  # structure: label 1 lives with the first 30 rows' x
    q = rng.uniform(-2, 62, 25).astype(np.float32)
    for k in (1, 4, 7):
        p = make_model("ml-knn", k=k, s=1.0).fit(frame(xs), Y).predict_proba(frame(q))
        assert (p >= 0).all() and (p <= 1).all()
        np.testing.assert_allclose(p, direct_mlknn(xs.astype(np.float64), Y, q.astype(np.float64), k), rtol=1e-5)


def test_controls_and_k_larger_than_training_set():
    X = frame([0, 1, 2], cp_type=[schema.TREATED, schema.CONTROL, schema.TREATED])
    Y = np.array([[1, 0], [0, 0], [0, 1]])
    m = make_model("brknn-a", k=50, output="frequencies").fit(X, Y)
    assert m.k_ == 2  # the control row was dropped, k capped at the 2 treated rows
    q = frame([0.1, 0.2], cp_type=[schema.TREATED, schema.CONTROL])
    np.testing.assert_allclose(m.predict_proba(q), [[0.5, 0.5], [0, 0]])
    with pytest.raises(ValueError, match="output"):
        make_model("brknn-b", output="probabilities").fit(X, Y)


@pytest.mark.parametrize("name,params", [("brknn-a", {"k": 5}), ("brknn-a", {"k": 5, "output": "frequencies"}),
                                         ("brknn-b", {"k": 40}), ("ml-knn", {"k": 10})])
def test_bundle_round_trip(sim, tmp_path, name, params):
    train, test = sim
    model = make_model(name, **params).fit(train.features, train.targets.to_numpy())
    before = model.predict_proba(test)
    path = save_bundle(Bundle(model, train.target_names, train.feature_columns), tmp_path / name)
    loaded = load_bundle(path)
    assert loaded.model.get_params() == model.get_params()
    np.testing.assert_array_equal(loaded.predict_proba(test), before)
    assert before.shape == (len(test), 206)
    assert (before[(test[schema.CP_TYPE] == schema.CONTROL).to_numpy()] == 0).all()
