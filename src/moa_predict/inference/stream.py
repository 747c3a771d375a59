"""Prediction of a whole file in row chunks: read a chunk, predict it, append it to the output.

Memory holds one chunk at a time whatever the number of profiles (``data.chunks.iter_features``), and the
output (CSV or Parquet, by suffix) is written to a temporary file beside the target and renamed into place
only when every chunk succeeded, so an interrupted or failed run leaves no partial file behind.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import pandas as pd
from tqdm.auto import tqdm

from ..data import schema
from ..data.chunks import DEFAULT_CHUNK_ROWS, iter_features
from ..data.gene_features import MAPPING_ATTR, is_gene_only
from ..data.io import Source, atomic_path
from ..training.bundle import Bundle


@dataclass
class StreamSummary:
    """What a streamed prediction did: rows, controls, chunks, time, and for CMap files the gene mapping."""

    rows: int = 0
    controls: int = 0
    chunks: int = 0
    seconds: float = 0.0
    gene_only: bool = False
    mapping: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rows_per_second(self) -> float:
        return self.rows / max(self.seconds, 1e-9)


class _Writer:
    """Appends prediction frames to a CSV (header once) or a Parquet file (one row group per chunk)."""

    def __init__(self, path: Path, parquet: bool) -> None:
        self.path, self.parquet, self._pq, self._first = path, parquet, None, True

    def write(self, frame: pd.DataFrame) -> None:
        if self.parquet:
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(frame, preserve_index=False)
            if self._pq is None:
                self._pq = pq.ParquetWriter(self.path, table.schema)
            self._pq.write_table(table)
        else:
            frame.to_csv(self.path, mode="w" if self._first else "a", header=self._first, index=False)
        self._first = False

    def close(self) -> None:
        if self._pq is not None:
            self._pq.close()


def predict_chunks(bundle: Bundle, src: Source, *, chunk_rows: int = DEFAULT_CHUNK_ROWS,
                   keep_columns: bool = False, name: str | None = None,
                   summary: StreamSummary | None = None) -> Iterator[pd.DataFrame]:
    """Prediction frames (``Bundle.predict_frame``) of successive chunks of `src`; `summary` is updated."""
    frames = iter_features(src, feature_columns=bundle.feature_columns, chunk_rows=chunk_rows, name=name)
    yield from predict_features(bundle, frames, keep_columns=keep_columns, summary=summary)


def predict_features(bundle: Bundle, frames: Iterable[pd.DataFrame], *, keep_columns: bool = False,
                     summary: StreamSummary | None = None) -> Iterator[pd.DataFrame]:
    """Prediction frames of validated features frames (one file's chunks, or a cluster partition's)."""
    summary = summary if summary is not None else StreamSummary()
    for features in frames:
        if is_gene_only(features):
            summary.gene_only = True
            summary.mapping = features.attrs.get(MAPPING_ATTR)
        frame = bundle.predict_frame(features, keep_columns=keep_columns)
        summary.rows += len(frame)
        summary.controls += int((features[schema.CP_TYPE] == schema.CONTROL).sum())
        summary.chunks += 1
        yield frame


def predict_file(bundle: Bundle, src: Source, out: str | os.PathLike, *, chunk_rows: int = DEFAULT_CHUNK_ROWS,
                 keep_columns: bool = False, progress: bool = True, name: str | None = None) -> StreamSummary:
    """Predict every profile of `src` into `out` (``.parquet`` → Parquet, else CSV), chunk by chunk, atomically.

    A progress bar counts profiles (with an ETA when the total is known cheaply: the size of a GCTX/h5ad file's
    sample axis is not read here, so the bar shows the rate)."""
    out = Path(out)
    summary = StreamSummary()
    t0 = time.perf_counter()
    with atomic_path(out) as tmp:
        writer = _Writer(tmp, out.suffix.lower() == ".parquet")
        try:
            with tqdm(desc="predicting", unit=" profiles", disable=not progress, leave=False, delay=1.0) as bar:
                for frame in predict_chunks(bundle, src, chunk_rows=chunk_rows, keep_columns=keep_columns,
                                            name=name, summary=summary):
                    writer.write(frame)
                    bar.update(len(frame))
        finally:
            writer.close()
    summary.seconds = time.perf_counter() - t0
    return summary
