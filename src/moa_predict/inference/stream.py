"""Prediction of a whole file in row chunks: read a chunk, predict it, append it to the output.

Memory holds one chunk at a time whatever the number of profiles (``data.formats.chunks.iter_features``), and the
output (CSV or Parquet, by suffix) is written to a temporary file beside the target and renamed into place
only when every chunk succeeded, so an interrupted or failed run leaves no partial file behind.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import pandas as pd
from tqdm.auto import tqdm

from ..data.formats.arrow_csv import csv_body, csv_header
from ..data.formats.chunks import DEFAULT_CHUNK_ROWS
from ..data.profiles.gene_features import MAPPING_ATTR, SUBSTITUTED_ATTR, is_gene_only, merge_substitutions
from ..data.formats.io import Source, atomic_path
from ..runtime.background import Serial, prefetched
from ..runtime.workers import release_memory
from ..bundle import Bundle, Predictor, Result


@dataclass
class StreamSummary:
    """What a streamed prediction did: rows, controls, chunks, time, and for CMap files the gene mapping."""

    rows: int = 0
    controls: int = 0
    chunks: int = 0
    seconds: float = 0.0
    gene_only: bool = False
    mapping: dict[str, Any] | None = None
    answered_by: set[str] = field(default_factory=set)
    """Which model(s) answered (``Bundle.answers``): the full model, or the gene-only one for CMap files."""
    extra: dict[str, Any] = field(default_factory=dict)
    ood: int | None = None
    """Profiles flagged out of distribution (None: not checked, or no reference index)."""
    ood_reasons: dict[str, int] = field(default_factory=dict)
    substituted: dict[str, dict[str, int]] = field(default_factory=dict)
    """Times and doses the model was asked in place of the file's own (``data.profiles.gene_features.lish_meta``)."""

    def add(self, other: "StreamSummary") -> None:
        """Add a partition's counts (a cluster task's summary)."""
        self.rows += other.rows
        self.controls += other.controls
        self.chunks += other.chunks
        self.gene_only = self.gene_only or other.gene_only
        self.mapping = self.mapping or other.mapping
        self.answered_by |= other.answered_by
        if other.ood is not None:
            self.ood = (self.ood or 0) + other.ood
            for why, n in other.ood_reasons.items():
                self.ood_reasons[why] = self.ood_reasons.get(why, 0) + n
        merge_substitutions(self.substituted, other.substituted)

    @property
    def rows_per_second(self) -> float:
        return self.rows / max(self.seconds, 1e-9)


class Writer:
    """Appends prediction frames to a CSV (header once) or a Parquet file (one row group per chunk).

    CSV: the text is made by pyarrow in bulk (``arrow_csv.csv_body``: the numbers pandas writes, shortest
    round-trip form, at about a tenth of ``to_csv``'s cost) and appended to the open file.

    Parquet: the first frame's schema (pandas metadata included) is kept, and later frames are converted
    column by column from their NumPy arrays (no pandas round trip for the float32 probabilities); columns
    are written without dictionary encoding (probabilities hardly repeat: trying a dictionary per column
    cost more than the rest of the write, and the files come out smaller)."""

    def __init__(self, path: Path, parquet: bool) -> None:
        self.path, self.parquet, self._pq = path, parquet, None
        self._schema: Any = None
        self._csv: Any = None

    def write(self, frame: pd.DataFrame) -> None:
        if self.parquet:
            import pyarrow.parquet as pq

            table = self._table(frame)
            if self._pq is None:
                self._pq = pq.ParquetWriter(self.path, table.schema, use_dictionary=False)
            self._pq.write_table(table)
            del table
        else:
            if self._csv is None:
                self._csv = open(self.path, "wb")
                self._csv.write(csv_header(frame.columns))
            self._csv.write(csv_body(frame))

    def _table(self, frame: pd.DataFrame) -> Any:
        import pyarrow as pa

        if self._schema is None or list(frame.columns) != self._schema.names:
            table = pa.Table.from_pandas(frame, preserve_index=False)  # another layout fails in write_table
            self._schema = self._schema or table.schema
            return table
        arrays = []
        for column, arrow_field in zip(frame.columns, self._schema):
            values = frame[column]
            if pa.types.is_floating(arrow_field.type) and values.dtype == arrow_field.type.to_pandas_dtype():
                # the NumPy buffer itself (NaN as null, as from_pandas does)
                arrays.append(pa.array(values.to_numpy(), type=arrow_field.type, from_pandas=True))
            else:
                arrays.append(pa.Array.from_pandas(values, type=arrow_field.type))
        return pa.Table.from_arrays(arrays, schema=self._schema)

    def close(self) -> None:
        if self._pq is not None:
            self._pq.close()
        if self._csv is not None:
            self._csv.close()


def predict_chunks(bundle: Bundle, src: Source, *, chunk_rows: int = DEFAULT_CHUNK_ROWS,
                   keep_columns: bool = False, name: str | None = None,
                   summary: StreamSummary | None = None) -> Iterator[pd.DataFrame]:
    """Prediction frames (as ``moa predict`` writes them) of successive chunks of `src`; `summary` is updated."""
    predictor = Predictor(bundle, keep_columns=keep_columns)
    for result in _results(predictor, src, chunk_rows, name, summary):
        yield result.written(keep_columns)


def _results(predictor: Predictor, src: Source, chunk_rows: int, name: str | None, summary: StreamSummary | None,
             overlap: bool = False) -> Iterator[Result]:
    frames = predictor.bundle.frames(src, name=name, chunk_rows=chunk_rows)
    if overlap:
        frames = _released(frames)
    yield from predict_results(predictor, prefetched(frames, enabled=overlap), summary=summary)


@contextlib.contextmanager
def _system_allocator() -> Iterator[None]:
    """pyarrow's system (malloc) memory pool while a file streams, the previous pool restored after. pyarrow's
    default mimalloc pool keeps pages it has freed, so a long run's resident size crept up chunk after chunk
    (1 M GCTX signatures: +15 % over a 10 k run with mimalloc, +5 % with the system pool, whose freed pages
    ``release_memory`` returns to the OS)."""
    import pyarrow as pa

    previous = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        yield
    finally:
        pa.set_memory_pool(previous)


def _released(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """`frames`, freed heap given back after each is made: in the reading thread, so what reading freed is
    returned before the prediction running beside it reaches its own peak."""
    for frame in frames:
        release_memory()
        yield frame


def predict_results(predictor: Predictor, frames: Iterable[pd.DataFrame], *,
                    summary: StreamSummary | None = None) -> Iterator[Result]:
    """The ``Predictor``'s results of validated features frames (one file's chunks, or a cluster partition's), each
    answered by the model its columns call for (``Bundle.for_features``); `summary` is updated (with the OOD
    flags counted when the predictor checks them)."""
    summary = summary if summary is not None else StreamSummary()
    for features in frames:
        if is_gene_only(features):
            summary.gene_only = True
        if MAPPING_ATTR in features.attrs:  # CMap files, and any layout's gene block: how the genes were matched
            summary.mapping = features.attrs[MAPPING_ATTR]
        merge_substitutions(summary.substituted, features.attrs.get(SUBSTITUTED_ATTR))
        result = predictor.predict(features)
        summary.answered_by.add(result.answer.answers)
        if predictor.ood and result.ood is not None:
            flags = result.ood
            summary.ood = (summary.ood or 0) + int(flags["ood"].sum())
            for why, n in flags.loc[flags["ood"], "ood_reason"].str.split("; ").explode().value_counts().items():
                summary.ood_reasons[str(why)] = summary.ood_reasons.get(str(why), 0) + int(n)
        summary.rows += len(result.frame)
        summary.controls += int(result.control.sum())
        summary.chunks += 1
        yield result
        del features, result  # released before the next chunk is read: one chunk in memory at a time


def predict_file(bundle: Bundle, src: Source, out: str | os.PathLike, *, chunk_rows: int = DEFAULT_CHUNK_ROWS,
                 keep_columns: bool = False, progress: bool = True, name: str | None = None,
                 sets_out: str | os.PathLike | None = None, set_level: float | None = None,
                 calls_out: str | os.PathLike | None = None, call_precision: float | None = None,
                 targets_out: str | os.PathLike | None = None, target_calls_out: str | os.PathLike | None = None,
                 overlap: bool = True, ood: bool = True) -> StreamSummary:
    """Predict every profile of `src` into `out` (``.parquet`` → Parquet, else CSV), chunk by chunk, atomically,
    through one ``bundle.Predictor``.

    With `overlap` (the default), chunk k+1 is read and validated, and chunk k-1 written, in background
    threads while chunk k is predicted (``runtime.background``): at most three chunks are alive at once (the
    one being read, the one predicted, the one being written), and the output is the same as without.

    With `sets_out`, each profile's MoA set at `set_level` (default: the bundle's) goes there too
    (``Result.set_frame``); ``summary.extra`` then holds the level, its measured recall, and the counts of sets and
    abstentions. Every file appears only when every chunk succeeded. With `calls_out`, each profile's confident
    call at `call_precision` (default 0.8) is written too (``Result.call_frame``); ``summary.extra["calls"]`` counts
    calls and reasons. With `targets_out` / `target_calls_out`, the bundle's target label set answers the same
    chunks (probabilities; its calls at `call_precision`, counted in ``summary.extra["target_calls"]``).

    With `ood` (the default) every treated profile is checked against the bundle's reference index
    (``reference.ood``): ``summary.ood`` counts the flagged ones, and the ``ood`` / ``ood_reason`` columns are written
    with `keep_columns` and in the sets file. The check costs about one matrix product with the reference per chunk;
    ``ood=False`` (``moa predict --no-ood``) skips it for files of millions of profiles.

    A progress bar counts profiles (with an ETA when the total is known cheaply: the size of a GCTX/h5ad file's
    sample axis is not read here, so the bar shows the rate)."""
    out = Path(out)
    summary = StreamSummary()
    paths = {"sets": sets_out, "calls": calls_out, "targets": targets_out, "target_calls": target_calls_out}
    predictor = extras_predictor(bundle, paths, ood=ood, keep_columns=keep_columns, set_level=set_level,
                                 call_precision=call_precision)
    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        stack.enter_context(_system_allocator())
        writer = table_writer(stack, out)
        extras = Extras(stack, summary, predictor, paths)
        bar = stack.enter_context(tqdm(desc="predicting", unit=" profiles", disable=not progress, leave=False,
                                       delay=1.0))
        writes = stack.enter_context(Serial(enabled=overlap, name="moa-write"))  # left before the writers close
        # closed first on an error: the chunk being read in the background is waited for, the file closed
        results = stack.enter_context(contextlib.closing(_results(predictor, src, chunk_rows, name, summary,
                                                                  overlap)))
        for result in results:
            writes.submit(writer.write, result.written(keep_columns))
            extras.add(extra_tables(result, extras.asked), writes.submit)
            bar.update(len(result.frame))
            del result  # dropped here; the writer holds the frame until it is written
            release_memory()
    summary.seconds = time.perf_counter() - t0
    return summary


EXTRA_TABLES = ("sets", "calls", "targets", "target_calls")
"""The tables a prediction can write beside its probabilities (``--sets-out``, ``--calls-out``, ``--targets-out``,
``--target-calls-out``)."""


def extras_predictor(bundle: Bundle, paths: dict[str, Any], *, ood: bool, keep_columns: bool,
                     set_level: float | None, call_precision: float | None) -> Predictor:
    """The Predictor that answers the tables asked for (a path given in `paths`); a bundle that cannot, or a bad
    level, is one DataError before any work. The set level is resolved here (default: the bundle's), so every
    chunk, and every cluster partition, uses the same."""
    predictor = Predictor(bundle, ood=ood, keep_columns=keep_columns, sets=paths.get("sets") is not None,
                          set_level=set_level, calls=paths.get("calls") is not None, call_precision=call_precision,
                          targets=paths.get("targets") is not None, target_calls=paths.get("target_calls") is not None)
    if predictor.sets:
        predictor.set_level = bundle.trust.default_level if set_level is None else set_level
    return predictor


def extra_tables(result: Result, asked: Iterable[str]) -> dict[str, pd.DataFrame]:
    """The tables `asked` of one chunk's Result (what a cluster task sends back beside the predictions)."""
    make = {"sets": Result.set_frame, "calls": Result.call_frame, "targets": lambda r: r.targets.frame,
            "target_calls": lambda r: r.targets.call_frame()}
    return {name: make[name](result) for name in asked}


class Extras:
    """The tables written beside the predictions: their files (each written to a temporary file renamed into
    place when the stack closes without an error) and their counts in ``summary.extra``."""

    def __init__(self, stack: contextlib.ExitStack, summary: StreamSummary, predictor: Predictor,
                 paths: dict[str, Any]) -> None:
        self.summary = summary
        self.asked = [name for name in EXTRA_TABLES if paths.get(name) is not None]
        x = summary.extra
        if predictor.sets:
            trust, level = predictor.bundle.trust, predictor.set_level
            x.update({"set_level": level, "with_set": 0, "abstentions": {},
                      "measured_recall": trust.measured_at(level)["pooled_recall"],
                      "set_size_quantiles": trust.measured_at(level).get("set_size_quantiles")})
        for name in ("calls", "target_calls"):
            if name in self.asked:
                x[name] = {"precision": predictor.call_precision, "made": 0, "reasons": {}}
        self.writers = {name: table_writer(stack, Path(paths[name])) for name in self.asked}

    def add(self, tables: dict[str, pd.DataFrame], submit: Any = None) -> None:
        """Write one chunk's (or partition's) tables (through `submit(fn, frame)`: a background writer) and count
        the sets, abstentions, calls and the reasons of the others."""
        x = self.summary.extra
        for name, table in tables.items():
            (submit or _now)(self.writers[name].write, table)
            if name == "sets":
                x["with_set"] += int((table["abstention"] == "").sum())
                _count(x["abstentions"], table["abstention"])
            elif name in ("calls", "target_calls"):
                x[name]["made"] += int((table["reason"] == "").sum())
                _count(x[name]["reasons"], table["reason"])


def _now(fn: Any, *args: Any) -> None:
    fn(*args)


def table_writer(stack: contextlib.ExitStack, path: Path) -> Writer:
    """A Writer into a temporary file renamed to `path` when the stack closes without an error."""
    writer = Writer(stack.enter_context(atomic_path(path)), path.suffix.lower() == ".parquet")
    stack.callback(writer.close)
    return writer


def _count(counts: dict[str, int], reasons: pd.Series) -> None:
    """Add the non-empty `reasons` to `counts`."""
    for why, n in reasons[reasons != ""].value_counts().items():
        counts[why] = counts.get(why, 0) + int(n)
