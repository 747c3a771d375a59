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
from typing import Any, Callable, Iterator, TypeVar

import torch
from threadpoolctl import ThreadpoolController

T = TypeVar("T")

_CONTROLLER: ThreadpoolController | None = None
_POOL_LOCK = threading.Lock()  # one batch prediction at a time owns the process-wide thread settings
_LIMIT_LOCK = threading.Lock()
_limit_users = 0
_limit_saved: tuple[int, Any] | None = None
_PER_THREAD: bool | None = None


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


def _torch_threads_per_thread() -> bool:
    """Under OpenMP (Linux builds) torch's thread count is kept per OS thread once a thread has used it; with
    torch's own pool it is one process-wide number."""
    global _PER_THREAD
    if _PER_THREAD is None:
        _PER_THREAD = "parallel backend: openmp" in torch.__config__.parallel_info().lower()
    return _PER_THREAD


@contextmanager
def limit_threads(n: int = 1) -> Iterator[None]:
    """Torch intra-op threads and BLAS threads limited to `n` inside the block.

    The settings are shared, so overlapping users (requests in several threads) are counted: the first one in
    applies the limit, and the settings in force before it come back when the last one leaves (a user leaving
    early never restores them under another's feet). While blocks overlap, the first one's `n` holds for BLAS.
    Where torch keeps its count per thread (OpenMP), each thread also gets its own count back on leaving.
    """
    global _limit_users, _limit_saved
    n = max(1, int(n))
    mine = torch.get_num_threads()
    with _LIMIT_LOCK:
        if _limit_users == 0:
            _limit_saved = (mine, _controller().limit(limits=n, user_api="blas"))
        _limit_users += 1
        torch.set_num_threads(n)
    try:
        yield
    finally:
        with _LIMIT_LOCK:
            _limit_users -= 1
            if _limit_users == 0 and _limit_saved is not None:
                torch_threads, limiter = _limit_saved
                _limit_saved = None
                limiter.restore_original_limits()
                torch.set_num_threads(mine if _torch_threads_per_thread() else torch_threads)
            elif _torch_threads_per_thread():
                torch.set_num_threads(mine)


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
