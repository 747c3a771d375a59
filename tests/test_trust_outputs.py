"""Where users see the MoA sets: ``moa predict --set-level --sets-out``, ``POST /api/predict`` and the results
page (the set, the abstention, and the sentence with the measured recall)."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from moa_predict.cli import main
from moa_predict.data.profiles import schema
from moa_predict.trust.model import CONTROL, NO_CONFIDENT, NO_NARROW, UNLIKE


@pytest.fixture(scope="module")
def bundle_path(prior_bundle):
    return prior_bundle


@pytest.fixture(scope="module")
def upload(noisy_upload) -> pd.DataFrame:
    """Test profiles plus one garbage row (noise: out of distribution)."""
    return noisy_upload.copy()


def test_predict_writes_the_sets_file(capsys, bundle_path, upload, tmp_path):
    src = tmp_path / "in.csv"
    upload.to_csv(src, index=False)
    preds, sets_out = tmp_path / "p.csv", tmp_path / "sets.csv"
    code = main(["predict", "--bundle", str(bundle_path), "--features", str(src), "--out", str(preds),
                 "--set-level", "0.8", "--sets-out", str(sets_out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "MoA sets at the 80 % level" in err and "On compounds this model has not seen" in err
    sets = pd.read_csv(sets_out, dtype=str, keep_default_na=False)
    assert list(sets.columns) == ["sig_id", "moa_set", "abstention", "ood", "ood_reason"]
    assert (sets.loc[sets["abstention"] == UNLIKE, "ood"] == "True").all() and "noise_row" in set(
        sets.loc[sets["ood"] == "True", "sig_id"])  # the OOD flag and its reason beside the abstention
    assert sets.loc[sets["sig_id"] == "noise_row", "ood_reason"].iloc[0] != ""
    assert list(sets["sig_id"]) == list(upload["sig_id"])
    assert pd.read_csv(preds).shape[0] == len(upload)  # the usual probabilities file is still written
    by_id = sets.set_index("sig_id")
    assert by_id.loc["noise_row", "abstention"] == UNLIKE and by_id.loc["noise_row", "moa_set"] == ""
    control_ids = upload.loc[upload[schema.CP_TYPE] == schema.CONTROL, "sig_id"]
    assert (by_id.loc[control_ids, "abstention"] == CONTROL).all()
    names = set(pd.read_csv(preds).columns[1:])
    for moa_set, why in zip(sets["moa_set"], sets["abstention"]):
        members = [m for m in moa_set.split("|") if m]
        assert set(members) <= names
        assert (why == "") == bool(members)  # a profile has a set or says why not
        assert why in ("", CONTROL, UNLIKE, NO_CONFIDENT, NO_NARROW)


def test_a_bad_set_level_is_one_error_line(capsys, bundle_path, upload, tmp_path):
    src = tmp_path / "in.csv"
    upload.to_csv(src, index=False)
    code = main(["predict", "--bundle", str(bundle_path), "--features", str(src), "--out", str(tmp_path / "p.csv"),
                 "--set-level", "1.7", "--sets-out", str(tmp_path / "s.csv"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "outside" in err and "Traceback" not in err
    assert not (tmp_path / "p.csv").exists() and not (tmp_path / "s.csv").exists()


@pytest.fixture(scope="module")
def client(bundle_path):
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from moa_predict.bundle import load_bundle
    from moa_predict.web import create_app

    return TestClient(create_app(load_bundle(bundle_path)), raise_server_exceptions=False)


def test_api_returns_sets_and_abstentions(client, upload):
    body = upload.to_csv(index=False).encode()
    r = client.post("/api/predict?set_level=0.95&probabilities=false",
                    files={"file": ("in.csv", io.BytesIO(body), "text/csv")})
    assert r.status_code == 200, r.text
    data = r.json()
    sets = data["sets"]
    assert sets["available"] and sets["level"] == 0.95
    assert f"{100 * sets['measured_recall']:.1f} %" in sets["sentence"]
    # the recall never without the size of the sets that reach it
    q = sets["set_size_quantiles"]
    assert q["p10"] <= q["median"] <= q["p90"] and f"median of {q['median']:.0f} MoAs" in sets["sentence"]
    assert 0 <= sets["narrowing_share"] <= 1
    assert sets["compounds"] is None  # no compound column in this upload
    rows = {p["sig_id"]: p for p in data["predictions"]}
    assert rows["noise_row"]["abstention"] == UNLIKE and rows["noise_row"]["moa_set"] == []
    for p in data["predictions"]:
        assert (p["abstention"] is None) == bool(p["moa_set"])
    # a higher level never gives a smaller set
    low = client.post("/api/predict?set_level=0.6&probabilities=false",
                      files={"file": ("in.csv", io.BytesIO(body), "text/csv")}).json()
    for p, q in zip(low["predictions"], data["predictions"]):
        assert set(p.get("moa_set", [])) <= set(q.get("moa_set", [])) or q["abstention"] in (UNLIKE, NO_NARROW)
    bad = client.post("/api/predict?set_level=abc", files={"file": ("in.csv", io.BytesIO(body), "text/csv")})
    assert bad.status_code == 422 and "set_level" in bad.json()["error"]


def test_results_page_shows_the_set_and_its_sentence(client, upload):
    body = upload.to_csv(index=False).encode()
    answer = client.post("/api/predict", files={"file": ("in.csv", io.BytesIO(body), "text/csv")}).json()
    result_id = answer["result_id"]
    page = client.get(f"/results/{result_id}?per=50").text
    assert 'id="sets-sentence"' in page and "On compounds this model has not seen" in page
    assert "MoA set at 90 %" in page and "Unlike anything in the reference" in page


def test_api_pools_each_compound(client, upload):
    frame = upload.copy()
    frame["compound"] = ["A" if i % 2 else "B" for i in range(len(frame))]
    frame.loc[len(frame) - 2, "compound"] = "solo"
    body = frame.to_csv(index=False).encode()
    data = client.post("/api/predict?probabilities=false",
                       files={"file": ("in.csv", io.BytesIO(body), "text/csv")}).json()
    calls = {c["compound"]: c for c in data["sets"]["compounds"]}
    treated = frame[frame[schema.CP_TYPE] == schema.TREATED]
    assert set(calls) == set(treated["compound"])
    assert calls["A"]["n_profiles"] == int((treated["compound"] == "A").sum())
    solo_row = next(p for p in data["predictions"] if p["sig_id"] == frame.loc[len(frame) - 2, "sig_id"])
    assert [m["moa"] for m in calls["solo"]["set"]] == solo_row["moa_set"]  # one profile: its own set
    for c in calls.values():
        assert all(0 <= m["agreement"] <= 1 for m in c["set"])
        assert (c["abstention"] is None) == bool(c["set"])



def test_the_sets_download_matches_the_api(client, upload):
    body = upload.to_csv(index=False).encode()
    answer = client.post("/api/predict?set_level=0.8&probabilities=false",
                         files={"file": ("in.csv", io.BytesIO(body), "text/csv")}).json()
    result_id = answer["result_id"]
    assert 'id="download-sets"' in client.get(f"/results/{result_id}").text
    r = client.get(f"/results/{result_id}/sets.csv?set_level=0.8")
    assert r.status_code == 200 and "set80" in r.headers["content-disposition"]
    table = pd.read_csv(io.BytesIO(r.content), keep_default_na=False, dtype=str)
    assert list(table.columns) == ["sig_id", "moa_set", "abstention"]
    got = {row.sig_id: (set(filter(None, row.moa_set.split("|"))), row.abstention) for row in table.itertuples()}
    for p in answer["predictions"]:
        assert got[p["sig_id"]] == (set(p["moa_set"]), p["abstention"] or "")
