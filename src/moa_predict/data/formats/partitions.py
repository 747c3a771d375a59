"""One features file cut into partitions that separate processes (cluster workers) read on their own.

A partition is a description (a few numbers), not data: each worker opens the file at the path and reads only
its part, so nothing big crosses the network. GCTX/h5ad files split by sample ranges and Parquet files by row
groups (row counts known up front); a plain CSV splits at line boundaries found from byte offsets (Dask's own
way: the file is not read through to count rows, so a partition's first row is known only once the ones
before it have been read). Gzip CSVs, GCT text and gene-named tables are one partition (they cannot be cut
without reading them, and are small in practice). Inside a partition, reading and validation are those of
``chunks.iter_features``; quoted fields holding line breaks are not supported in a CSV cut into parts.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..profiles import schema
from .chunks import (DEFAULT_CHUNK_ROWS, _checked, _csv_chunks, _Unparsable, iter_features, parquet_frames,
                     validated_chunks)
from .cmap import detect_format, open_genes
from ..errors import DataError
from ..profiles.gene_features import iter_gene_features, looks_like_gene_table

DEFAULT_PARTITION_ROWS = 2 * DEFAULT_CHUNK_ROWS
"""Profiles a partition holds (about): small enough that the results in flight stay small, large enough that
the per-task cost (open the file, map the genes) is negligible."""

_CSV_ROW_SAMPLE = 200


@dataclass(frozen=True)
class Partition:
    """Part `index` of `count` of a file: rows `first`..`last` (GCTX/h5ad: samples), Parquet `row_groups`,
    or CSV bytes `byte_start`..`byte_stop` (the header is read separately); ``kind == "whole"``: all of it."""

    index: int
    count: int
    kind: str  # "samples" | "row_groups" | "bytes" | "whole"
    first: int | None = None
    last: int | None = None
    row_groups: tuple[int, ...] = ()
    byte_start: int = 0
    byte_stop: int = 0

    def describe(self) -> str:
        """How an error message names it."""
        if self.kind == "samples":
            where = f"samples {self.first + 1}-{self.last}"
        elif self.kind == "row_groups":
            where = f"rows {self.first + 1}-{self.last}"
        elif self.kind == "bytes":
            where = f"bytes {self.byte_start}-{self.byte_stop}"
        else:
            where = "the whole file"
        return f"partition {self.index + 1} of {self.count} ({where})"


def _ranges(n: int, size: int) -> list[tuple[int, int]]:
    return [(a, min(a + size, n)) for a in range(0, n, size)] or [(0, 0)]


def _csv_header_end(path: Path) -> int:
    with open(path, "rb") as f:
        f.readline()
        return f.tell()


def _csv_bytes_per_row(path: Path, start: int) -> float:
    with open(path, "rb") as f:
        f.seek(start)
        lines = [f.readline() for _ in range(_CSV_ROW_SAMPLE)]
    lines = [x for x in lines if x]
    return max(1.0, sum(map(len, lines)) / max(1, len(lines)))


def _csv_cuts(path: Path, start: int, size: int, step: int) -> list[int]:
    """Byte offsets of line starts near every `step` bytes after `start`: each partition begins at a line."""
    cuts = [start]
    with open(path, "rb") as f:
        for target in range(start + step, size, step):
            f.seek(target - 1)
            f.readline()  # to the end of the line holding byte target - 1
            pos = f.tell()
            if cuts[-1] < pos < size:
                cuts.append(pos)
    return cuts + [size]


def plan_partitions(path: str | os.PathLike, *, rows: int = DEFAULT_PARTITION_ROWS,
                    chunk_rows: int = DEFAULT_CHUNK_ROWS) -> list[Partition]:
    """The partitions of the file at `path`, about `rows` profiles each, in file order.

    Sample ranges are whole multiples of `chunk_rows`, so every partition reads the same chunks as the local
    streaming path (``inference.stream``) and predictions are computed on identical batches."""
    path = Path(path)
    name = path.name
    if not path.is_file():
        raise missing_file(path, name)
    rows = max(chunk_rows, -(-max(1, rows) // chunk_rows) * chunk_rows)
    kind = detect_format(path, name)
    if kind == "hdf5":
        with open_genes(path, name=name, max_bytes=None, whole=False) as source:
            n = source.n_samples
        spans = _ranges(n, rows)
        return [Partition(i, len(spans), "samples", a, b) for i, (a, b) in enumerate(spans)]
    if kind != "table":
        return [Partition(0, 1, "whole")]
    with open(path, "rb") as raw:
        head = raw.read(4)
    if head == b"PAR1" or name.lower().endswith(".parquet"):
        return _parquet_partitions(path, name, rows)
    if head[:2] == b"\x1f\x8b":
        return [Partition(0, 1, "whole")]
    with open(path, "rb") as raw:
        first = next(_checked(_csv_chunks(raw, name, _CSV_ROW_SAMPLE), path, name), None)
    if first is None or looks_like_gene_table(first):
        return [Partition(0, 1, "whole")]
    start, size = _csv_header_end(path), path.stat().st_size
    step = max(1, int(rows * _csv_bytes_per_row(path, start)))
    cuts = _csv_cuts(path, start, size, step)
    spans = list(zip(cuts[:-1], cuts[1:])) or [(start, start)]
    return [Partition(i, len(spans), "bytes", byte_start=a, byte_stop=b) for i, (a, b) in enumerate(spans)]


def _parquet_partitions(path: Path, name: str, rows: int) -> list[Partition]:
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(path).metadata
    except (OSError, ValueError) as exc:
        raise DataError(f"not a readable Parquet file ({type(exc).__name__}: {exc}). Save the table again as "
                        "Parquet or CSV.", source=name) from None
    groups: list[list[int]] = [[]]
    counts = [0]
    for g in range(meta.num_row_groups):
        if counts[-1] >= rows:
            groups.append([])
            counts.append(0)
        groups[-1].append(g)
        counts[-1] += meta.row_group(g).num_rows
    out, first = [], 0
    for i, (gs, n) in enumerate(zip(groups, counts)):
        out.append(Partition(i, len(groups), "row_groups", first, first + n, tuple(gs)))
        first += n
    return out


class _HeaderAndRange(io.RawIOBase):
    """The file's header line followed by its bytes `start`..`stop`: a (seekable) CSV of one partition's rows."""

    def __init__(self, path: Path, header_end: int, start: int, stop: int) -> None:
        self._f = open(path, "rb")
        self._header = self._f.read(header_end)
        self._start, self._size, self._pos = start, header_end + (stop - start), 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, min(self._size, base + offset))
        return self._pos

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        view = memoryview(buffer).cast("B")
        n_head = len(self._header)
        if self._pos < n_head:
            n = min(len(view), n_head - self._pos)
            view[:n] = self._header[self._pos:self._pos + n]
        else:
            self._f.seek(self._start + self._pos - n_head)
            n = self._f.readinto(view[:max(0, min(len(view), self._size - self._pos))])
        self._pos += n
        return n

    def close(self) -> None:
        self._f.close()
        super().close()


def iter_partition(path: str | os.PathLike, part: Partition, *,
                   feature_columns: Sequence[str] = schema.FEATURE_COLUMNS,
                   chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[pd.DataFrame]:
    """Validated features frames of one partition, as ``iter_features`` gives them for the whole file. Error
    rows count from the partition's first row; sig_ids repeated across partitions are the caller's check."""
    path = Path(path)
    name = path.name
    if part.kind == "whole":
        yield from iter_features(path, feature_columns=feature_columns, chunk_rows=chunk_rows)
    elif part.kind == "samples":
        yield from (block.frame for block in iter_gene_features(path, name=name, chunk_size=chunk_rows,
                                                                  max_bytes=None, first=part.first,
                                                                  last=part.last))
    elif part.kind == "row_groups":
        yield from validated_chunks(parquet_frames(path, name, chunk_rows, part.row_groups), name, feature_columns)
    else:
        raw = _HeaderAndRange(path, _csv_header_end(path), part.byte_start, part.byte_stop)
        with io.BufferedReader(raw, buffer_size=1 << 20) as handle:
            yield from validated_chunks(_parsed(_csv_chunks(handle, name, chunk_rows), name), name, feature_columns)


def _parsed(chunks: Iterator[pd.DataFrame], name: str) -> Iterator[pd.DataFrame]:
    """CSV chunks of a partition; a parse failure is reported without reading the whole file again."""
    try:
        yield from chunks
    except _Unparsable as exc:
        raise DataError(f"not a well-formed UTF-8 CSV file ({exc}). Check that every line has the same number of "
                        "comma-separated fields as the header.", source=name) from None
