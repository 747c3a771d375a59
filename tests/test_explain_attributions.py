"""Integrated-gradient attributions through the generic model capability (explain/attributions.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from moa_predict.data import schema
from moa_predict.explain.attributions import (AttributionUnavailable, attribution_function, explain_predictions,
                                              global_attributions, integrated_gradients)
from moa_predict.features.torch_transforms import raw_baseline
from moa_predict.models import make_model
from moa_predict.runtime.threads import limit_threads


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with limit_threads(1):
        yield


@pytest.fixture(scope="module")
def paper_nn(sim_dataset):
    return make_model("paper-nn", epochs=4).fit(sim_dataset.features, sim_dataset.targets.to_numpy())


@pytest.fixture(scope="module")
def mlp(sim_dataset):
    model = make_model("mlp", hidden=(48,), epochs=3, g_pca=8, c_pca=4, batch_size=64)
    return model.fit(sim_dataset.features, sim_dataset.targets.to_numpy(), sim_dataset.nonscored.to_numpy())


@pytest.fixture(scope="module")
def test_frame(sim_dir):
    from moa_predict.data.dataset import load_features

    return load_features(sim_dir / "test_features.csv")


@pytest.fixture(scope="module")
def treated(test_frame):
    return test_frame[test_frame[schema.CP_TYPE] == schema.TREATED].iloc[:6]


@pytest.mark.parametrize("name", ["paper_nn", "mlp"])
def test_forward_equals_predict_and_attributions_are_complete(request, name, test_frame):
    model = request.getfixturevalue(name)
    assert model.supports_attributions
    frame = test_frame[test_frame[schema.CP_TYPE] == schema.TREATED]
    # completeness holds where f is continuous along the path from the baseline. RankGauss jumps at a
    # column's training minimum when many training values tie there (the c- features' floor of -10), so
    # for RankGauss models take profiles whose path crosses no such point (the loss is reported to users
    # as completeness_error)
    pre = getattr(model, "preprocessor_", None)
    if pre is not None:
        frame = frame[(model.attribution_inputs(frame)[0][:, :schema.N_GENES + schema.N_CELLS]
                       > pre._table.lo).all(axis=1)]
    treated = frame.iloc[:6]
    assert len(treated) == 6
    raw, names = model.attribution_inputs(treated)
    assert raw.shape == (len(treated), 877) and len(names) == 877
    with torch.no_grad():
        forward = model.attribution_forward(torch.as_tensor(raw)).numpy()
    np.testing.assert_allclose(forward, model.predict_proba(treated), atol=1e-5)
    targets = np.argsort(-forward, axis=1)[:, 0]
    res = integrated_gradients(model.attribution_forward, raw, targets, n_steps=64)
    gap = res["probability"] - res["baseline_probability"]
    total = res["attributions"].sum(axis=1)
    np.testing.assert_allclose(total, gap, atol=max(2e-3, 0.02 * float(np.abs(gap).max())))
    np.testing.assert_allclose(res["completeness_error"], total - gap, atol=1e-5)
    with torch.no_grad():
        fb = model.attribution_forward(torch.as_tensor(raw_baseline()).reshape(1, -1)).numpy()[0]
    np.testing.assert_allclose(res["baseline_probability"], fb[targets], atol=1e-6)


def test_explain_predictions_json(paper_nn, sim_dataset, test_frame):
    control = int(np.flatnonzero((test_frame[schema.CP_TYPE] == schema.CONTROL).to_numpy())[0])
    frame = test_frame.iloc[list(range(5)) + [control]]
    names = list(sim_dataset.target_names)
    out = explain_predictions(paper_nn, frame, names, top_moas=2, top_k=5)
    json.dumps(out)  # JSON-able
    assert out["method"]["forward_consistency"] < 1e-5
    assert out["method"]["max_completeness_error"] < 0.05
    proba = paper_nn.predict_proba(frame)
    for i, prof in enumerate(out["profiles"]):
        assert prof["sig_id"] == frame.index[i]
        if frame[schema.CP_TYPE].iloc[i] == schema.CONTROL:
            assert prof["explanations"] == [] and "control" in prof["note"]
            continue
        moas = [e["moa"] for e in prof["explanations"]]
        assert moas == [names[j] for j in np.argsort(-proba[i], kind="stable")[:2]]
        for e in prof["explanations"]:
            assert len(e["features"]) == 5
            mags = [abs(f["attribution"]) for f in e["features"]]
            assert mags == sorted(mags, reverse=True)
            assert abs(e["attribution_sum"] - (e["model_probability"] - e["baseline_probability"]
                                               + e["completeness_error"])) < 1e-4
            assert abs(e["pushing_up"] + e["pushing_down"] - e["attribution_sum"]) < 1e-4
    # one named MoA, dose and time folded into single features named like the input columns
    one = explain_predictions(paper_nn, frame, names, moas=[names[3]], top_k=877)
    feats = one["profiles"][0]["explanations"][0]["features"] if one["profiles"][0]["explanations"] else \
        one["profiles"][1]["explanations"][0]["features"]
    fnames = [f["feature"] for f in feats]
    assert len(fnames) == 874 and schema.CP_TIME in fnames and schema.CP_DOSE in fnames
    meta = {f["feature"]: f["value"] for f in feats if f["block"] == "treatment"}
    assert meta[schema.CP_TIME] in schema.CP_TIMES and meta[schema.CP_DOSE] in schema.CP_DOSES


def test_models_without_the_capability_say_so(sim_dataset, treated):
    prior = make_model("prior").fit(sim_dataset.features, sim_dataset.targets.to_numpy())
    assert not prior.supports_attributions
    with pytest.raises(AttributionUnavailable, match="prior.*not a differentiable network"):
        explain_predictions(prior, treated, sim_dataset.target_names)
    with pytest.raises(NotImplementedError):
        prior.attribution_inputs(treated)
    unfitted = make_model("paper-nn")
    assert not unfitted.supports_attributions


def test_blend_attributes_its_differentiable_members(paper_nn, mlp, sim_dataset, treated):
    prior = make_model("prior").fit(sim_dataset.features, sim_dataset.targets.to_numpy())

    class Blend:
        name = "blend"
        supports_attributions = False
        members_ = {"paper-nn": paper_nn, "mlp": mlp, "prior": prior}
        weights_ = {"paper-nn": 0.5, "mlp": 0.3, "prior": 0.2}

    forward, covers = attribution_function(Blend())
    assert covers["covered_weight"] == pytest.approx(0.8) and covers["left_out"] == ["prior"]
    raw = torch.as_tensor(paper_nn.attribution_inputs(treated)[0])
    with torch.no_grad():
        expected = 0.5 * paper_nn.attribution_forward(raw) + 0.3 * mlp.attribution_forward(raw)
        np.testing.assert_allclose(forward(raw).numpy(), expected.numpy(), atol=1e-6)


def test_global_view_ranks_by_mean_absolute_attribution(paper_nn, sim_dataset):
    counts = sim_dataset.targets[~sim_dataset.is_control].sum()
    moas = list(counts.sort_values(ascending=False).index[:2])
    out = global_attributions(paper_nn, sim_dataset.features, sim_dataset.targets, moas=moas, n_profiles=6,
                              n_steps=16, top_k=7)
    json.dumps(out)
    for moa in moas:
        view = out[moa]
        assert view["n_profiles"] == min(6, int(counts[moa])) and len(view["features"]) == 7
        mags = [f["mean_abs_attribution"] for f in view["features"]]
        assert mags == sorted(mags, reverse=True)
        assert all(abs(f["mean_attribution"]) <= f["mean_abs_attribution"] + 1e-9 for f in view["features"])


def test_explain_upload_with_a_network(paper_nn, sim_dataset, test_frame):
    from moa_predict.training.bundle import Bundle
    from moa_predict.explain.neighbours import ReferenceIndex
    from moa_predict.explain.report import explain_upload

    d = sim_dataset
    bundle = Bundle(paper_nn, d.target_names,
                    reference=ReferenceIndex.build(d.features, d.targets, d.nonscored, d.drugs, n_components=20))
    frame = test_frame[test_frame[schema.CP_TYPE] == schema.TREATED].iloc[:4].assign(compound=["x", "x", "y", "y"])
    report = explain_upload(bundle, frame, top_moas=2, top_k=4, neighbours=3, n_steps=32, max_attributed=3,
                            global_data=d, global_profiles=4)
    json.dumps(report)
    assert report["attributions"]["available"] and report["reference"]["available"]
    assert any("first 3 treated" in w for w in report["warnings"])
    explained = [p for p in report["profiles"] if p["explanations"]]
    assert len(explained) == 3 and all(len(p["explanations"]) == 2 for p in explained)
    assert all(len(p["neighbours"]) == 3 and p["ood"] is not None for p in report["profiles"])
    assert [c["compound"] for c in sorted(report["compounds"], key=lambda c: c["compound"])] == ["x", "y"]
    assert set(report["global"]) == {e["moa"] for p in explained for e in p["explanations"]}
