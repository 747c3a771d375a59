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

from ..data.profiles import schema
from ..data.formats.arrow_csv import csv_body, csv_header
from ..data.errors import DataError
from ..data.formats.chunks import DEFAULT_CHUNK_ROWS, iter_features
from ..data.profiles.gene_features import MAPPING_ATTR, SUBSTITUTED_ATTR, is_gene_only, merge_substitutions
from ..data.formats.io import Source, atomic_path
from ..runtime.background import Serial, prefetched
from ..runtime.workers import release_memory
from ..bundle import Bundle


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


OOD_COLUMNS = ("ood", "ood_reason")
"""What ``moa predict`` writes per profile after the pass-through columns (``--keep-columns``) and in the sets file."""


def predict_chunks(bundle: Bundle, src: Source, *, chunk_rows: int = DEFAULT_CHUNK_ROWS,
                   keep_columns: bool = False, name: str | None = None,
                   summary: StreamSummary | None = None) -> Iterator[pd.DataFrame]:
    """Prediction frames (``Bundle.predict_frame``) of successive chunks of `src`; `summary` is updated."""
    for _, frame in _chunks(bundle, src, chunk_rows, keep_columns, name, summary):
        yield written(frame, keep_columns)


def written(frame: pd.DataFrame, keep_columns: bool) -> pd.DataFrame:
    """The prediction frame as written: the OOD columns only with `keep_columns` (else the submission layout)."""
    return frame if keep_columns else frame.drop(columns=[c for c in OOD_COLUMNS if c in frame.columns])


def set_frame(bundle: Bundle, features: pd.DataFrame, frame: pd.DataFrame, level: float) -> pd.DataFrame:
    """``sig_id, moa_set, abstention`` of one chunk: the MoA set at `level` joined by ``|`` (empty when empty),
    and why a profile has no set (control, out of distribution, no confident MoA), empty otherwise."""
    trust = bundle.trust
    if trust is None:  # a gene-only companion trained without cross-validation
        raise DataError("the model that answered these profiles has no MoA-set calibration; retrain the bundle "
                        "with 'moa train' (with cross-validation) to get --sets-out.", source=str(bundle.path or ""))
    proba = frame[bundle.target_names].to_numpy()
    control = (features[schema.CP_TYPE] == schema.CONTROL).to_numpy()
    ood = frame[list(OOD_COLUMNS)] if OOD_COLUMNS[0] in frame.columns else None
    if ood is None and bundle.reference is not None:
        ood = _ood(bundle, features)
    S, why = trust.profile_sets(proba, level, control, None if ood is None else ood["ood"].to_numpy(bool))
    names = pd.Index(bundle.target_names)
    out = pd.DataFrame({schema.SIG_ID: frame[schema.SIG_ID].to_numpy(),
                        "moa_set": ["|".join(names[row]) for row in S],
                        "abstention": [w or "" for w in why]})
    if ood is not None:
        out[list(OOD_COLUMNS)] = ood.to_numpy()
    return out


def _ood(bundle: Bundle, features: pd.DataFrame) -> pd.DataFrame:
    """``ood`` / ``ood_reason`` of each profile, positional index (a control unlike the training controls is
    flagged too: it says something about the plate)."""
    from ..reference.ood import is_simulated, ood_columns

    return ood_columns(bundle.reference, features, is_simulated(bundle)).reset_index(drop=True)


def call_model_of(bundle: Bundle) -> Any:
    """The bundle's calls (``trust.calls.CallModel``), or one clear DataError saying why there are none."""
    trust = bundle.trust
    model = None if trust is None else trust.call_model
    if model is None:
        raise DataError("this model has no calibrated calls: it was trained without cross-validation (or before "
                        "moa-predict made calls), so no threshold with a measured precision exists. Retrain it with "
                        "'moa train' (with cross-validation) to get --calls-out.", source=str(bundle.path or "bundle"))
    return model


def id_column(bundle: Bundle) -> str:
    """The name of the id column in outputs: ``sig_id``, or the layout's id column (``id`` when it joins several)."""
    layout = bundle.layout
    if layout is None or not layout.id:
        return schema.SIG_ID if layout is None else "id"
    return layout.id[0] if len(layout.id) == 1 else "id"


def ood_of(bundle: Bundle, features: pd.DataFrame) -> Any:
    """The OOD flags of these profiles (``reference.ood``), None when the bundle has no reference index."""
    if bundle.reference is None:
        return None
    from ..reference.ood import ood_mask

    return ood_mask(bundle.reference, features)


def call_frame(bundle: Bundle, features: pd.DataFrame, frame: pd.DataFrame, precision: float,
               id_name: str = schema.SIG_ID) -> pd.DataFrame:
    """``id, call, kind, estimated_precision, reason`` of one chunk: the MoA (or family) called at `precision`,
    the precision measured for such calls on held-out compounds, and why there is no call."""
    proba = frame[bundle.target_names].to_numpy()
    control = (features[schema.CP_TYPE] == schema.CONTROL).to_numpy()
    # the flags predict_features already put in the frame, else computed here
    ood = frame["ood"].to_numpy(bool) if "ood" in frame.columns else ood_of(bundle, features)
    calls = call_model_of(bundle).call(proba, bundle.target_names, precision, "profile", control, ood)
    calls.insert(0, id_name, frame[schema.SIG_ID].to_numpy())
    return calls[[id_name, "call", "kind", "estimated_precision", "reason"]]


def _chunks(bundle: Bundle, src: Source, chunk_rows: int, keep_columns: bool, name: str | None,
            summary: StreamSummary | None, overlap: bool = False,
            ood: bool = True) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    if bundle.layout is not None:  # a lab's own layout: in chunks when it reads one profile at a time, else whole
        frames: Iterator[pd.DataFrame] = bundle.layout_frames(src, name=name, chunk_rows=chunk_rows)
    else:
        frames = iter_features(src, feature_columns=bundle.feature_columns, chunk_rows=chunk_rows, name=name)
    if overlap:
        frames = _released(frames)
    yield from predict_features(bundle, prefetched(frames, enabled=overlap), keep_columns=keep_columns,
                                summary=summary, ood=ood)


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


def predict_features(bundle: Bundle, frames: Iterable[pd.DataFrame], *, keep_columns: bool = False,
                     summary: StreamSummary | None = None,
                     ood: bool = True) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    """(features, predictions) of validated features frames (one file's chunks, or a cluster partition's), each
    answered by the model its columns call for (``Bundle.for_features``); `summary` is updated.

    With `ood` (and a bundle with a reference index) each prediction frame ends with ``ood`` / ``ood_reason``
    (``written`` drops them unless the pass-through columns are kept) and the summary counts the flagged profiles."""
    summary = summary if summary is not None else StreamSummary()
    for features in frames:
        if is_gene_only(features):
            summary.gene_only = True
        if MAPPING_ATTR in features.attrs:  # CMap files, and any layout's gene block: how the genes were matched
            summary.mapping = features.attrs[MAPPING_ATTR]
        merge_substitutions(summary.substituted, features.attrs.get(SUBSTITUTED_ATTR))
        answer = bundle.for_features(features)
        summary.answered_by.add(answer.answers)
        frame = answer.predict_frame(features, keep_columns=keep_columns)
        if ood and answer.reference is not None:
            flags = _ood(answer, features)
            frame[list(OOD_COLUMNS)] = flags.to_numpy()
            frame["ood"] = frame["ood"].astype(bool)
            summary.ood = (summary.ood or 0) + int(flags["ood"].sum())
            for why, n in flags.loc[flags["ood"], "ood_reason"].str.split("; ").explode().value_counts().items():
                summary.ood_reasons[str(why)] = summary.ood_reasons.get(str(why), 0) + int(n)
        summary.rows += len(frame)
        summary.controls += int((features[schema.CP_TYPE] == schema.CONTROL).sum())
        summary.chunks += 1
        yield features, frame
        del features, frame  # released before the next chunk is read: one chunk in memory at a time


def predict_file(bundle: Bundle, src: Source, out: str | os.PathLike, *, chunk_rows: int = DEFAULT_CHUNK_ROWS,
                 keep_columns: bool = False, progress: bool = True, name: str | None = None,
                 sets_out: str | os.PathLike | None = None, set_level: float | None = None,
                 calls_out: str | os.PathLike | None = None, call_precision: float | None = None,
                 overlap: bool = True, ood: bool = True) -> StreamSummary:
    """Predict every profile of `src` into `out` (``.parquet`` → Parquet, else CSV), chunk by chunk, atomically.

    With `overlap` (the default), chunk k+1 is read and validated, and chunk k-1 written, in background
    threads while chunk k is predicted (``runtime.background``): at most three chunks are alive at once (the
    one being read, the one predicted, the one being written), and the output is the same as without.

    With `sets_out`, each profile's MoA set at `set_level` (default: the bundle's) goes there too (``set_frame``);
    ``summary.extra`` then holds the level, its measured recall, and the counts of sets and abstentions. Both
    files appear only when every chunk succeeded. With `calls_out`, each profile's confident call at
    `call_precision` (default 0.8) is written too (``call_frame``); ``summary.extra["calls"]`` counts calls and
    reasons.

    With `ood` (the default) every treated profile is checked against the bundle's reference index
    (``reference.ood``): ``summary.ood`` counts the flagged ones, and the ``ood`` / ``ood_reason`` columns are written
    with `keep_columns` and in the sets file. The check costs about one matrix product with the reference per chunk;
    ``ood=False`` (``moa predict --no-ood``) skips it for files of millions of profiles.

    A progress bar counts profiles (with an ETA when the total is known cheaply: the size of a GCTX/h5ad file's
    sample axis is not read here, so the bar shows the rate)."""
    out = Path(out)
    summary = StreamSummary()
    if sets_out is not None:
        if bundle.trust is None:
            raise DataError("this bundle has no MoA-set calibration (trained without cross-validation, or before "
                            "moa-predict made sets); retrain it with 'moa train' (with CV) to get --sets-out.",
                            source=str(bundle.path or "bundle"))
        set_level = bundle.trust.default_level if set_level is None else set_level
        bundle.trust.level_index(set_level)  # a bad level fails before any work
        summary.extra.update({"set_level": set_level, "with_set": 0, "abstentions": {},
                              "measured_recall": bundle.trust.measured_at(set_level)["pooled_recall"],
                              "set_size_quantiles": bundle.trust.measured_at(set_level).get("set_size_quantiles")})
    if calls_out is not None:
        from ..trust.calls import DEFAULT_PRECISION

        call_precision = DEFAULT_PRECISION if call_precision is None else call_precision
        for answer in (bundle, bundle.gene_only):  # no calls or a bad level fail before any work
            if answer is not None and (answer is bundle or answer.trust is not None):
                call_model_of(answer).level_index(call_precision)
        summary.extra["calls"] = {"precision": call_precision, "made": 0, "reasons": {}}
    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        stack.enter_context(_system_allocator())
        tmp = stack.enter_context(atomic_path(out))
        writer = Writer(tmp, out.suffix.lower() == ".parquet")
        stack.callback(writer.close)
        sets_writer = None
        if sets_out is not None:
            sets_out = Path(sets_out)
            sets_writer = Writer(stack.enter_context(atomic_path(sets_out)), sets_out.suffix.lower() == ".parquet")
            stack.callback(sets_writer.close)
        calls_writer = None
        if calls_out is not None:
            calls_out = Path(calls_out)
            calls_writer = Writer(stack.enter_context(atomic_path(calls_out)), calls_out.suffix.lower() == ".parquet")
            stack.callback(calls_writer.close)
        bar = stack.enter_context(tqdm(desc="predicting", unit=" profiles", disable=not progress, leave=False,
                                       delay=1.0))
        writes = stack.enter_context(Serial(enabled=overlap, name="moa-write"))  # left before the writers close
        # closed first on an error: the chunk being read in the background is waited for, the file closed
        chunks = stack.enter_context(contextlib.closing(_chunks(bundle, src, chunk_rows, keep_columns, name,
                                                                summary, overlap, ood)))
        for features, frame in chunks:
            writes.submit(writer.write, written(frame, keep_columns))
            if sets_writer is not None:
                sets = set_frame(bundle.for_features(features), features, frame, set_level)
                writes.submit(sets_writer.write, sets)
                summary.extra["with_set"] += int((sets["abstention"] == "").sum())
                counts = summary.extra["abstentions"]
                for why, n in sets.loc[sets["abstention"] != "", "abstention"].value_counts().items():
                    counts[why] = counts.get(why, 0) + int(n)
                del sets
            if calls_writer is not None:
                calls = call_frame(bundle.for_features(features), features, frame, call_precision, id_column(bundle))
                writes.submit(calls_writer.write, calls)
                x = summary.extra["calls"]
                x["made"] += int((calls["reason"] == "").sum())
                for why, n in calls.loc[calls["reason"] != "", "reason"].value_counts().items():
                    x["reasons"][why] = x["reasons"].get(why, 0) + int(n)
                del calls
            bar.update(len(frame))
            del features, frame  # dropped here; the writer holds the frame until it is written
            release_memory()
    summary.seconds = time.perf_counter() - t0
    return summary
