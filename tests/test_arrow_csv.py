"""CSV read and written by pyarrow in the streamed path: the same frames as pandas' reader, the same errors
(row, column, value) as before, and the numbers pandas wrote, to the last printed digit."""

from __future__ import annotations

import gzip
import io

import numpy as np
import pandas as pd
import pytest

from moa_predict.data.formats import arrow_csv, chunks

from moa_predict.data.profiles import schema
from moa_predict.data.formats.chunks import iter_features
from moa_predict.data.errors import DataError
from moa_predict.data.profiles.validate import validate_features
from moa_predict.inference import stream
from moa_predict.inference.stream import Writer

ROWS = 30  # small chunks: the 100-row test file is read in 4, so an error is found past the first chunk


@pytest.fixture()
def pandas_only(monkeypatch):
    """The reader as it was before pyarrow: pandas' chunked reader for every CSV."""
    def use_pandas() -> None:
        monkeypatch.setattr(arrow_csv, "readable", lambda names: False)
    return use_pandas


def _read_all(path, rows=ROWS):
    return list(chunks._table_chunks(path, path.name, rows))


def _variants(sim_dir, tmp_path):
    """The simulated test file as users write it: plain, gzip, ';' with decimal commas, BOM + CRLF, and
    with missing-value markers and whole numbers in feature columns."""
    plain = sim_dir / "test_features.csv"
    test = pd.read_csv(plain)
    out = {"plain": plain}
    out["gzip"] = tmp_path / "t.csv.gz"
    out["gzip"].write_bytes(gzip.compress(plain.read_bytes()))
    out["semicolon"] = tmp_path / "semicolon.csv"
    test.to_csv(out["semicolon"], index=False, sep=";", decimal=",")
    out["bom_crlf"] = tmp_path / "bom.csv"
    out["bom_crlf"].write_bytes(b"\xef\xbb\xbf" + plain.read_bytes().replace(b"\n", b"\r\n"))
    marked = test.astype({"g-1": object, "c-2": object})
    marked.loc[40, "g-1"], marked.loc[70, "c-2"], marked.loc[5, "g-7"] = "NA", "null", 3.0
    out["markers"] = tmp_path / "markers.csv"
    marked.to_csv(out["markers"], index=False)
    return out


@pytest.mark.slow  # many tables read twice; the same reader's errors and uploads are compared in the fast set
def test_pyarrow_gives_the_frames_pandas_gives(sim_dir, tmp_path, pandas_only):
    files = _variants(sim_dir, tmp_path)
    fast = {k: _read_all(p) for k, p in files.items()}
    pandas_only()
    for key, path in files.items():
        slow = _read_all(path)
        assert [len(c) for c in fast[key]] == [len(c) for c in slow] == [30, 30, 30, 10], key
        for a, b in zip(fast[key], slow):
            # features: float32 where every value fits (pandas: float64, or int64 for whole numbers), one rounding
            b = b.reset_index(drop=True).astype({c: a[c].dtype for c in b.columns if schema.FEATURE_LIKE.match(c)})
            pd.testing.assert_frame_equal(a, b, check_exact=True)
            if key != "markers":  # (missing values: validation refuses them, tested below)
                pd.testing.assert_frame_equal(validate_features(a, "x"), validate_features(b, "x"), check_exact=True)


def test_the_fast_reader_is_the_one_used(sim_dir, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("pandas read a plain LISH-MoA CSV")

    monkeypatch.setattr(chunks, "_pandas_csv_chunks", refuse)
    assert sum(len(f) for f in iter_features(sim_dir / "test_features.csv", chunk_rows=ROWS)) == 100


def _damaged(sim_dir, tmp_path):
    """Bad files whose first bad row is past the first chunk (row 75, in the third chunk)."""
    test = pd.read_csv(sim_dir / "test_features.csv")
    out = {}

    def save(key, frame):
        out[key] = tmp_path / f"{key}.csv"
        frame.to_csv(out[key], index=False)

    bad = test.astype({"g-3": object})
    bad.loc[74, "g-3"] = "abc"
    save("not_a_number", bad)
    bad = test.astype({"g-3": object})
    bad.loc[74, "g-3"] = "1,25"
    save("decimal_comma", bad)
    bad = test.copy()
    bad.loc[74, "c-5"] = np.nan
    save("missing", bad)
    bad = test.copy()
    bad.loc[74, "g-9"] = np.inf
    save("infinite", bad)
    bad = test.copy()
    bad.loc[74, "g-9"] = 1e39
    save("too_large", bad)
    bad = test.copy()
    bad.loc[74, schema.CP_TYPE] = "treated"
    save("cp_type", bad)
    bad = test.copy()
    bad.loc[74, schema.SIG_ID] = bad.loc[3, schema.SIG_ID]
    save("repeated_id", bad)
    bad = test.copy()
    bad.loc[74, schema.SIG_ID] = np.nan
    save("empty_id", bad)
    lines = (sim_dir / "test_features.csv").read_bytes().split(b"\n")
    lines[75] += b",7"
    out["ragged"] = tmp_path / "ragged.csv"
    out["ragged"].write_bytes(b"\n".join(lines))
    lines = (sim_dir / "test_features.csv").read_bytes().split(b"\n")
    lines[75] = lines[75].replace(b",", b";", 1)
    out["short"] = tmp_path / "short.csv"
    out["short"].write_bytes(b"\n".join(lines))
    return out


def _error(path):
    with pytest.raises(DataError) as info:
        for _ in iter_features(path, chunk_rows=ROWS):
            pass
    return str(info.value), info.value.row, info.value.column


def test_errors_name_the_same_row_column_and_value_as_before(sim_dir, tmp_path, pandas_only):
    files = _damaged(sim_dir, tmp_path)
    now = {k: _error(p) for k, p in files.items()}
    pandas_only()
    before = {k: _error(p) for k, p in files.items()}
    assert now == before
    assert now["not_a_number"][1:] == (75, "g-3") and "'abc' is not a number" in now["not_a_number"][0]
    assert "decimal comma" in now["decimal_comma"][0]
    assert now["repeated_id"][1] == 75 and now["empty_id"][1] == 75


def test_other_columns_are_read_by_pandas_as_before(sim_dir, tmp_path):
    test = pd.read_csv(sim_dir / "test_features.csv")
    test = pd.concat([test, pd.DataFrame({"compound": ["aspirin, 10 uM", "2020-01-01"] * 50,
                                          "flag": [True, False] * 50})], axis=1)
    path = tmp_path / "extra.csv"
    test.to_csv(path, index=False)
    frames = list(iter_features(path, chunk_rows=ROWS))
    assert frames[0]["compound"].tolist()[:2] == ["aspirin, 10 uM", "2020-01-01"]
    assert frames[0]["flag"].dtype == bool


# -- writing ------------------------------------------------------------------------------------------------


def _mixed_frame(n=500, seed=0):
    rng = np.random.default_rng(seed)
    proba = (rng.random((n, 6)) ** 6).astype(np.float32)
    proba[0, 0], proba[1, 1], proba[2, 2], proba[3, 3] = 0.0, 1.0, np.nan, 1e-7
    frame = pd.DataFrame(proba, columns=[f"moa_{j}" for j in range(6)])
    frame.insert(0, schema.SIG_ID, [f"id_{i:06d}" for i in range(n)])
    frame["dose"] = rng.standard_normal(n) * 1e-5  # float64
    frame["count"] = rng.integers(-5, 1_000_000, n)
    frame["flag"] = rng.random(n) > 0.5
    frame["note"] = ["plain", 'with "quotes"', "a, comma", "two\nlines", None] * (n // 5)
    frame["big"] = np.float32(3.4e38) * rng.random(n).astype(np.float32)
    return frame


def test_written_csv_holds_the_numbers_pandas_wrote(tmp_path):
    frame = _mixed_frame()
    path = tmp_path / "out.csv"
    writer = Writer(path, parquet=False)
    writer.write(frame.iloc[:200])
    writer.write(frame.iloc[200:])
    writer.close()
    ours = pd.read_csv(path, dtype={c: np.float32 for c in frame.columns if c.startswith("moa_")})
    before = pd.read_csv(io.StringIO(frame.to_csv(index=False)),
                         dtype={c: np.float32 for c in frame.columns if c.startswith("moa_")})
    pd.testing.assert_frame_equal(ours, before, check_exact=True)
    # float32 probabilities come back bit for bit, in either reading
    assert np.array_equal(ours.filter(like="moa_").to_numpy(), frame.filter(like="moa_").to_numpy(), equal_nan=True)
    text = path.read_text()
    assert text.splitlines()[0] == frame.to_csv(index=False).splitlines()[0]
    assert '"with ""quotes"""' in text and '"a, comma"' in text and '"two\nlines"' in text


def test_streamed_csv_and_parquet_outputs_hold_the_same_predictions(bundle, sim_dir, tmp_path):
    src = sim_dir / "test_features.csv"
    stream.predict_file(bundle, src, tmp_path / "p.parquet", chunk_rows=ROWS, progress=False)
    stream.predict_file(bundle, src, tmp_path / "p.csv", chunk_rows=ROWS, progress=False)
    parquet = pd.read_parquet(tmp_path / "p.parquet")
    written = pd.read_csv(tmp_path / "p.csv", dtype={t: np.float32 for t in bundle.target_names})
    pd.testing.assert_frame_equal(written, parquet, check_exact=True)
    # and the text as pandas' to_csv wrote it, to the last printed digit
    frames = [f for f in stream.predict_chunks(bundle, src, chunk_rows=ROWS)]
    before = pd.read_csv(io.StringIO(pd.concat(frames).to_csv(index=False)))
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "p.csv"), before, check_exact=True)


@pytest.fixture(scope="module")
def bundle(sim_dir, tmp_path_factory):
    from moa_predict.data.profiles.dataset import load_dataset
    from moa_predict.models import make_model
    from moa_predict.bundle import load_bundle, save_bundle
    from moa_predict.training.train import train_bundle

    tiny = {"hidden": [16], "epochs": 2, "batch_size": 64, "g_pca": 8, "c_pca": 4, "aux": False}
    trained, _ = train_bundle(make_model("mlp", **tiny), load_dataset(sim_dir), cv=False, progress=False,
                              reference=False)
    return load_bundle(save_bundle(trained, tmp_path_factory.mktemp("arrow_csv") / "bundle"))


# -- uploads ------------------------------------------------------------------------------------------------


def test_an_upload_is_read_as_load_features_reads_it(sim_dir, tmp_path, monkeypatch):
    from moa_predict.data.formats.chunks import load_upload
    from moa_predict.data.profiles.dataset import load_features

    plain = (sim_dir / "test_features.csv").read_bytes()
    expected = load_features(io.BytesIO(plain), name="up.csv")
    monkeypatch.setattr(chunks, "_pandas_csv_chunks", None)  # the fast reader alone reads a plain upload
    pd.testing.assert_frame_equal(load_upload(io.BytesIO(plain), name="up.csv"), expected, check_exact=True)
    monkeypatch.undo()
    for key, path in _damaged(sim_dir, tmp_path).items():
        with pytest.raises(DataError) as whole:
            load_features(io.BytesIO(path.read_bytes()), name="up.csv")
        with pytest.raises(DataError) as ours:
            load_upload(io.BytesIO(path.read_bytes()), name="up.csv")
        assert (str(ours.value), ours.value.row, ours.value.column) == \
            (str(whole.value), whole.value.row, whole.value.column), key
