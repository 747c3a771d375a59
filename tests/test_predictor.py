"""``bundle.Predictor``: one path from profiles to answers. The CLI's files, the notebook API and the web API give
the answers of one ``Result`` (probabilities, OOD flags, MoA sets, confident calls), and a bundle that cannot answer
a question says so (strict) or leaves the answer out."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from moa_predict.bundle import Predictor, load_bundle
from moa_predict.bundle.predictor import id_column
from moa_predict.cli import main
from moa_predict.data.profiles import schema
from moa_predict.data.errors import DataError
from moa_predict.data.profiles.layout import Layout
from moa_predict.trust.model import UNLIKE


@pytest.fixture(scope="module")
def bundle_path(prior_bundle):
    return prior_bundle


@pytest.fixture(scope="module")
def upload(noisy_upload, tmp_path_factory):
    """Test profiles plus one garbage row (noise: out of distribution), as a file."""
    path = tmp_path_factory.mktemp("predictor_in") / "in.csv"
    noisy_upload.to_csv(path, index=False)
    return path


def test_a_lish_moa_bundle_has_the_lish_moa_layout(bundle_path) -> None:
    bundle = load_bundle(bundle_path)
    assert bundle.layout == Layout.lish_moa() and bundle.layout.is_lish_moa
    assert id_column(bundle) == schema.SIG_ID


def test_every_shell_gives_the_answers_of_one_result(bundle_path, upload, tmp_path) -> None:
    bundle = load_bundle(bundle_path)
    features = bundle.read_profiles(upload)
    result = Predictor(bundle, sets=True, calls=True, keep_columns=True).predict(features)
    assert result.proba.shape == (len(features), len(bundle.target_names))
    assert result.ood is not None and bool(result.ood["ood"].iloc[-1])  # the noise row
    assert result.abstentions[-1] == UNLIKE and not result.sets[-1].any()

    # moa predict: the three files are the Result's tables
    out, sets, calls = tmp_path / "p.csv", tmp_path / "s.csv", tmp_path / "c.csv"
    assert main(["predict", "--bundle", str(bundle_path), "--features", str(upload), "--out", str(out),
                 "--keep-columns", "--sets-out", str(sets), "--calls-out", str(calls), "--quiet"]) == 0
    read = {"dtype": {"sig_id": str}, "keep_default_na": False}
    files = {"p": pd.read_csv(out, **read), "s": pd.read_csv(sets, **read), "c": pd.read_csv(calls, **read)}
    for key, table in {"p": result.written(True), "s": result.set_frame(), "c": result.call_frame()}.items():
        buffer = tmp_path / f"{key}_result.csv"
        table.to_csv(buffer, index=False)
        pd.testing.assert_frame_equal(files[key], pd.read_csv(buffer, **read))

    # the notebook API
    import moa_predict as mp

    api = mp.load(bundle_path).predict(upload)
    assert api["moa_set"].tolist() == result.set_frame()["moa_set"].tolist()
    assert api["call"].tolist() == result.calls["call"].tolist()
    assert api["ood"].tolist() == result.ood["ood"].tolist()

    # the web API
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from moa_predict.web import create_app

    client = TestClient(create_app(bundle_path), raise_server_exceptions=False)
    r = client.post("/api/predict", files={"file": ("in.csv", upload.read_bytes(), "text/csv")})
    assert r.status_code == 200, r.text
    rows = r.json()["predictions"]
    assert ["|".join(sorted(row["moa_set"])) for row in rows] == [
        "|".join(sorted(m for m in s.split("|") if m)) for s in result.set_frame()["moa_set"]]
    assert [row["abstention"] for row in rows] == result.abstentions
    assert [row["ood"] for row in rows] == result.ood["ood"].tolist()
    assert [row["call"]["call"] for row in rows] == [c or None for c in result.calls["call"]]


def test_sets_and_calls_abstain_on_ood_profiles_without_the_ood_columns(bundle_path, upload) -> None:
    bundle = load_bundle(bundle_path)
    features = bundle.read_profiles(upload)
    result = Predictor(bundle, ood=False, sets=True, calls=True).predict(features)
    assert "ood" not in result.frame.columns
    assert result.abstentions[-1] == UNLIKE and result.calls["reason"].iloc[-1] == UNLIKE


def test_a_bundle_without_calibration_fails_strict_and_is_left_out_otherwise(bundle_path, upload) -> None:
    bundle = dataclasses.replace(load_bundle(bundle_path), trust=None)
    features = bundle.read_profiles(upload)
    with pytest.raises(DataError, match="no MoA-set calibration"):
        Predictor(bundle, sets=True)
    with pytest.raises(DataError, match="no calibrated calls"):
        Predictor(bundle, calls=True)
    result = Predictor(bundle, sets=True, calls=True, strict=False).predict(features)
    assert result.sets is None and result.calls is None and result.ood is not None


def test_a_bad_level_fails_before_any_work(bundle_path) -> None:
    bundle = load_bundle(bundle_path)
    with pytest.raises(DataError, match="set level"):
        Predictor(bundle, sets=True, set_level=0.2)
    with pytest.raises(DataError, match="call precision"):
        Predictor(bundle, calls=True, call_precision=0.77)
    with pytest.raises(DataError, match="no 'target' label set"):
        Predictor(bundle, targets=True)
