"""Real data in real users' layouts through train -> predict -> explain (../shared/real; skipped without it, since
the simulator cannot stand in for real files). These files are far too small for accuracy claims (one plate each,
mostly one compound per MoA): the tests check that every step works on them, not how well."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from moa_predict.cli import main as moa_main
from moa_predict.data.profiles.layout import load_layout

REAL = Path(os.environ.get("MOA_SHARED_REAL") or Path(__file__).resolve().parents[2] / "shared" / "real")
CELLPAINTING = REAL / "cellpainting" / "SQ00015054_normalized_feature_select.csv.gz"
L1000 = REAL / "l1000" / "LJP005_A375_24H_level3.gct"
HUB = REAL / "repurposing_hub" / "repurposing_drugs_20200324.txt"
BBBC021 = REAL / "bbbc021"


def _need(*paths: Path) -> None:
    for p in paths:
        if not p.exists():
            pytest.skip(f"real data file {p} not found (../shared/real; set MOA_SHARED_REAL)")


def _moa(*args: str) -> None:
    assert moa_main([str(a) for a in args]) == 0


def _train_predict_explain(features: Path, layout: Path, tmp: Path) -> tuple[pd.DataFrame, dict]:
    bundle = tmp / "bundle"
    _moa("train", "--features", features, "--layout", layout, "--model", "logreg", "--param", "epochs=8",
         "--folds", "3", "--out", bundle)
    preds = tmp / "preds.csv"
    _moa("predict", "--bundle", bundle, "--features", features, "--out", preds, "--quiet")
    report = tmp / "explain.json"
    frame = pd.read_csv(preds)
    first_treated = frame.loc[frame.iloc[:, 1:].sum(axis=1) > 0, "sig_id"].iloc[0]
    _moa("explain", "--bundle", bundle, "--features", features, "--sig-id", first_treated, "--out", report)
    return frame, {"bundle": bundle, "report": report}


@pytest.mark.slow  # trains and explains on a real plate; the BBBC021 layout tests stay fast
def test_cellpainting_plate_with_pipe_joined_moas(tmp_path: Path) -> None:
    _need(CELLPAINTING)
    layout = tmp_path / "cp.toml"
    _moa("layout", "infer", CELLPAINTING, "--out", layout)
    spec = load_layout(layout)
    assert spec.labels is not None and spec.labels.separator == "|"  # Repurposing-Hub-style labels recognised
    assert {b.name for b in spec.blocks} == {"Cells", "Cytoplasm", "Nuclei"}
    frame, out = _train_predict_explain(CELLPAINTING, layout, tmp_path)
    assert len(frame) == 384
    assert "sig_id" in frame.columns and frame.shape[1] > 10
    values = frame.drop(columns=["sig_id"]).to_numpy()
    assert np.isfinite(values).all() and (values >= 0).all() and (values <= 1).all()
    import json

    report = json.loads(out["report"].read_text(encoding="utf-8"))
    assert report["attributions"]["available"]
    named = [f["feature"] for p in report["profiles"] for e in p["explanations"] for f in e["features"]]
    assert named and all(f.startswith(("Cells_", "Nuclei_", "Cytoplasm_")) for f in named)  # the layout's features


@pytest.mark.slow  # trains on a real L1000 plate; the BBBC021 layout tests stay fast
def test_l1000_plate_labels_joined_from_the_repurposing_hub(tmp_path: Path) -> None:
    _need(L1000, HUB)
    layout = tmp_path / "l1000.toml"
    _moa("layout", "infer", L1000, "--out", layout)
    text = layout.read_text(encoding="utf-8")
    text += ('\n[labels]\nsource = "annotation"\n'
             f'file = "{HUB.as_posix()}"\non = {{ pert_iname = "pert_iname" }}\ncolumn = "moa"\nseparator = "|"\n'
             'comment = "!"\n')
    layout.write_text(text, encoding="utf-8")
    spec = load_layout(layout)
    assert spec.normalize == "robust_z"  # level 3 plate: each plate scaled to its DMSO wells
    frame, out = _train_predict_explain(L1000, layout, tmp_path)
    assert len(frame) == 377
    card = (out["bundle"] / "bundle.json").read_text(encoding="utf-8")
    assert "unlabelled_rows" in card  # compounds the Hub does not annotate are counted, not trained on


def test_bbbc021_reads_with_the_shipped_layout() -> None:
    _need(BBBC021 / "per_well_mean.csv.gz")
    from moa_predict.benchmarks.real import Treatments, load_bbbc021

    wells = load_bbbc021(BBBC021)
    assert len(wells.features) == 632 and int(wells.is_control.sum()) > 300
    t = Treatments.of(wells)
    assert len(t.moa) == 103 and len(set(t.moa)) == 12 and len(set(t.compound)) == 38


def test_bbbc021_files_become_a_layout_without_edits(tmp_path: Path) -> None:
    """`moa layout infer` with the image table and moa.csv proposes every join: the layout reads the 103 treatments,
    and a bundle trained on it (or on the shipped layout) predicts the raw per-well file as it is."""
    _need(BBBC021 / "per_well_mean.csv.gz")
    from moa_predict.benchmarks.real import Treatments
    from moa_predict.data.profiles.reader import load_profiles

    layout = tmp_path / "bbbc021.toml"
    _moa("layout", "infer", BBBC021 / "per_well_mean.csv.gz", "--metadata", BBBC021 / "image.csv.gz",
         "--annotation", BBBC021 / "moa.csv", "--out", layout)
    spec = load_layout(layout)
    assert spec.batch_from_plate and spec.normalize == "robust_z_pooled" and spec.whiten > 0
    wells = load_profiles(BBBC021 / "per_well_mean.csv.gz", spec)
    t = Treatments.of(wells)
    assert len(t.moa) == 103 and len(set(t.moa)) == 12 and wells.features["batch"].nunique() == 10
    for chosen in (str(layout), None):  # the inferred layout, then the shipped one (its joins kept too)
        bundle = tmp_path / f"bundle-{chosen is None}"
        if chosen is None:
            from importlib import resources

            shipped = tmp_path / "shipped.toml"
            shipped.write_text(resources.files("moa_predict.benchmarks").joinpath("layouts/bbbc021.toml")
                               .read_text(encoding="utf-8").replace('file = "', f'file = "{BBBC021.as_posix()}/'),
                               encoding="utf-8")
            chosen = str(shipped)
        _moa("train", "--features", BBBC021 / "per_well_mean.csv.gz", "--layout", chosen, "--model", "knn",
             "--no-cv", "--out", bundle)
        preds = tmp_path / "calls.csv"
        _moa("predict", "--bundle", bundle, "--features", BBBC021 / "per_well_mean.csv.gz", "--out", preds,
             "--level", "treatment", "--quiet")
        assert len(pd.read_csv(preds)) >= 103


CONSENSUS = REAL / "l1000_consensus" / "consensus_signatures.csv.gz"
LEVEL5 = REAL / "l1000" / "modzs_n272x978_level5.csv.gz"
LEVEL4_GCTX = REAL / "l1000" / "LJP005_A375_24H_level3.gctx"  # despite its name: GCT text of level-4 z-scores


def test_shipped_landmark_table_is_the_plates_row_metadata() -> None:
    """The 978 landmarks the package ships (Entrez id, CMap symbol) are those of the real L1000 plate."""
    _need(L1000)
    from moa_predict.data import identities
    from moa_predict.data.formats.cmap import read_genes

    _, _, genes = read_genes(L1000)
    shipped = identities.cmap_landmarks()
    plate = sorted(zip(genes["entrez"].astype(int), genes["symbol"]))
    assert plate == sorted(zip(shipped["entrez"], shipped["cmap_symbol"])) and len(plate) == 978


@pytest.mark.slow  # trains on the consensus table; test_l1000_reference answers level-5 and GCT files in the fast set
def test_l1000_consensus_layout_answers_level5_tables_and_gct_files(tmp_path: Path, capsys) -> None:
    """Trained on Entrez-named consensus signatures, the bundle answers the symbol-named level-5 table (no MoA
    column, Metadata_ prefixes), a GCT of z-scores, and refuses level-3 and Cell Painting files with one error."""
    _need(CONSENSUS, LEVEL5, LEVEL4_GCTX, L1000, CELLPAINTING)
    import json

    layout = tmp_path / "layout.toml"
    _moa("layout", "infer", CONSENSUS, "--out", layout)
    spec = load_layout(layout)
    assert [(b.name, b.genes) for b in spec.blocks] == [("genes", "entrez")]
    bundle = tmp_path / "bundle"
    _moa("train", "--features", CONSENSUS, "--layout", layout, "--model", "logreg", "--no-cv", "--param", "epochs=5",
         "--out", bundle)
    capsys.readouterr()
    _moa("predict", "--bundle", bundle, "--features", LEVEL5, "--out", tmp_path / "p5.csv", "--quiet")
    assert "978 of the model's 978 genes found" in capsys.readouterr().err
    p5 = pd.read_csv(tmp_path / "p5.csv")
    assert len(p5) == 272 and p5["sig_id"].iloc[0].startswith("CPC006_A549_6H")
    _moa("predict", "--bundle", bundle, "--features", LEVEL5, "--out", tmp_path / "c5.csv", "--level", "compound")
    assert sorted(pd.read_csv(tmp_path / "c5.csv")["compound"]) == ["atorvastatin", "vemurafenib", "venlafaxine"]
    _moa("predict", "--bundle", bundle, "--features", LEVEL4_GCTX, "--out", tmp_path / "p4.csv", "--quiet")
    assert len(pd.read_csv(tmp_path / "p4.csv")) == 377
    for bad, message in ((L1000, "log2 expression"), (CELLPAINTING, "none of the model's genes")):
        out = tmp_path / "bad.csv"
        assert moa_main(["predict", "--bundle", str(bundle), "--features", str(bad), "--out", str(out),
                         "--quiet"]) == 2
        assert message in capsys.readouterr().err and not out.exists()
    report = tmp_path / "e.json"
    _moa("explain", "--bundle", bundle, "--features", LEVEL5, "--sig-id", p5["sig_id"].iloc[0], "--out", report,
         "--quiet")
    feats = [f for p in json.loads(report.read_text(encoding="utf-8"))["profiles"] for e in p["explanations"]
             for f in e["features"]]
    assert feats and all(f["label"].endswith(f"({f['feature']})") and f["info"].get("symbol") for f in feats)
