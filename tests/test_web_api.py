"""The web app and JSON API through FastAPI's TestClient: success paths, every validation error,
size limits, downloads, paging/filtering, error isolation and concurrency."""

from __future__ import annotations

import io
import json
import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from moa_predict.data.profiles import schema  # noqa: E402
from moa_predict.data.profiles.dataset import load_dataset, load_features  # noqa: E402
from moa_predict.simulate import simulate, write_simulated  # noqa: E402
from moa_predict.models.prior import PriorModel  # noqa: E402
from moa_predict.training.train import train_bundle  # noqa: E402
from moa_predict.web import create_app  # noqa: E402
from moa_predict.web.core.store import Prediction, ResultStore  # noqa: E402
from moa_predict.web.core.settings import PagingSettings  # noqa: E402
from moa_predict.web.pages.views import ResultsQuery, _page_numbers  # noqa: E402


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    data = simulate(n_train=300, n_test=60, seed=3)
    out = tmp_path_factory.mktemp("websim")
    write_simulated(data, out)
    return out


@pytest.fixture(scope="module")
def bundle(sim):
    """The prior fitted on the simulated set, with a CV report in the bundle's usual form (the app only shows it;
    computing a real one would cost seconds for nothing)."""
    bundle, _ = train_bundle(PriorModel(), load_dataset(sim), cv=False, progress=False)
    bundle.info["training_data"].pop("simulated")  # as bundles written before the simulated-data marker
    bundle.info["cv"] = {"metric": "mean column-wise log loss", "score": 0.0421, "folds": 3, "grouped_by_drug": True,
                         "seed": 0, "rows": "treated rows only", "fold_scores": [0.041, 0.042, 0.043],
                         "per_target": {t: 0.001 * (i % 50) for i, t in enumerate(bundle.target_names)}}
    return bundle


@pytest.fixture(scope="module")
def app(bundle):
    return create_app(bundle)


@pytest.fixture(scope="module")
def client(app):
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture(scope="module")
def features(sim) -> pd.DataFrame:
    """The raw test_features table, as a user would upload it."""
    return pd.read_csv(sim / "test_features.csv", dtype={"sig_id": str})


def csv_bytes(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def post_file(client, content: bytes, name: str = "profiles.csv", url: str = "/api/predict", **kw):
    return client.post(url, files={"file": (name, content, "text/csv")}, **kw)


# ------------------------------------------------------------------------------------------------
# success
# ------------------------------------------------------------------------------------------------


def test_health_and_model_card(client, bundle):
    health = client.get("/api/health").json()
    assert health["status"] == "ok" and health["model"] == "prior" and health["targets"] == 206
    card = client.get("/api/model").json()
    assert card["model"] == "prior"
    assert card["cv"]["score"] == pytest.approx(bundle.info["cv"]["score"])
    assert card["cv"]["folds"] == 3
    assert len(card["targets"]) == 206 and card["targets"][0]["id"] == 1
    assert card["targets"][0]["cv_log_loss"] is not None
    assert "/" not in card["training_data"]["source"]  # server paths are not shown


def test_predict_csv_matches_the_library(client, bundle, features, sim):
    r = post_file(client, csv_bytes(features))
    assert r.status_code == 200, r.text
    body = r.json()
    n_ctl = int((features.cp_type == schema.CONTROL).sum())
    assert n_ctl > 0
    assert body["summary"] == {**body["summary"], "rows_read": 60, "controls": n_ctl, "treated": 60 - n_ctl,
                               "rows_rejected": 0}
    assert body["targets"] == bundle.target_names
    preds = body["predictions"]
    assert [p["sig_id"] for p in preds] == list(features.sig_id)
    expected = bundle.predict_frame(load_features(sim / "test_features.csv"))
    got = np.array([p["probabilities"] for p in preds])
    np.testing.assert_allclose(got, expected[bundle.target_names].to_numpy(), atol=1e-6)
    for p in preds:
        if p["control"]:
            assert p["top"] == [] and not any(p["probabilities"])
        else:
            probs = [t["probability"] for t in p["top"]]
            assert len(probs) == 10 and probs == sorted(probs, reverse=True)
            assert p["top"][0]["moa"] == bundle.target_names[p["top"][0]["moa_id"] - 1]
    assert body["links"]["csv"].endswith(f"/results/{body['result_id']}/predictions.csv")
    # the links work: the page lists the profiles, the downloads hold the same numbers
    page = client.get(body["links"]["results_page"])
    assert page.status_code == 200 and f"Profiles 1–10 of 60" in page.text
    csv = pd.read_csv(io.BytesIO(client.get(body["links"]["csv"]).content), dtype={"sig_id": str})
    np.testing.assert_allclose(csv[bundle.target_names].to_numpy(), got, atol=1e-6)
    assert client.get(body["links"]["json"]).json()["predictions"][0]["top"] == preds[0]["top"]


def test_predict_parquet_and_top_option(client, features):
    buf = io.BytesIO()
    features.to_parquet(buf, index=False)
    r = client.post("/api/predict?top=3&probabilities=false",
                    files={"file": ("p.parquet", buf.getvalue(), "application/octet-stream")})
    assert r.status_code == 200, r.text
    body = r.json()
    treated = [p for p in body["predictions"] if not p["control"]]
    assert all(len(p["top"]) == 3 and "probabilities" not in p for p in treated)
    assert body["top_n"] == 3


def test_predict_json_rows(client, features):
    rows = json.loads(features.head(5).to_json(orient="records"))
    for payload in ({"rows": rows}, rows):
        r = client.post("/api/predict", json=payload)
        assert r.status_code == 200, r.text
        assert [p["sig_id"] for p in r.json()["predictions"]] == list(features.sig_id[:5])
        assert r.json()["summary"]["file"] == "request body"


def test_extra_columns_pass_through(client, features):
    frame = features.head(8).copy()
    frame["compound"] = [f"cmpd-{i}" for i in range(8)]
    r = post_file(client, csv_bytes(frame))
    assert r.status_code == 200
    body = r.json()
    assert body["summary"]["extra_columns"] == ["compound"]
    assert body["predictions"][3]["extra"] == {"compound": "cmpd-3"}
    download = pd.read_csv(io.BytesIO(client.get(body["links"]["csv"]).content))
    assert list(download.columns) == ["sig_id", *body["targets"], "compound"]
    assert list(download["compound"]) == list(frame["compound"])


# ------------------------------------------------------------------------------------------------
# validation errors: the CLI's own checks, as 422 JSON naming row / column / problem
# ------------------------------------------------------------------------------------------------


def _with(features, edit):
    frame = features.head(12).copy().astype({"g-3": object, "cp_type": object})
    edit(frame)
    return csv_bytes(frame)


def _set(col, row, value):
    def edit(frame):
        frame.loc[row, col] = value
    return edit


@pytest.mark.parametrize("name, make, column, row, words", [
    ("missing column", lambda f: csv_bytes(f.head(5).drop(columns=["g-5"])), "g-5", None, "missing column"),
    ("non-numeric", lambda f: _with(f, _set("g-3", 4, "abc")), "g-3", 5, "not a number"),
    ("NaN", lambda f: _with(f, _set("g-3", 2, np.nan)), "g-3", 3, "missing"),
    ("bad cp_type", lambda f: _with(f, _set("cp_type", 6, "treated")), "cp_type", 7, "cp_type"),
    ("duplicate sig_id", lambda f: _with(f, lambda fr: fr.__setitem__("sig_id", ["dup"] * 2 + list(fr.sig_id[2:]))),
     "sig_id", 1, "more than once"),
    ("empty file", lambda f: b"", None, None, "empty"),
    ("header only", lambda f: csv_bytes(f.head(0)), None, None, "no data rows"),
    ("not a CSV", lambda f: b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4, None, None, "not a CSV"),
    ("not UTF-8", lambda f: "sig_id,cp_type\nid\xe9,trt_cp\n".encode("latin-1"), None, None, "UTF-8"),
])
def test_validation_errors(client, features, name, make, column, row, words):
    r = post_file(client, make(features), name="bad.csv")
    assert r.status_code == 422, (name, r.text)
    body = r.json()
    assert set(body) >= {"error", "file", "row", "line", "column"}
    assert words.lower() in body["error"].lower(), body["error"]
    assert body["file"] == "bad.csv"
    assert body["column"] == column
    if row is not None:
        assert body["row"] == row and body["line"] == row + 1
    assert "Traceback" not in r.text


def test_json_errors(client, features):
    rows = json.loads(features.head(4).to_json(orient="records"))
    rows[2]["c-7"] = "high"
    r = client.post("/api/predict", json={"rows": rows})
    assert r.status_code == 422
    assert r.json()["row"] == 3 and r.json()["column"] == "c-7"
    r = client.post("/api/predict", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "not valid JSON" in r.json()["error"]
    for payload in ({"rows": []}, {"rows": "x"}, {"nope": 1}):
        r = client.post("/api/predict", json=payload)
        assert r.status_code == 422 and r.json()["error"]


def test_bad_requests(client):
    r = client.post("/api/predict", content=b"sig_id\n", headers={"content-type": "text/csv"})
    assert r.status_code == 415 and "multipart/form-data" in r.json()["error"]
    r = client.post("/api/predict", data={"other": "x"}, files={"nofile": ("", b"", "text/csv")})
    assert r.status_code == 422 and "no file" in r.json()["error"]
    r = client.post("/api/predict?top=0", files={"file": ("a.csv", b"x", "text/csv")})
    assert r.status_code == 422 and "top" in r.json()["error"]
    r = client.get("/api/nothing-here")
    assert r.status_code == 404 and r.json()["error"]


# ------------------------------------------------------------------------------------------------
# size limit
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_client(bundle):
    return TestClient(create_app(bundle, max_upload_mb=0.2), raise_server_exceptions=False)


def test_too_large_upload(small_client, features):
    big = csv_bytes(features)  # ~ 400 kB > 200 kB
    assert len(big) > 250_000
    r = post_file(small_client, big)
    assert r.status_code == 413 and r.headers["connection"] == "close"
    assert r.json()["error"].startswith("the upload is larger than this server's 0.2 MB limit")
    assert "--max-upload-mb" in r.json()["error"]
    page = post_file(small_client, big, url="/predict")
    assert page.status_code == 413 and "too large" in page.text.lower()
    assert "larger than this server&#39;s 0.2 MB limit" in page.text or "larger than this server's 0.2 MB" in page.text

    def chunks():  # no Content-Length: the limit applies while the body streams
        boundary = b"--xyz\r\n"
        yield boundary + b'Content-Disposition: form-data; name="file"; filename="a.csv"\r\n\r\n'
        for i in range(0, len(big), 65536):
            yield big[i:i + 65536]
        yield b"\r\n--xyz--\r\n"

    r = small_client.post("/api/predict", content=chunks(),
                          headers={"content-type": "multipart/form-data; boundary=xyz"})
    assert r.status_code == 413 and "0.2 MB limit" in r.json()["error"]
    health = small_client.get("/api/health").json()
    assert health["status"] == "ok" and health["max_upload_mb"] == pytest.approx(0.2)
    assert 'data-max-bytes="200000"' in small_client.get("/").text  # the page checks the same limit before sending
    ok = post_file(small_client, csv_bytes(features.head(10)))
    assert ok.status_code == 200


# ------------------------------------------------------------------------------------------------
# pages
# ------------------------------------------------------------------------------------------------


def upload_page(client, content: bytes, name="profiles.csv", n: int | None = None) -> str:
    data = {} if n is None else {"n": str(n)}
    r = client.post("/predict", files={"file": (name, content, "text/csv")}, data=data, follow_redirects=False)
    assert r.status_code == 303, r.text[:500]
    return r.headers["location"]


def profiles_on_page(html: str) -> dict[str, dict]:
    """What the page shows per profile, in page order: its top-MoA table (names and probabilities), its chart's
    probabilities, the titles of its panels and its text."""
    out = {}
    for sig, block in re.findall(r'<article class="profile[^"]*"[^>]*data-sig-id="([^"]+)">(.*?)</article>', html, re.S):
        rows = re.findall(r'<span class="moa-name">(.*?)</span>.*?data-p="([0-9.]+)"', block, re.S)
        chart = re.search(r'<script type="application/json" id="chart-data-\d+">(.*?)</script>', block, re.S)
        out[sig] = {"top": [(name.replace("<wbr>", ""), float(p)) for name, p in rows],
                    "chart": json.loads(chart.group(1))["y"] if chart else None,
                    "panels": re.findall(r"<h4>(.*?)</h4>", block),
                    "text": re.sub(r"<[^>]+>", "", block)}
    return out


def top_names(client, base: str, n: int) -> dict[str, list[str]]:
    """Each profile's top-n MoAs from the JSON download of the same result."""
    body = client.get(base + "/predictions.json", params={"top": n}).json()
    return {p["sig_id"]: [t["moa"] for t in p["top"]] for p in body["predictions"]}


def test_home_page(client):
    r = client.get("/")
    assert r.status_code == 200
    html = r.text
    for needle in ('enctype="multipart/form-data"', 'href="/example.csv"', "Research tool", "cp_type",
                   "g-0 … g-771", "Cross-validated score", "206 MoAs it knows", 'for="file"'):
        assert needle in html, needle


def test_results_page_paging_n_and_filters(client, features):
    location = upload_page(client, csv_bytes(features), n=5)
    assert location.endswith("?n=5")
    html = client.get(location).text
    assert 'id="stat-rows">60<' in html
    n_ctl = int((features.cp_type == schema.CONTROL).sum())
    assert f'id="stat-controls">{n_ctl}<' in html
    assert "Profiles 1–10 of 60" in html
    base = location.split("?")[0]
    shown = profiles_on_page(html)
    control = (features.cp_type == schema.CONTROL).to_numpy()
    order = pd.concat([features[~control], features[control]])  # treated profiles first, controls after them
    assert list(shown) == list(order.sig_id[:10])
    expected, js = top_names(client, base, 5), client.get(base + "/predictions.json").json()
    proba = {p["sig_id"]: p["probabilities"] for p in js["predictions"]}
    for sig, ctl in zip(order.sig_id[:10], order.cp_type[:10] == schema.CONTROL):
        prof = shown[sig]
        if ctl:  # a control: said in words, no table, no chart
            assert prof["top"] == [] and prof["chart"] is None and "Vehicle control" in prof["text"]
            continue
        assert [name for name, _ in prof["top"]] == expected[sig]  # the top 5 MoAs, in order
        assert f"Top 5 MoAs for {sig}" in prof["text"]
        assert [p for _, p in prof["top"]] == pytest.approx(sorted(proba[sig], reverse=True)[:5], abs=1e-6)
        assert prof["chart"] == pytest.approx(proba[sig], abs=1e-5)  # the scatter: all 206 probabilities
    assert 'id="heatmap-data"' in html and "/vendor/plotly.min.js" in html

    html = client.get(base, params={"n": 20, "page": 2}).text
    shown = profiles_on_page(html)
    assert "Profiles 11–20 of 60" in html and list(shown) == list(order.sig_id[10:20])
    last = profiles_on_page(client.get(base, params={"page": 6}).text)
    assert list(last) == list(order.sig_id[50:60]) and all(s in last for s in features.sig_id[control])
    expected = top_names(client, base, 20)
    assert all([name for name, _ in prof["top"]] == expected[sig] for sig, prof in shown.items() if prof["top"])
    html = client.get(base, params={"page": 999}).text  # clamped to the last page
    assert "Profiles 51–60 of 60" in html

    sig = features.sig_id[33]
    html = client.get(base, params={"q": sig[3:9]}).text
    assert sig in profiles_on_page(html) and "(filtered from 60)" in html

    html = client.get(base, params={"show": "controls"}).text
    shown = profiles_on_page(html)
    assert f"of {n_ctl}" in html and set(shown) == set(features.sig_id[features.cp_type == schema.CONTROL][:10])
    assert all(p["chart"] is None and "Vehicle control" in p["text"] for p in shown.values())

    top_moa = next(p["top"][0][0] for p in profiles_on_page(client.get(base).text).values() if p["top"])
    html = client.get(base, params={"q": top_moa.replace("_", " ")}).text
    assert "matches MoA" in html and f"of {60 - n_ctl}" in html
    ranked = [dict(p["top"])[top_moa] for p in profiles_on_page(html).values()]
    assert ranked == sorted(ranked, reverse=True)  # profiles ordered by that MoA's probability

    html = client.get(base, params={"n": "abc", "per": "-4", "show": "<script>"}).text  # lenient, escaped
    assert "Profiles 1–1 of 60" in html and "<script>" not in html.split("<main")[1].split("</main>")[0]


def test_downloads(client, features, bundle):
    location = upload_page(client, csv_bytes(features), name="my plate #1.csv")
    base = location.split("?")[0]
    r = client.get(base + "/predictions.csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert 'filename="my_plate_1_moa_predictions.csv"' in r.headers["content-disposition"]
    frame = pd.read_csv(io.BytesIO(r.content), dtype={"sig_id": str})
    assert list(frame.columns) == ["sig_id", *bundle.target_names]
    assert list(frame.sig_id) == list(features.sig_id)
    ctl = (features.cp_type == schema.CONTROL).to_numpy()
    assert (frame.loc[ctl, bundle.target_names].to_numpy() == 0).all()
    js = client.get(base + "/predictions.json").json()
    assert len(js["predictions"]) == 60
    np.testing.assert_allclose(np.array([p["probabilities"] for p in js["predictions"]]),
                               frame[bundle.target_names].to_numpy(), atol=1e-6)


def test_page_upload_error_keeps_server_healthy(client, features):
    good = upload_page(client, csv_bytes(features.head(6)))
    bad = _with(features, _set("g-3", 4, "abc"))
    r = client.post("/predict", files={"file": ("bad.csv", bad, "text/csv")})
    assert r.status_code == 422
    assert "The file was rejected" in r.text and "g-3" in r.text and "row 5" in r.text
    assert "Nothing was predicted" in r.text and 'enctype="multipart/form-data"' in r.text
    r = client.post("/predict", files={"file": ("", b"", "application/octet-stream")})
    assert r.status_code == 422 and "no file was uploaded" in r.text
    assert client.get(good).status_code == 200  # earlier results untouched
    assert client.get("/api/health").json()["status"] == "ok"


def test_unknown_result_and_odd_ids(client):
    r = client.get("/results/" + "A" * 22)
    assert r.status_code == 404 and "no longer available" in r.text
    for rid in ("..%2F..%2Fetc%2Fpasswd", "x", "A" * 100):
        assert client.get(f"/results/{rid}").status_code == 404
    assert client.get("/results/" + "A" * 22 + "/predictions.csv").status_code == 404


def test_internal_error_does_not_leak(bundle, features, monkeypatch):
    app = create_app(bundle)
    client = TestClient(app, raise_server_exceptions=False)

    def boom(*a, **k):
        raise RuntimeError("secret-internal-detail")

    monkeypatch.setattr(app.state.service.bundle, "predict_frame", boom)
    r = post_file(client, csv_bytes(features.head(3)))
    assert r.status_code == 500
    assert "secret" not in r.text and "Traceback" not in r.text and r.json()["error"].startswith("internal error")
    r = post_file(client, csv_bytes(features.head(3)), url="/predict")
    assert r.status_code == 500 and "secret" not in r.text and "Traceback" not in r.text
    assert len(app.state.service.store) == 0
    monkeypatch.undo()
    assert post_file(client, csv_bytes(features.head(3))).status_code == 200


def test_api_reference_examples_fit_the_page(client):
    import html

    docs = client.get("/docs").text
    examples = html.unescape(re.search(r"<pre><code>(.*?)</code></pre>", docs, re.S).group(1))
    assert "/api/predict" in examples
    assert max(len(line) for line in examples.splitlines()) <= 80, "an example line would scroll sideways"


def test_no_cdn_and_offline_assets(client, features):
    location = upload_page(client, csv_bytes(features.head(5)))
    for url in ("/", "/docs", location):
        html = client.get(url).text
        assert not re.search(r'(src|href)="(https?:)?//', html), url
        for asset in re.findall(r'(?:src|href)="(/(?:static|vendor)/[^"]+)"', html):
            assert client.get(asset).status_code == 200, asset
    js = client.get("/vendor/plotly.min.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"] and len(js.content) > 1_000_000
    docs = client.get("/docs").text
    assert "/api/predict" in docs and "/api/model" in docs and "/api/health" in docs
    spec = client.get("/openapi.json").json()
    assert {"/api/predict", "/api/model", "/api/health"} <= set(spec["paths"])
    assert "multipart/form-data" in spec["paths"]["/api/predict"]["post"]["requestBody"]["content"]
    # the security headers on pages, API answers and error pages alike
    for response in (client.get("/"), client.get("/api/health"), client.get("/results/" + "A" * 22),
                     client.post("/api/predict", content=b"x", headers={"content-type": "text/plain"})):
        headers = response.headers
        assert headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "DENY"
        assert headers["referrer-policy"] == "no-referrer"
        assert "script-src 'self';" in headers["content-security-policy"]
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
    # the API reference lists every option with its bounds
    params = {p["name"]: p for p in spec["paths"]["/api/predict"]["post"]["parameters"]}
    assert params["top"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 1000, "default": 10}
    assert "probabilities" in params
    explain = {p["name"] for p in spec["paths"]["/api/explain"]["post"]["parameters"]}
    assert explain == {"sig_ids", "moas", "top_moas", "top_k", "neighbours", "max_attributed", "label_set", "model"}
    assert "max_attributed" in docs and "how many of each profile&#39;s most probable MoAs" in docs


def test_example_file_is_valid_and_deterministic(client):
    a, b = client.get("/example.csv"), client.get("/example.csv")
    assert a.status_code == 200 and a.content == b.content
    frame = load_features(io.BytesIO(a.content), name="example.csv")
    assert 20 <= len(frame) <= 100 and (frame.cp_type == schema.CONTROL).any()


def test_concurrent_requests_do_not_mix(client, features):
    def job(k):
        frame = features.head(15).copy()
        frame["sig_id"] = [f"job{k}_{i}" for i in range(15)]
        r = post_file(client, csv_bytes(frame), name=f"job{k}.csv")
        return k, r.status_code, [p["sig_id"] for p in r.json()["predictions"]], r.json()["summary"]["file"]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(job, range(6)))
    for k, status, ids, name in results:
        assert status == 200 and name == f"job{k}.csv"
        assert ids == [f"job{k}_{i}" for i in range(15)]


def test_extension_panels(bundle, features):
    from moa_predict.web.pages.panels import PagePanel, Panels, ProfilePanel

    def per_profile(service, pred, row):
        if pred.is_control[row]:
            return None
        g0 = float(pred.features.iloc[row]["g-0"])
        return {"columns": ["feature", "value"], "rows": [["g-0", f"{g0:.3f}"]], "note": f"panel-{pred.sig_ids[row]}"}

    panels = Panels(profile=[ProfilePanel("demo", "Demo panel", "_panel_table.html", per_profile)],
                    page=[PagePanel("whole", "Page panel", "_panel_table.html",
                                    lambda service, pred, view: {"columns": ["shown"], "rows": [[len(view["profiles"])]]})])
    client = TestClient(create_app(bundle, panels=panels))
    html = client.get(upload_page(client, csv_bytes(features.head(12)))).text
    shown = profiles_on_page(html)
    head = features.head(12)
    order = pd.concat([head[head.cp_type != schema.CONTROL], head[head.cp_type == schema.CONTROL]])
    assert list(shown) == list(order.sig_id[:10])  # treated profiles first
    for (sig, prof), (_, row) in zip(shown.items(), order.iterrows()):
        if row.cp_type == schema.CONTROL:  # build() said None: no panel
            assert "Demo panel" not in prof["panels"] and f"panel-{sig}" not in prof["text"]
        else:  # after the built-in similar-profiles panel, with the value build() computed for this profile
            assert prof["panels"][-1] == "Demo panel" and f"panel-{sig}" in prof["text"]
            assert f"{row['g-0']:.3f}" in prof["text"].split("Demo panel")[1]
    page_panel = html.split("<h2>Page panel</h2>")[1]
    assert "<td>10</td>" in page_panel.split("</table>")[0]  # the page panel saw the 10 profiles shown


# ------------------------------------------------------------------------------------------------
# units
# ------------------------------------------------------------------------------------------------


def _prediction(n: int, targets: int = 4) -> Prediction:
    rng = np.random.default_rng(0)
    return Prediction(source="x.csv", sig_ids=np.array([f"s{i}" for i in range(n)], dtype=object),
                      cp_type=np.array(["trt_cp"] * n, dtype=object), cp_time=np.full(n, 24),
                      cp_dose=np.array(["D1"] * n, dtype=object), proba=rng.random((n, targets), dtype=np.float32),
                      extra=None, seconds=0.0)


def test_store_keeps_recent_results_in_memory_and_the_rest_on_disk(tmp_path):
    store = ResultStore(tmp_path, cache_items=3)
    preds = [_prediction(5) for _ in range(4)]
    for p in preds[:3]:
        store.put(p)
    assert store.get(preds[0].id) is preds[0]  # touch: preds[1] becomes the oldest in memory
    store.put(preds[3])
    again = store.get(preds[1].id)  # dropped from memory, read back from disk
    assert again is not preds[1] and np.array_equal(again.proba, preds[1].proba) and len(store) == 4
    assert store.get(preds[0].id) is preds[0]
    assert store.get("../../etc/passwd") is None
    assert len({_prediction(1).id for _ in range(50)}) == 50


def test_query_parsing_and_page_numbers():
    paging = PagingSettings()
    q = ResultsQuery.parse(paging, n="7", page="0", per="1000", q="  abc ", show="bogus")
    assert (q.n, q.page, q.per, q.q, q.show) == (7, 1, 100, "abc", "all")
    assert ResultsQuery.parse(paging).url("/r") == "/r"
    assert ResultsQuery.parse(paging, n=5).url("/r", page=2) == "/r?n=5&page=2"
    narrow = PagingSettings(default_n=5, per_page_choices=(10, 20))  # the app's settings decide defaults and caps
    assert ResultsQuery.parse(narrow, per="50").per == 20 and ResultsQuery.parse(narrow, n=5).url("/r") == "/r"
    assert _page_numbers(1, 1) == [1]
    assert _page_numbers(6, 40) == [1, None, 4, 5, 6, 7, 8, None, 40]


def test_cli_serve_builds_the_app_with_its_upload_limit(bundle, features, tmp_path, monkeypatch, capsys, port):
    """`moa serve --max-upload-mb 0.2` serves the bundle with that limit: the health answer says it, a larger
    upload is refused, a smaller one predicted; uvicorn is started once, never in reload or debug mode."""
    import uvicorn

    from moa_predict.cli import main
    from moa_predict.bundle import save_bundle

    started = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: started.append((app, kw)))
    save_bundle(bundle, tmp_path / "bundle")
    main(["serve", "--bundle", str(tmp_path / "bundle"), "--port", str(port), "--max-upload-mb", "0.2",
          "--data-dir", str(tmp_path / "data")])
    (app, kw), = started
    assert kw["port"] == port and kw["host"] == "127.0.0.1" and kw["reload"] is False and kw["workers"] == 1
    assert f"open http://127.0.0.1:{port}/" in capsys.readouterr().err
    assert app.state.settings.data_dir == str((tmp_path / "data").resolve()) and (tmp_path / "data").is_dir()
    served = TestClient(app, raise_server_exceptions=False)
    assert served.get("/api/health").json()["max_upload_mb"] == pytest.approx(0.2)
    assert post_file(served, csv_bytes(features)).status_code == 413
    assert post_file(served, csv_bytes(features.head(5))).status_code == 200
    with pytest.raises(ValueError, match="max_upload_mb must be positive"):
        create_app(bundle, max_upload_mb=0)


# ------------------------------------------------------------------------------------------------
# honest model cards, top-N download, confident calls, compressed uploads (issues 12 and 15)
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def display_bundle(sim, with_display_info):
    """A prior bundle carrying the simulator marker and a per-MoA skill report (MoA ids 3, 6, ... not
    predictable; see `with_display_info` in conftest.py)."""
    bundle, _ = train_bundle(PriorModel(), load_dataset(sim), cv=False, progress=False, reference=False)
    return with_display_info(bundle)


@pytest.fixture(scope="module")
def display_client(display_bundle):
    from moa_predict.web.core.settings import WebSettings

    # the prior's best probability is ~5 %: a threshold of 4 % makes some top calls confident and others not
    return TestClient(create_app(display_bundle, settings=WebSettings(confident=0.04)), raise_server_exceptions=False)


def test_card_says_simulated_and_what_each_moa_is_worth(display_client, display_bundle):
    card = display_client.get("/api/model").json()
    assert card["simulated_training_data"]["simulated"] is True  # the marker moa simulate wrote
    assert card["training_data"]["description"].startswith("SIMULATED profiles")
    names = display_bundle.target_names
    assert card["not_predictable"] == sorted(names[i] for i in range(2, 206, 3))
    t3, t4 = card["targets"][2], card["targets"][3]
    assert (t3["predictable"], t4["predictable"]) == (False, True)
    assert {"drugs", "positives", "auc", "ap", "gain", "prior_log_loss"} <= set(t4)
    assert t4["auc"] == 0.9 and t4["gain"] == pytest.approx(0.2) and t4["drugs"] == 4
    assert card["feature_blocks"][0]["text"].startswith("772 L1000 landmark genes, each named by its gene symbol with its Entrez Gene id in brackets (e.g. AARS1 (16)")  # what "AARS1 (16)" means
    assert card["feature_blocks"][1]["text"].startswith("100 cancer cell lines (CCLE")

    html = display_client.get("/").text
    assert 'id="simulated-note"' in html and "Trained on simulated data" in html
    assert "SIMULATED profiles" in html and "772 L1000 landmark genes, each named by its gene symbol with its Entrez Gene id in brackets (e.g. AARS1 (16)" in html
    assert f'id="card-not-predictable">{len(card["not_predictable"])}' in html
    row = re.search(r'<tr class="not-predictable"[^>]*><td class="num">3</td>\s*<td>([^<]+)', html)
    assert row and row.group(1).strip() == names[2]
    assert "ROC AUC" in html and "Gain vs baseline" in html and "CV log loss" not in html
    assert 'id="moa-filter"' in html and 'class="plain compact js-sortable"' in html


def test_older_bundle_without_the_new_keys_still_renders(client):
    card = client.get("/api/model").json()
    assert card["simulated_training_data"] is None and card["not_predictable"] is None
    assert card["targets"][2]["predictable"] is None and card["training_data"]["description"] is None
    html = client.get("/").text
    assert 'id="simulated-note"' not in html and "not-predictable" not in html and "CV log loss" in html
    body = post_file(client, csv_bytes(pd.read_csv(io.BytesIO(example_bytes(client))))).json()
    assert body["simulated_training_data"] is None
    assert all(t["predictable"] is None for p in body["predictions"] for t in p["top"])  # the bundle does not say
    location = upload_page(client, csv_bytes(pd.read_csv(io.BytesIO(example_bytes(client)))))
    top = pd.read_csv(io.BytesIO(client.get(location.split("?")[0] + "/top.csv").content))
    assert top.predictable.isna().all() and top.moa.notna().any()


def example_bytes(client) -> bytes:
    return client.get("/example.csv").content


def test_predictions_say_simulated_and_mark_unpredictable_moas(display_client, display_bundle, features):
    body = post_file(display_client, csv_bytes(features), params={"top": 206, "probabilities": "false"}).json()
    assert body["simulated_training_data"]["simulated"] is True
    names = display_bundle.target_names
    treated = [p for p in body["predictions"] if not p["control"]]
    for t in treated[0]["top"]:
        assert t["predictable"] is ((names.index(t["moa"]) + 1) % 3 != 0)
    assert body["links"]["top_csv"].endswith(f"/results/{body['result_id']}/top.csv?n=206")
    html = display_client.get(f"/results/{body['result_id']}").text
    assert 'id="simulated-note"' in html
    first = profiles_on_page(html)[treated[0]["sig_id"]]
    greyed = re.findall(r'<tr class="not-predictable"', html.split(f'data-sig-id="{treated[0]["sig_id"]}"')[1]
                        .split("</article>")[0])
    assert len(greyed) == sum(not t["predictable"] for t in treated[0]["top"][:10])
    chart = re.search(r'id="chart-data-\d+">(.*?)</script>', html, re.S)
    assert json.loads(chart.group(1))["greyed"] == list(range(3, 207, 3))
    assert first["top"]


def test_top_n_download(display_client, display_bundle, features):
    extra = features.copy()
    extra["plate"] = [f"P{i % 4}" for i in range(len(features))]
    location = upload_page(display_client, csv_bytes(extra), name="plate.csv")
    base = location.split("?")[0]
    assert f'href="{base}/top.csv?n=10"' in display_client.get(location).text
    r = display_client.get(base + "/top.csv", params={"n": 3})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert 'filename="plate_moa_top3.csv"' in r.headers["content-disposition"]
    top = pd.read_csv(io.BytesIO(r.content), dtype={"sig_id": str})
    assert list(top.columns) == ["sig_id", "cp_type", "cp_time", "cp_dose", "out_of_distribution", "plate",
                                 "rank", "moa", "probability", "predictable"]
    ctl = extra.cp_type == schema.CONTROL
    assert len(top) == 3 * int((~ctl).sum()) + int(ctl.sum())  # controls: one row, no MoA
    assert top.loc[top.cp_type == schema.CONTROL, "moa"].isna().all()
    treated = top[top.cp_type == schema.TREATED]
    assert list(treated["rank"].iloc[:3]) == [1, 2, 3]
    js = display_client.get(base + "/predictions.json", params={"top": 3}).json()
    first = next(p for p in js["predictions"] if not p["control"])
    got = treated[treated.sig_id == first["sig_id"]]
    assert list(got.moa) == [t["moa"] for t in first["top"]]
    np.testing.assert_allclose(got.probability, [t["probability"] for t in first["top"]], atol=1e-6)
    assert list(got.predictable) == [t["predictable"] for t in first["top"]]
    names = display_bundle.target_names
    assert (treated.predictable == treated.moa.map(lambda m: (names.index(m) + 1) % 3 != 0)).all()
    assert set(top.plate) == {"P0", "P1", "P2", "P3"}
    assert display_client.get(base + "/top.csv", params={"n": "junk"}).status_code == 200  # lenient, like the page


def test_summary_counts_only_confident_calls(display_client, features):
    location = upload_page(display_client, csv_bytes(features))
    body = display_client.get(location.split("?")[0] + "/predictions.json", params={"top": 1}).json()
    firsts = [p["top"][0]["probability"] for p in body["predictions"] if not p["control"]]
    n_conf = sum(p >= 0.04 for p in firsts)
    html = display_client.get(location).text
    assert "4.00%" in html.split('id="confidence-note"')[1].split("</p>")[0]
    assert int(re.search(r'id="stat-no-confident">(\d+)<', html).group(1)) == len(firsts) - n_conf
    top1 = html.split('id="top1"')[1].split("</table>")[0]
    counted = [int(x) for x in re.findall(r'<td class="num">(\d+) \(\d+%\)</td>', top1)]
    assert sum(counted) == n_conf


def test_compressed_csv_upload(display_client, features):
    import gzip

    packed = gzip.compress(csv_bytes(features))
    r = post_file(display_client, packed, name="profiles.csv.gz")
    assert r.status_code == 200, r.text
    assert len(r.json()["predictions"]) == len(features)
    location = upload_page(display_client, packed, name="profiles.csv.gz")
    assert "profiles.csv.gz" in display_client.get(location).text
    assert 'accept=".csv,.csv.gz' in display_client.get("/").text


def test_top1_table_counts_confident_calls_only():
    from moa_predict.web.pages.views import top1_table

    proba = np.array([[0.9, 0.1, 0.0], [0.2, 0.6, 0.1], [0.3, 0.2, 0.1], [0.7, 0.2, 0.1], [0.0, 0.0, 0.0]],
                     dtype=np.float32)
    pred = Prediction(source="x.csv", sig_ids=np.array([f"s{i}" for i in range(5)], dtype=object),
                      cp_type=np.array(["trt_cp"] * 4 + ["ctl_vehicle"], dtype=object), cp_time=np.full(5, 24),
                      cp_dose=np.array(["D1"] * 5, dtype=object), proba=proba, extra=None, seconds=0.0)
    out = top1_table(pred, ["a", "b", "c"], np.arange(5), np.array([True, False, True]), threshold=0.5)
    assert out["treated"] == 4 and out["no_confident"] == 1  # the 30 % call of s2; the control is no profile
    assert [(r["name"], r["profiles"], r["predictable"]) for r in out["rows"]] == [("a", 2, True), ("b", 1, False)]
    assert top1_table(pred, ["a", "b", "c"], np.arange(5), np.ones(3, bool), threshold=0.95)["rows"] == []


def test_explain_answers_say_simulated_and_predictable(display_client, display_bundle, features):
    body = post_file(display_client, csv_bytes(features.head(4)), url="/api/explain", params={"neighbours": 0}).json()
    assert body["simulated_training_data"]["simulated"] is True
    names = display_bundle.target_names
    calls = [q for p in body["profiles"] for q in p["predictions"]]
    assert calls and all(q["predictable"] is ((names.index(q["moa"]) + 1) % 3 != 0) for q in calls)


# ------------------------------------------------------------------------------------------------
# the page's words and layout (issue 27, item 9)
# ------------------------------------------------------------------------------------------------


def test_moa_names_never_break_inside_a_word_and_charts_keep_room_for_the_toolbar(client):
    """'antagonis t': a MoA name may wrap between words (or after '_'), never inside one; Plotly's toolbar sits
    in a top margin kept for it instead of over the chart's labels."""
    css = client.get("/static/style.css").text
    for rule in re.findall(r"([^{}]+)\{([^}]*)\}", css):
        if "moa" in rule[0]:
            assert "anywhere" not in rule[1] and "break-all" not in rule[1], rule
    js = client.get("/static/app.js").text
    toolbar = int(re.search(r"var TOOLBAR = (\d+);", js).group(1))
    assert toolbar >= 30  # the toolbar is ~25 px high
    charts = [chunk for chunk in js.split("function ") if "newPlot(" in chunk and ", CONFIG)" in chunk]
    assert len(charts) == 2  # the scatter and the heatmap show the toolbar
    for chunk in charts:
        assert re.search(r"margin: \{[^}]*\bt: TOOLBAR\b", chunk), chunk[:80]


def test_compound_agreement_reads_without_a_double_negative(client, features):
    frame = features.copy()
    frame["compound"] = [f"cmpd-{i % 5}" for i in range(len(frame))]
    location = upload_page(client, csv_bytes(frame))
    html = client.get(location.split("?")[0] + "/compounds").text
    assert "no confident MoA:" not in html and "with a confident MoA" in html


def test_without_moa_sets_the_page_says_why_instead_of_describing_the_download(sim, features):
    """The demo model (no cross-validation) has no MoA sets: no download button and no description of one,
    but the reason and what to do."""
    demo, _ = train_bundle(PriorModel(), load_dataset(sim), cv=False, progress=False)
    client = TestClient(create_app(demo), raise_server_exceptions=False)
    html = client.get(upload_page(client, csv_bytes(features.head(8)))).text
    assert 'id="download-sets"' not in html and "MoA sets: <code>sig_id</code>" not in html
    assert 'id="sets-unavailable"' in html and "moa demo --cv" in html
