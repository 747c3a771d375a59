"""The protein-target model on the web (issue 25): the results page explains each profile's top target in genes
through the explain API's ``label_set=target`` (the same attribution path as the MoAs), and the model card gives
the target model's held-out figures from the bundle. A bundle without a target label set shows neither."""

from __future__ import annotations

import dataclasses
import html
import json
import re

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from moa_predict.bundle import load_bundle  # noqa: E402
from moa_predict.data.builtin import L1000_EXAMPLES, L1000_REFERENCE, resolve_bundle  # noqa: E402
from moa_predict.web import create_app  # noqa: E402


@pytest.fixture(scope="module")
def reference():
    return load_bundle(L1000_REFERENCE)


def _predict(client: TestClient) -> dict:
    with open(L1000_EXAMPLES, "rb") as handle:
        r = client.post("/api/predict", files={"file": ("examples.csv", handle, "text/csv")})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def with_targets(reference):
    client = TestClient(create_app(reference), raise_server_exceptions=False)
    return client, _predict(client)


@pytest.fixture(scope="module")
def without_targets(reference):
    plain = dataclasses.replace(reference, label_sets={})
    client = TestClient(create_app(plain), raise_server_exceptions=False)
    return client, _predict(client)


def _attribution_urls(page: str) -> list[str]:
    return [html.unescape(u) for u in re.findall(r'data-url="([^"]*/explain\?[^"]*)"', page)]


def test_the_results_page_explains_the_top_target_in_genes(with_targets):
    """Each treated profile's target panel asks the explain API for its top target with label_set=target; the
    answer is the target model's (its probability is the listed one), in genes named by symbol, and complete."""
    client, answer = with_targets
    page = client.get(f"/results/{answer['result_id']}")
    assert page.status_code == 200
    first = answer["predictions"][0]
    top = first["protein_targets"][0]
    assert 'id="target-attr-0"' in page.text and "Genes behind the top target" in page.text
    target_urls = [u for u in _attribution_urls(page.text) if "label_set=target" in u]
    moa_urls = [u for u in _attribution_urls(page.text) if "label_set" not in u]
    assert target_urls and moa_urls  # the MoA charts stay
    url = target_urls[0]
    assert f"moas={top['target']}" in url and "sig_ids=" in url
    r = client.get(url)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["label_set"] == "target" and body["n_targets"] == answer["protein_targets"]["n_targets"]
    assert body["attributions"]["available"]
    (explained,) = body["profiles"][0]["explanations"]
    assert explained["moa"] == top["target"]
    assert explained["probability"] == pytest.approx(top["probability"], abs=1e-5)
    assert explained["completeness_ok"]
    symbols = [f["info"].get("symbol") for f in explained["features"]]
    assert all(symbols) and all(f["label"].startswith(s) for f, s in zip(explained["features"], symbols))


def test_the_explain_api_takes_a_label_set(with_targets):
    """POST /api/explain and the stored result's explain: label_set=target attributes named targets; an unknown
    label set or a MoA name given as a target is a 422 saying what the model has."""
    client, answer = with_targets
    sig = answer["predictions"][0]["sig_id"]
    with open(L1000_EXAMPLES, "rb") as handle:
        r = client.post("/api/explain", files={"file": ("examples.csv", handle, "text/csv")},
                        data={"label_set": "target", "moas": "HMGCR", "sig_ids": sig, "top_k": "3",
                              "neighbours": "0"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["label_set"] == "target"
    assert [e["moa"] for e in body["profiles"][0]["explanations"]] == ["HMGCR"]
    base = f"/api/results/{answer['result_id']}/explain"
    moas = client.get(base, params={"sig_ids": sig, "top_moas": 1, "top_k": 3, "neighbours": 0}).json()
    assert moas["label_set"] == "moa" and moas["n_targets"] == len(answer["targets"])
    bad = client.get(base, params={"sig_ids": sig, "label_set": "pathway"})
    assert bad.status_code == 422 and "no 'pathway' label set" in bad.json()["error"]
    assert "'target'" in bad.json()["error"]
    wrong = client.get(base, params={"sig_ids": sig, "label_set": "target", "moas": "HMGCR inhibitor"})
    assert wrong.status_code == 422 and "unknown target label name" in wrong.json()["error"]


def test_the_model_card_gives_the_target_models_held_out_figures(with_targets):
    """The card (home page and GET /api/model) names the target model, its targets and drugs, says the data are
    real, and gives top-1 / top-5 / micro PR-AUC beside the prior exactly as the bundle stores them."""
    client, _ = with_targets
    stored = json.loads((resolve_bundle(L1000_REFERENCE) / "label_sets" / "target" / "bundle.json").read_text())
    figures = stored["cv"]["field"]["figures"]
    card = client.get("/api/model").json()
    (part,) = card["label_sets"]
    assert part["name"] == "target" and part["model"] == stored["model"]["name"]
    assert part["n_labels"] == len(stored["target_names"]) and part["data"] == "real"
    assert part["drugs"] == stored["cv"]["field"]["compounds"]
    got = {f["key"]: f for f in part["figures"]}
    for key in ("top1_accuracy", "top5_accuracy", "micro_pr_auc"):
        assert got[key]["model"] == figures[key]["model"] and got[key]["prior"] == figures[key]["prior"]
    page = client.get("/").text
    start = page.index('id="card-label-set-target"')
    section = page[start:page.index("</dd>", start)]
    assert "Protein targets" in page[start - 200:start] and "REAL data" in section
    assert f"{len(stored['target_names'])} protein targets" in section
    for key in ("top1_accuracy", "top5_accuracy", "micro_pr_auc"):
        row = re.search(rf'<tr data-figure="{key}">(.*?)</tr>', section).group(1)
        assert "%.3f" % figures[key]["model"] in row and "%.3f" % figures[key]["prior"] in row


def test_a_bundle_without_targets_shows_neither_and_does_not_crash(without_targets):
    client, answer = without_targets
    assert not answer["protein_targets"]["available"]
    page = client.get(f"/results/{answer['result_id']}")
    assert page.status_code == 200
    assert "target-attr-" not in page.text and "label_set=target" not in page.text
    assert any("label_set" not in u for u in _attribution_urls(page.text))  # the MoA charts are still there
    assert client.get("/api/model").json()["label_sets"] == []
    home = client.get("/")
    assert home.status_code == 200 and "card-label-set" not in home.text
    r = client.get(f"/api/results/{answer['result_id']}/explain",
                   params={"sig_ids": answer["predictions"][0]["sig_id"], "label_set": "target"})
    assert r.status_code == 422 and "no 'target' label set" in r.json()["error"]
