"""The notebook API (``import moa_predict as mp``): the CLI's answers as DataFrames, through the same reader."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import moa_predict as mp
from moa_predict.cli import main
from moa_predict.data.builtin import L1000_EXAMPLES
from moa_predict.data.profiles.layout import Block, Controls, Layout


@pytest.fixture(scope="module")
def lish_model(prior_bundle):
    return mp.load(prior_bundle)


def test_predict_a_dataframe_equals_moa_predict_on_the_file(lish_model, sim_dir, tmp_path):
    test = pd.read_csv(sim_dir / "test_features.csv", dtype={"sig_id": str}).head(40)
    res = lish_model.predict(test)
    test.to_csv(tmp_path / "t.csv", index=False)
    assert main(["predict", "--bundle", str(lish_model.bundle_.path), "--features", str(tmp_path / "t.csv"),
                 "--out", str(tmp_path / "p.csv"), "--quiet"]) == 0
    cli = pd.read_csv(tmp_path / "p.csv", dtype={"sig_id": str}).set_index("sig_id")
    assert res.index.tolist() == test["sig_id"].tolist()
    np.testing.assert_allclose(res[lish_model.moas].to_numpy(), cli[lish_model.moas].to_numpy(), rtol=0, atol=1e-6)
    for column in ("call", "call_precision", "call_reason", "moa_set", "set_abstention", "ood", "ood_reason"):
        assert column in res.columns
    controls = test["cp_type"].eq("ctl_vehicle").to_numpy()
    assert (res.loc[controls, "call_reason"] != "").all() and (res.loc[controls, "call"].fillna("") == "").all()


def test_bad_dataframes_get_the_files_errors(lish_model, sim_dir):
    test = pd.read_csv(sim_dir / "test_features.csv", dtype={"sig_id": str}).head(5)
    with pytest.raises(mp.DataError, match="g-3"):
        lish_model.predict(test.drop(columns=["g-3"]))
    bad = test.astype({"g-0": object})
    bad.loc[2, "g-0"] = "oops"
    with pytest.raises(mp.DataError) as err:
        lish_model.predict(bad)
    assert err.value.row == 3 and err.value.column == "g-0"
    with pytest.raises(TypeError, match="DataFrame or a file path"):
        lish_model.predict([1, 2, 3])


def test_the_builtin_reference_from_a_notebook(tmp_path):
    model = mp.load()  # l1000-reference, shipped
    examples = pd.read_csv(L1000_EXAMPLES)
    res = model.predict(examples)
    assert len(res) == len(examples) and "RAF inhibitor" in res.columns and res["ood"].dtype == bool
    by_drug = model.predict(examples, level="compound")
    assert "vemurafenib" in by_drug["pert_iname"].str.lower().tolist()
    top = by_drug.set_index(by_drug["pert_iname"].str.lower())[model.moas].idxmax(axis=1)
    assert top["vemurafenib"] == "RAF inhibitor"
    report = model.explain(examples.head(1), moa="HMGCR inhibitor", neighbours=3)
    assert report["profiles"][0]["explanations"]
    with pytest.raises(mp.DataError, match="not one this model predicts"):
        model.explain(examples.head(1), moa="no such MoA")


def test_normalize_is_the_layouts_profiling_step_alone():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"well": [f"w{i}" for i in range(40)], "plate": ["p1"] * 20 + ["p2"] * 20,
                          "kind": (["dmso"] * 8 + ["drug"] * 12) * 2})
    for j in range(5):
        frame[f"f{j}"] = rng.normal(10 + j, 2, 40) + np.where(frame["plate"] == "p2", 5.0, 0.0)
    layout = Layout(name="plates", id=("well",), plate="plate", controls=Controls("kind", ("dmso",)),
                    blocks=(Block("features", prefix="f"),), normalize="robust_z")
    out = mp.normalize(frame, layout)
    assert list(out.index) == frame["well"].tolist() and (out["cp_type"] == "ctl_vehicle").sum() == 16
    for plate in ("p1", "p2"):  # each plate centred on its own control wells
        controls = out[(frame["plate"].to_numpy() == plate) & (out["cp_type"].to_numpy() == "ctl_vehicle")]
        assert np.allclose(controls[[f"f{j}" for j in range(5)]].median(), 0, atol=1e-6)
