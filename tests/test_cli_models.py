"""The `moa` command with real (small) models: a network and a blend trained, predicted and explained through
the CLI give what the library gives, and `--seed` reaches the networks."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from moa_predict.cli import main
from moa_predict.data.profiles.dataset import load_features
from moa_predict.bundle import load_bundle

TINY_MLP = ["--param", "hidden=[16]", "--param", "epochs=4", "--param", "batch_size=64", "--param", "g_pca=8",
            "--param", "c_pca=4", "--param", "aux=false"]

# each test trains networks through the CLI (a minute or more on 2 busy cores): full suite only; the fast set
# trains networks through the CLI in test_paper_nn.py and test_layout.py
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory, sim_dir):
    out = tmp_path_factory.mktemp("cli_models") / "mlp"
    assert main(["train", "--data", str(sim_dir), "--model", "mlp", "--folds", "3", "--out", str(out),
                 *TINY_MLP]) == 0
    return out


def test_a_network_round_trips_through_the_cli(trained, sim_dir, tmp_path):
    report = json.loads((trained / "cv_report.json").read_text())
    assert report["model"] == "mlp" and report["folds"] == 3 and np.isfinite(report["score"])
    skill = report["per_target_skill"]
    assert set(report["not_predictable"]) == {k for k, v in skill.items() if not v["predictable"]}
    out = tmp_path / "pred.csv"
    assert main(["predict", "--bundle", str(trained), "--features", str(sim_dir / "test_features.csv"),
                 "--out", str(out), "--quiet"]) == 0
    cli = pd.read_csv(out).set_index("sig_id")
    bundle = load_bundle(trained)
    lib = bundle.predict_frame(load_features(sim_dir / "test_features.csv")).set_index("sig_id")
    assert list(cli.columns) == bundle.target_names
    np.testing.assert_allclose(cli.to_numpy(), lib.to_numpy(), atol=1e-7)  # CSV keeps ~17 significant digits
    features = load_features(sim_dir / "test_features.csv")
    treated = features.index[features["cp_type"] == "trt_cp"][0]
    explained = tmp_path / "explain.json"
    assert main(["explain", "--bundle", str(trained), "--features", str(sim_dir / "test_features.csv"),
                 "--sig-id", treated, "--out", str(explained)]) == 0
    doc = json.loads(explained.read_text())
    assert treated in json.dumps(doc)


def test_seed_reaches_the_network(sim_dir, tmp_path):
    """`moa train --seed` seeds the folds and the network: another seed, another model."""
    runs = {}
    for seed in (0, 1):
        out = tmp_path / f"s{seed}"
        assert main(["train", "--data", str(sim_dir), "--model", "mlp", "--no-cv", "--seed", str(seed),
                     "--out", str(out), *TINY_MLP]) == 0
        runs[seed] = load_bundle(out)
    assert runs[0].model.get_params()["seed"] == 0 and runs[1].model.get_params()["seed"] == 1
    features = load_features(sim_dir / "test_features.csv")
    assert not np.allclose(runs[0].predict_proba(features), runs[1].predict_proba(features))
