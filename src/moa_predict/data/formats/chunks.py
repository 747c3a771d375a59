"""Features read in row chunks, validated chunk by chunk: files of any size with flat memory.

Every input ``moa predict`` accepts streams: CSV (plain or gzip) through pyarrow's streaming reader where it
reads the table as pandas would (``arrow_csv``; pandas' chunked reader otherwise, and from the row where pyarrow
stopped), Parquet by record batches (pyarrow), GCTX/h5ad by sample blocks and GCT as one block
(``gene_features``). Uploads go through the same CSV reader, whole (``load_upload``). Each chunk is
validated exactly as a whole file would be (``validate.validate_features``), with error rows counted from the
start of the file, and sig_ids are checked for duplicates across chunks (64-bit hashes, 8 bytes a profile).
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Sequence

import numpy as np
import pandas as pd

from . import arrow_csv
from ..profiles import schema
from .cmap import detect_format
from ..errors import DataError
from ..profiles.gene_features import iter_gene_features, looks_like_gene_table
from .io import (DEFAULT_MAX_BYTES, GZIP_MAGIC, Source, _is_parquet, _size_of, gzip_cut_off, missing_file,
                 open_csv_text, read_table, sniff_dialect)
from ..profiles.validate import validate_features

DEFAULT_CHUNK_ROWS = 5_000
"""Profiles per chunk. Streaming reads the next chunk and writes the previous one while the current one is
predicted (three chunks alive), so the chunk sets the memory over the fixed cost of the libraries and model;
5,000 keeps that within a few percent of a one-chunk run at no cost in throughput (docs/stream/README.md)."""


def shift_row(exc: DataError, offset: int) -> DataError:
    """The same error with its row counted from the start of the file instead of the chunk (`offset`: the
    rows before it)."""
    if exc.row is None or offset == 0:
        return exc
    text = str(exc)
    prefix = f"{exc.source}: " if exc.source else ""
    message = text[len(prefix):].replace(f"row {exc.row}", f"row {exc.row + offset}", 1)
    return DataError(message, source=exc.source, row=exc.row + offset, column=exc.column)


def _csv_chunks(handle: IO[bytes], name: str, rows: int) -> Iterator[pd.DataFrame]:
    """CSV chunks of `rows` rows: pyarrow's streaming reader where it reads the table as pandas would
    (``arrow_csv``: UTF-8 text), pandas' chunked reader otherwise and from the row where pyarrow stopped (a ragged
    line, a non-number: pandas' frames carry what validation names). A file pandas cannot parse raises the
    whole-file reader's error, which names the line."""
    text, header, sep, decimal = open_csv_text(handle, name)  # encoding, dialect, a cut-off end: said here
    try:
        names = [h.strip() for h in header]
        done = 0
        if text.encoding in ("utf-8", "utf-8-sig") and _fast_header(names):
            sample = text.read(1 << 16)
            handle.seek(0)
            try:
                for chunk in arrow_csv.csv_frames(handle, names, rows, sep=sep, decimal=decimal,
                                                  block_bytes=arrow_csv.block_size(sample, rows)):
                    done += len(chunk)
                    yield chunk
                return
            except arrow_csv.ArrowUnparsable as exc:
                done = exc.rows
        text.seek(0)
        yield from _pandas_csv_chunks(text, header, rows, sep, decimal, done)
    except (UnicodeDecodeError, pd.errors.EmptyDataError, pd.errors.ParserError,
            pd.errors.ParserWarning) as exc:  # EOFError (a gzip stream cut short) goes to _table_chunks
        raise _Unparsable(str(exc).strip()) from None
    finally:
        text.detach()


def _fast_header(names: list[str]) -> bool:
    """True when pyarrow reads a CSV with this header as pandas does (``arrow_csv.readable``, unique names)."""
    return arrow_csv.readable(names) and len(set(names)) == len(names)


def _csv_names(handle: IO[bytes]) -> list[str]:
    """The stripped header names of a CSV file object (none if it is not UTF-8 text); the handle is rewound."""
    text = io.TextIOWrapper(handle, encoding="utf-8-sig", newline="")
    try:
        sep, _ = sniff_dialect(text)
        return [h.strip() for h in next(csv.reader(text, delimiter=sep), [])]
    except (UnicodeDecodeError, csv.Error):
        return []
    finally:
        text.detach()
        handle.seek(0)


def _pandas_csv_chunks(text: IO[str], header: list[str], rows: int, sep: str, decimal: str,
                       skip: int = 0) -> Iterator[pd.DataFrame]:
    """pandas' chunked reader of a CSV text stream at its start, the first `skip` data rows left out."""
    names = [h.strip() for h in header]
    dtype = {h: str for h in header if h.strip() == schema.SIG_ID}
    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.ParserWarning)
        reader = pd.read_csv(text, chunksize=rows, dtype=dtype, index_col=False, low_memory=False, sep=sep,
                             decimal=decimal, skiprows=range(1, skip + 1) if skip else None)
        for chunk in reader:
            if len(chunk.columns) == len(names):
                chunk.columns = names
            yield chunk


class _Unparsable(Exception):
    """Raised inside the chunked CSV reader; ``iter_features`` turns it into the precise DataError."""


def parquet_frames(path: Path, name: str, rows: int, row_groups: Sequence[int] | None = None
                   ) -> Iterator[pd.DataFrame]:
    """Frames of at most `rows` rows of a Parquet file (of `row_groups` only, if given), streamed by record
    batches of `rows` rows, one row group at a time: pyarrow's ``iter_batches`` over a whole file keeps what
    it read (peak memory grew from 0.4 to 2.2 GB between a 10,000- and a 300,000-row file of 20,000-row
    groups); over one row group it holds one batch, and a group read and released leaves nothing behind.
    Chunks start at each row group's first row, so they are the same whatever the number of groups read."""
    import pyarrow.parquet as pq

    try:
        handle = pq.ParquetFile(path, pre_buffer=False)
        groups = range(handle.num_row_groups) if row_groups is None else row_groups
        for g in groups:
            for batch in handle.iter_batches(batch_size=rows, row_groups=[g]):
                frame = batch.to_pandas()
                del batch
                frame.columns = [str(c).strip() for c in frame.columns]
                yield frame
    except (OSError, ValueError) as exc:
        raise DataError(f"not a readable Parquet file ({type(exc).__name__}: {exc}). Save the table again as "
                        "Parquet or CSV.", source=name) from None


def _table_chunks(path: Path, name: str, rows: int) -> Iterator[pd.DataFrame]:
    with open(path, "rb") as raw:
        head = raw.read(4)
    if head == b"PAR1" or name.lower().endswith(".parquet"):
        yield from parquet_frames(path, name, rows)
        return
    with open(path, "rb") as raw:
        if head[:2] == GZIP_MAGIC:
            with gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
                try:
                    yield from _csv_chunks(unzipped, name, rows)  # type: ignore[arg-type]
                except EOFError:  # an interrupted copy: the row it stops in, as the whole-file reader says
                    raise gzip_cut_off(raw, name) from None
        else:
            yield from _csv_chunks(raw, name, rows)


def _checked(chunks: Iterator[pd.DataFrame], path: Path, name: str) -> Iterator[pd.DataFrame]:
    """Chunks of a table; on a parse failure, the whole-file reader's own error (it names the bad line, the
    encoding, the empty file) when the file is small enough to read, else a general one."""
    try:
        yield from chunks
    except _Unparsable as exc:
        if path.stat().st_size <= DEFAULT_MAX_BYTES:
            read_table(path, name=name)
        raise DataError(f"not a well-formed UTF-8 CSV file ({exc}). Check that every line has the same number of "
                        "comma-separated fields as the header.", source=name) from None


def iter_features(src: Source, *, feature_columns: Sequence[str] = schema.FEATURE_COLUMNS,
                  chunk_rows: int = DEFAULT_CHUNK_ROWS, name: str | None = None) -> Iterator[pd.DataFrame]:
    """Validated features frames of at most `chunk_rows` profiles each, in file order.

    LISH-MoA-layout tables are validated as ``load_features`` validates a whole file; CMap files (GCTX, GCT,
    h5ad, gene-named tables) give gene-only frames (``gene_features.is_gene_only``). A file object (an
    upload) is read whole: uploads are size-limited already."""
    if not isinstance(src, (str, os.PathLike)):
        yield load_upload(src, name=name, feature_columns=feature_columns, allow_gene_only=True)
        return
    path = Path(src)
    name = name or path.name
    if not path.is_file():
        raise missing_file(path, name)
    kind = detect_format(path, name)
    if kind == "table":
        first = next(_checked(_table_chunks(path, name, 200), path, name), None)
        if first is not None and looks_like_gene_table(first):
            kind = "genes"
    if kind != "table":
        yield from (block.frame for block in iter_gene_features(path, name=name, chunk_size=chunk_rows,
                                                                  max_bytes=None))
        return
    got_rows = False
    for frame in validated_chunks(_checked(_table_chunks(path, name, chunk_rows), path, name), name,
                                  feature_columns):
        got_rows = got_rows or len(frame) > 0
        yield frame
    if not got_rows:
        read_table(path, name=name)  # the whole-file reader names what is wrong with an empty file
        raise DataError("the file has no data rows. Provide a table with a header line and at least one profile.",
                        source=name)


def load_upload(handle: IO[bytes], *, name: str | None = None, max_bytes: int | None = DEFAULT_MAX_BYTES,
                feature_columns: Sequence[str] = schema.FEATURE_COLUMNS,
                allow_gene_only: bool | None = None) -> pd.DataFrame:
    """A features file object (an upload) read whole and validated, as ``dataset.load_features`` reads it: a
    plain CSV in the LISH-MoA layout through the streamed path's reader (pyarrow, ``_csv_chunks``) in one
    chunk, so it is validated exactly as a whole file; anything else (gzip, Parquet, CMap files, a file over
    `max_bytes`, one the fast reader cannot parse) by ``load_features``, whose errors name what is wrong."""
    from ..profiles.dataset import load_features

    name = name or os.path.basename(str(getattr(handle, "name", "") or "upload"))
    size = _size_of(handle)
    head = handle.read(4096)
    handle.seek(0)
    plain_csv = (0 < size <= (max_bytes or size) and head[:2] != GZIP_MAGIC and not _is_parquet(name, head)
                 and b"\x00" not in head and detect_format(handle, name) == "table")
    if plain_csv and _fast_header(_csv_names(handle)):
        try:
            frames = list(_csv_chunks(handle, name, size))  # a row takes a byte at least: one chunk
        except _Unparsable:
            frames = []
        handle.seek(0)
        if len(frames) == 1 and len(frames[0]) and not looks_like_gene_table(frames[0]):
            return validate_features(frames[0], name, feature_columns)
    return load_features(handle, name=name, max_bytes=max_bytes, feature_columns=list(feature_columns),
                         allow_gene_only=allow_gene_only)


class SigIds:
    """The sig_ids seen so far, as 64-bit hashes (8 bytes a profile): a repeat anywhere in a file is an error."""

    def __init__(self, name: str) -> None:
        self.name, self.seen = name, np.zeros(0, dtype=np.uint64)

    def add(self, ids: pd.Index, first_row: int = 0) -> None:
        """Record `ids` (rows `first_row` + 1 ... of the file); DataError on one seen before."""
        hashes = pd.util.hash_array(ids.to_numpy(dtype=object)).astype(np.uint64)
        dup = np.isin(hashes, self.seen)
        if dup.any():
            i = int(np.flatnonzero(dup)[0])
            raise DataError(f"row {first_row + i + 1}: sig_id {ids[i]} appears earlier in the file. Every "
                            "profile needs its own sig_id.", source=self.name, row=first_row + i + 1,
                            column=schema.SIG_ID)
        self.seen = np.union1d(self.seen, hashes)


def validated_chunks(chunks: Iterator[pd.DataFrame], name: str, feature_columns: Sequence[str]
                     ) -> Iterator[pd.DataFrame]:
    """Raw table chunks validated as a whole file would be, error rows counted from the first chunk."""
    seen = SigIds(name)
    offset = 0
    for chunk in chunks:
        try:
            frame = validate_features(chunk.reset_index(drop=True), name, feature_columns)
        except DataError as exc:
            raise shift_row(exc, offset) from None
        seen.add(frame.index, offset)
        offset += len(chunk)
        yield frame


def select_features(src: Source, sig_ids: Sequence[str], *, feature_columns: Sequence[str] = schema.FEATURE_COLUMNS,
                    chunk_rows: int = DEFAULT_CHUNK_ROWS, name: str | None = None) -> pd.DataFrame:
    """The validated profiles `sig_ids` of a file of any size, read chunk by chunk (only the selection is kept:
    ``moa explain --sig-id`` on a whole CMap file). Every chunk is still validated; a sig_id not in the file is
    a DataError naming it."""
    wanted = {str(s) for s in sig_ids}
    kept = [chunk[chunk.index.isin(wanted)] for chunk in iter_features(src, feature_columns=feature_columns,
                                                                      chunk_rows=chunk_rows, name=name)]
    frame = pd.concat(kept) if kept else pd.DataFrame()
    missing = sorted(wanted - set(frame.index))
    if missing:
        raise DataError(f"sig_id {missing[0]} is not in the file ({len(missing)} of the {len(wanted)} asked for are "
                        "missing). Check the ids.", source=name or os.path.basename(str(src)), column=schema.SIG_ID)
    if kept:
        frame.attrs.update(kept[0].attrs)  # gene-only marker and mapping report of CMap files
    return frame
