"""Compound-level calls on a hand-made case, and `moa explain` end to end."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from moa_predict.cli import main
from moa_predict.data.profiles import schema
from moa_predict.explain.compounds import compound_calls, compound_calls_json, find_compound_column


def _frame(compounds, types, times, doses):
    idx = pd.Index([f"id_{i}" for i in range(len(compounds))], name=schema.SIG_ID)
    return pd.DataFrame({schema.CP_TYPE: types, schema.CP_TIME: times, schema.CP_DOSE: doses,
                         "compound": compounds}, index=idx)


def test_compound_calls_hand_made():
    names = ["a", "b", "c"]
    features = _frame(["X", "X", "X", "Y", "Y", "X"],
                      [schema.TREATED] * 5 + [schema.CONTROL], [24, 48, 72, 24, 24, 24],
                      ["D1", "D1", "D2", "D1", "D2", "D1"])
    proba = np.array([
        [0.9, 0.2, 0.1],   # X: a first
        [0.5, 0.6, 0.1],   # X: b first
        [0.7, 0.1, 0.3],   # X: a first
        [0.1, 0.2, 0.8],   # Y: c first
        [0.2, 0.1, 0.6],   # Y: c first
        [0.0, 0.0, 0.0],   # a control of X: ignored
    ])
    calls = compound_calls(features, proba, names, top_k=1)
    x = calls[calls["compound"] == "X"].set_index("moa")
    assert list(x.index) == ["a", "b", "c"] and list(x["rank"]) == [1, 2, 3]
    assert x.loc["a", "mean_probability"] == pytest.approx(0.7)
    assert x.loc["a", "min_probability"] == pytest.approx(0.5) and x.loc["a", "max_probability"] == pytest.approx(0.9)
    assert x.loc["a", "top_k_fraction"] == pytest.approx(2 / 3) and x.loc["b", "top_k_fraction"] == pytest.approx(1 / 3)
    assert x.loc["a", "n_profiles"] == 3 and x.loc["a", "doses"] == "D1,D2" and x.loc["a", "times"] == "24,48,72"
    y = calls[calls["compound"] == "Y"].set_index("moa")
    assert y.index[0] == "c" and y.loc["c", "top_k_fraction"] == 1.0
    assert y.loc["c", "mean_probability"] == pytest.approx(0.7)
    out = compound_calls_json(calls, top_k=1)
    json.dumps(out)
    assert [c["compound"] for c in out] == ["X", "Y"]  # X's best mean (0.7) ties Y's: stable order
    assert out[0]["moas"][0] == {"rank": 1, "moa": "a", "mean_probability": 0.7, "min_probability": 0.5,
                                 "max_probability": 0.9, "top_k_fraction": 0.6667}
    assert out[1]["doses"] == ["D1", "D2"] and out[1]["times"] == [24]
    assert x.loc["a", "no_confident"] == 0 and out[0]["no_confident"] == 0
    # only confident calls agree: at 0.65, X's a agrees in 2 profiles (0.9, 0.7), b in none (0.6); Y's second
    # profile (best 0.6) has no confident MoA
    sure = compound_calls(features, proba, names, top_k=1, min_probability=0.65)
    x, y = (sure[sure["compound"] == c].set_index("moa") for c in ("X", "Y"))
    assert x.loc["a", "top_k_fraction"] == pytest.approx(2 / 3) and x.loc["b", "top_k_fraction"] == 0
    assert y.loc["c", "top_k_fraction"] == pytest.approx(1 / 2)
    assert (x.loc["a", "no_confident"], y.loc["c", "no_confident"]) == (1, 1)


def test_compound_column_detection():
    f = _frame(["X"], [schema.TREATED], [24], ["D1"])
    assert find_compound_column(f) == "compound"
    assert find_compound_column(f.rename(columns={"compound": schema.DRUG_ID})) == schema.DRUG_ID
    assert find_compound_column(f.drop(columns="compound")) is None
    assert compound_calls(f.drop(columns="compound"), np.ones((1, 2)), ["a", "b"]).empty
    with pytest.raises(Exception, match="no column 'nope'"):
        find_compound_column(f, "nope")


@pytest.fixture(scope="module")
def explain_workdir(tmp_path_factory, sim_dir):
    """A prior bundle (no attributions) and the test features with a compound column."""
    work = tmp_path_factory.mktemp("explain_cli")
    assert main(["train", "--data", str(sim_dir), "--model", "prior", "--no-cv", "--out", str(work / "b")]) == 0
    test = pd.read_csv(sim_dir / "test_features.csv")
    test = pd.concat([test, pd.Series([f"cpd{i // 6}" for i in range(len(test))], name="compound")], axis=1)
    test.to_csv(work / "upload.csv", index=False)
    return work


def test_moa_explain_cli_without_attributions(explain_workdir, capsys):
    work = explain_workdir
    code = main(["explain", "--bundle", str(work / "b"), "--features", str(work / "upload.csv"), "--out",
                 str(work / "out.json"), "--neighbours", "4", "--top", "3"])
    err = capsys.readouterr().err
    assert code == 0 and "no attributions" in err and "not a differentiable network" in err
    report = json.loads((work / "out.json").read_text())
    assert report["attributions"]["available"] is False and report["reference"]["available"] is True
    assert report["compound_column"] == "compound" and len(report["compounds"]) == 17
    p = report["profiles"][0]
    assert len(p["neighbours"]) == 4 and set(p["ood"]) >= {"flag", "distance", "threshold"}
    assert p["compound"] == "cpd0" and len(p["predictions"]) == 3
    # one profile, one MoA
    sig = p["sig_id"]
    code = main(["explain", "--bundle", str(work / "b"), "--features", str(work / "upload.csv"), "--out",
                 str(work / "one.json"), "--sig-id", sig])
    assert code == 0 and [q["sig_id"] for q in json.loads((work / "one.json").read_text())["profiles"]] == [sig]
    code = main(["explain", "--bundle", str(work / "b"), "--features", str(work / "upload.csv"), "--out",
                 str(work / "bad.json"), "--sig-id", "id_nope"])
    assert code == 2 and "id_nope" in capsys.readouterr().err
