"""The gene-only model: trained beside the full model on the gene block alone, cross-validated on the same folds,
saved inside the bundle, and used automatically for profiles without a cell-viability block (CMap files)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from moa_predict.cli import main
from moa_predict.data.profiles import schema
from moa_predict.data.profiles.dataset import load_dataset, load_features
from moa_predict.data.errors import DataError
from moa_predict.models import make_model
from moa_predict.simulate.cmap import simulate_gctx
from moa_predict.bundle import load_bundle, save_bundle
from moa_predict.training.train import train_bundle

TINY = {"hidden": [16], "epochs": 4, "batch_size": 64, "g_pca": 8, "c_pca": 4, "aux": False}
REAL_LEVEL5 = Path(__file__).resolve().parents[2] / "shared" / "real" / "l1000" / "modzs_n272x978_level5.csv.gz"


@pytest.fixture(scope="module")
def bundle_dir(sim_dir, tmp_path_factory):
    data = load_dataset(sim_dir)
    bundle, result = train_bundle(make_model("mlp", **TINY), data, n_splits=3, progress=False)
    return save_bundle(bundle, tmp_path_factory.mktemp("gene_only") / "bundle"), result


@pytest.fixture(scope="module")
def answering_dir(sim_dir, tmp_path_factory):
    """The same tiny model and its gene-only companion without cross-validation (no MoA sets, no calls): half
    the cost of `bundle_dir`, so the fast set (``-m "not slow"``) still checks which model answers which
    profiles; the tests of the cross-validated `bundle_dir` are marked slow."""
    data = load_dataset(sim_dir)
    bundle, _ = train_bundle(make_model("mlp", **TINY), data, cv=False, progress=False)
    return save_bundle(bundle, tmp_path_factory.mktemp("gene_only_fast") / "bundle"), None


slow = pytest.mark.slow  # a test of the cross-validated `bundle_dir` (a minute or more of training on 2 busy cores)


@slow
def test_the_gene_only_model_is_trained_on_the_same_folds_and_saved(bundle_dir, sim_dir):
    path, result = bundle_dir
    bundle = load_bundle(path)
    companion = bundle.gene_only
    assert companion is not None and (path / "gene_only" / "bundle.json").is_file()
    assert companion.feature_columns == list(schema.GENE_COLUMNS)
    assert bundle.feature_columns == list(schema.FEATURE_COLUMNS)
    cv = bundle.info["gene_only"]["cv"]
    assert cv["folds"] == result.n_splits and np.isfinite(cv["score"])
    assert companion.info["cv"]["fold_scores"] != bundle.info["cv"]["fold_scores"]  # another model, same folds
    # the companion never saw a c- column: its inputs have no viability block
    pre = companion.model.preprocessor_
    assert not any(c.startswith("c-") for c in pre.columns_) and "c" not in pre.pca_


def test_profiles_choose_their_model(answering_dir, sim_dir):
    bundle = load_bundle(answering_dir[0])
    full = load_features(sim_dir / "test_features.csv")
    assert bundle.for_features(full) is bundle
    genes = full.drop(columns=list(schema.CELL_COLUMNS))
    assert bundle.for_features(genes) is bundle.gene_only
    assert "gene-only" in bundle.gene_only.answers and "full" in bundle.answers
    without = type(bundle)(bundle.model, bundle.target_names, bundle.feature_columns)  # no gene-only companion
    with pytest.raises(DataError, match="lack 100 of the model's feature columns"):
        without.for_features(genes)
    # the gene-only model predicts from the genes alone: the c- values do not matter to it
    np.testing.assert_array_equal(bundle.gene_only.predict_proba(genes), bundle.gene_only.predict_proba(full))


def test_a_gctx_goes_through_moa_predict_with_the_gene_only_model(answering_dir, tmp_path, capsys):
    gctx = simulate_gctx(tmp_path / "sigs.gctx", 300, seed=0, chunk_size=128)
    out = tmp_path / "pred.csv"
    assert main(["predict", "--bundle", str(answering_dir[0]), "--features", str(gctx), "--out", str(out),
                 "--chunk-rows", "128", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "gene-only model" in err and "of the model's genes found" in err
    pred = pd.read_csv(out)
    assert len(pred) == 300 and pred.iloc[:, 1:].to_numpy().max() <= 1


@pytest.mark.skipif(not REAL_LEVEL5.is_file(), reason=f"real CMap level-5 signatures not found at {REAL_LEVEL5}")
@slow
def test_real_level5_signatures_go_through_moa_predict(bundle_dir, tmp_path, capsys):
    out = tmp_path / "real.csv"
    assert main(["predict", "--bundle", str(bundle_dir[0]), "--features", str(REAL_LEVEL5), "--out", str(out),
                 "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "gene-only model" in err and "772 of the model's genes found" in err
    assert len(pd.read_csv(out)) == 272


def _upload(bundle_dir, path: Path):
    from fastapi.testclient import TestClient

    from moa_predict.web import create_app

    client = TestClient(create_app(load_bundle(bundle_dir[0])))
    with open(path, "rb") as handle:
        api = client.post("/api/predict?probabilities=false", files={"file": (path.name, handle)})
    with open(path, "rb") as handle:
        page = client.post("/predict", files={"file": (path.name, handle)}, follow_redirects=True)
    return api, page


@slow
def test_a_cmap_file_uploaded_to_the_web_app_is_answered_by_the_gene_only_model(bundle_dir, tmp_path):
    gctx = simulate_gctx(tmp_path / "upload.gctx", 40, seed=1, chunk_size=16)
    api, page = _upload(bundle_dir, gctx)
    assert api.status_code == 200, api.text
    body = api.json()
    assert "gene-only" in body["answered_by"] and len(body["predictions"]) == 40
    assert page.status_code == 200 and "gene-only model" in page.text


@pytest.mark.skipif(not REAL_LEVEL5.is_file(), reason=f"real CMap level-5 signatures not found at {REAL_LEVEL5}")
@slow
def test_real_level5_signatures_go_through_the_web_upload(bundle_dir):
    api, page = _upload(bundle_dir, REAL_LEVEL5)
    assert api.status_code == 200, api.text
    assert len(api.json()["predictions"]) == 272 and "gene-only" in api.json()["answered_by"]
    assert page.status_code == 200 and "gene-only model" in page.text


@slow
def test_moa_explain_on_a_selection_of_a_cmap_file(bundle_dir, tmp_path):
    """`moa explain --sig-id` reads the file in chunks and keeps the selection; a GCTX is explained by the
    gene-only model (similar references and OOD; no attributions, which need the full input layout)."""
    import h5py

    gctx = simulate_gctx(tmp_path / "sel.gctx", 60, seed=2, chunk_size=16)
    with h5py.File(gctx) as h:
        ids = [v.decode() if isinstance(v, bytes) else str(v) for v in h["0/META/COL/id"][[3, 41]]]
    out = tmp_path / "explain.json"
    assert main(["explain", "--bundle", str(bundle_dir[0]), "--features", str(gctx), "--sig-id", ids[0],
                 "--sig-id", ids[1], "--out", str(out), "--quiet"]) == 0
    report = json.loads(out.read_text())
    assert sorted(p["sig_id"] for p in report["profiles"]) == sorted(ids)
    assert main(["explain", "--bundle", str(bundle_dir[0]), "--features", str(gctx), "--sig-id", "nope",
                 "--out", str(out), "--quiet"]) == 2


def _cmap_table(sim_dir, path: Path, n: int = 40) -> Path:
    """CMap-style signatures (gene columns, LINCS metadata): 6 h and 24 h, doses in µM, compounds by pert_iname."""
    feats = pd.read_csv(sim_dir / "test_features.csv").query("cp_type == 'trt_cp'").head(n).reset_index(drop=True)
    table = pd.concat([pd.DataFrame({
        "sig_id": [f"CPC_{i}" for i in range(n)],
        "Metadata_pert_iname": [f"drug{i % 4}" for i in range(n)],
        "Metadata_pert_itime": ["6 h" if i % 4 else "24 h" for i in range(n)],
        "Metadata_pert_idose": ["10 uM"] * n}), feats[list(schema.GENE_COLUMNS)]], axis=1)
    table.to_csv(path, index=False)
    return path


@slow
def test_cmap_time_dose_ood_and_compounds_are_said_not_silent(bundle_dir, sim_dir, tmp_path, capsys):
    src = _cmap_table(sim_dir, tmp_path / "cmap.csv")
    out, kept, sets = tmp_path / "p.csv", tmp_path / "kept.csv", tmp_path / "sets.csv"
    assert main(["predict", "--bundle", str(bundle_dir[0]), "--features", str(src), "--out", str(out),
                 "--quiet"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "time: 30 profiles at 6 h answered as 24 h (the model knows 24, 48, 72 h)" in err
    assert "dose: 40 profiles at 10 uM answered as D1" in err
    assert "772 of the model's genes found" in err
    assert "out of distribution: " in err and "of 40 profiles" in err
    assert "ood" not in pd.read_csv(out).columns  # the submission layout unless --keep-columns
    assert main(["predict", "--bundle", str(bundle_dir[0]), "--features", str(src), "--out", str(kept),
                 "--keep-columns", "--sets-out", str(sets), "--quiet"]) == 0
    frame, set_frame = pd.read_csv(kept), pd.read_csv(sets)
    assert list(frame.columns[-2:]) == ["ood", "ood_reason"] and frame["ood"].dtype == bool
    assert set_frame["ood"].tolist() == frame["ood"].tolist()
    flagged = frame.loc[frame["ood"], "ood_reason"]
    assert flagged.notna().all() and (frame.loc[~frame["ood"], "ood_reason"].isna()).all()
    # the API answer: per item ood and its reason, and the same notes
    from fastapi.testclient import TestClient

    from moa_predict.web import create_app

    client = TestClient(create_app(load_bundle(bundle_dir[0])))
    with open(src, "rb") as handle:
        body = client.post("/api/predict?probabilities=false", files={"file": ("cmap.csv", handle)}).json()
    items = body["predictions"]
    assert [p["ood"] for p in items] == frame["ood"].tolist()
    assert all((p["ood_reason"] is not None) == p["ood"] for p in items)
    assert body["input"]["genes"]["found"] == 772
    assert any("6 h answered as 24 h" in note for note in body["input"]["notes"])
    assert body["input"]["out_of_distribution"] == int(frame["ood"].sum())
    # CMap's Metadata_pert_iname is the compound column; the gene-only blend says why it has no attributions
    report = tmp_path / "explain.json"
    assert main(["explain", "--bundle", str(bundle_dir[0]), "--features", str(src), "--out", str(report),
                 "--top", "1", "--neighbours", "2", "--quiet"]) == 0
    explained = json.loads(report.read_text())
    assert explained["compound_column"] == "Metadata_pert_iname" and len(explained["compounds"]) == 4
    assert any("answered as 24 h" in w for w in explained["warnings"])


def test_a_gene_only_blend_says_why_it_has_no_attributions(answering_dir):
    """Not "it is not a differentiable network": the blend is one; its gene-only companion answered."""
    from moa_predict.explain.attributions import AttributionUnavailable, attribution_path
    from moa_predict.models.blend import BlendModel

    member = load_bundle(answering_dir[0]).gene_only.model
    blend = BlendModel()
    blend.members_, blend.weights_ = [member], np.array([1.0])
    with pytest.raises(AttributionUnavailable) as raised:
        attribution_path(blend)
    assert "gene-only companion" in str(raised.value) and "not a differentiable network" not in str(raised.value)


@slow
def test_cmap_time_and_dose_substitutions_are_said_on_the_pages(bundle_dir, sim_dir, tmp_path):
    """Issue 27 item 4: the results page and the compound page say what the CLI and the API say (a 6 h signature
    was answered as 24 h, a 10 uM dose as D1), and each profile's time tag says it is the time the model was
    asked; also for a result read back from disk by a restarted server. A LISH-MoA file gets no such note."""
    import html
    import re

    from fastapi.testclient import TestClient

    from moa_predict.web import create_app
    from moa_predict.web.core.settings import WebSettings

    src = _cmap_table(sim_dir, tmp_path / "cmap.csv")
    settings = WebSettings(data_dir=str(tmp_path / "data"))
    bundle = load_bundle(bundle_dir[0])

    def text(page: str) -> str:
        return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())

    with TestClient(create_app(bundle, settings=settings)) as client:
        with open(src, "rb") as handle:
            page = client.post("/predict", files={"file": ("cmap.csv", handle)}, follow_redirects=True)
        assert page.status_code == 200, page.text
        base = str(page.url).split("?")[0]
        shown = text(page.text)
        assert "time: 30 profiles at 6 h answered as 24 h (the model knows 24, 48, 72 h)." in shown
        assert "dose: 40 profiles at 10 uM answered as D1" in shown
        assert "genes: 772 of the model's genes found in the file" in shown
        assert 'id="input-notes"' in page.text and "asked as 24 h" in shown and "asked as dose D1" in shown
        compounds = client.get(f"{base}/compounds")
        assert compounds.status_code == 200
        assert "6 h answered as 24 h" in text(compounds.text)
        with open(sim_dir / "test_features.csv", "rb") as handle:  # LISH-MoA's own columns: nothing asked instead
            plain = client.post("/predict", files={"file": ("lish.csv", handle)}, follow_redirects=True)
        assert plain.status_code == 200 and 'id="input-notes"' not in plain.text and "asked as" not in plain.text
    with TestClient(create_app(bundle, settings=settings)) as restarted:  # read back from the stored files
        again = text(restarted.get(base.replace("http://testserver", "")).text)
        assert "time: 30 profiles at 6 h answered as 24 h" in again and "asked as 24 h" in again
