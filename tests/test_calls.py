"""Confident calls (``trust.calls``): thresholds that keep their precision on new compounds, families, the
levels users may ask for, and where users read calls (``moa predict --calls-out``, ``POST /api/predict``, pages)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from moa_predict.cli import main
from moa_predict.data.profiles import schema
from moa_predict.data.errors import DataError
from moa_predict.trust.calls import (CONTROL, NOT_CONFIDENT, UNLIKE, CallModel, call_sentence, fit_call_model,
                                          measure_calls)

K = 12
NAMES = [f"moa_{i}" for i in range(K)]


def _draw(n_compounds: int, seed: int, per: int = 4, confusable: bool = False):
    """Softmax scores of a noisy classifier: each compound has a true MoA and a strength; `per` profiles each.
    With `confusable`, MoAs 0 and 1 share their signal (the model cannot tell them apart)."""
    rng = np.random.default_rng(seed)
    comp = np.repeat(np.arange(n_compounds), per)
    truth = rng.integers(0, K, n_compounds)[comp]
    Y = np.zeros((len(comp), K))
    Y[np.arange(len(comp)), truth] = 1
    z = rng.normal(0, 1, (len(comp), K))
    z[np.arange(len(comp)), truth] += rng.uniform(0, 5, n_compounds)[comp]
    if confusable:
        pair = truth < 2
        z[pair, 0] = z[pair, 1] = np.maximum(z[pair, 0], z[pair, 1])
    P = np.exp(z)
    P /= P.sum(axis=1, keepdims=True)
    return P, Y, comp.astype(str), comp % 5


def _precision(model: CallModel, P, Y, level: float) -> tuple[float, float]:
    calls = model.call(P, NAMES, level)
    made = calls["kind"] == "moa"
    right = Y[np.flatnonzero(made), [NAMES.index(c) for c in calls.loc[made, "call"]]] > 0
    return float(right.mean()), float(made.mean())


def test_thresholds_keep_their_precision_on_new_compounds():
    P, Y, comp, fold = _draw(500, seed=0)
    model = fit_call_model({"profile": (P, Y, comp, fold)}, NAMES)
    P_new, Y_new, _, _ = _draw(4000, seed=1)  # compounds the calibration never saw
    for level in (0.7, 0.8, 0.9):
        precision, coverage = _precision(model, P_new, Y_new, level)
        assert precision >= level and coverage > 0.05, (level, precision, coverage)
    # stricter levels call fewer profiles
    lam = [t for t in model.state["profile"]["thresholds"] if t is not None]
    assert lam == sorted(lam)
    # the nested measurement says what happens on held-out folds, and agrees with the fresh draw
    measured = model.measured_at(0.8)
    assert measured["precision"] >= 0.8 and abs(measured["precision"] - _precision(model, P_new, Y_new, 0.8)[0]) < 0.05


def test_a_model_never_right_enough_makes_no_calls():
    rng = np.random.default_rng(2)
    P = rng.dirichlet(np.ones(K), 2000)
    Y = np.eye(K)[rng.integers(0, K, 2000)]
    model = fit_call_model({"profile": (P, Y, np.arange(2000).astype(str), np.arange(2000) % 5)}, NAMES)
    assert model.state["profile"]["thresholds"][-1] is None  # 0.95: nothing certified
    calls = model.call(P[:50], NAMES, 0.95, control=np.r_[True, np.zeros(49, bool)],
                       ood=np.r_[False, True, np.zeros(48, bool)])
    assert calls.loc[0, "reason"] == CONTROL and calls.loc[1, "reason"] == UNLIKE
    assert (calls.loc[2:, "reason"] == NOT_CONFIDENT).all() and (calls["call"] == "").all()
    assert model.measured_at(0.95)["calls"] == 0


def test_a_family_is_called_when_no_single_moa_can_be():
    P, Y, comp, fold = _draw(600, seed=3, confusable=True)
    families = [{"name": "moa 0 / moa 1", "members": [0, 1], "moas": NAMES[:2]}]
    model = fit_call_model({"profile": (P, Y, comp, fold)}, NAMES, families)
    m = model.measured_at(0.8)
    assert m["family_calls"] > 0 and m["precision_family"] >= 0.8
    P_new, Y_new, _, _ = _draw(3000, seed=4, confusable=True)
    calls = model.call(P_new, NAMES, 0.8)
    fam = calls["kind"] == "family"
    assert fam.any() and (calls.loc[fam, "call"] == "moa 0 / moa 1").all()
    assert (Y_new[fam.to_numpy()][:, :2].sum(axis=1) > 0).mean() >= 0.8
    assert model.family_report()[0]["held_out_calls"] == m["family_calls"]


@pytest.mark.parametrize("level", [0.3, 0.99, 1.5, "abc", 0.83])
def test_levels_outside_the_stored_ones_are_one_clear_error(level):
    P, Y, comp, fold = _draw(100, seed=5)
    model = fit_call_model({"profile": (P, Y, comp, fold)}, NAMES)
    with pytest.raises(DataError, match="call precision"):
        model.call(P, NAMES, level)


def test_measure_calls_pools_held_out_folds():
    P, Y, comp, fold = _draw(300, seed=6)
    measured = measure_calls(P, Y, comp, fold)
    assert [m["level"] for m in measured] == [round(0.5 + 0.05 * i, 2) for i in range(10)]
    assert all(m["profiles"] == len(P) and m["compounds"] == 300 for m in measured)
    cov = [m["coverage_profiles"] for m in measured]
    assert cov[0] >= cov[-1]


def test_call_sentence():
    assert call_sentence("tubulin polymerization inhibitor", 0.81) == (
        "tubulin polymerization inhibitor — right about 8 times in 10 on compounds the model had not seen")
    assert "SIMULATED" in call_sentence("x", 0.9, simulated=True)


def test_families_come_from_shared_hub_targets():
    from moa_predict.data.moa_families import hub_targets, moa_families

    names = ["dopamine_receptor_antagonist", "serotonin_receptor_antagonist", "proteasome_inhibitor",
             "Not a Hub MoA"]
    families = moa_families(names)
    together = [f for f in families if 0 in f["members"]]
    assert together and 1 in together[0]["members"] and 2 not in together[0]["members"]
    assert all(3 not in f["members"] for f in families)
    assert "Repurposing Hub" in hub_targets()[1]


def test_simulate_holds_out_drugs(sim_dir):
    from moa_predict.simulate import simulate

    kept = simulate(seed=0, labels_from=sim_dir, hold_out_drugs=0.3)
    held = simulate(seed=1, world_seed=0, labels_from=sim_dir, hold_out_drugs=0.3, held_out_only=True)
    a = set(kept.drugs[schema.DRUG_ID]) - {schema.CONTROL_DRUG_ID}
    b = set(held.drugs[schema.DRUG_ID]) - {schema.CONTROL_DRUG_ID}
    assert a and b and not a & b
    assert held.truth["world_seed"] == 0 and "held out" in held.truth["drugs"]
    same = simulate(seed=0, labels_from=sim_dir)
    assert same.truth["targets"] == held.truth["targets"]  # the same biology: MoA signatures of world seed 0
    with pytest.raises(ValueError):
        simulate(seed=0, hold_out_drugs=0.3)


# ------------------------------------------------------------------------------------------------------------
# Where users read calls
# ------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bundle_path(prior_bundle):
    return prior_bundle


@pytest.fixture(scope="module")
def upload(noisy_upload) -> pd.DataFrame:
    return noisy_upload.assign(compound=["A" if i % 2 else "B" for i in range(len(noisy_upload))])


def test_predict_writes_the_calls_file(capsys, bundle_path, upload, tmp_path):
    src = tmp_path / "in.csv"
    upload.to_csv(src, index=False)
    calls_out = tmp_path / "calls.parquet"
    code = main(["predict", "--bundle", str(bundle_path), "--features", str(src), "--out", str(tmp_path / "p.csv"),
                 "--calls-out", str(calls_out), "--call-precision", "0.8", "--quiet"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "calls at precision 0.8" in err
    calls = pd.read_parquet(calls_out)
    assert list(calls.columns) == ["sig_id", "call", "kind", "estimated_precision", "reason"]
    assert list(calls["sig_id"]) == list(upload["sig_id"])
    by_id = calls.set_index("sig_id")
    assert by_id.loc["noise_row", "reason"] == UNLIKE
    control_ids = upload.loc[upload[schema.CP_TYPE] == schema.CONTROL, "sig_id"]
    assert (by_id.loc[control_ids, "reason"] == CONTROL).all()
    # the prior answers every profile with the same list: never right 8 times in 10, so no calls
    assert (calls["call"] == "").all() and set(calls["reason"]) <= {CONTROL, UNLIKE, NOT_CONFIDENT}


@pytest.mark.parametrize("args, says", [(["--call-precision", "0.99"], "outside 0.5-0.95"),
                                        (["--call-precision", "0.8"], "needs --calls-out")])
def test_bad_call_requests_are_one_error_line(capsys, bundle_path, upload, tmp_path, args, says):
    src = tmp_path / "in.csv"
    upload.to_csv(src, index=False)
    extra = ["--calls-out", str(tmp_path / "c.csv")] if "0.99" in args else []
    code = main(["predict", "--bundle", str(bundle_path), "--features", str(src), "--out", str(tmp_path / "p.csv"),
                 *args, *extra, "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and says in err and "Traceback" not in err
    assert not (tmp_path / "p.csv").exists() and not (tmp_path / "c.csv").exists()


def test_a_bundle_without_cv_says_it_has_no_calls(capsys, sim_dir, upload, tmp_path):
    out = tmp_path / "nocv"
    assert main(["train", "--data", str(sim_dir), "--model", "prior", "--no-cv", "--out", str(out)]) == 0
    src = tmp_path / "in.csv"
    upload.to_csv(src, index=False)
    code = main(["predict", "--bundle", str(out), "--features", str(src), "--out", str(tmp_path / "p.csv"),
                 "--calls-out", str(tmp_path / "c.csv"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "no calibrated calls" in err and "without cross-validation" in err
    assert not (tmp_path / "c.csv").exists()


@pytest.fixture(scope="module")
def client(bundle_path):
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from moa_predict.bundle import load_bundle
    from moa_predict.web import create_app

    return TestClient(create_app(load_bundle(bundle_path)), raise_server_exceptions=False)


def test_api_gives_each_profile_and_compound_its_call(client, upload):
    body = upload.to_csv(index=False).encode()
    r = client.post("/api/predict?probabilities=false&call_precision=0.7",
                    files={"file": ("in.csv", io.BytesIO(body), "text/csv")})
    assert r.status_code == 200, r.text
    data = r.json()
    calls = data["calls"]
    assert calls["available"] and calls["precision"] == 0.7 and "Learn-then-Test" in calls["rule"]
    rows = {p["sig_id"]: p for p in data["predictions"]}
    assert rows["noise_row"]["call"]["reason"] == UNLIKE and rows["noise_row"]["call"]["call"] is None
    for p in data["predictions"]:
        assert (p["call"]["call"] is None) == (p["call"]["reason"] is not None)
        if p["control"]:
            assert p["call"]["reason"] == CONTROL
    assert {c["compound"] for c in calls["compounds"]} == {"A", "B"}
    assert all("reason" in c["call"] for c in calls["compounds"])
    bad = client.post("/api/predict?call_precision=0.3", files={"file": ("in.csv", io.BytesIO(body), "text/csv")})
    assert bad.status_code == 422 and "call_precision" in bad.json()["error"]


def test_pages_show_the_call_first(client, upload):
    body = upload.to_csv(index=False).encode()
    answer = client.post("/api/predict", files={"file": ("in.csv", io.BytesIO(body), "text/csv")}).json()
    page = client.get(f"/results/{answer['result_id']}?per=50").text
    assert 'id="calls-sentence"' in page and 'id="call-0"' in page
    assert page.index('id="call-1"') < page.index('id="moa-set-1"')  # the call before the set and probabilities
    assert "No call:</strong> not confident enough" in page
    compounds = client.get(f"/results/{answer['result_id']}/compounds").text
    assert "compound-call" in compounds and "its profiles pooled" in compounds
    card = client.get("/").text
    assert 'id="card-calls"' in card and 'id="card-sets"' in card
    # the card's sets: the size distribution beside every recall, not only a mean
    sets_line = card[card.index('id="card-sets"'):card.index("</dd>", card.index('id="card-sets"'))]
    assert sets_line.count("recall") == sets_line.count("median set of") == sets_line.count("10th–90th percentile") > 0
    assert "fewer than half the MoAs" in sets_line


def test_a_compound_with_any_wrong_call_is_a_loss_tested_exactly():
    """The unit loss is 1 when any of a compound's calls is wrong (it bounds the share wrong), so the exact
    binomial tail applies whatever the number of profiles per compound."""
    from moa_predict.trust.calls import grid_risks, ltt_threshold

    score = np.array([0.9, 0.9, 0.9, 0.8, 0.8, 0.3])
    wrong = np.array([0, 1, 0, 0, 0, 1])
    m, s, binary = grid_risks(score, wrong, np.array(list("aaabbc")), grid=np.array([0.85, 0.5, 0.1]))
    assert binary and m.tolist() == [1, 2, 3] and s.tolist() == [1, 1, 2]
    # 30 compounds of 3 profiles, all right: 0.9^30 < 0.1 certifies P = 0.9; one wrong profile among them does not
    m, s, binary = grid_risks(np.full(90, 0.9), np.zeros(90), np.repeat(np.arange(30), 3), grid=np.array([0.5]))
    assert ltt_threshold(m, s, binary, 0.9, grid=np.array([0.5])) == 0.5
    wrong = np.zeros(90)
    wrong[0] = 1
    m, s, binary = grid_risks(np.full(90, 0.9), wrong, np.repeat(np.arange(30), 3), grid=np.array([0.5]))
    assert ltt_threshold(m, s, binary, 0.9, grid=np.array([0.5])) is None
