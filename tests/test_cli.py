"""The `moa` command end to end, in-process: simulate -> train -> predict -> evaluate, and its error path."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from moa_predict.cli import main
from moa_predict.data.profiles import schema
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
    assert "trained on SIMULATED profiles" in err  # the bundle keeps the simulator's marker and says so
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
    assert frame.columns[0] == schema.SIG_ID and list(frame.columns[-3:]) == ["compound", "ood", "ood_reason"]
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


# -- input formats through `moa predict` (the chunked reader) ------------------------------------------------


def _predict(capsys, bundle, src, out) -> tuple[int, str]:
    code, _, err = _run(capsys, "predict", "--bundle", bundle, "--features", src, "--out", out, "--quiet")
    return code, err


def test_gzip_and_semicolon_files_predict_like_the_plain_csv(capsys, workdir, simulated, bundle):
    import gzip

    plain = simulated / "test_features.csv"
    assert _predict(capsys, bundle, plain, workdir / "plain.csv")[0] == 0
    expected = pd.read_csv(workdir / "plain.csv")
    test = pd.read_csv(plain)
    packed = workdir / "test_features.csv.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    semicolon = workdir / "semicolon.csv"  # a spreadsheet in a European locale: ';' and decimal commas
    test.to_csv(semicolon, index=False, sep=";", decimal=",")
    for src in (packed, semicolon):
        code, err = _predict(capsys, bundle, src, workdir / "other.csv")
        assert code == 0, err
        pd.testing.assert_frame_equal(pd.read_csv(workdir / "other.csv"), expected)


def test_decimal_comma_in_a_comma_file_is_one_error_line(capsys, workdir, simulated, bundle):
    test = pd.read_csv(simulated / "test_features.csv").astype({"g-3": object})
    test.loc[2, "g-3"] = "1,25"
    bad = workdir / "decimal_comma.csv"
    test.to_csv(bad, index=False)
    code, err = _predict(capsys, bundle, bad, workdir / "w.csv")
    _assert_one_error_line(code, err, "decimal_comma.csv: row 3", "column g-3", "decimal comma")


# -- the port, help, seeds, permissions, wording -------------------------------------------------------------


def test_taken_port_is_one_error_line_with_the_fix(capsys, workdir, bundle):
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        code, _, err = _run(capsys, "serve", "--bundle", bundle, "--port", port)
        _assert_one_error_line(code, err, f"port {port} on 127.0.0.1 is already in use", "--port",
                               "make demo PORT=")
        assert "Errno" not in err
        # the demo checks the port before simulating and training anything
        demo_dir = workdir / "demo_port"
        code, _, err = _run(capsys, "demo", "--workdir", demo_dir, "--port", port, "--rows", 300)
        _assert_one_error_line(code, err, "already in use")
        assert not demo_dir.exists()


def test_every_option_of_every_command_has_help():
    import argparse

    from moa_predict.cli.main import build_parser

    def options(parser, path):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from options(sub, f"{path} {name}")
            elif action.option_strings:
                yield path, action

    missing = [f"{path} {a.option_strings[0]}" for path, a in options(build_parser(), "moa") if not a.help]
    assert missing == []


@pytest.mark.slow  # trains networks twice; networks through the CLI stay in the fast set (test_paper_nn.py)
def test_train_seed_reaches_the_network(capsys, workdir, simulated):
    def train(*extra):
        out = workdir / f"seeded{'_'.join(map(str, extra))}"
        args = ["train", "--data", simulated, "--model", "logreg", "--no-cv", "--param", "epochs=1", "--out", out]
        assert _run(capsys, *args, *extra)[0] == 0
        params = json.loads((out / "bundle.json").read_text())["model"]["params"]
        preds = workdir / f"{out.name}.csv"
        assert _predict(capsys, out, simulated / "test_features.csv", preds)[0] == 0
        return params["seed"], pd.read_csv(preds).iloc[:, 1:].to_numpy()

    seed0, p0 = train()
    seed3, p3 = train("--seed", 3)
    kept, _ = train("--seed", 3, "--param", "seed=5")  # an explicit --param seed wins
    assert (seed0, seed3, kept) == (0, 3, 5)
    assert not (p0 == p3).all(), "--seed must change the network's initialisation"


def test_written_files_have_the_mode_predictions_get(capsys, workdir, simulated, bundle):
    import stat

    assert _predict(capsys, bundle, simulated / "test_features.csv", workdir / "mode.csv")[0] == 0
    expected = stat.S_IMODE((workdir / "mode.csv").stat().st_mode)
    from moa_predict.data.formats.io import DIR_MODE

    files = [p for d in (bundle, simulated) for p in d.rglob("*")]  # the gene-only model's directory too
    assert any(p.name == "weights.safetensors" for p in files) and any(p.is_dir() for p in files)
    assert {str(p): oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {
        str(p): oct(DIR_MODE if p.is_dir() else expected) for p in files}


def test_cli_reachable_messages_do_not_talk_about_uploads(capsys, workdir, bundle):
    parquet = workdir / "cut.parquet"
    parquet.write_bytes(b"PAR1" + b"\x00" * 64)
    for junk in (parquet, workdir / "binary.csv"):
        if junk.suffix == ".csv":
            junk.write_bytes(b"\x00\x01binary")
        code, err = _predict(capsys, bundle, junk, workdir / "u.csv")
        assert code == 2 and "upload" not in err.lower(), err


def test_cv_table_names_each_member(capsys):
    from moa_predict.cli.main import print_cv
    from moa_predict.models import make_model

    report = {"score": 0.015, "rows": "100 treated rows", "folds": 5, "grouped_by_drug": True, "seed": 0,
              "fit_seconds": 1.0, "fold_scores": [0.015] * 5, "per_target": {"a": 0.01},
              "stack": {"member_scores": [0.0151, 0.0156, 0.0149, 0.0150, 0.0168], "weights": [0.2] * 5,
                        "temperature": 1.0, "prior_targets": []}}
    print_cv(report, "CV", members=make_model("blend").member_labels())
    text = capsys.readouterr().out
    assert "mlp 256-256 raw+PCA 150/20 25 ep seed 7: 0.01510" in text
    assert "resnet 256x2 PCA 250/30 35 ep: 0.01560" in text and "logreg 25 ep: 0.01680" in text


# -- evaluate: the prior and ranking metrics beside the log loss -----------------------------------------------


def test_evaluate_reports_the_prior_auc_and_average_precision(capsys, workdir, simulated, bundle):
    import numpy as np

    from moa_predict.evaluation.metrics import smoothed_prevalence
    from moa_predict.bundle import load_bundle

    preds = workdir / "eval_preds.csv"
    assert _predict(capsys, bundle, simulated / "test_features.csv", preds)[0] == 0
    args = ["evaluate", "--predictions", preds, "--targets", simulated / "test_targets_scored.csv",
            "--features", simulated / "test_features.csv"]
    truth = pd.read_csv(simulated / "test_targets_scored.csv").set_index(schema.SIG_ID)
    test = pd.read_csv(simulated / "test_features.csv").set_index(schema.SIG_ID).loc[truth.index]
    y = truth.to_numpy()[(test["cp_type"] == schema.TREATED).to_numpy()]

    code, out, _ = _run(capsys, *args, "--out", workdir / "own.json")
    assert code == 0 and "prior" in out and "optimistic" in out and "ROC AUC" in out
    own = json.loads((workdir / "own.json").read_text())
    own_prior = columnwise_log_loss(y, np.broadcast_to(smoothed_prevalence(y), y.shape)).mean()
    assert own["prior_score"] == pytest.approx(own_prior, rel=1e-9)
    no_positive = [t for t in truth.columns if y[:, list(truth.columns).index(t)].sum() == 0]
    assert no_positive and all(own["per_target_auc"][t] is None and own["per_target_ap"][t] is None
                               for t in no_positive)
    with_positive = [t for t in truth.columns if t not in no_positive]
    assert all(0 <= own["per_target_auc"][t] <= 1 and 0 < own["per_target_ap"][t] <= 1 for t in with_positive)

    # with --bundle: the prior is the bundle's training prevalence (here the prior model's own predictions)
    code, out, _ = _run(capsys, *args, "--bundle", bundle, "--out", workdir / "bundle.json")
    assert code == 0 and "from the bundle" in out
    report = json.loads((workdir / "bundle.json").read_text())
    prevalence = load_bundle(bundle).training_prevalence()
    expected = columnwise_log_loss(y, np.broadcast_to(prevalence, y.shape)).mean()
    assert report["prior_score"] == pytest.approx(expected, rel=1e-9)
    assert report["score"] == pytest.approx(report["prior_score"], rel=1e-5)  # the prior bundle is the prior


@pytest.mark.slow  # two demo runs (one cross-validated); train, predict and serve stay in the fast set
def test_demo_serves_without_cv_and_cross_validates_when_asked(capsys, workdir):
    demo = workdir / "demo"
    args = ["demo", "--workdir", demo, "--rows", 300, "--test-rows", 40, "--model", "prior", "--no-serve"]
    code, out, err = _run(capsys, *args)
    assert code == 0, err
    assert "not cross-validated" in err and "moa demo --cv" in err and "CV log loss" not in out
    bundle = json.loads((demo / "bundle-prior" / "bundle.json").read_text())
    assert bundle["cv"] is None and (demo / "predictions.csv").is_file()
    code, out, err = _run(capsys, *args, "--cv")  # the data are reused, the model is refit with CV
    assert code == 0, err
    assert "reusing simulated data" in err and "CV log loss" in out
    assert json.loads((demo / "bundle-prior" / "bundle.json").read_text())["cv"]["folds"] == 5


def test_long_output_paths_are_printed_whole(capsys, workdir, simulated):
    out = workdir / ("a_rather_long_directory_name_for_the_bundle_" * 3) / "bundle"
    code, _, err = _run(capsys, "train", "--data", simulated, "--model", "prior", "--no-cv", "--out", out)
    assert code == 0 and len(str(out)) > 100
    assert f"bundle written to {out}" in err  # one line: never broken at the console width


def _subcommands(parser, path=("moa",)):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield " ".join((*path, name)), sub
                yield from _subcommands(sub, (*path, name))


def test_every_subcommand_has_a_description_and_one_figure_per_fact():
    import re
    from pathlib import Path

    from moa_predict.cli.main import build_parser

    commands = dict(_subcommands(build_parser()))
    assert {"moa train", "moa predict", "moa evaluate", "moa benchmark", "moa models", "moa layout"} <= set(commands)
    assert [name for name, sub in commands.items() if not sub.description] == []
    demo = commands["moa demo"].description
    assert "the main job" not in demo and "simulate" in demo.lower()
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    minutes = re.search(r"about (\d+) minutes more", demo).group(1)
    assert f"about {minutes} minutes more" in readme  # the --cv cost, the same figure in README and --help
    serve = commands["moa serve"].format_help()
    assert "2147" not in serve and "2048" in serve and "--max-store-mb 2048" in readme
    assert "layout" in " ".join(commands["moa predict"].format_help().split()).lower()
    assert "/tmp/" not in readme  # commands a user pastes use runs/..., not internal scratch folders


@pytest.mark.parametrize("method", ["none", "z", "robust_z", "robust_z_pooled"])
def test_every_normalization_is_accepted_as_a_flag(method):
    from moa_predict.cli.layout import layout_from_args
    from moa_predict.cli.main import build_parser

    args = build_parser().parse_args(["train", "--features", "x.csv", "--out", "b", "--block", "f=f_",
                                      "--plate", "plate", "--controls", "type=control", "--normalize", method])
    assert layout_from_args(args).normalize == method


def test_outputs_into_missing_folders_are_created(capsys, workdir, simulated, bundle):
    """One documented behaviour for every command: missing folders in an --out path are created."""
    base = workdir / "not" / "yet"
    features = simulated / "test_features.csv"
    assert _run(capsys, "predict", "--bundle", bundle, "--features", features, "--out", base / "p" / "pred.csv",
                "--sets-out", base / "s" / "sets.csv", "--quiet")[0] == 0
    assert _run(capsys, "layout", "infer", features, "--out", base / "l" / "layout.toml")[0] == 0
    assert _run(capsys, "evaluate", "--predictions", base / "p" / "pred.csv", "--targets",
                simulated / "test_targets_scored.csv", "--out", base / "e" / "scores.json")[0] == 0
    for path in ("p/pred.csv", "s/sets.csv", "l/layout.toml", "e/scores.json"):
        assert (base / path).is_file(), path
