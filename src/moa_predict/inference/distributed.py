"""Prediction of one file on a Dask cluster: partitions scored on the workers, written here in file order.

The file is cut into partitions (``data.formats.partitions``: a few numbers each); every task opens the file at its
path and reads only its partition (the file must be visible to the workers at that path: a shared file
system, as for Dask's own readers), so only the predictions cross the network. Each worker process loads a
bundle once and keeps it (:func:`worker_bundle`). The results are gathered in order with a bounded number in
flight, checked for sig_ids repeated across partitions, and written through the local path's writer into a
temporary file renamed into place only when every partition succeeded: a failed partition is one DataError
naming it, and no partial output is left. Partitions read the same chunks as the local path, so the
predictions are the local path's.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from ..data.profiles import schema
from ..data.builtin import resolve_bundle
from ..data.formats.chunks import DEFAULT_CHUNK_ROWS, SigIds, shift_row
from ..data.errors import DataError
from ..data.formats.partitions import DEFAULT_PARTITION_ROWS, Partition
from ..runtime.threads import set_threads
from ..bundle import META_FILE, Bundle, Predictor, load_bundle
from .stream import Extras, StreamSummary, extra_tables, extras_predictor, predict_results, table_writer

_BUNDLES: dict[tuple[str, int], Bundle] = {}
_LOCK = threading.Lock()
LOADS: Counter[str] = Counter()
"""Bundle loads in this process, by bundle path (once per worker process: what the tests check)."""


def worker_bundle(path: str, threads: int | None = None) -> Bundle:
    """The bundle at `path`, loaded once per process (reloaded when its bundle.json changes); `threads`: the
    torch/BLAS threads this process uses, set on the first load (None: leave the worker's own)."""
    meta = Path(path) / META_FILE
    key = (str(Path(path).resolve()), meta.stat().st_mtime_ns if meta.is_file() else 0)
    with _LOCK:
        if key not in _BUNDLES:
            if threads:
                set_threads(threads)
            _BUNDLES[key] = load_bundle(path)
            LOADS[key[0]] += 1
        return _BUNDLES[key]


@dataclass
class PartitionResult:
    """One partition's predictions and counts (what a worker sends back)."""

    frame: pd.DataFrame
    summary: StreamSummary = field(default_factory=StreamSummary)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    """The tables asked beside the predictions (``stream.EXTRA_TABLES``: MoA sets, calls, targets, target calls)."""


def score_partition(bundle_path: str, features_path: str, part: Partition, chunk_rows: int, keep_columns: bool,
                    threads: int | None = None, ood: bool = True, asked: tuple[str, ...] = (),
                    set_level: float | None = None, call_precision: float | None = None) -> PartitionResult:
    """A worker's task: read partition `part` of the file and predict it with the process's bundle (the same
    ``Predictor`` as the local path); `asked`: the tables to make beside the predictions."""
    bundle = worker_bundle(bundle_path, threads)
    summary = StreamSummary()
    frames = bundle.frames(features_path, chunk_rows=chunk_rows, part=part)
    predictor = extras_predictor(bundle, {name: True for name in asked}, ood=ood, keep_columns=keep_columns,
                                 set_level=set_level, call_precision=call_precision)
    parts: list[pd.DataFrame] = []
    tables: dict[str, list[pd.DataFrame]] = {name: [] for name in asked}
    for result in predict_results(predictor, frames, summary=summary):
        parts.append(result.written(keep_columns))
        for name, table in extra_tables(result, asked).items():
            tables[name].append(table)
    return PartitionResult(_joined(parts), summary, {name: _joined(t) for name, t in tables.items()})


def _joined(frames: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0] if frames else pd.DataFrame()


def _partition_error(exc: BaseException, part: Partition, rows_before: int, name: str,
                     absolute: bool = False) -> DataError:
    """One DataError naming the partition (and the file row, counted from the start of the file; `absolute`:
    the partition's reader counts them so already, as a layout's does)."""
    if isinstance(exc, DataError):
        shifted = shift_row(exc, 0 if absolute or part.kind in ("whole", "samples") else rows_before)
        text = str(shifted)
        prefix = f"{shifted.source}: " if shifted.source else ""
        return DataError(f"{part.describe()}: {text[len(prefix):]}", source=shifted.source or name,
                         row=shifted.row, column=shifted.column)
    what = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
    return DataError(f"{part.describe()} failed on the cluster ({what}). A worker that died (out of memory, "
                     "killed) or cannot read the file at this path: check the workers' memory and that they see "
                     "the same files; no output was written.", source=name)


def predict_file_distributed(client: Any, bundle_path: str | os.PathLike, src: str | os.PathLike,
                             out: str | os.PathLike, *, chunk_rows: int = DEFAULT_CHUNK_ROWS,
                             partition_rows: int = DEFAULT_PARTITION_ROWS, keep_columns: bool = False,
                             progress: bool = True, threads: int | None = None,
                             in_flight: int | None = None, ood: bool = True,
                             sets_out: str | os.PathLike | None = None, set_level: float | None = None,
                             calls_out: str | os.PathLike | None = None, call_precision: float | None = None,
                             targets_out: str | os.PathLike | None = None,
                             target_calls_out: str | os.PathLike | None = None) -> StreamSummary:
    """``inference.stream.predict_file`` with the partitions scored on the cluster of `client`
    (``distributed.Client``); `threads`: torch threads per worker process (None: the workers' own);
    `in_flight`: partitions submitted ahead of the one being written (default twice the workers). The MoA sets,
    calls, targets and target calls are made on the workers too and written here, in file order, as locally."""
    bundle_path, src, out = resolve_bundle(bundle_path).resolve(), Path(src).resolve(), Path(out)
    name = src.name
    bundle = load_bundle(bundle_path)  # a bad bundle is one clear error here, before any task starts
    paths = {"sets": sets_out, "calls": calls_out, "targets": targets_out, "target_calls": target_calls_out}
    predictor = extras_predictor(bundle, paths, ood=ood, keep_columns=keep_columns, set_level=set_level,
                                 call_precision=call_precision)  # a table the bundle cannot make: an error here
    parts = bundle.partitions(src, rows=partition_rows, chunk_rows=chunk_rows)
    absolute = bundle.counts_file_rows
    ahead = in_flight or 2 * max(1, len(client.scheduler_info().get("workers", {})))
    total = parts[-1].last if parts[-1].kind in ("samples", "row_groups") else None
    run = uuid.uuid4().hex[:8]
    summary = StreamSummary(extra={"partitions": len(parts)})
    seen = SigIds(name)
    t0 = time.perf_counter()

    def submit(part: Partition) -> Any:
        return client.submit(score_partition, str(bundle_path), str(src), part, chunk_rows, keep_columns, threads,
                             ood, tuple(extras.asked), predictor.set_level, predictor.call_precision,
                             key=f"moa-predict-{run}-{part.index}", pure=False)

    rows_before = 0
    with contextlib.ExitStack() as stack:
        writer = table_writer(stack, out)
        extras = Extras(stack, summary, predictor, paths)
        pending = deque(submit(p) for p in parts[:ahead])
        stack.callback(lambda: [future.cancel() for future in pending])  # first on an error
        with tqdm(desc="predicting (dask)", unit=" profiles", total=total, disable=not progress, leave=False,
                  delay=1.0) as bar:
            for i, part in enumerate(parts):
                future = pending.popleft()
                if i + ahead < len(parts):
                    pending.append(submit(parts[i + ahead]))
                try:
                    result = future.result()
                except Exception as exc:  # noqa: BLE001  (any worker failure becomes one DataError)
                    raise _partition_error(exc, part, rows_before, name, absolute=absolute) from None
                finally:
                    future.release()
                try:
                    seen.add(pd.Index(result.frame[schema.SIG_ID]) if len(result.frame) else pd.Index([]),
                             rows_before)
                except DataError as exc:
                    raise _partition_error(exc, part, 0, name) from None
                writer.write(result.frame)
                extras.add(result.tables)
                s = result.summary
                summary.add(s)
                rows_before += s.rows
                bar.update(s.rows)
        if summary.rows == 0:
            raise DataError("the file has no data rows. Provide a table with a header line and at least one "
                            "profile.", source=name)
    summary.seconds = time.perf_counter() - t0
    return summary
