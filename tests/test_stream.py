"""Streamed prediction with reading, prediction and writing overlapped: the same output as one step at a time,
bounded memory (at most two chunks from the reader), and errors that leave no output behind."""

from __future__ import annotations

import threading
import weakref

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from moa_predict.data.profiles import schema
from moa_predict.data.profiles.dataset import load_dataset
from moa_predict.data.errors import DataError
from moa_predict.data.profiles.validate import validate_features
from moa_predict.inference import stream
from moa_predict.models import make_model
from moa_predict.runtime.background import Serial, prefetched
from moa_predict.simulate.cmap import simulate_gctx
from moa_predict.bundle import load_bundle, save_bundle
from moa_predict.training.train import train_bundle

TINY = {"hidden": [16], "epochs": 2, "batch_size": 64, "g_pca": 8, "c_pca": 4, "aux": False}


@pytest.fixture(scope="module")
def bundle(sim_dir, tmp_path_factory):
    trained, _ = train_bundle(make_model("mlp", **TINY), load_dataset(sim_dir), cv=False, progress=False,
                              reference=False)
    return load_bundle(save_bundle(trained, tmp_path_factory.mktemp("stream") / "bundle"))


@pytest.fixture(scope="module")
def gctx(tmp_path_factory):
    return simulate_gctx(tmp_path_factory.mktemp("stream") / "sim.gctx", 2_300, seed=1, chunk_size=700)


# -- the background helpers ------------------------------------------------------------------------------------


class Item:
    pass


def test_prefetched_keeps_order_and_at_most_two_items_alive():
    alive = weakref.WeakSet()
    most = []

    def items():
        for i in range(8):
            item = Item()
            item.i = i
            alive.add(item)
            most.append(len(alive))
            yield item

    got = []
    for item in prefetched(items()):
        got.append(item.i)
        most.append(len(alive))
        del item
    assert got == list(range(8))
    assert max(most) <= 2


def test_prefetched_raises_the_readers_error_at_its_item_and_closes_the_source_once():
    closed = []

    def items():
        try:
            yield 1
            yield 2
            raise DataError("bad chunk", source="f.gctx", row=3)
        finally:
            closed.append(threading.current_thread().name)

    got = []
    with pytest.raises(DataError, match="bad chunk"):
        for item in prefetched(items()):
            got.append(item)
    assert got == [1, 2] and len(closed) == 1


def test_prefetched_stopped_early_closes_the_source_in_the_callers_thread():
    closed = []

    def items():
        try:
            yield from range(100)
        finally:
            closed.append(threading.current_thread() is threading.main_thread())

    gen = prefetched(items())
    assert next(gen) == 0
    gen.close()
    assert closed == [True]


def test_serial_runs_in_order_and_surfaces_an_error():
    done = []
    with Serial() as calls:
        for i in range(5):
            calls.submit(done.append, i)
    assert done == list(range(5))

    def fail(_):
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        with Serial() as calls:
            calls.submit(fail, 0)
            calls.submit(done.append, 99)  # waits for the failing call first, and raises its error
    assert 99 not in done


# -- the streamed prediction -----------------------------------------------------------------------------------


def test_overlapped_prediction_writes_the_same_bytes_as_step_by_step(bundle, gctx, tmp_path):
    for suffix in (".parquet", ".csv"):
        a, b = tmp_path / f"overlap{suffix}", tmp_path / f"serial{suffix}"
        sa = stream.predict_file(bundle, gctx, a, chunk_rows=500, progress=False, overlap=True)
        sb = stream.predict_file(bundle, gctx, b, chunk_rows=500, progress=False, overlap=False)
        assert a.read_bytes() == b.read_bytes()
        assert (sa.rows, sa.chunks, sa.gene_only, sa.mapping) == (sb.rows, sb.chunks, sb.gene_only, sb.mapping)
        assert sa.rows == 2_300 and sa.chunks == 5


def test_parquet_output_has_the_values_and_schema_of_pandas_conversion(bundle, gctx, tmp_path):
    """The writer converts NumPy columns itself and skips dictionary encoding: same schema (pandas metadata
    included) and the same values as the former ``Table.from_pandas`` writer."""
    out = tmp_path / "p.parquet"
    stream.predict_file(bundle, gctx, out, chunk_rows=500, progress=False)
    frames = list(stream.predict_chunks(bundle, gctx, chunk_rows=500))
    reference = tmp_path / "reference.parquet"
    tables = [pa.Table.from_pandas(f, preserve_index=False) for f in frames]
    with pq.ParquetWriter(reference, tables[0].schema) as writer:
        for t in tables:
            writer.write_table(t)
    assert pq.read_schema(out).equals(pq.read_schema(reference), check_metadata=True)
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(reference))
    assert pq.ParquetFile(out).metadata.num_row_groups == 5


def test_a_failing_chunk_or_write_leaves_no_output(bundle, gctx, tmp_path, monkeypatch):
    from moa_predict.data.profiles import reader as chunk_readers

    real = chunk_readers.iter_features  # the chunk reader of a LISH-MoA / CMap file (Bundle.frames → iter_profiles)
    closed = []

    def failing_reader(*args, **kwargs):
        try:
            for k, frame in enumerate(real(*args, **kwargs)):
                if k == 3:
                    raise DataError("row 1501: broken", source="sim.gctx", row=1501)
                yield frame
        finally:
            closed.append(True)

    monkeypatch.setattr(chunk_readers, "iter_features", failing_reader)
    out = tmp_path / "out.parquet"
    with pytest.raises(DataError, match="broken"):
        stream.predict_file(bundle, gctx, out, chunk_rows=500, progress=False)
    assert closed == [True]
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(chunk_readers, "iter_features", real)

    calls = []

    def failing_write(self, frame):
        calls.append(len(frame))
        if len(calls) == 2:
            raise OSError("No space left on device")
        real_write(self, frame)

    real_write = stream.Writer.write
    monkeypatch.setattr(stream.Writer, "write", failing_write)
    with pytest.raises(OSError, match="No space left"):
        stream.predict_file(bundle, gctx, out, chunk_rows=500, progress=False)
    assert list(tmp_path.iterdir()) == []


# -- validation's float32 fast path ----------------------------------------------------------------------------


def _gene_frame(values: np.ndarray) -> pd.DataFrame:
    n = len(values)
    meta = pd.DataFrame({schema.SIG_ID: [f"s{i}" for i in range(n)], schema.CP_TYPE: schema.TREATED,
                         schema.CP_TIME: 24, schema.CP_DOSE: schema.CP_DOSES[0]})
    return pd.concat([meta, pd.DataFrame(values, columns=list(schema.GENE_COLUMNS))], axis=1)


def test_float32_fast_path_validates_like_the_float64_path():
    rng = np.random.default_rng(0)
    values = rng.standard_normal((50, len(schema.GENE_COLUMNS))).astype(np.float32)
    fast = validate_features(_gene_frame(values), "x", schema.GENE_COLUMNS)
    slow = validate_features(_gene_frame(values.astype(np.float64)), "x", schema.GENE_COLUMNS)
    pd.testing.assert_frame_equal(fast, slow)
    for bad, what in ((np.nan, "missing"), (np.inf, "infinite"), (-np.inf, "infinite")):
        broken = values.copy()
        broken[7, 3] = bad
        broken[9, 1] = bad
        messages = []
        for dtype in (np.float32, np.float64):
            with pytest.raises(DataError) as info:
                validate_features(_gene_frame(broken.astype(dtype)), "x", schema.GENE_COLUMNS)
            messages.append((str(info.value), info.value.row, info.value.column))
        assert messages[0] == messages[1]
        assert what in messages[0][0] and messages[0][1] == 8 and messages[0][2] == schema.GENE_COLUMNS[3]


def test_float64_values_beyond_float32_are_still_named():
    values = np.zeros((5, len(schema.GENE_COLUMNS)))
    values[2, 4] = 1e39
    with pytest.raises(DataError, match="too large") as info:
        validate_features(_gene_frame(values), "x", schema.GENE_COLUMNS)
    assert info.value.row == 3
