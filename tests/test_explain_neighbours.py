"""The reference index: exact neighbours, enrichment, OOD flags, and the bundle round trip."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import hypergeom

from moa_predict.bundle import META_FILE, load_bundle, save_bundle
from moa_predict.data.profiles import schema
from moa_predict.reference.neighbours import ReferenceIndex, leave_drug_out_distances, similar_profiles
from moa_predict.reference.ood import ood_flags, ood_mask
from moa_predict.features.meta import feature_matrix
from moa_predict.models import make_model
from moa_predict.runtime.threads import limit_threads
from moa_predict.training.train import train_bundle


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with limit_threads(1):
        yield


@pytest.fixture(scope="module")
def index(sim_dataset) -> ReferenceIndex:
    d = sim_dataset
    return ReferenceIndex.build(d.features, d.targets, d.nonscored, d.drugs, n_components=40)


@pytest.fixture(scope="module")
def test_frame(sim_dir):
    from moa_predict.data.profiles.dataset import load_features

    return load_features(sim_dir / "test_features.csv")


def _brute_force(d, queries: np.ndarray, n_components: int) -> np.ndarray:
    """Similarities computed from scratch with scikit-learn: standardise, PCA, whiten, cosine."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    x = feature_matrix(d.features).astype(np.float64)
    scaler = StandardScaler().fit(x)
    pca = PCA(n_components=n_components, whiten=True, svd_solver="full").fit(scaler.transform(x))
    ref = pca.transform(scaler.transform(x))
    q = pca.transform(scaler.transform(queries.astype(np.float64)))
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return q @ ref.T


def test_neighbours_equal_brute_force(index, sim_dataset, test_frame):
    queries = feature_matrix(test_frame)
    sims = _brute_force(sim_dataset, queries, 40)
    idx, sim = index.search(test_frame, k=7)
    for r in range(len(queries)):
        expected = np.argsort(-sims[r], kind="stable")[:7]
        np.testing.assert_allclose(sim[r], sims[r][expected], atol=2e-4)
        # the same set up to near-ties
        assert set(idx[r]) == set(expected) or np.allclose(np.sort(sims[r][idx[r]]), np.sort(sims[r][expected]),
                                                           atol=2e-4)
    # one profile at a time gives the same answer as the batch
    one_idx, one_sim = index.search(test_frame.iloc[[3]], k=7)
    np.testing.assert_array_equal(one_idx[0], idx[3])
    # a training profile's nearest reference is itself
    self_idx, self_sim = index.search(sim_dataset.features.iloc[[10]], k=1)
    assert self_idx[0, 0] == 10 and self_sim[0, 0] == pytest.approx(1.0, abs=1e-5)


def test_neighbour_records_and_enrichment(index, sim_dataset, test_frame):
    found = similar_profiles(type("B", (), {"reference": index})(), test_frame.iloc[:3], k=15)
    json.dumps(found)
    assert [f["sig_id"] for f in found] == list(test_frame.index[:3])
    targets = sim_dataset.targets
    for f in found:
        sims = [n["similarity"] for n in f["neighbours"]]
        assert len(sims) == 15 and sims == sorted(sims, reverse=True)
        assert all(-1 <= s <= 1 for s in sims)
        assert all(0 <= n["percentile"] <= 100 for n in f["neighbours"])
        first = f["neighbours"][0]
        row = sim_dataset.features.index.get_loc(first["sig_id"])
        assert first["drug_id"] == sim_dataset.drugs.iloc[row]
        assert first["moas"] == list(targets.columns[targets.iloc[row].to_numpy() > 0])
        for e in f["enrichment"]:
            N, K = len(targets), int(targets[e["moa"]].sum())
            count = sum(e["moa"] in n["moas"] for n in f["neighbours"])
            assert e["count"] == count
            assert e["p_value"] == pytest.approx(hypergeom.sf(count - 1, N, K, 15))
        ps = [e["p_value"] for e in f["enrichment"]]
        assert ps == sorted(ps)


def test_enrichment_hand_made():
    """10 references; MoA a on rows 0-2, b on rows 3-9: 3 neighbours all 'a' is enriched, 'b' is not."""
    n = 10
    targets = pd.DataFrame({"a": [1, 1, 1] + [0] * 7, "b": [0, 0, 0] + [1] * 7},
                           index=pd.Index([f"id_{i}" for i in range(n)], name=schema.SIG_ID))
    rng = np.random.default_rng(0)
    feats = pd.DataFrame(rng.normal(size=(n, len(schema.FEATURE_COLUMNS))).astype(np.float32),
                         columns=list(schema.FEATURE_COLUMNS), index=targets.index)
    feats.insert(0, schema.CP_DOSE, "D1")
    feats.insert(0, schema.CP_TIME, 24)
    feats.insert(0, schema.CP_TYPE, schema.TREATED)
    drugs = pd.Series(["x", "x", "y"] + ["z"] * 7, index=targets.index)
    idx = ReferenceIndex.build(feats, targets, None, drugs, n_components=5, ood_sample=10)
    rows = idx.enrichment(np.array([0, 1, 2]))
    assert rows[0]["moa"] == "a" and rows[0]["count"] == 3 and rows[0]["n_drugs"] == 2
    assert rows[0]["p_value"] == pytest.approx(1 / 120)  # C(3,3) / C(10,3)
    assert rows[0]["fold_enrichment"] == pytest.approx(10 / 3, abs=0.01)
    assert all(r["moa"] != "b" for r in rows)


def test_leave_drug_out_excludes_the_same_drug(index, sim_dataset):
    dist = leave_drug_out_distances(index, sample=len(index))
    shape = index.coords / np.linalg.norm(index.coords, axis=1, keepdims=True)
    shape *= (np.linalg.norm(index.coords, axis=1) / index.norms)[:, None]  # components / full norm
    drugs = sim_dataset.drugs.to_numpy()
    for i in (0, 5, 77):
        s = shape[i] @ shape.T
        s[drugs == drugs[i]] = -np.inf
        assert dist[i] == pytest.approx(1 - s.max(), abs=1e-5)
    assert index.ood_threshold == pytest.approx(np.quantile(dist, 0.99), rel=1e-5)


def test_ood_fires_on_garbage_not_on_held_out_profiles(index, test_frame):
    assert ood_mask(index, test_frame).mean() <= 0.10
    x = feature_matrix(test_frame)
    rng = np.random.default_rng(0)
    shuffled = np.array([row[rng.permutation(len(row))] for row in x])
    noise = rng.normal(0, 2, x.shape).astype(np.float32)
    uniform = rng.uniform(-10, 10, x.shape).astype(np.float32)
    for garbage in (shuffled, noise, uniform):
        assert ood_mask(index, garbage).mean() >= 0.95


def test_a_training_profile_sent_again_is_not_out_of_distribution(index, sim_dataset):
    """The training profiles with the least correlation structure (below the 0.1 % quantile: a DMSO well, mostly
    noise) are their own nearest reference at similarity 1 when sent again: like the training data, not flagged."""
    from moa_predict.reference.ood import ood_scores

    x = sim_dataset.features
    dist, near, structure, copy = index.ood_components(x)
    weakest = np.flatnonzero(structure < index.structure_threshold)
    assert len(weakest) >= 1 and copy[weakest].all()
    np.testing.assert_array_equal(near[weakest], weakest)  # its nearest reference is itself, at distance 0
    assert (dist[weakest] == 0).all() and not ood_mask(index, x.iloc[weakest]).any()
    slightly = feature_matrix(x.iloc[weakest]) + np.float32(0.5)  # no longer a copy: checked as any profile
    assert not index.ood_components(slightly)[3].any()
    assert not any(o["flag"] for o in ood_scores(index, x.iloc[weakest]))


def test_the_structure_reason_says_when_the_training_profiles_are_simulated(index):
    from moa_predict.reference.ood import ood_columns, ood_scores

    noise = np.random.default_rng(1).normal(0, 2, (5, len(index.feature_columns))).astype(np.float32)
    reasons = {r for o in ood_scores(index, noise, simulated=True) for r in o["reasons"]}
    assert any("training profiles are SIMULATED" in r for r in reasons)
    assert not any("real profiles" in r for o in ood_scores(index, noise) for r in o["reasons"])
    table = ood_columns(index, noise)
    assert table["ood"].all() and (table["ood_reason"] != "").all()


def test_reference_survives_a_bundle_round_trip(sim_dataset, test_frame, tmp_path):
    bundle, _ = train_bundle(make_model("prior"), sim_dataset, cv=False, progress=False)
    assert bundle.reference is not None and len(bundle.reference) == len(sim_dataset.features)
    path = save_bundle(bundle, tmp_path / "b")
    meta = json.loads((path / META_FILE).read_text())
    assert "reference" in meta and (path / META_FILE).stat().st_size < 200_000  # ids and labels live in arrays
    loaded = load_bundle(path)
    ref, new = bundle.reference, loaded.reference
    for name in ReferenceIndex._ARRAYS:
        np.testing.assert_array_equal(getattr(ref, name), getattr(new, name))
    assert list(ref.sig_ids) == list(new.sig_ids) and list(ref.drug_ids) == list(new.drug_ids)
    assert ref.label_names == new.label_names and ref.ood_threshold == new.ood_threshold
    a, b = ref.search(test_frame, 5), new.search(test_frame, 5)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_allclose(a[1], b[1])
    flags = ood_flags(loaded, test_frame)
    assert len(flags) == len(test_frame) and set(flags[0]) >= {"sig_id", "distance", "threshold", "flag"}
    np.testing.assert_allclose(loaded.predict_proba(test_frame), bundle.predict_proba(test_frame))
    # a bundle without a reference still loads and says what to do
    bundle.reference = None
    plain = load_bundle(save_bundle(bundle, tmp_path / "plain"))
    assert plain.reference is None
    with pytest.raises(Exception, match="no reference index"):
        ood_flags(plain, test_frame)
