"""The Cell Painting simulator (``simulate.layout``): a non-LISH table and the layout.toml that reads it, in the
three label modes, read back through ``load_profiles``; the signal a model can learn; ``moa simulate
--layout-kind cellpainting``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from moa_predict.cli.main import main
from moa_predict.data.profiles import schema
from moa_predict.data.profiles.layout import load_layout
from moa_predict.data.profiles.reader import load_profiles
from moa_predict.simulate import cellpainting_layout, simulate_profiles

BLOCKS = {"Cells": 16, "Nuclei": 12, "Cytoplasm": 12}
SMALL = dict(n_compounds=12, n_moas=4, plates=3, wells_per_plate=96, controls_per_plate=12,
             n_features_per_block=BLOCKS)
META = ["Metadata_Plate", "Metadata_Well", "Metadata_compound", "Metadata_dose", "Metadata_pert_type",
        "Metadata_batch"]


@pytest.fixture(scope="module")
def sims(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cellpainting")
    return {mode: simulate_profiles(root / mode, label_mode=mode, seed=0, **SMALL)
            for mode in ("single", "multi", "annotation")}


def _read(out: Path):
    return load_profiles(out / "profiles.csv.gz", load_layout(out / "layout.toml"))


def _truth(out: Path) -> dict:
    return json.loads((out / "simulation_truth.json").read_text())


def test_table_looks_like_cellprofiler_output(sims):
    table = pd.read_csv(sims["single"] / "profiles.csv.gz")
    assert list(table.columns[:7]) == META + ["Metadata_moa"]
    feats = list(table.columns[7:])
    assert len(feats) == sum(BLOCKS.values())
    for block, k in BLOCKS.items():
        assert sum(c.startswith(f"{block}_") for c in feats) == k
    families = {c.split("_")[1] for c in feats}
    assert {"AreaShape", "Intensity", "Texture"} <= families
    assert any(c.startswith("Cells_AreaShape_") for c in feats) and any(c.startswith("Nuclei_Intensity_")
                                                                        for c in feats)
    assert any(c.startswith("Cytoplasm_Texture_") for c in feats)
    assert len(table) == 3 * 96
    assert table["Metadata_Well"].map(lambda w: bool(re.fullmatch(r"[A-H](0[1-9]|1[0-2])", w))).all()
    assert not table.duplicated(["Metadata_Plate", "Metadata_Well"]).any()
    ctl = table["Metadata_pert_type"] == "control"
    assert set(table["Metadata_pert_type"]) == {"control", "trt"}
    assert (table.groupby("Metadata_Plate")["Metadata_pert_type"].apply(lambda s: (s == "control").sum()) == 12).all()
    assert (table.loc[ctl, "Metadata_compound"] == "DMSO").all() and table.loc[ctl, "Metadata_moa"].isna().all()
    assert pd.api.types.is_numeric_dtype(table["Metadata_dose"]) and (table.loc[~ctl, "Metadata_dose"] > 0).all()
    # plates grouped in batches, every compound on several plates, >= 2 compounds per MoA
    assert table.groupby("Metadata_batch")["Metadata_Plate"].nunique().max() >= 2
    assert (table.loc[~ctl].groupby("Metadata_compound")["Metadata_Plate"].nunique() >= 2).all()
    per_moa = table.loc[~ctl].groupby("Metadata_moa")["Metadata_compound"].nunique()
    assert len(per_moa) == 4 and (per_moa >= 2).all()
    # raw, not normalised: a few empty cells, and plates differ far more than the control wells within a plate
    assert 0 < table[feats].isna().to_numpy().sum() < 0.01 * table[feats].size
    controls = table.loc[ctl]
    med = controls.groupby("Metadata_Plate")[feats].median()
    within = controls.groupby("Metadata_Plate")[feats].std().mean()
    assert (med.std() > within).mean() > 0.5


def test_same_seed_same_files_other_seed_other(sims, tmp_path):
    again = simulate_profiles(tmp_path / "again", label_mode="single", seed=0, **SMALL)
    for name in ("profiles.csv.gz", "layout.toml", "simulation_truth.json"):
        assert (again / name).read_bytes() == (sims["single"] / name).read_bytes()
    other = simulate_profiles(tmp_path / "other", label_mode="single", seed=1, **SMALL)
    assert (other / "profiles.csv.gz").read_bytes() != (sims["single"] / "profiles.csv.gz").read_bytes()


def test_single_label_reads_through_its_layout(sims):
    out = sims["single"]
    layout = load_layout(out / "layout.toml")
    assert layout == cellpainting_layout("single", list(BLOCKS))
    assert layout.labels.source == "column" and layout.single_label and layout.normalize == "robust_z"
    ds = _read(out)
    assert sorted(ds.target_names) == sorted(_truth(out)["moas"])
    assert ds.simulated and ds.simulated.get("simulated")  # the marker beside the table reaches the data set
    assert int(ds.is_control.sum()) == 3 * 12
    assert (ds.targets.to_numpy()[~ds.is_control].sum(axis=1) == 1).all()
    assert (ds.targets.to_numpy()[ds.is_control] == 0).all()
    assert ds.notes["unlabelled_rows"] == 0 and ds.notes["classes"] == 4
    assert ds.notes["missing_values_filled"]["cells"] == _truth(out)["missing_cells"]
    assert "3 plates" in ds.notes["normalization"]
    # robust z to each plate's DMSO wells: control wells centred on 0 on every plate
    feats = ds.feature_columns
    ctl = ds.features.loc[ds.is_control]
    assert np.abs(ctl.groupby("Metadata_Plate")[feats].median().to_numpy()).max() < 0.2
    assert not np.isnan(ds.features[feats].to_numpy()).any()
    assert set(ds.drugs[~ds.is_control]) == set(_truth(out)["compounds"])
    marker = json.loads((out / schema.SIMULATED_MARKER).read_text())
    assert marker["simulated"] is True and "SIMULATED" in marker["note"]


def test_multi_label_joins_moas_with_a_bar(sims):
    out = sims["multi"]
    layout = load_layout(out / "layout.toml")
    assert layout.labels.source == "column" and layout.labels.separator == "|" and not layout.single_label
    table = pd.read_csv(out / "profiles.csv.gz", usecols=["Metadata_moa"])
    assert table["Metadata_moa"].str.contains("|", regex=False).any()
    ds = _read(out)
    counts = ds.targets.to_numpy()[~ds.is_control].sum(axis=1)
    assert set(counts) == {1, 2}
    two = {c for c, v in _truth(out)["compounds"].items() if len(v["moas"]) == 2}
    assert two and set(ds.drugs[~ds.is_control][counts == 2]) == two


def test_annotation_mode_reads_labels_from_the_annotation_file(sims):
    out = sims["annotation"]
    layout = load_layout(out / "layout.toml")
    assert layout.labels.source == "annotation" and layout.labels.file == "annotation.csv"
    assert dict(layout.labels.on) == {"Metadata_compound": "compound"}
    assert "Metadata_moa" not in pd.read_csv(out / "profiles.csv.gz", nrows=1).columns
    ann = pd.read_csv(out / "annotation.csv")
    truth = _truth(out)
    missing = truth["unannotated_compound"]
    assert list(ann.columns) == ["compound", "moa"] and len(ann) == 12 - 1 and missing not in set(ann["compound"])
    ds = _read(out)
    annotated = ~ds.is_control & ds.drugs.ne(missing).to_numpy()
    Y = ds.targets.to_numpy()
    assert (Y[annotated].sum(axis=1) == 1).all()
    assert set(truth["moas"]) <= set(ds.target_names)
    # every MoA keeps >= 2 annotated compounds
    per_moa = pd.Series([ds.target_names[k] for k in Y[annotated].argmax(axis=1)]).groupby(
        ds.drugs[annotated].to_numpy()).first().value_counts()
    assert (per_moa >= 2).all()


def test_annotation_mode_counts_the_unannotated_compound(sims):
    out = sims["annotation"]
    ds = _read(out)
    missing = _truth(out)["unannotated_compound"]
    assert ds.notes["unlabelled_compounds"] == [missing]
    assert ds.notes["unlabelled_rows"] == int((ds.drugs == missing).sum())
    assert sorted(ds.target_names) == sorted(_truth(out)["moas"])


def test_a_model_recognises_the_moa_of_unseen_compounds(sims):
    """Logistic regression trained without one compound per MoA names the MoA of most held-out compounds (chance:
    one in four): the simulated signal is a MoA's, shared by its compounds, not each compound's own."""
    from moa_predict.models.registry import make_model

    ds = _read(sims["single"])
    drugs = ds.drugs.to_numpy()
    Y = ds.targets.to_numpy()
    treated = ~ds.is_control
    held = [sorted(set(drugs[treated & (Y[:, k] == 1)]))[0] for k in range(Y.shape[1])]
    test = np.isin(drugs, held)
    model = make_model("logreg", seed=0).fit(ds.features.iloc[np.flatnonzero(~test)], Y[~test], inputs=ds.inputs)
    proba = model.predict_proba(ds.features.iloc[np.flatnonzero(test)])
    hits, p_true = 0, []
    for k, compound in enumerate(held):
        rows = drugs[test] == compound
        mean = proba[rows].mean(axis=0)
        hits += int(mean.argmax() == k)
        p_true.append(mean[k])
    assert hits >= 3, (hits, p_true)
    assert np.mean(p_true) > 1.25 / Y.shape[1]


def test_cli_writes_the_cellpainting_layout(tmp_path, capsys):
    out = tmp_path / "cp"
    assert main(["simulate", "--layout-kind", "cellpainting", "--out", str(out), "--label-mode", "annotation",
                 "--seed", "3"]) == 0
    assert "SIMULATED" in capsys.readouterr().err
    for name in ("profiles.csv.gz", "layout.toml", "annotation.csv", schema.SIMULATED_MARKER):
        assert (out / name).is_file()
    ref = simulate_profiles(tmp_path / "ref", label_mode="annotation", seed=3)
    assert (out / "profiles.csv.gz").read_bytes() == (ref / "profiles.csv.gz").read_bytes()
    ds = _read(out)
    assert len(ds.features) == 4 * 96 and int(ds.is_control.sum()) == 4 * 16
    assert len(ds.feature_columns) == 100
    assert main(["simulate", "--layout-kind", "cellpainting"]) == 2  # no --out


def test_bad_settings_are_refused(tmp_path):
    with pytest.raises(ValueError, match="label_mode"):
        simulate_profiles(tmp_path, label_mode="wide")
    with pytest.raises(ValueError, match="two compounds per MoA"):
        simulate_profiles(tmp_path, n_compounds=5, n_moas=3)
    with pytest.raises(ValueError, match="wells"):
        simulate_profiles(tmp_path, n_compounds=40, n_moas=4, plates=2, wells_per_plate=24, controls_per_plate=4)
