"""Genes are genes in every layout: a layout's gene block (``genes = "entrez" | "symbol" | "auto"``) reads uploads
naming the same genes either way, as tables or GCT/GCTX files, with the LISH-MoA rules for missing genes; bad input
(a Cell Painting table, level-3 values) is one clear error. Synthetic tables over the shipped 978 L1000 landmarks:
no shared files needed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from moa_predict.cli import main as moa_main
from moa_predict.data import identities
from moa_predict.data.errors import DataError
from moa_predict.data.profiles.layout import Block, Labels, Layout, load_layout
from moa_predict.data.profiles.layout_infer import infer_layout
from moa_predict.data.profiles.reader import load_profiles
from moa_predict.simulate.cmap import write_gct, write_gctx

LANDMARKS = identities.cmap_landmarks()
ENTREZ = [str(e) for e in LANDMARKS["entrez"]]
SYMBOL = dict(zip(ENTREZ, LANDMARKS["cmap_symbol"]))
MOAS = ("HMGCR inhibitor", "tubulin inhibitor", "glucocorticoid receptor agonist")


def _consensus(n: int = 48, seed: int = 0) -> pd.DataFrame:
    """A consensus-like table: drugbank_id, pert_iname, moa (empty for a few unannotated compounds), then the 978
    landmarks named by Entrez id; each MoA raises its own 20 genes."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, (n, len(ENTREZ)))
    moa = [MOAS[i % len(MOAS)] for i in range(n)]
    for i, m in enumerate(moa):
        k = MOAS.index(m)
        x[i, 20 * k: 20 * k + 20] += 3.0
    meta = pd.DataFrame({"drugbank_id": [f"DB{i:05d}" for i in range(n)],
                         "pert_iname": [f"drug{i}" for i in range(n)], "moa": moa})
    meta.loc[n - 4:, ["pert_iname", "moa"]] = None  # compounds without a Hub entry: predicted, not trained on
    return pd.concat([meta, pd.DataFrame(x.round(4), columns=ENTREZ)], axis=1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A logistic-regression bundle trained through an inferred layout on the Entrez-named table."""
    tmp = tmp_path_factory.mktemp("genes")
    table = tmp / "consensus.csv.gz"
    _consensus().to_csv(table, index=False)
    layout = tmp / "layout.toml"
    assert moa_main(["layout", "infer", str(table), "--out", str(layout)]) == 0
    bundle = tmp / "bundle"
    assert moa_main(["train", "--features", str(table), "--layout", str(layout), "--model", "logreg", "--no-cv",
                     "--param", "epochs=30", "--out", str(bundle)]) == 0
    from moa_predict.bundle import load_bundle

    loaded = load_bundle(bundle)
    return {"tmp": tmp, "table": table, "layout": layout, "bundle": bundle, "loaded": loaded,
            "reference": loaded.predict_proba(loaded.read_profiles(table))}


def _level5(frame: pd.DataFrame) -> pd.DataFrame:
    """The same profiles as a CMap level-5 table: sig_id, Metadata_-prefixed meta, genes by CMap symbol in another
    order, no MoA column (what users hold)."""
    genes = frame[ENTREZ].rename(columns=SYMBOL)
    genes = genes[list(reversed(genes.columns))]
    meta = pd.DataFrame({"sig_id": [f"SIG{i}" for i in range(len(frame))],
                         "Metadata_pert_iname": frame["pert_iname"].fillna("unknown"),
                         "Metadata_cell_id": "A375"})
    return pd.concat([meta, genes], axis=1)


def test_infer_declares_the_gene_block_and_its_naming(trained: dict, tmp_path: Path) -> None:
    spec = load_layout(trained["layout"])
    assert [(b.name, b.genes, b.prefix, b.regex) for b in spec.blocks] == [("genes", "entrez", None, None)]
    assert spec.id == ("drugbank_id",) and spec.group == "pert_iname"
    path = tmp_path / "level5.csv"
    _level5(_consensus()).to_csv(path, index=False)
    layout, reasons = infer_layout(path)
    assert [b.genes for b in layout.blocks] == ["symbol"]
    assert any("L1000 landmark genes named by gene symbol" in r for r in reasons)
    assert layout.group == "Metadata_pert_iname"


def test_a_symbol_named_level5_table_is_answered_like_the_entrez_table(trained: dict, tmp_path: Path) -> None:
    """Symbols for Entrez ids, another column order, Metadata_ prefixes, no MoA column: the same answer."""
    path = tmp_path / "level5.csv"
    _level5(_consensus()).to_csv(path, index=False)
    data = trained["loaded"].read_dataset(path)
    np.testing.assert_allclose(trained["loaded"].predict_proba(data.features), trained["reference"], atol=1e-5)
    assert list(data.features.index[:2]) == ["SIG0", "SIG1"]  # the upload's own ids
    report = data.notes["genes"]
    assert (report["found"], report["of"], report["missing"]) == (978, 978, 0)
    assert "978 of the model's 978 genes found" in report["summary"]
    assert "pert_iname" in data.features.columns  # Metadata_pert_iname taken as the layout's compound column


def test_gct_and_gctx_files_written_by_the_package_are_answered_the_same(trained: dict, tmp_path: Path) -> None:
    frame = _consensus()
    values = frame[ENTREZ].to_numpy(np.float32)
    rows = pd.DataFrame({"id": ENTREZ, "pr_gene_id": LANDMARKS["entrez"].to_numpy(),
                         "pr_gene_symbol": LANDMARKS["cmap_symbol"].to_numpy()})
    meta = pd.DataFrame({"id": [f"S{i}" for i in range(len(frame))], "pert_iname": frame["pert_iname"].fillna("x"),
                         "pert_type": "trt_cp"})
    gctx = write_gctx(tmp_path / "sigs.gctx", rows, len(meta), [(meta, values)])
    gct = write_gct(tmp_path / "sigs.gct", rows, meta, values)
    for path in (gctx, gct):
        p = trained["loaded"].predict_proba(trained["loaded"].read_profiles(path))
        np.testing.assert_allclose(p, trained["reference"], atol=1e-4)
    out = tmp_path / "p.csv"
    assert moa_main(["predict", "--bundle", str(trained["bundle"]), "--features", str(gctx), "--out", str(out),
                     "--quiet"]) == 0
    assert pd.read_csv(out)["sig_id"].iloc[0] == "S0"


def test_up_to_5_percent_missing_genes_are_zero_filled_and_listed_more_is_an_error(trained: dict,
                                                                                   tmp_path: Path) -> None:
    frame = _consensus()
    dropped = ENTREZ[100:130]  # 30 of 978 (limit 48)
    frame.drop(columns=dropped).to_csv(tmp_path / "some.csv", index=False)
    data = trained["loaded"].read_dataset(tmp_path / "some.csv")
    report = data.notes["genes"]
    assert (report["found"], report["missing"]) == (948, 30)
    assert report["filled_with_zero"][0] == identities.gene_label(int(dropped[0]))
    zeroed = frame.copy()
    zeroed[dropped] = 0.0
    zeroed.to_csv(tmp_path / "zeroed.csv", index=False)
    expected = trained["loaded"].predict_proba(trained["loaded"].read_profiles(tmp_path / "zeroed.csv"))
    np.testing.assert_allclose(trained["loaded"].predict_proba(data.features), expected, atol=1e-6)
    frame.drop(columns=ENTREZ[:60]).to_csv(tmp_path / "few.csv", index=False)
    first = identities.gene_label(int(ENTREZ[0]))
    with pytest.raises(DataError, match=rf"60 of the model's 978 genes are missing .*{first.split()[0]}"):
        trained["loaded"].read_profiles(tmp_path / "few.csv")


def test_one_gene_named_twice_is_an_error(trained: dict, tmp_path: Path) -> None:
    frame = _consensus()
    frame[SYMBOL[ENTREZ[0]]] = frame[ENTREZ[0]]
    frame.to_csv(tmp_path / "twice.csv", index=False)
    with pytest.raises(DataError, match="both .*keep one column per gene"):
        trained["loaded"].read_profiles(tmp_path / "twice.csv")


def test_a_cell_painting_table_gets_one_error_naming_the_models_genes(trained: dict, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(rng.normal(size=(6, 40)), columns=[f"Cells_AreaShape_F{i}" for i in range(40)])
    frame.insert(0, "Metadata_Well", [f"A0{i}" for i in range(6)])
    frame.to_csv(tmp_path / "cp.csv", index=False)
    with pytest.raises(DataError, match=r"none of the model's genes .*978 L1000 landmark genes \(e\.g\. "
                                        + re.escape(identities.gene_label(int(ENTREZ[0])))):
        trained["loaded"].read_profiles(tmp_path / "cp.csv")
    out = tmp_path / "p.csv"
    assert moa_main(["predict", "--bundle", str(trained["bundle"]), "--features", str(tmp_path / "cp.csv"),
                     "--out", str(out), "--quiet"]) == 2
    assert not out.exists() and not list(tmp_path.glob(".p.csv*"))  # nothing half-written


def test_level3_values_are_refused(trained: dict, tmp_path: Path) -> None:
    frame = _consensus()
    frame[ENTREZ] = np.abs(frame[ENTREZ]) + 8.0  # log2 expression: ~8, never negative
    frame.to_csv(tmp_path / "level3.csv", index=False)
    out = tmp_path / "p.csv"
    assert moa_main(["predict", "--bundle", str(trained["bundle"]), "--features", str(tmp_path / "level3.csv"),
                     "--out", str(out), "--quiet"]) == 2
    assert not out.exists()
    with pytest.raises(DataError, match="log2 expression"):
        trained["loaded"].read_profiles(tmp_path / "level3.csv")


def test_compound_column_is_optional_at_prediction(trained: dict, tmp_path: Path) -> None:
    level5 = _level5(_consensus())
    bare = level5.drop(columns=["Metadata_pert_iname"])
    bare.to_csv(tmp_path / "bare.csv", index=False)
    p = trained["loaded"].predict_proba(trained["loaded"].read_profiles(tmp_path / "bare.csv"))
    np.testing.assert_allclose(p, trained["reference"], atol=1e-5)
    out = tmp_path / "c.csv"
    assert moa_main(["predict", "--bundle", str(trained["bundle"]), "--features", str(tmp_path / "bare.csv"),
                     "--out", str(out), "--level", "compound"]) == 2  # no compound column: said, not guessed
    level5.to_csv(tmp_path / "named.csv", index=False)
    assert moa_main(["predict", "--bundle", str(trained["bundle"]), "--features", str(tmp_path / "named.csv"),
                     "--out", str(out), "--level", "compound"]) == 0
    calls = pd.read_csv(out)
    assert len(calls) == level5["Metadata_pert_iname"].nunique() and "HMGCR inhibitor" in calls.columns


def test_explanations_and_the_card_name_genes_by_symbol(trained: dict, tmp_path: Path) -> None:
    path = tmp_path / "level5.csv"
    _level5(_consensus().head(3)).to_csv(path, index=False)
    report = tmp_path / "e.json"
    assert moa_main(["explain", "--bundle", str(trained["bundle"]), "--features", str(path), "--sig-id", "SIG0",
                     "--out", str(report), "--quiet"]) == 0
    feats = [f for p in json.loads(report.read_text())["profiles"] for e in p["explanations"] for f in e["features"]]
    assert feats
    for f in feats:  # the column keeps the model's name (an Entrez id); people read the symbol
        entrez = int(f["feature"])
        assert f["label"] == identities.gene_label(entrez) and f["info"]["entrez"] == entrez
        assert f["info"]["symbol"] == identities.landmarks()[entrez].symbol
    from moa_predict.web.services.card import model_card

    card = model_card(trained["loaded"])
    block = card["layout"]["blocks"][0]
    assert block["genes"].startswith("978 L1000 landmark genes (e.g. ")
    assert "uploads may name them by Entrez id or symbol" in block["match"]
    assert card["layout"]["upload_requires"] == []


def test_landmark_symbols_prefer_current_hgnc_names() -> None:
    marks = identities.landmarks()
    assert len(marks) == 978
    assert marks[16].symbol == "AARS1" and marks[16].cmap_symbol == "AARS"  # renamed since CMap: HGNC's name
    assert identities.gene_label(3156) == "HMGCR (3156)"
    assert identities.gene_label(123456789) == "gene 123456789"


@pytest.mark.parametrize("block, message", [
    ({"name": "g", "genes": "ensembl"}, "use one of entrez, symbol, auto"),
    ({"name": "g", "prefix": "x", "regex": "y", "genes": "entrez"}, "exactly one of prefix or regex"),
])
def test_bad_gene_blocks_are_clear_errors(block: dict, message: str) -> None:
    with pytest.raises(DataError, match=message):
        Layout.from_dict({"blocks": [block]})


def test_a_gene_block_naming_no_gene_is_an_error(tmp_path: Path) -> None:
    frame = pd.DataFrame({"x_a": [1.0, 2.0], "x_b": [3.0, 4.0], "moa": ["a", "b"]})
    frame.to_csv(tmp_path / "t.csv", index=False)
    layout = Layout(blocks=(Block("genes", prefix="x_", genes="symbol"),), labels=Labels("column", column="moa"))
    with pytest.raises(DataError, match="declares its columns named by gene symbol, but none"):
        load_profiles(tmp_path / "t.csv", layout)


def test_a_table_with_genes_as_rows_is_read_like_a_gct(trained: dict, tmp_path: Path) -> None:
    frame = _consensus()
    rows = frame[ENTREZ].T
    rows.columns = [f"S{i}" for i in range(len(frame))]
    rows.insert(0, "gene_symbol", [SYMBOL[e] for e in ENTREZ])
    rows.to_csv(tmp_path / "rows.csv", index=False)
    upload = trained["loaded"].read_profiles(tmp_path / "rows.csv")
    assert list(upload.index[:2]) == ["S0", "S1"]
    np.testing.assert_allclose(trained["loaded"].predict_proba(upload), trained["reference"], atol=1e-5)


def test_the_web_api_reads_gene_named_uploads_and_refuses_other_tables(trained: dict, tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from moa_predict.web import create_app

    client = TestClient(create_app(trained["bundle"]), raise_server_exceptions=False)
    upload = _level5(_consensus().head(5)).to_csv(index=False).encode()
    r = client.post("/api/predict?top=3", files={"file": ("level5.csv", upload, "text/csv")})
    assert r.status_code == 200, r.text
    rows = r.json()["predictions"]
    assert [p["sig_id"] for p in rows] == [f"SIG{i}" for i in range(5)] and rows[0]["top"][0]["moa"] in MOAS
    other = pd.DataFrame({"Metadata_Well": ["A01", "A02"], "Cells_AreaShape_Area": [1.0, 2.0]})
    r = client.post("/api/predict", files={"file": ("cp.csv", other.to_csv(index=False).encode(), "text/csv")})
    assert r.status_code == 422 and "none of the model's genes" in r.json()["error"]
    home = client.get("/")
    assert home.status_code == 200 and "978 columns" in home.text


def test_an_upload_needs_only_the_models_inputs(tmp_path: Path) -> None:
    frame = _consensus(n=12)
    frame.insert(3, "dose", np.linspace(0.1, 1.0, len(frame)))
    frame.to_csv(tmp_path / "train.csv", index=False)
    layout = Layout(id=("drugbank_id",), group="pert_iname", meta_numeric=("dose",),
                    blocks=(Block("genes", genes="entrez"),), labels=Labels("column", column="moa"))
    columns = load_profiles(tmp_path / "train.csv", layout).feature_columns
    assert len(columns) == 978
    frame.drop(columns=["drugbank_id", "pert_iname", "moa"]).to_csv(tmp_path / "upload.csv", index=False)
    data = load_profiles(tmp_path / "upload.csv", layout, labels=False, feature_columns=columns)
    assert list(data.features.index[:2]) == ["row-1", "row-2"] and data.drugs is None
    frame.drop(columns=["dose"]).to_csv(tmp_path / "no_dose.csv", index=False)
    with pytest.raises(DataError, match="takes column 'dose' as an input"):
        load_profiles(tmp_path / "no_dose.csv", layout, labels=False, feature_columns=columns)


def test_a_column_of_gene_targets_is_no_gene_axis(trained: dict, tmp_path: Path) -> None:
    """A Cell Painting table naming each compound's target gene (repeated over wells) is not read as genes as rows."""
    rng = np.random.default_rng(2)
    frame = pd.DataFrame(rng.normal(size=(40, 5)), columns=[f"Cells_F{i}" for i in range(5)])
    frame.insert(0, "Metadata_target", [SYMBOL[ENTREZ[i % 10]] for i in range(40)])
    frame.to_csv(tmp_path / "targets.csv", index=False)
    with pytest.raises(DataError, match="none of the model's genes"):
        trained["loaded"].read_profiles(tmp_path / "targets.csv")


def test_level3_values_are_refused_before_a_per_profile_scaling_could_hide_them(tmp_path: Path) -> None:
    frame = _consensus(n=12)
    frame.to_csv(tmp_path / "train.csv", index=False)
    layout = Layout(id=("drugbank_id",), group="pert_iname", profile_scale="zscore",
                    blocks=(Block("genes", genes="entrez"),), labels=Labels("column", column="moa"))
    columns = load_profiles(tmp_path / "train.csv", layout).feature_columns
    frame[ENTREZ] = np.abs(frame[ENTREZ]) + 8.0
    frame.to_csv(tmp_path / "level3.csv", index=False)
    with pytest.raises(DataError, match="log2 expression"):
        load_profiles(tmp_path / "level3.csv", layout, labels=False, feature_columns=columns)
