"""The network estimator: hyper-parameters visible to clone, one seeding path, no global side effects,
OneCycle for any number of steps, the device kept out of bundles, and bundles of the previous format."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.base import clone

from moa_predict.data.profiles.dataset import load_features
from moa_predict.models import make_model
from moa_predict.models.training import TrainConfig, exact_float32, one_cycle
from moa_predict.bundle import load_bundle, save_bundle
from moa_predict.training.train import train_bundle

FIXTURES = Path(__file__).parent / "fixtures"
TINY = {"hidden": [16], "g_pca": 4, "c_pca": 2, "epochs": 2, "batch_size": 64}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _plain(params: dict) -> dict:
    """Hyper-parameters as values (nested estimators are compared through their own params)."""
    return {k: v for k, v in params.items() if not hasattr(v, "get_params")}


def test_clone_and_get_params_see_every_setting():
    model = make_model("mlp", epochs=4, hidden=[8], g_pca=3, lr=2e-3, seed=5)
    params = model.get_params()
    assert params["train__epochs"] == 4 and params["train__lr"] == 2e-3
    assert params["inputs__g_pca"] == 3 and params["module_params"]["hidden"] == [8] and params["seed"] == 5
    copy = clone(model)
    assert _plain(copy.get_params()) == _plain(params)
    copy.set_params(train__epochs=9, inputs__c_pca=1)  # nested form; the original is untouched
    assert (copy.train.epochs, copy.inputs.c_pca) == (9, 1)
    assert (model.train.epochs, model.inputs.c_pca) == (4, 15)
    # flat (CLI, member specs, old bundles) and nested forms give the same model
    nested = make_model("mlp", train__epochs=4, module_params={**model.module_params}, inputs__g_pca=3,
                        train__lr=2e-3, seed=5)
    assert _plain(nested.get_params()) == _plain(params)


def test_unknown_parameter_is_a_clear_error():
    with pytest.raises(TypeError, match="no parameter 'hiden'"):
        make_model("mlp", hiden=[8])
    with pytest.raises(TypeError, match="not a hyper-parameter"):
        make_model("mlp", device="cuda")


def test_seed_alone_decides_the_fit(sim_dataset):
    X, Y = sim_dataset.features, sim_dataset.targets.to_numpy(np.float32)
    a = make_model("mlp", **TINY, seed=1).fit(X, Y).predict_proba(X)
    torch.rand(1000)  # whatever ran before in the process does not matter...
    b = make_model("mlp", **TINY, seed=1).fit(X, Y).predict_proba(X)
    c = make_model("mlp", **TINY, seed=2).fit(X, Y).predict_proba(X)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    torch.manual_seed(0)
    state = torch.get_rng_state()
    make_model("mlp", **TINY, seed=1).fit(X, Y)
    assert torch.equal(torch.get_rng_state(), state)  # ...and a fit leaves torch's generator as it was


def test_n_seeds_are_seed_plus_index(sim_dataset):
    X, Y = sim_dataset.features, sim_dataset.targets.to_numpy(np.float32)
    two = make_model("logreg", g_pca=4, c_pca=2, epochs=2, batch_size=64, n_seeds=2, seed=3).fit(X, Y)
    one = make_model("logreg", g_pca=4, c_pca=2, epochs=2, batch_size=64, seed=4).fit(X, Y)
    for p, q in zip(two.modules_[1].state_dict().values(), one.modules_[0].state_dict().values()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


@pytest.mark.parametrize("total", [1, 5, 9, 10, 11])
def test_one_cycle_runs_for_any_number_of_steps(total):
    opt = torch.optim.Adam(torch.nn.Linear(2, 2).parameters(), lr=1e-3)
    sched = one_cycle(opt, 1e-2, total)
    for _ in range(total):
        opt.step()
        sched.step()
    if total != 10:  # torch's own schedule, unchanged, where it did not crash
        ref_opt = torch.optim.Adam(torch.nn.Linear(2, 2).parameters(), lr=1e-3)
        ref = torch.optim.lr_scheduler.OneCycleLR(ref_opt, max_lr=1e-2, total_steps=total, pct_start=0.1,
                                                  div_factor=1e3)
        for _ in range(total):
            ref_opt.step()
            ref.step()
        assert ref.get_last_lr() == sched.get_last_lr()


def test_ten_onecycle_steps_train(sim_dataset):
    """One batch per epoch × 10 epochs: torch's OneCycleLR divided by zero here."""
    X, Y = sim_dataset.features, sim_dataset.targets.to_numpy(np.float32)
    model = make_model("logreg", g_pca=4, c_pca=2, epochs=10, batch_size=1024).fit(X, Y)
    assert len(model.history_[0]) == 10 and np.isfinite(model.history_[0]).all()


def test_tf32_flags_restored():
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        with exact_float32(torch.device("cuda")):
            assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def test_fit_leaves_tf32_flags(sim_dataset):
    X, Y = sim_dataset.features, sim_dataset.targets.to_numpy(np.float32)
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    device = "cuda" if torch.cuda.is_available() else "cpu"
    make_model("mlp", **TINY).fit(X, Y, device=device).predict_proba(X, device=device)
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before


def test_device_is_not_saved(sim_dataset, tmp_path):
    bundle, _ = train_bundle(make_model("mlp", **TINY), sim_dataset, cv=False, progress=False, reference=False,
                             device="cpu")
    path = save_bundle(bundle, tmp_path / "b")
    params = json.loads((path / "bundle.json").read_text())["model"]["params"]
    assert "device" not in json.dumps(params)
    assert params["train"]["epochs"] == 2 and params["inputs"]["g_pca"] == 4
    loaded = load_bundle(path)
    assert isinstance(loaded.model.train, TrainConfig)
    X = sim_dataset.features
    np.testing.assert_array_equal(loaded.predict_proba(X), bundle.predict_proba(X))


def test_bundle_of_the_previous_format_loads_and_predicts(sim_dir, tmp_path):
    """tests/fixtures/old_bundle_blend was written by the code before the redesign (make_old_bundle.py):
    flat member parameters and ``device`` among the blend's parameters."""
    path = shutil.copytree(FIXTURES / "old_bundle_blend", tmp_path / "old")
    assert json.loads((path / "bundle.json").read_text())["model"]["params"]["device"] == "cpu"
    bundle = load_bundle(path)
    test = load_features(sim_dir / "test_features.csv").iloc[:8]
    # written with 2 torch threads; this module runs 1, which rounds a few sums differently (1 float32 ulp)
    np.testing.assert_allclose(bundle.predict_proba(test), np.load(FIXTURES / "old_bundle_blend_expected.npy"),
                               rtol=0, atol=1e-6)
    resaved = save_bundle(bundle, tmp_path / "new")
    assert "device" not in json.loads((resaved / "bundle.json").read_text())["model"]["params"]
    np.testing.assert_array_equal(load_bundle(resaved).predict_proba(test), bundle.predict_proba(test))
