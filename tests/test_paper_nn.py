"""The paper's net (shapes, Table 6 parameter counts, Keras defaults, persistence) and `moa benchmark paper`."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from torch import nn

from moa_predict.bundle import Bundle, load_bundle, save_bundle
from moa_predict.cli import main
from moa_predict.data.profiles import schema
from moa_predict.training.crossval import cross_validate
from moa_predict.benchmarks.paper import Grid, run_paper_benchmark
from moa_predict.benchmarks.paper_report import write_outputs
from moa_predict.models import make_model
from moa_predict.models.paper_nn import PaperNet, keras_parameter_counts
from moa_predict.runtime.threads import limit_threads


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """The tiny nets here train fastest on one thread (and the test machine is shared)."""
    with limit_threads(1):
        yield


@pytest.fixture(scope="module")
def simdir(tmp_path_factory):
    from moa_predict.simulate import simulate, write_simulated

    d = tmp_path_factory.mktemp("sim")
    write_simulated(simulate(n_train=300, n_test=50, seed=0), d)
    return d


@pytest.fixture(scope="module")
def sim(simdir):
    from moa_predict.data.profiles.dataset import load_dataset

    return load_dataset(simdir), load_dataset(simdir, split="test").features


def test_layers_and_table6_parameter_counts():
    net = PaperNet(875, 206)
    counts = keras_parameter_counts(net)
    assert [c for _, c in counts] == [112_128, 512, 8_256, 256, 13_390]
    assert sum(c for _, c in counts) == 134_542
    assert sum(p.numel() for p in net.parameters()) == 134_542 - 2 * (128 + 64)  # moving mean/var are buffers
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert [tuple(m.weight.shape) for m in linears] == [(128, 875), (64, 128), (206, 64)]
    kinds = [type(m).__name__ for m in net.layers]
    assert kinds == ["Linear", "ReLU", "Dropout", "BatchNorm1d"] * 2 + ["Linear"]
    for m in net.modules():
        if isinstance(m, nn.BatchNorm1d):  # Keras: momentum 0.99 (torch 0.01), epsilon 1e-3
            assert m.momentum == pytest.approx(0.01) and m.eps == pytest.approx(1e-3)
        if isinstance(m, nn.Dropout):
            assert m.p == 0.5
    for m in linears:  # glorot-uniform weights, zero bias
        assert (m.bias == 0).all()
        assert m.weight.abs().max() <= math.sqrt(6 / (m.in_features + m.out_features))


def test_published_training_settings():
    model = make_model("paper-nn")
    assert model.trains_on_controls
    cfg = model.train
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.adam_eps, cfg.optimizer, cfg.label_smoothing, cfg.schedule) == \
        (75, 100, 1e-3, 1e-7, "adam", 0.0, "none")


def test_fit_predict_deterministic_and_bundle_round_trip(sim, tmp_path):
    train, test = sim
    Y = train.targets.to_numpy()
    model = make_model("paper-nn", epochs=2, seed=3).fit(train.features, Y)
    assert model.n_inputs_ == 875
    p = model.predict_proba(test)
    assert p.shape == (len(test), 206) and (p >= 0).all() and (p <= 1).all()
    assert (p[(test[schema.CP_TYPE] == schema.CONTROL).to_numpy()] == 0).all()
    again = make_model("paper-nn", epochs=2, seed=3).fit(train.features, Y).predict_proba(test)
    np.testing.assert_array_equal(again, p)  # seeded, weight initialisation included
    path = save_bundle(Bundle(model, train.target_names, train.feature_columns), tmp_path / "nn")
    np.testing.assert_array_equal(load_bundle(path).predict_proba(test), p)


def test_snapshots_equal_training_that_long(sim):
    train, test = sim
    Y = train.targets.to_numpy()
    _, snaps = make_model("paper-nn", seed=1).fit_snapshots(train.features, Y, test, [1, 3])
    direct = make_model("paper-nn", epochs=1, seed=1).fit(train.features, Y).predict_proba(test)
    np.testing.assert_allclose(snaps[1], direct, atol=1e-6)
    assert sorted(snaps) == [1, 3]


def test_benchmark_agrees_with_models_and_writes_outputs(sim, tmp_path):
    train, _ = sim
    grid = Grid(brknn_a=(3, 5), brknn_b=(3, 40), ml_knn=(2, 5), epochs=(1, 2))
    report = run_paper_benchmark(train, grid=grid, progress=False, command="test")
    t = report["tables"]
    checks = [("brknn-a", {"k": 5}, "labels"), ("brknn-a", {"k": 3, "output": "frequencies"}, "frequencies"),
              ("brknn-b", {"k": 40}, "labels"), ("ml-knn", {"k": 5}, "probabilities"),
              ("ml-knn", {"k": 2, "output": "labels"}, "labels"), ("paper-nn", {"epochs": 2}, "probabilities")]
    for name, params, output in checks:
        cv = cross_validate(make_model(name, **params), train, progress=False)
        value = params.get("k", params.get("epochs"))
        row = next(r for r in t[name] if r.get("k", r.get("epochs")) == value)
        assert row[output] == pytest.approx(cv.score, rel=1e-6), (name, params)
    assert report["prior"]["score"] == pytest.approx(cross_validate(make_model("prior"), train, progress=False).score)
    assert [s["model"] for s in report["summary"]] == ["prior", "brknn-a", "brknn-b", "ml-knn", "paper-nn"]
    assert report["data"]["fingerprint"] == train.fingerprint() and report["grouped_by_drug"]
    paths = write_outputs(report, tmp_path / "paper")
    assert {p.name for p in paths} == {"paper_tables.json", "paper_tables.md", "paper_summary.png",
                                       "paper_summary.html", "paper_grids.png"}
    assert json.loads((tmp_path / "paper" / "paper_tables.json").read_text())["command"] == "test"
    html = (tmp_path / "paper" / "paper_summary.html").read_text()
    assert '<script src="http' not in html and len(html) > 1_000_000  # plotly.js inline, no CDN
    assert "0.10518" in (tmp_path / "paper" / "paper_tables.md").read_text()


def test_cli_train_predict(simdir, tmp_path):
    for name, params in (("paper-nn", ["--param", "epochs=1"]), ("ml-knn", ["--param", "k=7"])):
        assert main(["train", "--data", str(simdir), "--model", name, "--no-cv", "--out", str(tmp_path / name),
                     *params]) == 0
        out = tmp_path / f"{name}.csv"
        assert main(["predict", "--bundle", str(tmp_path / name), "--features", str(simdir / "test_features.csv"),
                     "--out", str(out)]) == 0
        pred = pd.read_csv(out)
        assert pred.shape == (50, 207)


def test_cli_benchmark_group_wiring():
    from moa_predict.cli.main import build_parser, cmd_benchmark_paper

    args = build_parser().parse_args(["benchmark", "paper", "--data", "d", "--quick"])
    assert args.func is cmd_benchmark_paper and args.quick and args.out == "docs/paper" and args.torch_threads == 1
