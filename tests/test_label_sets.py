"""Extra label sets beside the MoAs (``[label_sets.target]``: protein targets from an annotation table such as the
Drug Repurposing Hub): parsing, labels with too few compounds, a missing annotation column, training them beside the
MoA model, ``moa predict --targets-out`` and the MoA / target consistency check."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from moa_predict.data.errors import DataError
from moa_predict.data.profiles.layout import Layout, load_layout
from moa_predict.data.profiles.reader import load_profiles
from moa_predict.evaluation.consistency import agreement, consistency, top_labels, usual_labels

# compound -> (MoA, targets): two MoAs with shared targets, and one target ("LONE") carried by one compound only
DRUGS = {f"drug{i}": (("HMGCR inhibitor", "HMGCR") if i % 2 == 0 else ("EGFR inhibitor", "EGFR|ERBB2"))
         for i in range(16)}
DRUGS["drug15"] = ("EGFR inhibitor", "EGFR|LONE")
GENES = 12


def _write(tmp: Path, target_column: str = "target") -> Path:
    """A small profile table (3 profiles per compound; the MoA moves genes 0-2 or 3-5), the annotation table with
    Hub-style '!' header lines, and the layout naming both label sets."""
    rng = np.random.default_rng(0)
    rows = []
    for name, (moa, _) in DRUGS.items():
        for rep in range(3):
            x = rng.normal(0, 1, GENES)
            x[:3 if moa.startswith("HMGCR") else 0] += 3.0
            x[3:6] += 0.0 if moa.startswith("HMGCR") else 3.0
            rows.append({"sample": f"{name}_{rep}", "pert_iname": name, **{f"g_{k}": x[k] for k in range(GENES)}})
    pd.DataFrame(rows).to_csv(tmp / "profiles.csv", index=False)
    hub = "".join(f"{n}\t{m}\t{t}\n" for n, (m, t) in DRUGS.items())
    (tmp / "hub.txt").write_text(f"!Source\tthe hub\n!Date\t2020\npert_iname\tmoa\t{target_column}\n{hub}",
                                 encoding="utf-8")
    (tmp / "layout.toml").write_text(f"""
name = "targets-test"
id = ["sample"]
group = "pert_iname"
blocks = [ {{ name = "genes", prefix = "g_", pca = 0 }} ]

[labels]
source = "annotation"
file = "hub.txt"
on = {{ pert_iname = "pert_iname" }}
column = "moa"
separator = "|"
comment = "!"

[label_sets.target]
source = "annotation"
file = "hub.txt"
on = {{ pert_iname = "pert_iname" }}
column = "target"
separator = "|"
comment = "!"
""", encoding="utf-8")
    return tmp / "layout.toml"


def test_label_sets_parse_and_round_trip(tmp_path: Path) -> None:
    layout = load_layout(_write(tmp_path))
    assert layout.label_set_names == ["target"]
    target = layout.label_set("target")
    assert target.column == "target" and target.min_compounds == 2  # the default of an extra label set
    assert Layout.from_dict(layout.to_dict(), base_dir=layout.base_dir) == layout
    with pytest.raises(DataError, match="no label set 'pathway'"):
        layout.label_set("pathway")


def test_a_layout_with_labels_only_is_stored_as_before() -> None:
    """The single [labels] form is unchanged: no new keys in a stored layout (bundles and their numbers stay)."""
    from moa_predict.data.builtin import L1000_LAYOUT

    stored = load_layout(L1000_LAYOUT).to_dict()
    assert "min_compounds" not in stored["labels"]
    d = dict(stored)
    d.pop("label_sets", None)
    assert Layout.from_dict(d).to_dict() == d


@pytest.mark.parametrize("name", ["moa", "bad name", "a/b"])
def test_label_set_names_are_checked(name: str) -> None:
    d = {"blocks": [{"name": "g", "prefix": "g_"}], "labels": {"source": "column", "column": "moa"},
         "label_sets": {name: {"source": "column", "column": "target"}}}
    with pytest.raises(DataError, match="label set names"):
        Layout.from_dict(d)


def test_target_labels_with_too_few_compounds_are_listed_not_trained(tmp_path: Path) -> None:
    layout = load_layout(_write(tmp_path))
    data = load_profiles(tmp_path / "profiles.csv", layout, label_set="target")
    assert sorted(data.targets.columns) == ["EGFR", "ERBB2", "HMGCR"]
    assert data.notes["too_few_compounds"] == {"LONE": 1}
    moas = load_profiles(tmp_path / "profiles.csv", layout)
    assert sorted(moas.targets.columns) == ["EGFR inhibitor", "HMGCR inhibitor"]  # [labels] as before
    assert "too_few_compounds" not in moas.notes


def test_a_missing_annotation_column_is_one_error_naming_file_and_column(tmp_path: Path) -> None:
    layout = load_layout(_write(tmp_path, target_column="targets"))
    with pytest.raises(DataError) as err:
        load_profiles(tmp_path / "profiles.csv", layout, label_set="target")
    assert "hub.txt" in str(err.value) and "'target'" in str(err.value)


def test_consistency_of_a_moa_call_and_target_calls() -> None:
    links = {"HMGCR inhibitor": {"compounds": 4, "labels": {"HMGCR": 4, "SLCO1B1": 1}}}
    assert usual_labels(links, "HMGCR inhibitor") == ["HMGCR"]
    ok = consistency("HMGCR inhibitor", ["HMGCR", "EGFR"], links)
    assert ok["agree"] is True
    bad = consistency("HMGCR inhibitor", ["EGFR", "SLCO1B1"], links)
    assert bad["agree"] is False and bad["note"].startswith("called HMGCR inhibitor; top targets are not HMGCR")
    assert consistency("RAF inhibitor", ["BRAF"], links)["agree"] is None
    P_moa = np.array([[0.9, 0.1], [0.9, 0.1], [0.1, 0.9]])
    P_t = np.array([[0.8, 0.1], [0.1, 0.8], [0.5, 0.5]])
    agree = agreement(P_moa, ["HMGCR inhibitor", "RAF inhibitor"], P_t, ["HMGCR", "EGFR"], links, k=1)
    assert agree.tolist() == [1, 0, -1]
    tops = top_labels(np.array([[0.2, 0.7], [0.0, 0.0]]), ["A", "B"], k=1)
    assert tops == [[{"target": "B", "probability": 0.7}], []]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    from moa_predict.cli import main

    tmp = tmp_path_factory.mktemp("label_sets")
    layout = _write(tmp)
    assert main(["train", "--features", str(tmp / "profiles.csv"), "--layout", str(layout), "--model", "logreg",
                 "--folds", "4", "--out", str(tmp / "bundle"), "--shuffled-control", "permute"]) in (None, 0)
    return tmp


def test_train_fits_the_target_set_beside_the_moas(trained: Path) -> None:
    from moa_predict.bundle import load_bundle

    bundle = load_bundle(trained / "bundle")
    part = bundle.label_set("target")
    assert part is bundle.label_set()  # the only label set
    assert sorted(part.target_names) == ["EGFR", "ERBB2", "HMGCR"]
    assert sorted(bundle.target_names) == ["EGFR inhibitor", "HMGCR inhibitor"]
    assert part.info["cv"]["grouped_by_drug"] and part.info["cv"]["field"]["figures"]["top1_accuracy"]
    notes = part.info["training_data"]["notes"]
    assert notes["too_few_compounds"] == {"LONE": 1}
    assert part.info["links"]["HMGCR inhibitor"] == {"compounds": 8, "labels": {"HMGCR": 8}}
    # the same features and layout as the MoA model
    assert part.feature_columns == bundle.feature_columns and part.info["layout"] == bundle.info["layout"]


def test_predict_targets_out_has_the_ids_of_the_predictions(trained: Path) -> None:
    from moa_predict.cli import main

    out, targets, calls = trained / "p.csv", trained / "t.csv", trained / "tc.csv"
    main(["predict", "--bundle", str(trained / "bundle"), "--features", str(trained / "profiles.csv"), "--out",
          str(out), "--targets-out", str(targets), "--target-calls-out", str(calls), "--call-precision", "0.7",
          "--quiet"])
    pred, tp = pd.read_csv(out), pd.read_csv(targets)
    assert tp.iloc[:, 0].tolist() == pred.iloc[:, 0].tolist()
    assert sorted(tp.columns[1:]) == ["EGFR", "ERBB2", "HMGCR"]
    hmgcr = tp[tp.iloc[:, 0].str.startswith(("drug0_", "drug2_", "drug4_"))]
    assert (hmgcr["HMGCR"] > hmgcr["EGFR"]).all()  # the signal of the HMGCR compounds
    assert {"call", "estimated_precision"} <= set(pd.read_csv(calls).columns)


def test_targets_out_without_a_label_set_is_one_error(trained: Path, tmp_path: Path) -> None:
    from moa_predict.bundle import load_bundle, save_bundle

    bundle = load_bundle(trained / "bundle")
    bundle.label_sets = {}
    save_bundle(bundle, tmp_path / "plain")
    with pytest.raises(DataError, match="no 'target' label set"):
        load_bundle(tmp_path / "plain").label_set()
    assert json.loads((tmp_path / "plain" / "bundle.json").read_text())["target_names"] == bundle.target_names


def test_the_api_and_the_results_page_show_targets_beside_the_moas(trained: Path) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from moa_predict.web import create_app

    client = TestClient(create_app(trained / "bundle"), raise_server_exceptions=False)
    with open(trained / "profiles.csv", "rb") as handle:
        r = client.post("/api/predict", files={"file": ("profiles.csv", handle, "text/csv")})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["protein_targets"]["available"] and answer["protein_targets"]["n_targets"] == 3
    first = answer["predictions"][0]
    assert [t["target"] for t in first["protein_targets"]][:1] == ["HMGCR"]  # drug0: an HMGCR compound
    # all 3 targets are listed, so a usual target of either MoA is among them
    assert first["target_consistency"]["agree"] is True
    assert "target_call" in first
    page = client.get(f"/results/{answer['result_id']}")
    assert page.status_code == 200 and "protein targets for drug0_0" in page.text


def test_explain_a_target_call_in_genes(trained: Path) -> None:
    """`moa explain --label-set target`: the target model's calls explained by the input genes, as the MoAs are."""
    from moa_predict.cli import main

    out = trained / "explain.json"
    main(["explain", "--bundle", str(trained / "bundle"), "--label-set", "target", "--features",
          str(trained / "profiles.csv"), "--sig-id", "drug0_0", "--moa", "HMGCR", "--top", "3", "--neighbours", "0",
          "--out", str(out), "--quiet"])
    report = json.loads(out.read_text())
    assert report["attributions"]["available"]
    (explained,) = report["profiles"][0]["explanations"]
    assert explained["moa"] == "HMGCR"
    assert explained["completeness_ok"]
    top = max(explained["features"], key=lambda f: abs(f["attribution"]))
    assert top["feature"] in {"g_0", "g_1", "g_2"}  # a gene the HMGCR compounds move


def test_python_api_targets(trained: Path) -> None:
    import moa_predict.api as mp

    model = mp.load(trained / "bundle")
    frame = model.targets(trained / "profiles.csv", top=2)
    assert set(frame.columns[:3]) == {"EGFR", "ERBB2", "HMGCR"}
    assert frame.index[0] == "drug0_0" and frame["top_targets"].iloc[0].split("|")[0] == "HMGCR"
    assert set(frame["consistency"]) <= {""} | {n for n in frame["consistency"] if n.startswith("called ")}
