"""Integrated-gradient attributions through the generic model capability (explain/attributions.py)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from moa_predict.data.profiles import schema
from moa_predict.explain.attributions import (AttributionPath, AttributionUnavailable, attribution_function,
                                              attribution_path, completeness_tolerance, explain_predictions,
                                              global_attributions, integrated_gradients)
from moa_predict.features.torch_transforms import no_response_baseline
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
    from moa_predict.data.profiles.dataset import load_features

    return load_features(sim_dir / "test_features.csv")


@pytest.fixture(scope="module")
def treated(test_frame):
    return test_frame[test_frame[schema.CP_TYPE] == schema.TREATED].iloc[:6]


@pytest.mark.parametrize("name", ["paper_nn", "mlp"])
def test_forward_equals_predict_and_attributions_are_complete(request, name, test_frame):
    model = request.getfixturevalue(name)
    assert model.supports_attributions
    # any treated profiles: those on the ±10 floor/ceiling (where RankGauss jumps) included
    treated = test_frame[test_frame[schema.CP_TYPE] == schema.TREATED].iloc[:8]
    raw, names = model.attribution_inputs(treated)
    assert raw.shape == (len(treated), 877) and len(names) == 877
    with torch.no_grad():
        forward = model.attribution_forward(torch.as_tensor(raw)).numpy()
    np.testing.assert_allclose(forward, model.predict_proba(treated), atol=1e-5)
    targets = np.argsort(-forward, axis=1)[:, 0]
    res = integrated_gradients(attribution_path(model), raw, targets, n_steps=64)
    gap = res["probability"] - res["baseline_probability"]
    total = res["attributions"].sum(axis=1)
    assert (np.abs(total - gap) <= completeness_tolerance(gap)).all(), total - gap
    np.testing.assert_allclose(res["completeness_error"], total - gap, atol=1e-5)
    with torch.no_grad():
        fb = model.attribution_forward(torch.as_tensor(no_response_baseline(raw))).numpy()
    np.testing.assert_allclose(res["baseline_probability"], fb[np.arange(len(fb)), targets], atol=1e-6)


def _at_tied_ends(model, frame):
    """Copies of `frame`'s rows with every column whose training values tie at the minimum (maximum) set to
    exactly that minimum (maximum): the points where RankGauss jumps (data clipped at ±10)."""
    q = model.preprocessor_.quantile_.quantiles_
    lo, hi = np.flatnonzero(q[1] == q[0]), np.flatnonzero(q[-1] == q[-2])
    cols = np.asarray(schema.FEATURE_COLUMNS)
    frame = frame.copy()
    frame[list(cols[lo])] = q[0, lo].astype(np.float32)
    frame[list(cols[hi])] = q[-1, hi].astype(np.float32)
    return frame, len(lo) + len(hi)


def test_profiles_on_rankgauss_jumps_pass_completeness(mlp, sim_dataset, treated):
    """The root cause of the "⚠ off" calls: RankGauss maps a value AT a column's tied training minimum to
    -5.2 but values just above it to about -2.5; a straight raw-space path ending there integrated up to the
    jump and missed it. The path is now straight in the RankGauss'd space, so the attributions add up."""
    frame, n_tied = _at_tied_ends(mlp, treated.iloc[:4])
    assert n_tied > 20
    names = list(sim_dataset.target_names)
    out = explain_predictions(mlp, frame, names, top_moas=2, top_k=5)
    calls = [e for p in out["profiles"] for e in p["explanations"]]
    assert len(calls) == 8 and out["method"]["n_failing"] == 0
    for e in calls:
        assert e["completeness_ok"] and "completeness_note" not in e
        tol = max(2e-3, 0.02 * abs(e["model_probability"] - e["baseline_probability"]))
        assert abs(e["attribution_sum"] - (e["model_probability"] - e["baseline_probability"])) <= tol
    # the old path, straight in the raw space, misses the jumps on these profiles however many steps it takes
    raw = mlp.attribution_inputs(frame)[0]
    targets = [names.index(e["moa"]) for p in out["profiles"] for e in p["explanations"]][::2]
    straight = integrated_gradients(AttributionPath(None, mlp.attribution_forward), raw, targets, n_steps=256,
                                    refine=0)
    gap = straight["probability"] - straight["baseline_probability"]
    assert (np.abs(straight["completeness_error"]) > completeness_tolerance(gap)).any()


@pytest.fixture(scope="module")
def blend(sim_dataset):
    """A two-member blend with a fitted-looking stack: calibration (temperature 1.6) and two prior targets."""
    from moa_predict.models.blend import BlendModel
    from moa_predict.models.stack import Stack

    d = sim_dataset
    small = {"hidden": [48], "epochs": 4, "g_pca": 8, "c_pca": 4, "batch_size": 64}
    model = BlendModel(members=[("mlp", small), ("mlp", {**small, "keep_raw": False, "seed": 3})], weights=None,
                       n_jobs=1)
    n = d.targets.shape[1]
    calibration = np.full(n, 1.6)
    calibration[[0, 1]] = 0.0
    stack = Stack(temperature=True, min_gain=0.05, weights_=np.array([0.6, 0.4]), temperature_=1.6,
                  calibration_=calibration, prior_targets_=[0, 1])
    return model.fit(d.features, d.targets.to_numpy(), d.nonscored.to_numpy(), stack=stack)


def test_blend_attributions_pass_completeness_on_confident_calls(blend, sim_dataset, test_frame):
    names = list(sim_dataset.target_names)
    treated = test_frame[test_frame[schema.CP_TYPE] == schema.TREATED]
    proba = blend.predict_proba(treated)
    confident = treated.iloc[np.argsort(-proba.max(axis=1), kind="stable")[:6]]
    assert blend.attribution_split()[0] is not None  # the members share one RankGauss: the path uses it
    out = explain_predictions(blend, confident, names, top_moas=3, top_k=5)
    assert out["method"]["forward_consistency"] < 1e-5
    calls = [e for p in out["profiles"] for e in p["explanations"]]
    assert sum(e["probability"] > 0.5 for e in calls) >= 3
    assert out["method"]["n_failing"] == 0 and all(e["completeness_ok"] for e in calls)
    assert out["method"]["tolerance"] == {"abs": 2e-3, "rel": 0.02, "rule": out["method"]["tolerance"]["rule"]}
    for e in calls:
        gap = e["model_probability"] - e["baseline_probability"]
        assert abs(e["attribution_sum"] - gap) <= max(2e-3, 0.02 * abs(gap)) + 1e-6
    # a MoA the stack hands to the prior does not depend on the profile: nothing to attribute, and it says so
    prior = explain_predictions(blend, confident.iloc[:1], names, moas=[names[0]])["profiles"][0]["explanations"][0]
    assert prior["attribution_sum"] == 0 and prior["completeness_ok"] and "nothing to attribute" in prior[
        "completeness_note"]


def test_dose_and_time_are_held_at_the_profile_and_measured_apart(mlp, sim_dataset, treated):
    names = list(sim_dataset.target_names)
    row = treated.iloc[:1]
    # the same profile at 24 h D1 and at 72 h D2
    twins = pd.concat([row.assign(**{schema.CP_TIME: 24, schema.CP_DOSE: "D1"}),
                       row.assign(**{schema.CP_TIME: 72, schema.CP_DOSE: "D2"})])
    twins.index = ["a", "b"]
    moa = names[int(np.argmax(mlp.predict_proba(row)[0]))]
    out = explain_predictions(mlp, twins, names, moas=[moa], top_k=877)
    (a,), (b,) = (p["explanations"] for p in out["profiles"])
    for e, (time_, dose) in ((a, (24, "D1")), (b, (72, "D2"))):
        # dose and time get no bar: the features alone explain p - p(no response at THIS dose and time)
        assert len(e["features"]) == 872 and {f["block"] for f in e["features"]} <= {"gene", "cell viability"}
        dt = e["dose_time"]
        assert dt[schema.CP_TIME]["value"] == time_ and dt[schema.CP_DOSE]["value"] == dose
        at_t, at_d = dt[schema.CP_TIME]["probability_at"], dt[schema.CP_DOSE]["probability_at"]
        assert set(at_t) == {"24", "48", "72"} and set(at_d) == {"D1", "D2"}
        assert at_t[str(time_)] == pytest.approx(e["model_probability"], abs=1e-6)
        assert at_d[dose] == pytest.approx(e["model_probability"], abs=1e-6)
        assert dt[schema.CP_TIME]["effect"] == pytest.approx(e["model_probability"] - np.mean(list(at_t.values())),
                                                             abs=1e-5)
    # each twin's baseline is no response at its own dose and time, so the baselines differ
    raw = mlp.attribution_inputs(twins)[0]
    with torch.no_grad():
        base = mlp.attribution_forward(torch.as_tensor(no_response_baseline(raw)))[:, names.index(moa)].numpy()
    assert [a["baseline_probability"], b["baseline_probability"]] == pytest.approx(base.tolist(), abs=1e-6)
    assert a["baseline_probability"] != b["baseline_probability"]
    assert "own dose and time" in out["method"]["baseline"]


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
    # one named MoA: every g-/c- feature named like the input columns; dose and time apart, at their values
    one = explain_predictions(paper_nn, frame, names, moas=[names[3]], top_k=877)
    expl = one["profiles"][0]["explanations"][0]
    fnames = [f["feature"] for f in expl["features"]]
    assert sorted(fnames) == sorted(schema.FEATURE_COLUMNS)
    assert expl["dose_time"][schema.CP_TIME]["value"] == int(frame[schema.CP_TIME].iloc[0])
    assert expl["dose_time"][schema.CP_DOSE]["value"] == frame[schema.CP_DOSE].iloc[0]


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
        assert {f["block"] for f in view["features"]} <= {"gene", "cell viability"}
        assert set(view["dose_time"]) == {schema.CP_TIME, schema.CP_DOSE}


def test_explain_upload_with_a_network(paper_nn, sim_dataset, test_frame):
    from moa_predict.bundle import Bundle
    from moa_predict.reference.neighbours import ReferenceIndex
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
