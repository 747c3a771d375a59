"""Thread control: the one place that changes torch's and BLAS's thread counts.

Torch's intra-op thread count and the BLAS thread limits are process-wide. Batch prediction, explanations,
feature transforms and benchmarks all want fewer threads for a while (on a busy 2-core machine a waiting
OpenMP or BLAS thread costs far more than it brings: small products took 10-100x longer). When each saved
and restored the settings on its own, two overlapping users could restore each other's values half-way, and
the process stayed at one thread for good. Here every user goes through :func:`limit_threads`, which counts
them: the settings before the first one entered come back when the last one leaves.

Caveat (OpenBLAS 0.3.31 as bundled with NumPy/SciPy): once the main thread has set a BLAS limit, limits set
from other threads are ignored (threadpoolctl reports the main thread's value), so a limit entered in a worker
thread reliably limits torch but BLAS only when the main thread never set one.

Batch prediction is data-parallel (:func:`map_row_chunks`): row chunks run in a pool of Python threads, each
doing single-threaded work (torch and NumPy release the GIL in their kernels). On 2 cores this beats letting
every small matrix product spread itself over both cores, and it parallelises the NumPy steps (RankGauss, PCA)
that never run multi-threaded on their own.
"""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar

import torch
from threadpoolctl import ThreadpoolController

T = TypeVar("T")

_CONTROLLER: ThreadpoolController | None = None
_LOCK = threading.Lock()  # guards everything below
_ACTIVE: Counter[int] = Counter()  # limits requested by the blocks now inside limit_threads
_SAVED: tuple[int, list[int]] | None = None  # torch threads and BLAS limits before the first block entered
_APPLIED: int | None = None  # the limit in force while blocks are inside
_POOL_LOCK = threading.Lock()  # one row-chunk pool at a time: two would oversubscribe the cores


def _controller() -> ThreadpoolController:
    """Inspecting the loaded BLAS libraries takes milliseconds: do it once per process."""
    global _CONTROLLER
    if _CONTROLLER is None:
        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER


def _blas() -> list:
    return list(_controller().select(user_api="blas").lib_controllers)


def _blas_limits() -> list[int]:
    return [lib.num_threads for lib in _blas()]


def _apply(torch_threads: int, blas_limits: list[int]) -> None:
    if torch.get_num_threads() != torch_threads:
        torch.set_num_threads(torch_threads)
    for lib, n in zip(_blas(), blas_limits):
        if lib.num_threads != n:
            lib.set_num_threads(n)


@contextmanager
def limit_threads(n: int = 1) -> Iterator[None]:
    """Torch intra-op threads and BLAS threads limited to `n` inside the block.

    Overlapping users (from several Python threads, or nested) are counted: while several are inside, the
    smallest requested limit is in force, and the settings in force before the first one entered come back
    when the last one leaves, also when a block raises."""
    global _SAVED
    n = max(1, int(n))
    with _LOCK:
        if not _ACTIVE:
            _SAVED = (torch.get_num_threads(), _blas_limits())
        _ACTIVE[n] += 1
        _reapply()
    try:
        yield
    finally:
        with _LOCK:
            _ACTIVE[n] -= 1
            if _ACTIVE[n] == 0:
                del _ACTIVE[n]
            _reapply()


def _reapply() -> None:
    """Put the settings the active blocks ask for in force (the saved ones when none is left); under _LOCK."""
    global _SAVED, _APPLIED
    if not _ACTIVE:
        if _SAVED is not None:
            _apply(*_SAVED)
        _SAVED, _APPLIED = None, None
        return
    n = min(_ACTIVE)
    if n != _APPLIED:
        _apply(n, [n] * len(_SAVED[1]))
        _APPLIED = n


def set_threads(n: int) -> None:
    """Process-wide thread counts chosen by a command (``--torch-threads``), not restored: torch's, and every
    thread pool threadpoolctl finds (BLAS and OpenMP).

    Inside :func:`limit_threads` blocks, the new counts are the ones restored when the last block leaves."""
    global _SAVED, _APPLIED
    n = max(1, int(n))
    with _LOCK:
        torch.set_num_threads(n)
        _controller().limit(limits=n)
        if _ACTIVE:
            _SAVED = (n, _blas_limits())
            _APPLIED = None
            _reapply()


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
    with _POOL_LOCK, limit_threads(1):
        first = fn(*bounds[0])
        with ThreadPoolExecutor(max_workers=n_threads, thread_name_prefix="moa-predict") as pool:
            rest = list(pool.map(lambda ab: fn(*ab), bounds[1:]))
    return [first, *rest]
