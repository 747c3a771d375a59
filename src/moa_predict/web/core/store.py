"""Server-side keeping of prediction results: SQLite rows plus one pair of array files per result, in the
data directory, with an in-memory LRU of the recently used ones in front.

Storage choice: the metadata is a row in ``moa-predict.sqlite3`` (web/core/db.py); the arrays are files named by the
result's random id (never by anything the user chose): ``results/<id>.npy`` (probabilities, float32, read with
``allow_pickle=False``) and ``results/<id>.parquet`` (the validated profiles as the model saw them, float32,
with sig_id, the meta columns and the upload's extra columns, whatever their types). Files rather than BLOBs:
a 4,000-row result is ~17 MB, which would bloat the WAL and the database's pages on every write and every
retention delete; files are written atomically (temp + rename) and read back with no copy through SQLite.
The row is committed only after both files are in place, so a result is never served half-written; files
without a row (a crash between the two) are deleted on the next start.

Writing in the background (``background=True``, what ``moa serve`` uses): ``put`` hands the result to one
writer thread and returns at once, so an upload's answer does not wait for its files; until the writer has
committed it the result is served from memory (it cannot be dropped from there before), ``flush`` waits for
the writer (``close`` and the app's shutdown call it). A process killed in between loses the results not
written yet, never half of one. At most ``max_pending`` results wait: a request beyond that waits for the
writer (memory stays bounded under a burst of uploads).

Retention: results older than ``max_age_seconds``, and the oldest beyond ``max_disk_bytes`` in total, are
expired: their files are deleted and their row is kept (a few bytes) so that the link answers "this result
has expired" (410) rather than a generic 404.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...data.profiles import schema
from ...data.formats.io import atomic_path
from .db import Database

log = logging.getLogger("moa_predict.web")

RESULT_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


def new_result_id() -> str:
    """128 random bits, URL-safe."""
    return secrets.token_urlsafe(16)


@dataclass
class Prediction:
    """One uploaded file's predictions: everything the pages and downloads need, nothing else."""

    source: str
    """The uploaded file's base name (display only; never used as a path)."""
    sig_ids: np.ndarray
    cp_type: np.ndarray
    cp_time: np.ndarray | None
    cp_dose: np.ndarray | None
    """LISH-MoA's time and dose; None for profiles of another layout (its meta columns are in ``features``)."""
    proba: np.ndarray
    """(rows, targets) float32, in the model's target order."""
    extra: pd.DataFrame | None
    """Pass-through columns of the upload (index = row position), or None."""
    seconds: float
    """Read + validate + predict time."""
    features: pd.DataFrame | None = field(default=None, repr=False)
    """The validated profiles (index sig_id, as the model saw them), for explanation panels; counted in nbytes."""
    model: str | None = None
    """The served model that answered (its name on this server, ``web.services.registry``); None for results of older
    servers, which the default model answers."""
    id: str = field(default_factory=new_result_id)
    created: float = field(default_factory=time.time)
    derived: dict = field(default_factory=dict, repr=False, compare=False)
    """Computed on first use and kept with the result (``derive``): MoA sets, calls and targets per level, OOD flags,
    compound calls, the similar reference profiles of the rows that were shown."""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    order: np.ndarray = field(init=False, repr=False)
    """(rows, targets) target indices by decreasing probability (stable: ties keep target order)."""

    def __post_init__(self) -> None:
        self.order = np.argsort(-self.proba, axis=1, kind="stable").astype(np.int16)

    def derive(self, key: str, compute: Callable[[], Any]) -> Any:
        """What `compute` gives for this result, computed on first use and kept in ``derived`` (sets, calls,
        targets, OOD flags, compound calls): computed outside the lock, so a slow one never blocks another."""
        with self.lock:
            if key in self.derived:
                return self.derived[key]
        value = compute()
        with self.lock:
            return self.derived.setdefault(key, value)

    @property
    def n_rows(self) -> int:
        return len(self.sig_ids)

    @property
    def is_control(self) -> np.ndarray:
        return self.cp_type == schema.CONTROL

    @property
    def extra_columns(self) -> list[str]:
        return [] if self.extra is None else [str(c) for c in self.extra.columns]

    @property
    def nbytes(self) -> int:
        """Approximate memory held (arrays exactly, Python strings at ~60 bytes each)."""
        n = (self.proba.nbytes + self.order.nbytes + (0 if self.cp_time is None else self.cp_time.nbytes)
             + 3 * 60 * self.n_rows)
        if self.extra is not None:
            n += int(self.extra.memory_usage(deep=True).sum())
        if self.features is not None:  # from the dtypes: asking each of ~900 columns its size took 0.05 s a result
            n += len(self.features) * sum(getattr(dtype, "itemsize", 8) for dtype in self.features.dtypes)
        return n

    def summary(self) -> dict:
        n_ctl = int(self.is_control.sum())
        return {
            "file": self.source,
            "rows_read": self.n_rows,
            "treated": self.n_rows - n_ctl,
            "controls": n_ctl,
            "rows_rejected": 0,
            "rejection_policy": REJECTION_POLICY,
            "extra_columns": self.extra_columns,
            "seconds": round(self.seconds, 3),
        }


REJECTION_POLICY = ("all or nothing: a file with any invalid row or column is rejected whole, with a message "
                    "naming the row, the column and the problem; nothing is predicted from a partly bad file")


UNKNOWN = ("this result is no longer available on this server (or the link is mistyped). Upload the file "
           "again.")


def expired_message(max_age_seconds: float) -> str:
    days = max_age_seconds / 86400
    return (f"this result has expired: this server keeps results for {days:g} days (and removes the oldest when "
            "its storage is full). Upload the file again to get a new link.")


class ResultUnavailable(LookupError):
    """A result link that answers no result: 404 (unknown id) or 410 (expired), with the sentence to show."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(message)


class ResultStore:
    """Results persisted in `data_dir` (SQLite + array files), safe to use from many threads.

    ``put`` writes the files, then commits the row; ``get`` answers from the in-memory LRU (capped at
    `cache_bytes` / `cache_items`, the newest always kept) or loads the files. ``require`` is ``get`` that
    raises :class:`ResultUnavailable` saying unknown (404) or expired (410)."""

    def __init__(self, data_dir: str | os.PathLike | Database, *, max_age_seconds: float = 30 * 86400,
                 max_disk_bytes: int = 2 * 1024**3, cache_bytes: int = 512 * 1024**2, cache_items: int = 100,
                 clock=time.time, background: bool = False, max_pending: int = 4) -> None:
        self.db = data_dir if isinstance(data_dir, Database) else Database(data_dir)
        self.files = self.db.dir / "results"
        self.files.mkdir(exist_ok=True)
        self.max_age_seconds = max_age_seconds
        self.max_disk_bytes = max_disk_bytes
        self.cache_bytes = cache_bytes
        self.cache_items = cache_items
        self.clock = clock
        self._items: OrderedDict[str, Prediction] = OrderedDict()
        self._sizes: dict[str, int] = {}
        self._lock = threading.Lock()
        self._pending: dict[str, Prediction] = {}
        self._remove_orphans()
        self._count = int(self.db.one("SELECT COUNT(*) AS n FROM results WHERE expired IS NULL")["n"])
        self._kept = self._count
        """Results kept, pending ones included: one attribute, set under the lock, read without it."""
        self.sweep()
        self._queue: queue.Queue[Prediction | None] | None = None
        if background:
            self._queue = queue.Queue(maxsize=max_pending)
            self._writer = threading.Thread(target=self._write_loop, name="moa-result-writer", daemon=True)
            self._writer.start()

    # -- writing ----------------------------------------------------------------------------------------
    def put(self, prediction: Prediction) -> str:
        """Persist the result (files first, then the row), keep it in memory, apply the retention policy; in
        the background when the store was opened so (served from memory meanwhile)."""
        if self._queue is None:
            self._write(prediction)
            with self._lock:
                self._count += 1
                self._kept = self._count + len(self._pending)
            self._after_write(prediction)
            return prediction.id
        with self._lock:
            self._pending[prediction.id] = prediction
            self._kept = self._count + len(self._pending)
        self._queue.put(prediction)
        return prediction.id

    def flush(self) -> None:
        """Wait until every result handed to ``put`` is on disk."""
        if self._queue is not None:
            self._queue.join()

    def _write_loop(self) -> None:
        while (prediction := self._queue.get()) is not None:
            written = False
            try:
                self._write(prediction)
                self._remember(prediction)  # before it leaves _pending: never read back from disk meanwhile
                written = True
            except Exception as exc:  # noqa: BLE001 - the writer keeps going; this result is lost, not half-kept
                log.error("result %s could not be written: %s: %s", prediction.id, type(exc).__name__, exc)
            finally:
                with self._lock:  # one step: counted as kept before and after
                    self._count += written
                    self._pending.pop(prediction.id, None)
                    self._kept = self._count + len(self._pending)
                self._queue.task_done()
            if written:
                self.sweep(keep=prediction.id)
        self._queue.task_done()

    def _write(self, prediction: Prediction) -> None:
        frame = _table(prediction)
        with atomic_path(self._path(prediction.id, ".parquet")) as tmp:
            _write_parquet(frame, tmp)
        with atomic_path(self._path(prediction.id, ".npy")) as tmp:
            with open(tmp, "wb") as handle:
                np.save(handle, np.ascontiguousarray(prediction.proba, dtype=np.float32), allow_pickle=False)
        size = sum(self._path(prediction.id, s).stat().st_size for s in (".parquet", ".npy"))
        with self.db.transaction() as conn:
            conn.execute("INSERT INTO results (id, source, created, seconds, n_rows, bytes, extra_columns, "
                         "has_features, expired, model) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?)",
                         (prediction.id, prediction.source, prediction.created, prediction.seconds,
                          prediction.n_rows, size, json.dumps(prediction.extra_columns),
                          int(prediction.features is not None), prediction.model))

    def _after_write(self, prediction: Prediction) -> None:
        self._remember(prediction)
        self.sweep(keep=prediction.id)

    def sweep(self, keep: str | None = None) -> list[str]:
        """Expire what the retention policy says (too old; the oldest beyond the size cap, never `keep`);
        the ids expired."""
        now = self.clock()
        rows = self.db.all("SELECT id, created, bytes FROM results WHERE expired IS NULL ORDER BY created DESC")
        total, gone = 0, []
        for row in rows:
            total += row["bytes"]
            too_old = now - row["created"] > self.max_age_seconds
            if row["id"] != keep and (too_old or total > self.max_disk_bytes):
                gone.append(row["id"])
                total -= row["bytes"]
        if gone:
            with self.db.transaction() as conn:
                conn.executemany("UPDATE results SET expired = ? WHERE id = ?", [(now, i) for i in gone])
            with self._lock:
                self._count -= len(gone)
                self._kept = self._count + len(self._pending)
            for rid in gone:
                self._forget(rid)
                for suffix in (".parquet", ".npy"):
                    self._path(rid, suffix).unlink(missing_ok=True)
        return gone

    # -- reading ----------------------------------------------------------------------------------------
    def get(self, result_id: str) -> Prediction | None:
        """The result, or None when it is unknown or expired."""
        try:
            return self.require(result_id)
        except ResultUnavailable:
            return None

    def require(self, result_id: str) -> Prediction:
        if not RESULT_ID.match(result_id or ""):
            raise ResultUnavailable(404, UNKNOWN)
        with self._lock:
            pending = self._pending.get(result_id)
        if pending is not None:  # answered, not written yet
            if self.clock() - pending.created > self.max_age_seconds:
                raise ResultUnavailable(410, expired_message(self.max_age_seconds))
            return pending
        row = self.db.one("SELECT * FROM results WHERE id = ?", (result_id,))
        if row is None:
            raise ResultUnavailable(404, UNKNOWN)
        if row["expired"] is not None or self.clock() - row["created"] > self.max_age_seconds:
            if row["expired"] is None:
                self.sweep()
            raise ResultUnavailable(410, expired_message(self.max_age_seconds))
        with self._lock:
            item = self._items.get(result_id)
            if item is not None:
                self._items.move_to_end(result_id)
                return item
        try:
            item = self._load(row)
        except FileNotFoundError:  # expired by another thread between the row and the files
            raise ResultUnavailable(410, expired_message(self.max_age_seconds)) from None
        return self._remember(item)

    def expired(self, result_id: str) -> bool:
        try:
            self.require(result_id)
        except ResultUnavailable as exc:
            return exc.status == 410
        return False

    @property
    def total_bytes(self) -> int:
        """Bytes on disk of the results kept."""
        row = self.db.one("SELECT COALESCE(SUM(bytes), 0) AS n FROM results WHERE expired IS NULL")
        return int(row["n"])

    def __len__(self) -> int:
        """Results kept (not expired; those answered but not yet written included); counted in memory and read
        without taking a lock, so asking (``/api/health``) never waits on the database or a writer."""
        return self._kept

    def close(self) -> None:
        """Write what is pending, stop the writer, close the database."""
        if self._queue is not None:
            self.flush()
            self._queue.put(None)
            self._writer.join()
            self._queue = None
        self.db.close()

    # -- internals ----------------------------------------------------------------------------------------
    def _path(self, result_id: str, suffix: str) -> Path:
        return self.files / f"{result_id}{suffix}"

    def _load(self, row) -> Prediction:
        frame = pd.read_parquet(self._path(row["id"], ".parquet"))
        proba = np.load(self._path(row["id"], ".npy"), allow_pickle=False)
        extra_cols = json.loads(row["extra_columns"])
        return Prediction(
            source=row["source"], sig_ids=frame.index.to_numpy(dtype=object),
            cp_type=frame[schema.CP_TYPE].to_numpy(dtype=object),
            cp_time=frame[schema.CP_TIME].to_numpy() if schema.CP_TIME in frame.columns else None,
            cp_dose=frame[schema.CP_DOSE].to_numpy(dtype=object) if schema.CP_DOSE in frame.columns else None,
            proba=proba,
            extra=frame[extra_cols].reset_index(drop=True) if extra_cols else None, seconds=row["seconds"],
            features=frame if row["has_features"] else None, id=row["id"], created=row["created"],
            model=row["model"])

    def _remember(self, prediction: Prediction) -> Prediction:
        size = prediction.nbytes
        with self._lock:
            self._items[prediction.id] = prediction
            self._sizes[prediction.id] = size
            self._items.move_to_end(prediction.id)
            while len(self._items) > 1 and (len(self._items) > self.cache_items
                                            or sum(self._sizes.values()) > self.cache_bytes):
                old, _ = self._items.popitem(last=False)  # a pending one stays reachable in _pending
                del self._sizes[old]
        return prediction

    def _forget(self, result_id: str) -> None:
        with self._lock:
            self._items.pop(result_id, None)
            self._sizes.pop(result_id, None)

    def _remove_orphans(self) -> None:
        """Files a crash left behind: temporary files, and array files whose row was never committed."""
        live = {r["id"] for r in self.db.all("SELECT id FROM results WHERE expired IS NULL")}
        for path in self.files.iterdir():
            if path.name.startswith(".") or path.name.split(".")[0] not in live:
                log.info("removing %s: left by an interrupted write or an expired result", path.name)
                path.unlink(missing_ok=True)


def _table(prediction: Prediction) -> pd.DataFrame:
    """The result's rows as one frame indexed by sig_id: the validated profiles when kept (else the meta
    columns), plus the upload's extra columns."""
    if prediction.features is not None:
        frame = prediction.features.copy(deep=False)
    else:
        frame = pd.DataFrame({schema.CP_TYPE: prediction.cp_type,
                              **({schema.CP_TIME: prediction.cp_time, schema.CP_DOSE: prediction.cp_dose}
                                 if prediction.cp_time is not None else {})})
    frame.index = pd.Index(prediction.sig_ids, name=schema.SIG_ID)
    if prediction.extra is not None:
        for col in prediction.extra.columns:
            if col not in frame.columns:
                frame[col] = prediction.extra[col].to_numpy()
    frame.columns = [str(c) for c in frame.columns]
    return frame


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """Parquet, with pass-through columns of mixed types (JSON rows may mix numbers and text) kept as text.
    Dictionary encoding only for text columns: tried on every number column it doubled the CPU of storing a
    4,000-profile upload (0.19 → 0.10 s) for a larger file (18 → 14 MB without it)."""
    try:
        frame.to_parquet(path, index=True, use_dictionary=_text_columns(frame))
    except (TypeError, ValueError, ArithmeticError) as exc:  # pyarrow's ArrowTypeError/ArrowInvalid derive from these
        log.info("storing mixed-type columns as text (%s)", exc)
        fixed = frame.copy()
        for col in fixed.columns:
            if fixed[col].dtype == object:
                fixed[col] = fixed[col].map(lambda v: v if v is None or isinstance(v, str) or v != v else str(v))
        fixed.to_parquet(path, index=True, use_dictionary=_text_columns(fixed))


def _text_columns(frame: pd.DataFrame) -> list[str]:
    return [str(c) for c, dtype in frame.dtypes.items() if dtype.kind not in "fiub"]


def open_store(settings) -> ResultStore:
    """The store `settings` describe (``data_dir`` must be set: ``create_app`` fills it in)."""
    if settings.data_dir is None:
        raise ValueError("settings.data_dir is not set")
    return ResultStore(settings.data_dir, max_age_seconds=settings.max_age_seconds,
                       max_disk_bytes=settings.max_disk_bytes, cache_bytes=settings.store_max_bytes,
                       cache_items=settings.store_max_items, background=settings.store_in_background)
