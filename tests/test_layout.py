"""Any profile layout: parsing and inferring layouts, every label source, annotation joins, plate normalisation,
single-label metrics, and a bundle trained on a custom layout surviving a save/load round trip."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from moa_predict.data.errors import DataError
from moa_predict.data.profiles.layout import Block, Controls, Labels, Layout, dump_layout, load_layout
from moa_predict.data.profiles.layout_infer import infer_layout
from moa_predict.data.profiles.normalize import normalize_plates
from moa_predict.data.profiles.reader import load_profiles, training_rows, treatment_means
from moa_predict.evaluation.metrics import single_label_scores

MOAS = {"cpdA": "tubulin inhibitor", "cpdB": "tubulin inhibitor", "cpdC": "HDAC inhibitor", "cpdD": "HDAC inhibitor",
        "cpdE": "EGFR inhibitor|kinase inhibitor", "cpdF": "EGFR inhibitor"}


def _table(seed: int = 0, plates: int = 3, per_plate: int = 24) -> pd.DataFrame:
    """A small CellProfiler-like table: 3 compartments x 6 features, plate effects, DMSO controls, MoA signal."""
    rng = np.random.default_rng(seed)
    rows = []
    compounds = list(MOAS)
    moa_vec = {m: rng.normal(0, 2, 18) for m in {"tubulin inhibitor", "HDAC inhibitor", "EGFR inhibitor"}}
    for p in range(plates):
        shift, scale = rng.normal(0, 5, 18), rng.uniform(0.5, 3, 18)
        for w in range(per_plate):
            cpd = "DMSO" if w < 8 else compounds[(w + p) % len(compounds)]
            signal = np.zeros(18) if cpd == "DMSO" else moa_vec[MOAS[cpd].split("|")[0]] + rng.normal(0, 0.3, 18)
            x = (signal + rng.normal(0, 1, 18)) * scale + shift
            rows.append({"Metadata_Plate": f"P{p}", "Metadata_Well": f"W{w:02d}", "Metadata_compound": cpd,
                         "Metadata_dose": 0.0 if cpd == "DMSO" else [1.0, 10.0][w % 2],
                         "Metadata_moa": "" if cpd == "DMSO" else MOAS[cpd],
                         **{f"{blk}_F{i}": x[j * 6 + i] for j, blk in enumerate(("Cells", "Nuclei", "Cytoplasm"))
                            for i in range(6)}})
    return pd.DataFrame(rows)


def _layout(**changes) -> Layout:
    base = Layout(name="toy", id=("Metadata_Plate", "Metadata_Well"), group="Metadata_compound",
                  treatment=("Metadata_compound", "Metadata_dose"), plate="Metadata_Plate",
                  controls=Controls("Metadata_compound", ("DMSO",)),
                  blocks=(Block("Cells", prefix="Cells_", pca=2), Block("Nuclei", prefix="Nuclei_"),
                          Block("Cytoplasm", prefix="Cytoplasm_")),
                  labels=Labels("column", column="Metadata_moa", separator="|"), normalize="robust_z")
    return dataclasses.replace(base, **changes)


@pytest.fixture()
def table_file(tmp_path: Path) -> Path:
    path = tmp_path / "profiles.csv"
    _table().to_csv(path, index=False)
    return path


# -- layout files ---------------------------------------------------------------------------------

def test_layout_round_trips_through_toml(tmp_path: Path) -> None:
    layout = _layout()
    path = tmp_path / "layout.toml"
    path.write_text(dump_layout(layout, "a comment"), encoding="utf-8")
    assert load_layout(path) == layout
    assert Layout.from_dict(Layout.lish_moa().to_dict()) == Layout.lish_moa()


@pytest.mark.parametrize("text, message", [
    ('name = "x"\n', "no feature block"),
    ('blocks = [{name = "a", prefix = "A_", regex = "B"}]\n', "exactly one of prefix or regex"),
    ('blocks = [{name = "a", regex = "("}]\n', "bad regex"),
    ('blocks = [{name = "a", prefix = "A_"}]\nnormalize = "robust_z"\n', r"needs `plate` and \[controls\]"),
    ('blocks = [{name = "a", prefix = "A_"}]\ncolour = 1\n', "unknown layout key"),
    ('blocks = [{name = "a", prefix = "A_"}]\n[labels]\nsource = "annotation"\nfile = "x.csv"\n', "needs `file`, `on`"),
    ('blocks = [{name = "a", prefix = "A_"}]\n[labels]\nsource = "magic"\n', "use one of"),
    ('blocks = [ {name = "a", prefix = \n', "not a valid TOML"),
])
def test_bad_layouts_are_clear_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=message) as err:
        load_layout(path)
    assert "bad.toml" in str(err.value)


def test_block_matching_nothing_or_overlapping(table_file: Path) -> None:
    with pytest.raises(DataError, match="matches no column"):
        load_profiles(table_file, _layout(blocks=(Block("Mito", prefix="Mito_"),)))
    with pytest.raises(DataError, match="in two feature blocks"):
        load_profiles(table_file, _layout(blocks=(Block("a", prefix="Cells_"), Block("b", regex="^Cells_F1$"))))


def test_infer_layout_finds_meta_blocks_controls_and_labels(table_file: Path) -> None:
    layout, reasons = infer_layout(table_file)
    assert {b.name for b in layout.blocks} == {"Cells", "Nuclei", "Cytoplasm"}
    assert layout.controls == Controls("Metadata_compound", ("DMSO",))
    assert layout.group == "Metadata_compound" and layout.plate == "Metadata_Plate"
    assert layout.labels == Labels("column", column="Metadata_moa", separator="|")
    # raw CellProfiler values with a plate and 8 controls per plate: each plate centred, the scale pooled; 24 control
    # wells are too few to whiten on (data.profiles.practice)
    assert layout.normalize == "robust_z_pooled" and layout.whiten == 0
    assert any("controls" in r for r in reasons)
    data = load_profiles(table_file, layout)  # the inferred layout reads the table it came from
    assert len(data.feature_columns) == 18


# -- labels ---------------------------------------------------------------------------------------

def test_label_column_multi_and_single(table_file: Path) -> None:
    multi = load_profiles(table_file, _layout())
    assert list(multi.targets.columns) == ["EGFR inhibitor", "HDAC inhibitor", "kinase inhibitor",
                                           "tubulin inhibitor"]
    e = multi.targets[multi.features["Metadata_compound"].eq("cpdE").to_numpy()]
    assert (e[["EGFR inhibitor", "kinase inhibitor"]] == 1).all().all()
    assert multi.targets[multi.is_control].to_numpy().sum() == 0
    assert not multi.single_label
    frame = _table()
    frame["Metadata_moa"] = frame["Metadata_moa"].str.split("|").str[0]
    path = table_file.with_name("single.csv")
    frame.to_csv(path, index=False)
    single = load_profiles(path, _layout(labels=Labels("column", column="Metadata_moa")))
    assert single.single_label and (single.targets.sum(axis=1)[~single.is_control] == 1).all()
    with pytest.raises(DataError, match="several MoAs"):
        load_profiles(table_file, _layout(labels=Labels("column", column="Metadata_moa")))


def test_annotation_join_on_two_keys_missing_and_duplicates(tmp_path: Path) -> None:
    frame = _table().drop(columns=["Metadata_moa"])
    frame.to_csv(tmp_path / "p.csv", index=False)
    ann = pd.DataFrame([(c, d, MOAS[c].split("|")[0]) for c in MOAS if c != "cpdF" for d in (1, 10.0)],
                       columns=["compound", "conc", "moa"])
    ann = pd.concat([ann, ann.head(2)])  # exact duplicates count once (documented rule)
    ann.to_csv(tmp_path / "ann.csv", index=False)
    labels = Labels("annotation", file="ann.csv", on=(("Metadata_compound", "compound"), ("Metadata_dose", "conc")),
                    column="moa")
    layout = dataclasses.replace(_layout(labels=labels), base_dir=str(tmp_path))
    data = load_profiles(tmp_path / "p.csv", layout)
    f = data.features
    no_ann = (f["Metadata_compound"] == "cpdF").to_numpy()
    assert data.notes["unlabelled_rows"] == int(no_ann.sum()) > 0
    assert data.notes["unlabelled_compounds"] == ["cpdF"]
    assert (data.targets[no_ann].to_numpy() == 0).all()
    # unannotated rows are kept for prediction but never trained on
    assert not np.isin(np.flatnonzero(no_ann), training_rows(data)).any()
    assert len(data.features) == len(frame)
    # conflicting annotations are an error naming the key
    pd.concat([ann, pd.DataFrame([("cpdA", 1, "HDAC inhibitor")], columns=ann.columns)]).to_csv(
        tmp_path / "ann.csv", index=False)
    with pytest.raises(DataError, match="conflicting annotations for cpda, 1"):
        load_profiles(tmp_path / "p.csv", layout)


def test_annotation_with_comment_lines_like_the_repurposing_hub(tmp_path: Path) -> None:
    frame = _table().drop(columns=["Metadata_moa"])
    frame["Metadata_compound"] = frame["Metadata_compound"].str.upper()  # names match case-insensitively
    frame.to_csv(tmp_path / "p.csv", index=False)
    (tmp_path / "hub.txt").write_text("!header line\n!another\npert_iname\tmoa\n" +
                                      "".join(f"{c.lower()}\t{m}\n" for c, m in MOAS.items()), encoding="utf-8")
    labels = Labels("annotation", file="hub.txt", on=(("Metadata_compound", "pert_iname"),), column="moa",
                    separator="|", comment="!")
    data = load_profiles(tmp_path / "p.csv", dataclasses.replace(_layout(labels=labels), base_dir=str(tmp_path)))
    assert data.notes["unlabelled_rows"] == 0 and "kinase inhibitor" in data.targets.columns


def test_wide_label_table(tmp_path: Path) -> None:
    frame = _table()
    frame["sig"] = [f"s{i}" for i in range(len(frame))]
    frame.drop(columns=["Metadata_moa"]).to_csv(tmp_path / "p.csv", index=False)
    wide = pd.DataFrame({"sig": frame["sig"], "a": (frame.index % 2).astype(int), "b": (frame.index % 3 == 0) * 1})
    wide.iloc[:-3].to_csv(tmp_path / "t.csv", index=False)  # three profiles without labels
    layout = dataclasses.replace(_layout(id=("sig",), labels=Labels("wide", file="t.csv", key="sig")),
                                 base_dir=str(tmp_path))
    data = load_profiles(tmp_path / "p.csv", layout)
    assert list(data.targets.columns) == ["a", "b"] and data.notes["unannotated_rows"] == 3


# -- plate normalisation ---------------------------------------------------------------------------

def test_plate_normalisation_uses_each_plates_controls_only() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (40, 3))
    plates = np.repeat(["a", "b"], 20)
    x[plates == "b"] = x[plates == "b"] * 4 + 100
    control = np.tile(np.arange(20) < 8, 2)
    z, _, none = normalize_plates(x, plates, control)
    assert none is None
    for p in ("a", "b"):
        ctl = z[(plates == p) & control]
        assert np.allclose(np.median(ctl, axis=0), 0, atol=1e-9)
    # a plate's z-scores do not change when another plate's wells change (no leakage across plates or folds)
    x2 = x.copy()
    x2[plates == "b"] += 1000
    z2, _, _ = normalize_plates(x2, plates, control)
    assert np.array_equal(z[plates == "a"], z2[plates == "a"])
    # treated wells of a plate do not move its statistics
    x3 = x.copy()
    x3[(plates == "a") & ~control] *= 50
    for pooled in (False, True):
        base, _, _ = normalize_plates(x, plates, control, pooled=pooled)
        moved, _, _ = normalize_plates(x3, plates, control, pooled=pooled)
        assert np.array_equal(base[control], moved[control])
    with pytest.raises(DataError, match="plate 'b' has 2 control"):
        normalize_plates(x, plates, control & ~((plates == "b") & (np.arange(40) > 21)))


def test_pooled_scale_is_learnt_once_and_reused() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(0, 2, (40, 3)) + np.repeat([[0.0], [50.0]], 20, axis=0)
    plates = np.repeat(["a", "b"], 20)
    control = np.tile(np.arange(20) < 8, 2)
    z, note, scale = normalize_plates(x, plates, control, pooled=True)
    assert scale is not None and "pooled" in note
    # the plate shift is removed before pooling, so the scale is the within-plate spread (about 2), not 25
    assert np.all((scale > 0.8) & (scale < 4))
    # a new table is centred on its own controls and scaled by the stored training scale
    new = rng.normal(0, 9, (10, 3)) + 7
    ctl = np.arange(10) < 5
    z_new, note_new, same = normalize_plates(new, np.array(["c"] * 10), ctl, pooled=True, scale=scale)
    assert np.array_equal(same, scale) and "training" in note_new
    np.testing.assert_allclose(z_new, (new - np.median(new[ctl], axis=0)) / scale)


def test_loading_normalises_per_plate(table_file: Path) -> None:
    data = load_profiles(table_file, _layout())
    f = data.features
    ctl = data.is_control
    for plate in f["Metadata_Plate"].unique():
        rows = (f["Metadata_Plate"] == plate).to_numpy() & ctl
        assert np.allclose(np.median(f.loc[rows, data.feature_columns].to_numpy(), axis=0), 0, atol=1e-5)
    raw = load_profiles(table_file, _layout(normalize="none"))
    assert not np.allclose(raw.features[raw.feature_columns].to_numpy(), f[data.feature_columns].to_numpy())


def test_treatment_means(table_file: Path) -> None:
    data = load_profiles(table_file, _layout())
    t = treatment_means(data)
    assert len(t.features) == len(data.features[~data.is_control].groupby(["Metadata_compound",
                                                                          "Metadata_dose"]))
    assert t.targets is not None and (t.targets.sum(axis=1) > 0).all()


# -- single-label metrics --------------------------------------------------------------------------

def test_single_label_scores() -> None:
    Y = np.eye(3)[[0, 1, 2, 0]]
    P = np.array([[.7, .2, .1], [.5, .4, .1], [.1, .1, .8], [.2, .3, .5]])
    s = single_label_scores(Y, P)
    assert s["accuracy"] == 0.5 and s["top3_accuracy"] == 1.0 and s["profiles"] == 4
    assert s["multiclass_log_loss"] == pytest.approx(-np.mean(np.log([.7, .4, .8, .2])))


# -- training, bundle round trip, prediction ---------------------------------------------------------

def test_custom_layout_bundle_round_trip(table_file: Path, tmp_path: Path) -> None:
    from moa_predict.models.registry import make_model
    from moa_predict.bundle import load_bundle, save_bundle
    from moa_predict.training.train import train_bundle

    frame = _table()
    frame["Metadata_moa"] = frame["Metadata_moa"].str.split("|").str[0]
    frame.to_csv(table_file, index=False)
    layout = _layout(labels=Labels("column", column="Metadata_moa"))
    data = load_profiles(table_file, layout)
    model = make_model("logreg", epochs=15)
    bundle, result = train_bundle(model, data, n_splits=3, seed=0, progress=False, reference=False)
    assert bundle.info["layout"]["name"] == "toy"
    assert 0.0 <= bundle.info["cv"]["single_label"]["accuracy"] <= 1.0
    save_bundle(bundle, tmp_path / "b")
    loaded = load_bundle(tmp_path / "b")
    assert loaded.layout == dataclasses.replace(layout, base_dir="")
    assert loaded.feature_columns == data.feature_columns
    upload = loaded.read_profiles(table_file)
    p0 = bundle.predict_proba(data.features)
    p1 = loaded.predict_proba(upload)
    np.testing.assert_allclose(p0, p1, atol=1e-6)
    treated = ~data.is_control
    np.testing.assert_allclose(p1[treated].sum(axis=1), 1.0, atol=1e-5)  # softmax rows
    assert (p1[~treated] == 0).all()
    # an upload lacking a feature the model needs is a clear error
    frame.drop(columns=["Cells_F0"]).to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(DataError, match="missing"):
        loaded.read_profiles(tmp_path / "short.csv")


def test_paper_models_refuse_other_layouts(table_file: Path) -> None:
    from moa_predict.models.registry import make_model
    from moa_predict.training.train import train_bundle

    data = load_profiles(table_file, _layout())
    with pytest.raises(DataError, match="only works on the LISH-MoA layout"):
        train_bundle(make_model("brknn-a"), data, cv=False, progress=False, reference=False)


# -- the whole CLI path on a simulated Cell Painting screen (no shared files needed) --------------------

def test_cli_train_predict_levels_on_a_simulated_screen(tmp_path: Path) -> None:
    from moa_predict.cli import main as moa
    from moa_predict.simulate import simulate_profiles

    sim = simulate_profiles(tmp_path / "sim", n_compounds=12, n_moas=4, plates=3, wells_per_plate=48,
                            controls_per_plate=12, n_features_per_block={"Cells": 12, "Nuclei": 8, "Cytoplasm": 8},
                            label_mode="annotation", seed=0)
    bundle = tmp_path / "bundle"
    assert moa(["train", "--features", str(sim / "profiles.csv.gz"), "--layout", str(sim / "layout.toml"),
                "--model", "knn", "--folds", "3", "--out", str(bundle)]) == 0
    import json

    info = json.loads((bundle / "bundle.json").read_text(encoding="utf-8"))
    assert info["training_data"]["simulated"]  # the simulator's marker travels into the bundle
    assert info["training_data"]["notes"]["unlabelled_rows"] > 0  # the compound the annotation leaves out
    assert info["cv"]["single_label"]["accuracy"] > 1 / 4  # better than chance on held-out compounds
    out = tmp_path / "treatments.csv"
    assert moa(["predict", "--bundle", str(bundle), "--features", str(sim / "profiles.csv.gz"), "--out", str(out),
                "--level", "treatment"]) == 0
    calls = pd.read_csv(out)
    raw = pd.read_csv(sim / "profiles.csv.gz")
    treated = raw[raw["Metadata_pert_type"] != "control"]
    assert len(calls) == len(treated.groupby(["Metadata_compound", "Metadata_dose"]))
    assert calls["n_profiles"].sum() == len(treated)
    probs = calls[info["target_names"]].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    per_well = tmp_path / "wells.csv"
    assert moa(["predict", "--bundle", str(bundle), "--features", str(sim / "profiles.csv.gz"), "--out",
                str(per_well), "--quiet"]) == 0
    assert len(pd.read_csv(per_well)) == len(raw)
    # a LISH-MoA bundle has no treatment columns: --level says so instead of guessing
    from moa_predict.data.errors import DataError
    from moa_predict.inference.levels import level_columns
    from moa_predict.bundle import Bundle

    with pytest.raises(DataError, match="LISH-MoA layout"):
        level_columns(Bundle(model=None, target_names=[]), "treatment")


def test_knn_votes_of_nearest_treatments(table_file: Path, tmp_path: Path) -> None:
    from moa_predict.models.registry import make_model
    from moa_predict.bundle import load_bundle, save_bundle
    from moa_predict.training.train import train_bundle

    frame = _table()
    frame["Metadata_moa"] = frame["Metadata_moa"].str.split("|").str[0]
    frame.to_csv(table_file, index=False)
    data = load_profiles(table_file, _layout(labels=Labels("column", column="Metadata_moa")))
    held = (data.drugs == "cpdA").to_numpy()
    train = np.flatnonzero(~held)
    model = make_model("knn")
    model.fit(data.features.iloc[train], data.targets.to_numpy()[train], inputs=data.inputs)
    # one reference per training treatment (compound x dose), not per well
    treated = data.features.iloc[train][~data.is_control[train]]
    assert len(model.references_) == len(treated.groupby(["Metadata_compound", "Metadata_dose"]))
    p = model.predict_proba(data.features[held])
    assert (np.asarray(data.target_names)[p.argmax(axis=1)] == "tubulin inhibitor").mean() >= 0.5
    bundle, _ = train_bundle(make_model("knn", k=3), data, cv=False, progress=False, reference=False)
    save_bundle(bundle, tmp_path / "k")
    np.testing.assert_array_equal(load_bundle(tmp_path / "k").predict_proba(data.features),
                                  bundle.predict_proba(data.features))


def test_layout_flags_build_or_override_a_layout(tmp_path: Path) -> None:
    from moa_predict.cli.main import build_parser
    from moa_predict.cli.layout import layout_asked, layout_from_args

    parser = build_parser()
    args = parser.parse_args(["train", "--features", "x.csv", "--out", "b", "--group", "Metadata_compound",
                              "--plate", "Metadata_Plate", "--controls", "Metadata_compound=DMSO,dmso",
                              "--block", "Cells=Cells_", "--block", "Nuclei=Nuclei_", "--label-column",
                              "Metadata_moa", "--label-separator", "|", "--normalize", "robust_z"])
    layout = layout_from_args(args)
    assert layout.controls == Controls("Metadata_compound", ("DMSO", "dmso"))
    assert [b.prefix for b in layout.blocks] == ["Cells_", "Nuclei_"]
    assert layout.labels == Labels("column", column="Metadata_moa", separator="|")
    # flags override the file's entries, the rest of the file stays
    path = tmp_path / "l.toml"
    path.write_text(dump_layout(_layout()), encoding="utf-8")
    args = parser.parse_args(["train", "--features", "x.csv", "--out", "b", "--layout", str(path),
                              "--normalize", "none"])
    changed = layout_from_args(args)
    assert changed.normalize == "none" and changed.blocks == _layout().blocks
    plain = parser.parse_args(["train", "--data", "d", "--out", "b"])  # no layout named: LISH-MoA's
    assert not layout_asked(plain) and layout_from_args(plain) == Layout.lish_moa()
    with pytest.raises(DataError, match="annotation-on"):
        layout_from_args(parser.parse_args(["train", "--features", "x", "--out", "b", "--block", "A=A_",
                                            "--annotation", "ann.csv"]))
