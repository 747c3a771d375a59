"""Prediction and training on a Dask cluster (a LocalCluster of 2 worker processes) against the local path."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

from moa_predict.data.errors import DataError
from moa_predict.runtime.cluster import INSTALL_HINT, require_dask

pytest.importorskip("distributed", reason="Dask is not installed: pip install 'moa-predict[dask]' (the test extra)")

TINY = {"epochs": 2, "g_pca": 8, "c_pca": 4}
TOL = 1e-6
"""float32 probabilities: a partition's rows are cut into other row blocks than the local file's chunks, and a row's
float32 result can depend on the size of its block (BLAS batch composition); the cluster path must match to a few
float32 ulps. (The local path itself gives the same bits for any thread count: tests/test_runtime.py.)"""


@pytest.fixture(scope="module")
def client():
    from moa_predict.runtime.cluster import dask_client

    with dask_client(n_workers=2) as c:
        yield c


@pytest.fixture(scope="module")
def bundle_dir(sim_dataset, tmp_path_factory):
    from moa_predict.models import make_model
    from moa_predict.bundle import save_bundle
    from moa_predict.training.train import train_bundle

    bundle, _ = train_bundle(make_model("logreg", **TINY), sim_dataset, cv=False, progress=False, reference=False)
    return save_bundle(bundle, tmp_path_factory.mktemp("dask") / "bundle")


@pytest.fixture(scope="module")
def big_csv(sim_dir, tmp_path_factory):
    """test_features.csv tiled to 1,000 rows with unique sig_ids."""
    base = pd.read_csv(sim_dir / "test_features.csv")
    frame = pd.concat([base.assign(sig_id=base["sig_id"] + f"_{k}") for k in range(10)], ignore_index=True)
    path = tmp_path_factory.mktemp("dask") / "features.csv"
    frame.to_csv(path, index=False)
    return path


def _local(bundle_dir, src, out):
    from moa_predict.inference.stream import predict_file
    from moa_predict.bundle import load_bundle

    predict_file(load_bundle(bundle_dir), src, out, chunk_rows=100, progress=False)
    return pd.read_csv(out)


def _distributed(client, bundle_dir, src, out):
    from moa_predict.inference.distributed import predict_file_distributed

    summary = predict_file_distributed(client, bundle_dir, src, out, chunk_rows=100, partition_rows=300,
                                       progress=False, threads=1)
    return summary, pd.read_csv(out)


def test_cluster_predictions_equal_local_csv_and_bundle_loaded_once_per_worker(client, bundle_dir, big_csv, tmp_path):
    local = _local(bundle_dir, big_csv, tmp_path / "local.csv")
    summary, dist = _distributed(client, bundle_dir, big_csv, tmp_path / "dist.csv")
    assert summary.extra["partitions"] >= 3 and summary.rows == 1000
    assert dist["sig_id"].tolist() == local["sig_id"].tolist()
    assert np.abs(dist.iloc[:, 1:].to_numpy() - local.iloc[:, 1:].to_numpy()).max() <= TOL
    loads = client.run(lambda: dict(sys.modules["moa_predict.inference.distributed"].LOADS))
    assert len(loads) == 2 and all(v == {str(bundle_dir.resolve()): 1} for v in loads.values())


@pytest.mark.slow  # the CSV partitions' test covers the cluster path in the fast set
def test_cluster_predictions_equal_local_parquet_row_groups(client, bundle_dir, big_csv, tmp_path):
    src = tmp_path / "features.parquet"
    pd.read_csv(big_csv).to_parquet(src, row_group_size=100)
    local = _local(bundle_dir, src, tmp_path / "local.csv")
    summary, dist = _distributed(client, bundle_dir, src, tmp_path / "dist.csv")
    assert summary.extra["partitions"] == 4
    assert dist["sig_id"].tolist() == local["sig_id"].tolist()
    assert np.abs(dist.iloc[:, 1:].to_numpy() - local.iloc[:, 1:].to_numpy()).max() <= TOL


def test_a_poisoned_partition_is_one_error_naming_it_and_leaves_no_output(client, bundle_dir, big_csv, tmp_path):
    frame = pd.read_csv(big_csv)
    frame["g-5"] = frame["g-5"].astype(object)
    frame.loc[700, "g-5"] = "oops"
    src = tmp_path / "poisoned.csv"
    frame.to_csv(src, index=False)
    out = tmp_path / "out.csv"
    with pytest.raises(DataError) as err:
        _distributed(client, bundle_dir, src, out)
    text = str(err.value)
    assert text.startswith("poisoned.csv: partition ") and "row 701" in text and "g-5" in text
    assert not out.exists() and not list(tmp_path.glob(".out*"))


@pytest.mark.slow  # the poisoned-partition error stays in the fast set
def test_repeated_sig_id_across_partitions_is_an_error(client, bundle_dir, big_csv, tmp_path):
    frame = pd.read_csv(big_csv)
    frame.loc[900, "sig_id"] = frame.loc[10, "sig_id"]
    src = tmp_path / "dup.csv"
    frame.to_csv(src, index=False)
    with pytest.raises(DataError, match=r"row 901: sig_id .* appears earlier"):
        _distributed(client, bundle_dir, src, tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


def test_gctx_partitions_read_what_the_whole_file_gives(tmp_path):
    from moa_predict.data.profiles import schema
    from moa_predict.data.formats.chunks import iter_features
    from moa_predict.data.formats.partitions import iter_partition, plan_partitions
    from moa_predict.simulate.cmap import simulate_gctx

    path = simulate_gctx(tmp_path / "sim.gctx", 2_500, seed=2, chunk_size=700)
    cols = schema.GENE_COLUMNS
    parts = plan_partitions(path, rows=1_000, chunk_rows=500)
    assert [(p.first, p.last) for p in parts] == [(0, 1000), (1000, 2000), (2000, 2500)]
    whole = pd.concat(list(iter_features(path, feature_columns=cols, chunk_rows=500)))
    split = pd.concat([f for p in parts for f in iter_partition(path, p, feature_columns=cols, chunk_rows=500)])
    pd.testing.assert_frame_equal(split, whole)


@pytest.mark.slow  # a full cross-validation on the cluster; the fast set keeps the cluster predictions
def test_training_on_the_cluster_gives_the_local_cv_score(client, sim_dataset):
    from moa_predict.models import make_model
    from moa_predict.runtime.workers import joblib_backend
    from moa_predict.training.train import train_bundle

    def blend():
        return make_model("blend", members=[["logreg", TINY], ["logreg", {**TINY, "seed": 1}]], n_jobs=1)

    _, local = train_bundle(blend(), sim_dataset, n_splits=2, progress=False, reference=False)
    with joblib_backend("dask"):
        bundle, dist = train_bundle(blend(), sim_dataset, n_splits=2, progress=False, reference=False)
    assert bundle.model.used_workers_  # the final fit's members went to the cluster too
    assert dist.score == pytest.approx(local.score, abs=1e-7)


def test_without_dask_the_commands_say_how_to_install_it(monkeypatch, capsys, bundle_dir, big_csv, tmp_path):
    from moa_predict.cli.main import main

    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(DataError, match="pip install 'moa-predict\\[dask\\]'"):
        require_dask()
    code = main(["predict", "--bundle", str(bundle_dir), "--features", str(big_csv), "--out",
                 str(tmp_path / "p.csv"), "--dask-workers", "2", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and INSTALL_HINT in err and "Traceback" not in err
    assert not (tmp_path / "p.csv").exists()


@pytest.mark.slow  # trains a layout bundle; the fast set keeps CSV / Parquet partitions on the cluster
def test_a_layout_bundle_scores_gctx_partitions_on_the_cluster_as_locally(client, tmp_path):
    """The built-in L1000 reference (a layout bundle reading one profile at a time) on a GCTX: sample partitions
    read through the layout on the workers, the same ids and probabilities as the local streamed path."""
    from moa_predict.data.builtin import L1000_EXAMPLES
    from moa_predict.inference.distributed import predict_file_distributed
    from moa_predict.inference.stream import predict_file
    from moa_predict.simulate.cmap import landmark_rows, write_gctx
    from moa_predict.bundle import load_bundle

    examples = pd.read_csv(L1000_EXAMPLES)
    table = pd.concat([examples.assign(sig_id=examples["sig_id"] + f"#{k}") for k in range(5)], ignore_index=True)
    rows = landmark_rows().drop(columns="feature")
    src = tmp_path / "sigs.gctx"
    write_gctx(src, rows, len(table), [(pd.DataFrame({"id": table["sig_id"]}),
                                        table[rows["pr_gene_symbol"].tolist()].to_numpy(np.float32))])
    predict_file(load_bundle("l1000-reference"), src, tmp_path / "local.csv", chunk_rows=10, progress=False)
    summary = predict_file_distributed(client, "l1000-reference", src, tmp_path / "dist.csv", chunk_rows=10,
                                       partition_rows=20, progress=False, threads=1)
    local, dist = pd.read_csv(tmp_path / "local.csv"), pd.read_csv(tmp_path / "dist.csv")
    assert summary.extra["partitions"] == 3 and summary.rows == len(table)
    assert dist["sig_id"].tolist() == local["sig_id"].tolist() == table["sig_id"].tolist()
    assert np.abs(dist.iloc[:, 1:].to_numpy() - local.iloc[:, 1:].to_numpy()).max() <= TOL


@pytest.fixture(scope="module")
def trust_bundle_dir(sim_dataset, tmp_path_factory):
    """A cross-validated bundle (MoA sets, calls) with a reference index (OOD flags)."""
    from moa_predict.models import make_model
    from moa_predict.bundle import save_bundle
    from moa_predict.training.train import train_bundle

    bundle, _ = train_bundle(make_model("prior"), sim_dataset, n_splits=3, progress=False)
    return save_bundle(bundle, tmp_path_factory.mktemp("dask") / "trust_bundle")


def test_sets_and_calls_on_the_cluster_are_the_local_ones(client, trust_bundle_dir, big_csv, tmp_path):
    """The workers run the local path's Predictor: the same sets, calls and counts, written here in file order."""
    from moa_predict.bundle import load_bundle
    from moa_predict.inference.distributed import predict_file_distributed
    from moa_predict.inference.stream import predict_file

    files = {}
    for where in ("local", "dist"):
        outs = {k: tmp_path / f"{where}_{k}.csv" for k in ("p", "sets", "calls")}
        kw = dict(chunk_rows=100, progress=False, keep_columns=True, sets_out=outs["sets"], set_level=0.8,
                  calls_out=outs["calls"], call_precision=0.7)
        if where == "local":
            summary = predict_file(load_bundle(trust_bundle_dir), big_csv, outs["p"], **kw)
        else:
            summary = predict_file_distributed(client, trust_bundle_dir, big_csv, outs["p"], partition_rows=300,
                                               threads=1, **kw)
        files[where] = ({k: pd.read_csv(v, keep_default_na=False) for k, v in outs.items()}, summary)
    (local, ls), (dist, ds) = files["local"], files["dist"]
    assert ds.extra["partitions"] >= 3
    for key in ("sets", "calls"):
        pd.testing.assert_frame_equal(dist[key], local[key])
    assert dist["p"]["ood"].tolist() == local["p"]["ood"].tolist()
    assert {k: ds.extra[k] for k in ("with_set", "abstentions", "calls")} == \
        {k: ls.extra[k] for k in ("with_set", "abstentions", "calls")}
    assert ds.ood == ls.ood
