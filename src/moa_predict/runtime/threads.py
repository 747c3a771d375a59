"""Thread control for batch prediction.

Batch prediction is data-parallel: row chunks run in a pool of Python threads, each doing
single-threaded work (torch and NumPy release the GIL in their kernels). On 2 cores this beats
letting every small matrix product spread itself over both cores, and it parallelises the
NumPy steps (RankGauss, PCA) that never run multi-threaded on their own.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar

import torch
from threadpoolctl import ThreadpoolController

T = TypeVar("T")

_CONTROLLER: ThreadpoolController | None = None
_POOL_LOCK = threading.Lock()  # one batch prediction at a time owns the process-wide thread settings


def _controller() -> ThreadpoolController:
    """Inspecting the loaded BLAS libraries takes milliseconds: do it once."""
    global _CONTROLLER
    if _CONTROLLER is None:
        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER


@contextmanager
def single_blas_thread() -> Iterator[None]:
    """One BLAS thread inside the block (small products on a busy machine: multi-threaded BLAS spins)."""
    with _controller().limit(limits=1, user_api="blas"):
        yield


def map_row_chunks(fn: Callable[[int, int], T], n_rows: int, n_threads: int | None = None,
                   chunk: int = 4096) -> list[T]:
    """``[fn(start, stop) for each row chunk]``, in order, computed by `n_threads` threads (default:
    torch's thread count) with torch and BLAS single-threaded in each. The first chunk runs alone, so
    lazily built caches (lookup tables, fused weights) are built once, not raced."""
    n_threads = max(1, int(n_threads or torch.get_num_threads()))
    if n_rows <= 0:
        return []
    chunk = max(1, min(int(chunk), -(-n_rows // n_threads)))
    bounds = [(i, min(i + chunk, n_rows)) for i in range(0, n_rows, chunk)]
    if n_threads == 1 or len(bounds) == 1:
        return [fn(a, b) for a, b in bounds]
    with _POOL_LOCK:
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with single_blas_thread():
                first = fn(*bounds[0])
                with ThreadPoolExecutor(max_workers=n_threads, thread_name_prefix="moa-predict") as pool:
                    rest = list(pool.map(lambda ab: fn(*ab), bounds[1:]))
        finally:
            torch.set_num_threads(before)
    return [first, *rest]
