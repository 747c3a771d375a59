"""Server-side keeping of prediction results: an in-memory LRU under a size cap.

Results are addressed by a random id (never by anything the user chose), so paging and
download links work without writing any file. When the cap is reached the least recently
used results are dropped; their links then answer 404 with a clear message.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..data import schema

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
    cp_time: np.ndarray
    cp_dose: np.ndarray
    proba: np.ndarray
    """(rows, targets) float32, in the model's target order."""
    extra: pd.DataFrame | None
    """Pass-through columns of the upload (index = row position), or None."""
    seconds: float
    """Read + validate + predict time."""
    features: pd.DataFrame | None = field(default=None, repr=False)
    """The validated profiles (index sig_id, as the model saw them), for explanation panels; counted in nbytes."""
    id: str = field(default_factory=new_result_id)
    created: float = field(default_factory=time.time)
    derived: dict = field(default_factory=dict, repr=False, compare=False)
    """Computed on first use and kept with the result (web/explain.py): OOD flags, compound calls, the
    similar reference profiles of the rows that were shown."""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    order: np.ndarray = field(init=False, repr=False)
    """(rows, targets) target indices by decreasing probability (stable: ties keep target order)."""

    def __post_init__(self) -> None:
        self.order = np.argsort(-self.proba, axis=1, kind="stable").astype(np.int16)

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
        n = self.proba.nbytes + self.order.nbytes + self.cp_time.nbytes + 3 * 60 * self.n_rows
        if self.extra is not None:
            n += int(self.extra.memory_usage(deep=True).sum())
        if self.features is not None:
            n += int(self.features.memory_usage(deep=False).sum())
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


class ResultStore:
    """Thread-safe LRU of :class:`Prediction` objects, capped in bytes and in count.

    The newest result is always kept, even when it alone exceeds the byte cap.
    """

    def __init__(self, max_bytes: int = 512 * 1024**2, max_items: int = 100) -> None:
        self.max_bytes = max_bytes
        self.max_items = max_items
        self._items: OrderedDict[str, Prediction] = OrderedDict()
        self._sizes: dict[str, int] = {}
        self._lock = threading.Lock()

    def put(self, prediction: Prediction) -> str:
        size = prediction.nbytes
        with self._lock:
            self._items[prediction.id] = prediction
            self._sizes[prediction.id] = size
            self._items.move_to_end(prediction.id)
            while len(self._items) > 1 and (len(self._items) > self.max_items or self.total_bytes > self.max_bytes):
                old, _ = self._items.popitem(last=False)
                del self._sizes[old]
        return prediction.id

    def get(self, result_id: str) -> Prediction | None:
        if not RESULT_ID.match(result_id or ""):
            return None
        with self._lock:
            item = self._items.get(result_id)
            if item is not None:
                self._items.move_to_end(result_id)
            return item

    @property
    def total_bytes(self) -> int:
        return sum(self._sizes.values())

    def __len__(self) -> int:
        return len(self._items)
