"""The `moa` command end to end, in-process: simulate -> train -> predict -> evaluate, and its error path."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from moa_predict.cli import main
from moa_predict.data import schema
from moa_predict.evaluation.metrics import columnwise_log_loss


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def simulated(workdir, sim_dir):
    data = workdir / "data"
    assert main(["simulate", "--out", str(data), "--rows", "600", "--test-rows", "100", "--seed", "0"]) == 0
    return data


@pytest.fixture(scope="module")
def bundle(workdir, simulated):
    out = workdir / "bundle"
    assert main(["train", "--data", str(simulated), "--model", "prior", "--out", str(out)]) == 0
    return out


def test_simulate_writes_the_layout_deterministically(simulated, sim_dir):
    for stem in (schema.TRAIN_FEATURES, schema.TARGETS_SCORED, schema.TARGETS_NONSCORED, schema.DRUGS,
                 schema.TEST_FEATURES, schema.SAMPLE_SUBMISSION):
        path = simulated / f"{stem}.csv"
        assert path.is_file(), stem
        assert path.read_bytes() == (sim_dir / path.name).read_bytes(), f"{stem} differs for the same seed"


def test_train_writes_bundle_and_cv_report(bundle):
    assert (bundle / "bundle.json").is_file() and (bundle / "weights.safetensors").is_file()
    report = json.loads((bundle / "cv_report.json").read_text())
    assert report["model"] == "prior" and report["folds"] == 5 and report["grouped_by_drug"] is True
    assert 0 < report["score"] < 0.1 and "treated rows" in report["rows"]
    assert report["command"].startswith("moa ")


def test_predict_and_evaluate(capsys, workdir, simulated, bundle):
    preds = workdir / "preds.csv"
    code, _, err = _run(capsys, "predict", "--bundle", bundle, "--features", simulated / "test_features.csv",
                        "--out", preds)
    assert code == 0 and "wrote 100 predictions" in err
    frame = pd.read_csv(preds)
    sample = pd.read_csv(simulated / "sample_submission.csv")
    assert list(frame.columns) == list(sample.columns) and len(frame) == 100
    test = pd.read_csv(simulated / "test_features.csv")
    assert (frame[test["cp_type"] == schema.CONTROL].iloc[:, 1:] == 0).all().all()

    scores = workdir / "scores.json"
    code, out, _ = _run(capsys, "evaluate", "--predictions", preds, "--targets", simulated / "test_targets_scored.csv",
                        "--features", simulated / "test_features.csv", "--out", scores)
    assert code == 0 and "mean column-wise log loss" in out
    result = json.loads(scores.read_text())
    truth = pd.read_csv(simulated / "test_targets_scored.csv").set_index(schema.SIG_ID)
    treated = (test.set_index(schema.SIG_ID).loc[truth.index, "cp_type"] == schema.TREATED).to_numpy()
    p = frame.set_index(schema.SIG_ID).loc[truth.index, truth.columns].to_numpy()
    expected = columnwise_log_loss(truth.to_numpy()[treated], p[treated]).mean()
    assert result["score"] == pytest.approx(expected, rel=1e-6)
    assert f"{int(treated.sum())} treated rows" in result["rows"]


def test_predict_keeps_extra_columns_and_writes_parquet(capsys, workdir, simulated, bundle):
    test = pd.read_csv(simulated / "test_features.csv").copy()  # copy: one block, so insert does not warn
    test.insert(1, "compound", [f"cmpd-{i}" for i in range(len(test))])
    src = workdir / "with_compound.parquet"
    test.to_parquet(src)
    out = workdir / "kept.parquet"
    assert _run(capsys, "predict", "--bundle", bundle, "--features", src, "--out", out, "--keep-columns")[0] == 0
    frame = pd.read_parquet(out)
    assert frame.columns[0] == schema.SIG_ID and frame.columns[-1] == "compound"
    assert list(frame["compound"]) == list(test["compound"])
    # evaluate reads only the target columns, so the extra column does not get in the way
    code, out_text, err = _run(capsys, "evaluate", "--predictions", out,
                               "--targets", simulated / "test_targets_scored.csv")
    assert code == 0, err
    assert "all 100 rows" in out_text


def _assert_one_error_line(code: int, err: str, *parts: str) -> None:
    assert code == 2
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for part in parts:
        assert part in lines[0]


def test_bad_features_file_is_one_error_line(capsys, workdir, bundle):
    bad = workdir / "bad.csv"
    bad.write_text("sig_id,cp_type\nid_1,trt_cp\n")
    code, _, err = _run(capsys, "predict", "--bundle", bundle, "--features", bad, "--out", workdir / "x.csv")
    _assert_one_error_line(code, err, "bad.csv: missing column(s) 'cp_time'")  # long message, not wrapped
    assert not (workdir / "x.csv").exists()


def test_bad_value_is_one_error_line(capsys, workdir, simulated, bundle):
    test = pd.read_csv(simulated / "test_features.csv").astype({"c-3": object})
    test.loc[6, "c-3"] = "n/a?"
    bad = workdir / "bad_value.csv"
    test.to_csv(bad, index=False)
    code, _, err = _run(capsys, "predict", "--bundle", bundle, "--features", bad, "--out", workdir / "y.csv")
    _assert_one_error_line(code, err, f"bad_value.csv: row 7 (sig_id {test[schema.SIG_ID][6]}), column c-3:")


@pytest.mark.parametrize("junk", [b"", b"\x00\x01\x02binary", b"just some words\nand more, words\n"])
def test_junk_files(capsys, workdir, bundle, junk):
    bad = workdir / "junk.csv"
    bad.write_bytes(junk)
    code, _, err = _run(capsys, "predict", "--bundle", bundle, "--features", bad, "--out", workdir / "z.csv")
    _assert_one_error_line(code, err, "junk.csv: ")


def test_other_error_paths(capsys, workdir, simulated):
    _assert_one_error_line(*_run(capsys, "train", "--data", workdir / "nowhere", "--model", "prior",
                                 "--out", workdir / "b")[::2], "is not a directory")
    _assert_one_error_line(*_run(capsys, "train", "--data", simulated, "--model", "no-such-model",
                                 "--out", workdir / "b")[::2], "unknown model 'no-such-model'")
    _assert_one_error_line(*_run(capsys, "predict", "--bundle", workdir, "--features",
                                 simulated / "test_features.csv", "--out", workdir / "p.csv")[::2],
                           "is not a model bundle")
    preds = workdir / "bad_preds.csv"
    pd.DataFrame({"sig_id": ["id_1"], "a": [1.5]}).to_csv(preds, index=False)
    truth = workdir / "truth.csv"
    pd.DataFrame({"sig_id": ["id_1"], "a": [1]}).to_csv(truth, index=False)
    _assert_one_error_line(*_run(capsys, "evaluate", "--predictions", preds, "--targets", truth)[::2],
                           "bad_preds.csv: row 1 (sig_id id_1), column a: probability 1.5 is outside [0, 1]")
    pd.DataFrame({"sig_id": ["id_1"], "b": [0.5]}).to_csv(preds, index=False)
    _assert_one_error_line(*_run(capsys, "evaluate", "--predictions", preds, "--targets", truth)[::2],
                           "predictions lack 1 target column(s) (a)")


def test_unwritable_output_is_one_error_line(capsys, workdir, simulated, bundle):
    blocker = workdir / "a_file"
    blocker.write_text("")
    code, _, err = _run(capsys, "predict", "--bundle", bundle, "--features", simulated / "test_features.csv",
                        "--out", blocker / "preds.csv")
    assert code == 1 and "Traceback" not in err and err.startswith("error: ")


def test_version_and_models(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert main(["models"]) == 0
    assert "prior" in capsys.readouterr().out.split()
