"""Explanations in the web app (web/services/explainer.py): POST /api/explain, GET /api/results/{id}/explain, the results
page's attribution / similar-profile panels and OOD warnings, and the compound page. A tiny MLP (attributions)
and the prior (no attributions) trained on the session's simulated set, both with a reference index."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from moa_predict.data.profiles import schema  # noqa: E402
from moa_predict.data.identities import feature_label  # noqa: E402
from moa_predict.data.profiles.dataset import load_features  # noqa: E402
from moa_predict.models import make_model  # noqa: E402
from moa_predict.training.train import train_bundle  # noqa: E402
from moa_predict.web import create_app  # noqa: E402
from moa_predict.runtime.threads import limit_threads  # noqa: E402
from moa_predict.web.core.options import ExplainOptions  # noqa: E402
from moa_predict.web.core.settings import ExplainSettings  # noqa: E402


@pytest.fixture(scope="module")
def mlp_bundle(sim_dataset):
    model = make_model("mlp", hidden=(48,), epochs=3, g_pca=8, c_pca=4, batch_size=64)
    bundle, _ = train_bundle(model, sim_dataset, cv=False, progress=False)
    return bundle


@pytest.fixture(scope="module")
def prior_bundle(sim_dataset):
    bundle, _ = train_bundle(make_model("prior"), sim_dataset, cv=False, progress=False)
    return bundle


@pytest.fixture(scope="module")
def client(mlp_bundle):
    return TestClient(create_app(mlp_bundle), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def prior_client(prior_bundle):
    return TestClient(create_app(prior_bundle), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def upload(sim_dir) -> pd.DataFrame:
    """The first 12 test profiles as a user uploads them, with a compound column (4 compounds x 3 profiles)."""
    frame = pd.read_csv(sim_dir / "test_features.csv", dtype={"sig_id": str}).head(12).copy()
    frame["compound"] = [f"cmpd-{i // 3 + 1}" for i in range(12)]
    return frame


def csv_bytes(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def post(client, frame_or_bytes, url="/api/explain", name="profiles.csv", **kw):
    content = frame_or_bytes if isinstance(frame_or_bytes, bytes) else csv_bytes(frame_or_bytes)
    return client.post(url, files={"file": (name, content, "text/csv")}, **kw)


def garbage(frame: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Valid layout, nonsense values: independent noise in every g-/c- column."""
    out = frame.copy()
    cols = [c for c in out.columns if c.startswith(("g-", "c-"))]
    out[cols] = np.random.default_rng(seed).normal(0.0, 2.0, (len(out), len(cols))).round(3)
    out[schema.CP_TYPE] = schema.TREATED
    return out


# ------------------------------------------------------------------------------------------------
# POST /api/explain
# ------------------------------------------------------------------------------------------------


def test_explain_file_with_a_network(client, mlp_bundle, upload):
    r = post(client, upload)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "mlp" and body["n_profiles"] == 12 and body["n_targets"] == 206
    assert body["attributions"]["available"] and body["attributions"]["message"] is None
    assert body["reference"]["available"]
    profiles = {p["sig_id"]: p for p in body["profiles"]}
    assert list(profiles) == list(upload.sig_id)
    proba = mlp_bundle.predict_proba(load_features(io.BytesIO(csv_bytes(upload)), name="u.csv"))
    for i, (sig, p) in enumerate(profiles.items()):
        assert set(p["ood"]) >= {"flag", "reasons", "distance", "threshold"}
        assert len(p["neighbours"]) == 10
        assert {"sig_id", "drug_id", "moas", "similarity", "percentile"} <= set(p["neighbours"][0])
        sims = [n["similarity"] for n in p["neighbours"]]
        assert sims == sorted(sims, reverse=True)
        assert p["compound"] == upload.compound[i]
        if upload.cp_type[i] == schema.CONTROL:
            assert p["explanations"] == [] and p["predictions"] == []
            continue
        assert [e["moa"] for e in p["explanations"]] == [q["moa"] for q in p["predictions"]]
        assert len(p["explanations"]) == 3
        top = int(np.argmax(proba[i]))
        assert p["explanations"][0]["moa"] == mlp_bundle.target_names[top]
        for e in p["explanations"]:
            assert len(e["features"]) == 10
            assert {f["block"] for f in e["features"]} <= {"gene", "cell viability", "treatment"}
            for f in e["features"]:  # named for people, the column kept for programs
                assert f["label"] == feature_label(f["feature"]) and f["info"]["feature"] == f["feature"]
            sizes = [abs(f["attribution"]) for f in e["features"]]
            assert sizes == sorted(sizes, reverse=True)
            # completeness: the attributions sum to p - p0, up to the reported error
            assert e["attribution_sum"] == pytest.approx(
                e["model_probability"] - e["baseline_probability"] + e["completeness_error"], abs=2e-5)
            assert abs(e["completeness_error"]) < 0.02
    assert body["compound_column"] == "compound"
    assert {c["compound"] for c in body["compounds"]} <= set(upload.compound)
    c = body["compounds"][0]
    assert {"mean_probability", "min_probability", "max_probability", "top_k_fraction"} <= set(c["moas"][0])


def test_explain_json_rows_and_options(client, upload):
    rows = json.loads(upload.head(6).to_json(orient="records"))
    treated = [s for s, t in zip(upload.sig_id[:6], upload.cp_type[:6]) if t == schema.TREATED]
    r = client.post("/api/explain", json={"rows": rows, "sig_ids": treated[:2], "top_moas": 2, "top_k": 4,
                                          "neighbours": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [p["sig_id"] for p in body["profiles"]] == treated[:2]
    for p in body["profiles"]:
        assert len(p["explanations"]) == 2 and all(len(e["features"]) == 4 for e in p["explanations"])
        assert len(p["neighbours"]) == 3
    # query parameters, a chosen MoA, and a bare list of rows
    moa = body["profiles"][0]["explanations"][1]["moa"]
    r = client.post("/api/explain", params={"sig_ids": treated[0], "moas": moa, "neighbours": 0}, json=rows)
    assert r.status_code == 200, r.text
    (p,) = r.json()["profiles"]
    assert [e["moa"] for e in p["explanations"]] == [moa] and p["neighbours"] == [] and p["ood"] is not None
    # multipart form fields carry options too
    r = post(client, upload.head(6), data={"top_moas": "1", "sig_ids": treated[1]})
    assert r.status_code == 200 and [len(p["explanations"]) for p in r.json()["profiles"]] == [1]


@pytest.mark.parametrize("kind, send, status, words, column", [
    ("non-numeric value", lambda f: post_bad(f, "g-3", 4, "abc"), 422, "not a number", "g-3"),
    ("missing column", lambda f: ("file", csv_bytes(f.drop(columns=["c-5"]))), 422, "missing column", "c-5"),
    ("empty file", lambda f: ("file", b""), 422, "empty", None),
    ("unknown sig_id", lambda f: ("params", {"sig_ids": "nope"}), 422, "sig_id", "sig_id"),
    ("unknown MoA", lambda f: ("params", {"moas": "not_a_moa"}), 422, "unknown moa", None),
    ("top_moas 0", lambda f: ("params", {"top_moas": 0}), 422, "top_moas", None),
    ("top_k text", lambda f: ("json-option", {"top_k": "many"}), 422, "top_k", None),
    ("bad JSON", lambda f: ("raw", b"{nope"), 422, "not valid JSON", None),
    ("rows not a list", lambda f: ("json-option", {"rows": "x"}), 422, "rows", None),
    ("wrong content type", lambda f: ("csv-body", csv_bytes(f)), 415, "multipart/form-data", None),
    ("no file", lambda f: ("nofile", None), 422, "no file", None),
])
def test_explain_errors_match_predict(client, upload, kind, send, status, words, column):
    how, payload = send(upload)
    if how == "file":
        r = post(client, payload, name="bad.csv")
    elif how == "params":
        r = post(client, upload, params=payload)
    elif how == "json-option":
        rows = json.loads(upload.head(3).to_json(orient="records"))
        r = client.post("/api/explain", json={"rows": rows, **payload})
    elif how == "raw":
        r = client.post("/api/explain", content=payload, headers={"content-type": "application/json"})
    elif how == "csv-body":
        r = client.post("/api/explain", content=payload, headers={"content-type": "text/csv"})
    else:
        r = client.post("/api/explain", data={"x": "1"}, files={"other": ("", b"", "text/csv")})
    assert r.status_code == status, (kind, r.text[:300])
    body = r.json()
    assert set(body) >= {"error", "file", "row", "line", "column"}, body
    assert words.lower() in body["error"].lower(), body["error"]
    assert body["column"] == column
    assert "Traceback" not in r.text
    if how == "file" and column == "g-3":  # the very same answer as /api/predict
        same = post(client, payload, url="/api/predict", name="bad.csv")
        assert same.status_code == 422 and same.json() == body


def post_bad(frame, col, row, value):
    frame = frame.copy().astype({col: object})
    frame.loc[row, col] = value
    return "file", csv_bytes(frame)


def test_prior_bundle_says_no_attributions_but_gives_neighbours(prior_client, upload):
    r = post(prior_client, upload)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "prior"
    assert body["attributions"]["available"] is False
    assert "prior" in body["attributions"]["message"].lower()
    assert all(p["explanations"] == [] for p in body["profiles"])
    assert all(len(p["neighbours"]) == 10 and p["ood"] is not None for p in body["profiles"])
    assert body["compounds"]
    # the results page says so once, and still shows the similar profiles
    html = prior_client.get(upload_page(prior_client, upload)).text
    assert re.search(r"Feature attributions are not\s+available: [^<]*prior", html, re.I) and "attributions</h4>" not in html
    assert all("<h4>Similar reference profiles</h4>" in block for block in profiles_on_page(html).values())
    assert len(profiles_on_page(html)) == 10


# ------------------------------------------------------------------------------------------------
# results page, stored-result endpoint, compound page
# ------------------------------------------------------------------------------------------------


def upload_page(client, frame, name="profiles.csv") -> str:
    r = post(client, frame, url="/predict", name=name, follow_redirects=False)
    assert r.status_code == 303, r.text[:300]
    return r.headers["location"]


def profiles_on_page(html: str) -> dict[str, str]:
    """sig_id -> the HTML of that profile's section, in page order."""
    return dict(re.findall(r'<article class="profile[^"]*"[^>]*data-sig-id="([^"]+)">(.*?)</article>', html, re.S))


def test_results_page_panels_and_stored_explain(client, upload):
    location = upload_page(client, upload)
    html = client.get(location).text
    base = location.split("?")[0]
    shown = profiles_on_page(html)
    is_treated = upload.cp_type == schema.TREATED
    order = pd.concat([upload[is_treated], upload[~is_treated]]).head(10)  # treated profiles first
    assert list(shown) == list(order.sig_id)
    treated = [s for s, t in zip(order.sig_id, order.cp_type) if t == schema.TREATED]
    top3 = {p["sig_id"]: [t["moa"] for t in p["top"]]
            for p in client.get(base + "/predictions.json", params={"top": 3}).json()["predictions"]}
    api = post(client, order, params={"max_attributed": 0}).json()
    nearest = {p["sig_id"]: [n["sig_id"] for n in p["neighbours"]] for p in api["profiles"]}
    urls = []
    for sig, block in shown.items():
        # similar reference profiles for every profile (controls too, collapsed): the same 10 the API finds,
        # and for treated profiles the MoAs enriched among them
        assert "<h4>Similar reference profiles</h4>" in block and "The 10 most similar training profiles" in block
        assert re.findall(r"<td><code>([^<]+)</code> <span", block) == nearest[sig]
        if sig not in treated:
            assert "feature attributions" not in block and "MoAs enriched among them" not in block
            continue
        assert "MoAs enriched among them" in block
        # the attribution charts of the profile's top 3 MoAs, drawn by app.js from the stored-result endpoint
        assert "<h4>Why these MoAs: feature attributions</h4>" in block
        assert re.findall(r'<figure class="attr-figure" data-moa="([^"]+)"', block) == top3[sig]
        (url,) = re.findall(r'data-url="([^"]+)"', block)
        urls.append(url)
    assert len(urls) == len(treated)
    assert 'id="stat-ood"' in html and 'id="stat-compounds"' in html and 'id="compound-link"' in html
    link = re.search(r'<a href="([^"]+)" id="compound-link">', html).group(1)
    assert client.get(link).status_code == 200 and "compound" in client.get(link).text.lower()
    # the charts' data: the stored-result endpoint, cached
    url = urls[0].replace("&amp;", "&")
    r = client.get(url)
    assert r.status_code == 200, r.text
    body = r.json()
    (p,) = body["profiles"]
    assert p["sig_id"] == treated[0] and p["neighbours"] == []
    assert [e["moa"] for e in p["explanations"]] == top3[treated[0]]  # the charts the page announced
    assert body["result_id"] == location.split("/")[-1].split("?")[0]
    assert client.get(url).json() == body
    rid = body["result_id"]
    r = client.get(f"/api/results/{rid}/explain", params={"sig_id": "nope"})
    assert r.status_code == 422 and r.json()["column"] == "sig_id"
    r = client.get(f"/api/results/{'A' * 22}/explain", params={"sig_ids": treated[0]})
    assert r.status_code == 404 and "no longer available" in r.json()["error"]


def test_ood_banner_and_summary_count(client, upload):
    frame = upload.head(10).copy()
    frame.loc[2:4] = garbage(frame).loc[2:4]
    location = upload_page(client, frame)
    html = client.get(location).text
    flagged = [s for s in frame.sig_id if f'aria-label="Out-of-distribution warning for {s}"' in html]
    assert set(frame.sig_id[2:5]) <= set(flagged)
    count = int(re.search(r'id="stat-ood"><a [^>]*>(\d+)</a>', html).group(1))
    assert count == len(flagged) and 'id="ood-summary"' in html
    assert "lacks the correlation structure" in html or "far from every training profile" in html
    shown = client.get(location.split("?")[0], params={"show": "ood"}).text
    assert f"Profiles 1–{count} of {count}" in shown


def test_compound_page_and_download(client, upload):
    location = upload_page(client, upload)
    base = location.split("?")[0]
    r = client.get(base + "/compounds")
    assert r.status_code == 200
    html = r.text
    names = re.findall(r'<article class="compound" data-compound="([^"]+)"', html)
    treated = upload[upload.cp_type == schema.TREATED]
    assert sorted(names) == sorted(treated.compound.unique())
    n_prof = treated.compound.value_counts()
    calls = pd.read_csv(io.BytesIO(client.get(base + "/compounds.csv").content))
    for name in names:  # its first 5 MoAs, as in the CSV; agreement "k of n" over its treated profiles
        block = html.split(f'data-compound="{name}"')[1].split("</article>")[0]
        listed = [m.replace("<wbr>", "") for m in re.findall(r'<span class="moa-name">(.*?)</span>', block)]
        assert listed == list(calls[calls.compound == name].moa[:5])
        agreement = [int(k) for k in re.findall(rf">(\d+) of {n_prof[name]}</td>", block)]
        assert len(agreement) == 5 and all(0 <= k <= n_prof[name] for k in agreement)
    assert client.get(base + "/compounds", params={"q": names[0], "n": 3}).text.count('class="compound"') >= 1
    csv = client.get(base + "/compounds.csv")
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    calls = pd.read_csv(io.BytesIO(csv.content))
    assert list(calls.columns[:3]) == ["compound", "rank", "moa"] and "top5_confident_fraction" in calls.columns
    assert {"no_confident", "predictable"} <= set(calls.columns)
    assert set(calls.compound) == set(names) and calls.groupby("compound").size().max() == 10
    # the results page finds a compound's profiles by name
    html = client.get(base, params={"q": names[0]}).text
    shown = re.findall(r'data-sig-id="([^"]+)"', html)
    assert set(shown) == set(upload.sig_id[upload.compound == names[0]])
    # no compound column: the page says how to add one; no CSV
    plain = upload_page(client, upload.drop(columns=["compound"]))
    base2 = plain.split("?")[0]
    assert 'id="no-compounds"' in client.get(base2 + "/compounds").text
    assert client.get(base2 + "/compounds.csv").status_code == 404
    assert 'id="stat-compounds"' not in client.get(plain).text


def test_example_file_has_compounds(client):
    frame = load_features(io.BytesIO(client.get("/example.csv").content), name="example.csv")
    treated = frame[frame.cp_type == schema.TREATED]
    sizes = treated.compound.value_counts()
    assert (sizes >= 6).sum() >= 5  # several compounds at 2 doses x 3 times
    for name in sizes[sizes >= 6].index:
        rows = treated[treated.compound == name]
        assert set(rows.cp_dose) == {"D1", "D2"} and set(rows.cp_time) == {24, 48, 72}
    assert frame.loc[frame.cp_type == schema.CONTROL, "compound"].isna().all()


# ------------------------------------------------------------------------------------------------
# units
# ------------------------------------------------------------------------------------------------


def test_options_parsing():
    targets = ["a_inhibitor", "b_agonist"]
    limits = ExplainSettings()
    o = ExplainOptions.parse({"sig_ids": ["x", "y", "x"], "moa": "b_agonist", "top_k": "5", "neighbours": 0},
                             limits, targets)
    assert o.sig_ids == ("x", "y") and o.moas == ("b_agonist",) and o.top_k == 5 and o.neighbours == 0
    assert ExplainOptions.parse({}, limits, targets) == ExplainOptions.defaults(limits)
    assert (o.top_moas, o.max_attributed) == (3, 50)  # the settings' defaults fill what is not given
    for bad, words in (({"top_k": 0}, "top_k must be a whole number from 1 to 100"), ({"top_k": "1.5"}, "top_k"),
                       ({"neighbours": 51}, "from 0 to 50"), ({"top_moas": True}, "top_moas"),
                       ({"moas": ["zzz"]}, "unknown MoA name(s): 'zzz'"),
                       ({"sig_ids": [{"a": 1}]}, "sig_ids must be a list of texts")):
        with pytest.raises(Exception) as info:
            ExplainOptions.parse(bad, limits, targets)
        assert type(info.value).__name__ == "DataError" and words in str(info.value)


def test_limits_come_from_the_app_settings(mlp_bundle, upload):
    """One settings object: a narrower bound given to create_app is the bound the API enforces and documents."""
    from moa_predict.web.core.settings import Bound, WebSettings

    settings = WebSettings(explain=ExplainSettings(top_k=Bound(default=2, low=1, high=4)))
    narrow = TestClient(create_app(mlp_bundle, settings=settings), raise_server_exceptions=False)
    treated = upload[upload.cp_type == schema.TREATED].sig_id.iloc[0]
    r = post(narrow, upload, params={"top_k": 5})
    assert r.status_code == 422 and "top_k must be a whole number from 1 to 4" in r.json()["error"]
    r = post(narrow, upload, params={"sig_ids": treated, "top_moas": 1, "neighbours": 0})
    assert r.status_code == 200, r.text
    assert [len(e["features"]) for e in r.json()["profiles"][0]["explanations"]] == [2]
    params = {p["name"]: p for p in narrow.get("/openapi.json").json()["paths"]["/api/explain"]["post"]["parameters"]}
    assert params["top_k"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 4, "default": 2}


def test_limit_threads_restores_settings():
    """limit_threads (used by every explanation) is counted: one torch thread and one BLAS thread inside, still
    one after another request leaves while this one is inside, and what was there before comes back when the
    last one leaves."""
    import threading

    import torch
    from threadpoolctl import threadpool_info

    def blas_threads() -> set[int]:
        return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}

    before_torch, before_blas = torch.get_num_threads(), blas_threads()
    seen: list[tuple[int, set[int]]] = []

    def other_request():
        with limit_threads(1):
            seen.append((torch.get_num_threads(), blas_threads()))

    with limit_threads(1):
        assert torch.get_num_threads() == 1 and blas_threads() <= {1}
        worker = threading.Thread(target=other_request)
        worker.start()
        worker.join(5)
        assert seen == [(1, blas_threads())] and blas_threads() <= {1}
        assert torch.get_num_threads() == 1  # the other request left first: nothing restored under our feet
    assert torch.get_num_threads() == before_torch and blas_threads() == before_blas
