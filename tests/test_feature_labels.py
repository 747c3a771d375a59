"""Explanations name features for people (gene symbol and Entrez id, cell line and tissue) and keep the g-/c-
column for programs: `moa explain` JSON, attributions and the per-MoA global view."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from moa_predict.cli.main import main
from moa_predict.data import identities


@pytest.fixture(scope="module")
def mlp_bundle_dir(sim_dataset, tmp_path_factory):
    """A tiny MLP bundle (attributions need a network), written as `moa train` would."""
    from moa_predict.models import make_model
    from moa_predict.bundle import save_bundle
    from moa_predict.training.train import train_bundle

    model = make_model("mlp", hidden=(16,), epochs=1, g_pca=4, c_pca=2, batch_size=64)
    bundle, _ = train_bundle(model, sim_dataset, cv=False, progress=False, reference=False)
    return save_bundle(bundle, tmp_path_factory.mktemp("labels") / "b")


def _named(feature: dict) -> None:
    """One feature entry of an explanation: machine name, label and identity agree with the shipped tables."""
    name = feature["feature"]
    assert feature["label"] == identities.feature_label(name)
    assert feature["info"] == identities.feature_info(name)
    if name.startswith("g-"):
        gene = identities.genes()[int(name[2:])]
        assert feature["label"] == f"{gene.symbol} ({gene.entrez})" and feature["info"]["kind"] == "gene"
    elif name.startswith("c-"):
        assert feature["info"]["kind"] == "cell_line" and feature["label"].startswith(feature["info"]["cell_line"])
    else:
        assert feature["label"] == name and feature["info"]["kind"] == "other"


def test_moa_explain_json_labels_every_feature(mlp_bundle_dir, sim_dir, tmp_path, capsys):
    upload = pd.read_csv(sim_dir / "test_features.csv").head(4)
    upload.to_csv(tmp_path / "u.csv", index=False)
    out = tmp_path / "out.json"
    code = main(["explain", "--bundle", str(mlp_bundle_dir), "--features", str(tmp_path / "u.csv"), "--out", str(out),
                 "--top", "877", "--top-moas", "1", "--steps", "8", "--neighbours", "0", "--global-data", str(sim_dir)])
    assert code == 0, capsys.readouterr().err
    report = json.loads(out.read_text())
    features = [f for p in report["profiles"] for e in p["explanations"] for f in e["features"]]
    assert features, "no attribution in the report"
    kinds = {f["info"]["kind"] for f in features}
    assert kinds == {"gene", "cell_line"}  # all 872 features of a profile (dose and time are in `dose_time`)
    for f in features:
        _named(f)
    by_name = {f["feature"]: f for f in features}
    assert by_name["g-0"]["label"] == "AARS1 (16)" and by_name["c-0"]["label"] == "HEYA8 (ovary)"
    global_view = [f for view in report["global"].values() for f in view["features"]]
    assert global_view
    for f in global_view:
        _named(f)


def test_block_summary_names_examples():
    from moa_predict.data.profiles import schema

    blocks = identities.block_summary(list(schema.FEATURE_COLUMNS))
    assert [b["count"] for b in blocks] == [772, 100]
    assert blocks[0]["text"].startswith("772 L1000 landmark genes, each named by its gene symbol with its Entrez Gene id in brackets (e.g. AARS1 (16), ")
    assert blocks[1]["text"].startswith("100 cancer cell lines (CCLE")
    assert "HEYA8 (ovary)" in blocks[1]["text"]
