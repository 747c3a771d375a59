"""Explanations, neighbours, OOD, the web app and the API on a custom profile layout (not LISH-MoA).

A small synthetic CellProfiler-like table is built here (pandas + numpy): three plates with DMSO control wells
and a plate effect, twelve compounds of four single-label MoAs at two concentrations, three feature blocks
(``Cells_``, ``Cytoplasm_``, ``Nuclei_``). A tiny MLP is trained through its layout (plate robust z-score,
per-block PCA, the concentration as a numeric meta input), then: the reference index describes references by
the layout's meta columns, attributions name the layout's features and add up, the CLI explains a file read
through the bundle's layout, and the web app / API read uploads through it. The browser test uploads the CSV
through the page.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("captum")

from fastapi.testclient import TestClient  # noqa: E402

from moa_predict.cli.main import main  # noqa: E402
from moa_predict.data.profiles.layout import load_layout  # noqa: E402
from moa_predict.data.profiles.reader import load_profiles  # noqa: E402
from moa_predict.explain.report import explain_upload  # noqa: E402
from moa_predict.models import make_model  # noqa: E402
from moa_predict.bundle import load_bundle, save_bundle  # noqa: E402
from moa_predict.training.train import train_bundle  # noqa: E402
from moa_predict.web import create_app  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MOAS = ["tubulin destabilizer", "HDAC inhibitor", "Aurora kinase inhibitor", "DNA synthesis inhibitor"]
BLOCKS = {"Cells": ["AreaShape_Area", "AreaShape_Eccentricity", "Intensity_MeanIntensity_DNA"],
          "Cytoplasm": ["Granularity_1_Mito", "Intensity_MedianIntensity_AGP", "Texture_Contrast_ER"],
          "Nuclei": ["AreaShape_Perimeter", "Intensity_IntegratedIntensity_DNA", "Texture_Entropy_RNA"]}
N_PER_BLOCK = 10
FEATURE = "Cells_AreaShape_Area"

LAYOUT_TOML = """\
name = "synthetic-cellpainting"
id = ["Metadata_Plate", "Metadata_Well"]
group = "Metadata_compound"
treatment = ["Metadata_compound", "Metadata_dose"]
plate = "Metadata_Plate"
meta_numeric = ["Metadata_dose"]
normalize = "robust_z"
blocks = [
    { name = "Cells", prefix = "Cells_", pca = 3 },
    { name = "Cytoplasm", prefix = "Cytoplasm_", pca = 3 },
    { name = "Nuclei", prefix = "Nuclei_", pca = 0 },
]

[controls]
column = "Metadata_compound"
values = ["DMSO"]

[labels]
source = "column"
column = "Metadata_moa"
"""


def feature_names() -> list[str]:
    names = []
    for block, known in BLOCKS.items():
        names += [f"{block}_{k}" for k in known]
        names += [f"{block}_Texture_Feature_{i}" for i in range(N_PER_BLOCK - len(known))]
    return names


def synthetic_screen(seed: int = 0, plates: int = 3) -> pd.DataFrame:
    """Per-well profiles: a plate offset on every feature (controls included), a MoA pattern scaled by the
    concentration, noise; DMSO wells on every plate."""
    rng = np.random.default_rng(seed)
    names = feature_names()
    patterns = np.random.default_rng(123).normal(0, 1.5, (len(MOAS), len(names)))  # the same in every screen
    compounds = [(f"cpd-{m}{k}", m) for m in range(len(MOAS)) for k in range(3)]
    rows = []
    for p in range(plates):
        plate = f"Plate{p + 1}"
        offset = rng.normal(0, 2.0, len(names))
        scale = rng.uniform(0.8, 1.5, len(names))
        wells = [("DMSO", None, 0.0)] * 6 + [(c, m, d) for c, m in compounds for d in (1.0, 10.0)]
        for w, (cpd, moa, dose) in enumerate(wells):
            signal = 0.0 if moa is None else patterns[moa] * (0.6 if dose < 5 else 1.0)
            values = offset + scale * (signal + rng.normal(0, 0.5, len(names)))
            rows.append({"Metadata_Plate": plate, "Metadata_Well": f"{'ABCDEFGH'[w // 12]}{w % 12 + 1:02d}",
                         "Metadata_compound": cpd, "Metadata_dose": dose,
                         "Metadata_moa": "" if moa is None else MOAS[moa], **dict(zip(names, values))})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def screen(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("layout_web")
    synthetic_screen().to_csv(work / "screen.csv", index=False)
    # an upload: new wells of the same compounds on a fourth plate, without the label column
    upload = synthetic_screen(seed=7, plates=1).drop(columns=["Metadata_moa"])
    upload["Metadata_Plate"] = "Plate9"
    upload.to_csv(work / "upload.csv", index=False)
    (work / "layout.toml").write_text(LAYOUT_TOML)
    return work


@pytest.fixture(scope="module")
def bundle(screen):
    data = load_profiles(screen / "screen.csv", load_layout(screen / "layout.toml"))
    model = make_model("mlp", hidden=(32,), epochs=3, batch_size=32)
    bundle, _ = train_bundle(model, data, n_splits=3, progress=False)
    save_bundle(bundle, screen / "bundle")
    return load_bundle(screen / "bundle")  # what the app and the CLI see: the saved form


@pytest.fixture(scope="module")
def upload_features(bundle, screen):
    return bundle.read_profiles(screen / "upload.csv")


def test_bundle_keeps_the_layout_and_single_label_scores(bundle):
    assert bundle.layout is not None and bundle.layout.name == "synthetic-cellpainting"
    assert sorted(bundle.target_names) == sorted(MOAS)
    assert bundle.feature_columns == feature_names()
    single = bundle.info["cv"]["single_label"]
    assert {"accuracy", "top3_accuracy", "profiles"} <= set(single)


def test_reference_index_uses_the_layout_meta(bundle, upload_features):
    index = bundle.reference
    assert index.generic and index.cp_time is None
    assert index.meta_columns == ["Metadata_dose", "Metadata_Plate"]
    assert "feature columns (Cells, Cytoplasm, Nuclei)" in index.info["space"]
    found = index.neighbours(upload_features.iloc[:8], k=4)
    ref = found[-1]["neighbours"][0]
    assert "cp_time" not in ref and set(ref["meta"]) == {"Metadata_dose", "Metadata_Plate"}
    assert ref["meta"]["Metadata_Plate"] in {"Plate1", "Plate2", "Plate3"}
    # a treated well's nearest reference shares its MoA far more often than chance (1 in 4): the index keeps the
    # components holding 90 % of the variance, so the noise directions of a 30-feature layout are not whitened up
    treated = upload_features[upload_features.cp_type == "trt_cp"]
    hits = index.neighbours(treated, k=1)
    drugs = [h["neighbours"][0]["drug_id"] for h in hits]
    moa_of = lambda cpd: cpd[4] if cpd.startswith("cpd-") else None  # noqa: E731  ("cpd-{moa}{k}")
    same_moa = np.mean([moa_of(d) == moa_of(c) for d, c in zip(drugs, treated["Metadata_compound"])])
    assert same_moa > 0.6  # 0.71 measured (0.46 when every component was whitened)


def test_ood_scores_on_the_layout(bundle, upload_features):
    from moa_predict.reference.ood import ood_scores

    normal = ood_scores(bundle.reference, upload_features)
    assert np.mean([o["flag"] for o in normal]) < 0.2
    rng = np.random.default_rng(1)
    garbage = upload_features.copy()
    garbage[bundle.feature_columns] = rng.normal(0, 8, (len(garbage), len(bundle.feature_columns))).astype(np.float32)
    flagged = ood_scores(bundle.reference, garbage)
    # noise is farther from every reference than the new plate's wells; with 30 features and 90 references the
    # calibrated threshold is too loose to flag it (the OOD check is calibrated for LISH-MoA-sized screens)
    assert np.mean([o["distance"] for o in flagged]) > 1.2 * np.mean([o["distance"] for o in normal])
    assert all(o["nearest_drug_id"] for o in flagged) and all("structure" in o for o in flagged)


def test_attributions_name_the_layout_features_and_add_up(bundle, upload_features):
    treated = upload_features[upload_features.cp_type == "trt_cp"].iloc[:4]
    report = explain_upload(bundle, treated, top_moas=2, top_k=5, neighbours=3, n_steps=32)
    attr = report["attributions"]
    assert attr["available"], attr["message"]
    method = attr["method"]
    assert method["n_failing"] == 0 and method["forward_consistency"] < 1e-4
    assert method["meta_inputs"] == ["Metadata_dose"]
    names = set(feature_names())
    for p in report["profiles"]:
        assert "cp_time" not in p and set(p["meta"]) == {"Metadata_dose", "Metadata_Plate"}
        assert p["compound"].startswith("cpd-")
        for e in p["explanations"]:
            assert e["completeness_ok"] and e["dose_time"] is None
            assert all(f["feature"] in names and f["block"] == f["feature"].split("_")[0] for f in e["features"])
            gap = e["model_probability"] - e["baseline_probability"]
            # the project's completeness tolerance (explain.attributions): max(0.002, 2 % of |p - p0|)
            assert abs(e["attribution_sum"] - gap) <= max(2e-3, 0.02 * abs(gap)) + 1e-6
    assert report["compound_column"] == "Metadata_compound"
    assert {c["compound"] for c in report["compounds"]} == set(treated["Metadata_compound"])
    assert all(c["doses"] == [] and c["times"] == [] for c in report["compounds"])


def test_torch_mirror_matches_the_generic_preprocessor(bundle, upload_features):
    import torch

    from moa_predict.features.torch_transforms import TorchMoAPreprocessor, raw_inputs

    pre = bundle.model.preprocessor_
    raw = raw_inputs(upload_features, pre=pre)
    assert raw.shape[1] == len(bundle.feature_columns) + 1
    mirrored = TorchMoAPreprocessor(pre)(torch.as_tensor(raw)).numpy()
    assert np.allclose(mirrored, pre.transform(upload_features), atol=1e-4)


def test_model_without_attributions_says_why(screen):
    data = load_profiles(screen / "screen.csv", load_layout(screen / "layout.toml"))
    bundle, _ = train_bundle(make_model("prior"), data, cv=False, progress=False)
    feats = bundle.read_profiles(screen / "upload.csv")
    report = explain_upload(bundle, feats.iloc[:10], neighbours=2)
    assert not report["attributions"]["available"]
    assert "not a differentiable network" in report["attributions"]["message"]
    assert report["reference"]["available"] and report["profiles"][-1]["neighbours"]


def test_moa_explain_cli_reads_through_the_layout(bundle, screen, capsys):
    out = screen / "explained.json"
    code = main(["explain", "--bundle", str(screen / "bundle"), "--features", str(screen / "upload.csv"),
                 "--out", str(out), "--neighbours", "3", "--top", "4", "--steps", "16", "--quiet"])
    assert code == 0, capsys.readouterr().err
    report = json.loads(out.read_text())
    assert report["attributions"]["available"] and report["compound_column"] == "Metadata_compound"
    first = next(p for p in report["profiles"] if p["explanations"])
    assert first["explanations"][0]["features"][0]["feature"] in feature_names()
    assert len(first["neighbours"]) == 3


# ------------------------------------------------------------------------------------------------
# the web app and the API
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(bundle):
    return TestClient(create_app(bundle), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def predicted(client, screen):
    with open(screen / "upload.csv", "rb") as handle:
        r = client.post("/api/predict?top=3", files={"file": ("upload.csv", handle, "text/csv")})
    assert r.status_code == 200, r.text
    return r.json()


def test_api_predict_reads_uploads_through_the_layout(predicted):
    assert predicted["layout"] == "synthetic-cellpainting"
    rows = predicted["predictions"]
    assert len(rows) == 30 and sum(r["control"] for r in rows) == 6
    treated = next(r for r in rows if not r["control"])
    assert "cp_time" not in treated and treated["top"][0]["moa"] in MOAS
    assert treated["extra"]["Metadata_compound"].startswith("cpd-") and treated["extra"]["Metadata_Plate"] == "Plate9"
    assert abs(sum(treated["probabilities"]) - 1.0) < 1e-3  # single-label: a softmax
    pooled = predicted["sets"]["compounds"]  # pooled per compound of the layout's group column
    assert pooled and {c["compound"] for c in pooled} >= {"cpd-00", "cpd-31"}


def test_api_json_rows_go_through_the_layout(client, screen):
    rows = pd.read_csv(screen / "upload.csv").to_dict("records")
    r = client.post("/api/predict", json={"rows": rows})
    assert r.status_code == 200, r.text
    assert r.json()["predictions"][10]["top"][0]["moa"] in MOAS
    bad = [{k: v for k, v in row.items() if k != FEATURE} for row in rows]
    r = client.post("/api/predict", json={"rows": bad})
    assert r.status_code == 422 and FEATURE in r.json()["error"]


def test_results_pages_and_downloads_come_from_the_layout(client, predicted):
    rid = predicted["result_id"]
    page = client.get(f"/results/{rid}")
    assert page.status_code == 200
    html = page.text
    assert "Metadata_Plate" in html and "Plate9" in html and any(m in html for m in MOAS)
    assert " h</li>" not in html and "dose None" not in html
    explained = client.get(f"/api/results/{rid}/explain", params={"sig_ids": predicted["predictions"][10]["sig_id"],
                                                                  "top_moas": 1, "top_k": 5, "neighbours": 2})
    assert explained.status_code == 200, explained.text
    prof = explained.json()["profiles"][0]
    assert all(f["feature"] in feature_names() for f in prof["explanations"][0]["features"])
    assert "meta" in prof["neighbours"][0]
    compounds = client.get(f"/results/{rid}/compounds")
    assert compounds.status_code == 200 and "cpd-01" in compounds.text and "Metadata_compound" in compounds.text
    top = pd.read_csv(pd.io.common.StringIO(client.get(f"/results/{rid}/top.csv?n=2").text))
    assert "cp_time" not in top.columns and {"Metadata_Plate", "Metadata_compound", "moa"} <= set(top.columns)
    assert set(top["moa"].dropna()) <= set(MOAS)
    full = client.get(f"/results/{rid}/predictions.csv")
    assert full.status_code == 200 and all(m in full.text.splitlines()[0] for m in MOAS)


def test_pages_speak_the_layout_and_put_controls_last(client, predicted, bundle):
    """A custom layout's pages use its own words (no ctl_vehicle / trt_cp, no blank Example column, no
    LISH-MoA PCA sizes); controls come after the treated profiles, their similar profiles collapsed and
    without enrichment tables."""
    from moa_predict.models.blend import member_label

    home = client.get("/").text
    assert "ctl_vehicle" not in home and "trt_cp" not in home and ">Example<" not in home
    assert "Metadata_compound = DMSO" in home  # the card's CV rows name the layout's controls
    assert member_label("mlp", {"g_pca": 150, "c_pca": 20}, {"Cells": 3, "Cytoplasm": 3, "Nuclei": 0}) == \
        "mlp PCA Cells 3, Cytoplasm 3, Nuclei 0"
    assert member_label("mlp", {"g_pca": 150, "c_pca": 20}) == "mlp PCA 150/20"  # LISH-MoA as before
    assert predicted["note"].startswith("control rows (Metadata_compound = DMSO)")
    html = client.get(f"/results/{predicted['result_id']}", params={"per": 50}).text
    assert "ctl_vehicle" not in html and "trt_cp" not in html
    articles = html.split('<article class="profile')[1:]
    controls = [a.startswith(" is-control") for a in articles]
    assert len(articles) == 30 and controls == [False] * 24 + [True] * 6  # treated first, the 6 DMSO wells last
    for article in articles[24:]:
        assert 'class="plain compact enrichment"' not in article and '<details class="control-neighbours">' in article
    assert all('class="plain compact enrichment"' in a for a in articles[:24] if "neighbours-grid" in a)


def test_a_layout_table_sent_to_a_lish_moa_model_says_what_to_do(screen, sim_dataset):
    """A Cell Painting table uploaded to a LISH-MoA server: 'this model reads the LISH-MoA layout; train on your
    layout with moa layout infer', not 'is it a targets file?'."""
    from moa_predict.models.prior import PriorModel

    lish, _ = train_bundle(PriorModel(), sim_dataset, cv=False, progress=False)
    client = TestClient(create_app(lish), raise_server_exceptions=False)
    with open(screen / "upload.csv", "rb") as handle:
        r = client.post("/api/predict", files={"file": ("upload.csv", handle, "text/csv")})
    message = r.json()["error"]
    assert r.status_code == 422 and "reads the LISH-MoA layout" in message and "moa layout infer" in message
    assert "targets file" not in message
    targets = pd.DataFrame({"sig_id": ["a", "b"], "x_inhibitor": [0, 1], "y_agonist": [1, 0]})
    r = client.post("/api/predict", files={"file": ("t.csv", targets.to_csv(index=False).encode(), "text/csv")})
    assert r.status_code == 422 and "looks like a targets file" in r.json()["error"]


def test_home_page_and_model_card_show_the_layout(client, bundle):
    html = client.get("/").text
    assert "synthetic-cellpainting" in html and FEATURE in html and "Metadata_compound" in html
    assert 'id="card-layout"' in html and "Cells 10 columns" in html and "one MoA per profile" in html
    assert 'id="card-accuracy"' in html and "top-3 accuracy" in html
    assert "robust z-score" in html and 'id="example-link"' not in html
    assert client.get("/example.csv").status_code == 404
    card = client.get("/api/model").json()
    assert card["layout"]["single_label"] is True
    assert [(b["block"], b["count"]) for b in card["layout"]["blocks"]] == [("Cells", 10), ("Cytoplasm", 10),
                                                                           ("Nuclei", 10)]
    assert card["cv"]["single_label"]["accuracy"] == pytest.approx(bundle.info["cv"]["single_label"]["accuracy"])


def test_upload_form_reads_a_layout_file(client, screen):
    with open(screen / "upload.csv", "rb") as handle:
        r = client.post("/predict", files={"file": ("upload.csv", handle, "text/csv")}, follow_redirects=True)
    assert r.status_code == 200 and "Plate9" in r.text
    broken = pd.read_csv(screen / "upload.csv").drop(columns=["Metadata_compound"])
    r = client.post("/predict", files={"file": ("broken.csv", broken.to_csv(index=False).encode(), "text/csv")})
    assert r.status_code == 422 and "Metadata_compound" in r.text


# ------------------------------------------------------------------------------------------------
# the real Cell Painting plate (Repurposing Hub style '|' labels), when the shared files are there
# ------------------------------------------------------------------------------------------------

REAL_PLATE = Path(os.environ.get("MOA_REAL_DIR", Path(__file__).resolve().parents[2] / "shared" / "real")) / \
    "cellpainting" / "SQ00015054_normalized_feature_select.csv.gz"


@pytest.mark.skipif(not REAL_PLATE.exists(), reason=f"{REAL_PLATE} is absent")
def test_real_cellpainting_plate_explains(tmp_path):
    from moa_predict.data.profiles.layout_infer import infer_layout

    layout, _ = infer_layout(REAL_PLATE)
    data = load_profiles(REAL_PLATE, layout)
    bundle, _ = train_bundle(make_model("mlp", hidden=(32,), epochs=2, batch_size=64), data, cv=False,
                             progress=False)
    feats = data.features[data.features.cp_type == "trt_cp"].iloc[:2]
    report = explain_upload(bundle, feats, top_moas=1, top_k=3, neighbours=2, n_steps=16)
    assert report["attributions"]["method"]["n_failing"] == 0
    names = [f["feature"] for p in report["profiles"] for e in p["explanations"] for f in e["features"]]
    assert names and all(n.split("_")[0] in {"Cells", "Cytoplasm", "Nuclei"} for n in names)
    assert "<NA>" not in bundle.target_names


# ------------------------------------------------------------------------------------------------
# the browser: upload a custom-layout CSV through the page
# ------------------------------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.skipif(not os.path.exists("/usr/bin/chromium"), reason="/usr/bin/chromium is absent")
def test_browser_upload_of_a_layout_file(bundle, screen):
    pytest.importorskip("playwright")
    from test_web_browser import chromium, running, wait_for_attributions, watch

    with running(create_app(bundle)) as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        problems = watch(page)
        page.goto(url + "/")
        assert "synthetic-cellpainting" in page.locator("#card-layout").inner_text()
        assert FEATURE in page.locator("#columns").inner_text()
        page.set_input_files("#file", str(screen / "upload.csv"))
        page.click("#submit")
        page.wait_for_url("**/results/**")
        text = page.locator("main").inner_text()
        assert any(m in text for m in MOAS) and "Plate9" in text
        profile = page.locator("article.profile:not(.is-control)").first
        wait_for_attributions(page, profile)
        charts = profile.locator(".js-attributions").inner_text()
        assert any(name in charts for name in feature_names()), charts[:500]
        assert not [p for p in problems if "favicon" not in p], problems
        page.close()
