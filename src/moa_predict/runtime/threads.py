"""Thread control: the one place that changes torch's and BLAS's thread counts.

Torch's intra-op thread count (OpenMP, and MKL through it) belongs to the **calling thread**: a count set in one
Python thread leaves every other thread's as it was. BLAS limits (OpenBLAS, as bundled with NumPy/SciPy) are
process-wide. :func:`limit_threads` handles both: torch's count is set and restored in the thread that enters the
block (nested blocks: the smallest limit wins), and the BLAS limit is counted over every block inside, so the
settings before the first one entered come back when the last one leaves. When both were handled process-wide, a
request entering while another was limited kept its own thread count of 2, and the same upload got answers that
differed in the last digits depending on what else the server was doing.

The prediction path is deterministic: every row block of :func:`map_row_chunks` is computed with one torch thread,
and the blocks depend on the number of rows only, never on the thread count, so an answer does not depend on the
concurrency, on ``--torch-threads`` or on the machine's load (``tests/test_runtime.py`` checks bit-for-bit
equality). On a busy 2-core machine a waiting OpenMP or BLAS thread costs far more than it brings (small products
took 10-100x longer), so data parallelism over row blocks (torch and NumPy release the GIL in their kernels) is also
the fast way; it parallelises the NumPy steps (RankGauss, PCA) that never run multi-threaded on their own.

Caveat (OpenBLAS 0.3.31 as bundled with NumPy/SciPy): once the main thread has set a BLAS limit, limits set from
other threads are ignored (threadpoolctl reports the main thread's value). OpenBLAS splits a product's rows and
columns between its threads, never the sums, so its results do not depend on its thread count.
"""

from __future__ import annotations

import functools
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar

import torch
from threadpoolctl import ThreadpoolController

T = TypeVar("T")

_CONTROLLER: ThreadpoolController | None = None
_LOCK = threading.Lock()  # guards the BLAS state below
_ACTIVE: Counter[int] = Counter()  # limits requested by the blocks now inside limit_threads, in any thread
_SAVED_BLAS: list[int] | None = None  # BLAS limits before the first block entered
_APPLIED: int | None = None  # the BLAS limit in force while blocks are inside
_POOL_LOCK = threading.Lock()  # one row-chunk pool at a time: two would oversubscribe the cores
_LOCAL = threading.local()  # per thread: `stack` (limits of the blocks this thread is in), `base` (count before)

MIN_BLOCK_ROWS = 256
"""Row blocks of :func:`row_blocks` are never smaller than this (unless the input is)."""
BLOCKS_PER_INPUT = 4
"""A small input is still cut into this many row blocks, so several threads can share it."""


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


def _apply_blas(limits: list[int]) -> None:
    for lib, n in zip(_blas(), limits):
        if lib.num_threads != n:
            lib.set_num_threads(n)


def _set_torch(n: int) -> None:
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


@contextmanager
def limit_threads(n: int = 1) -> Iterator[None]:
    """Torch intra-op threads (of this Python thread) and BLAS threads limited to `n` inside the block.

    Nested blocks: the smallest limit is in force. Overlapping blocks of several Python threads are counted for
    BLAS (process-wide): the smallest requested limit is in force, and the limits before the first block entered
    come back when the last one leaves, also when a block raises. Torch's count is the thread's own."""
    global _SAVED_BLAS
    n = max(1, int(n))
    stack: list[int] = _LOCAL.__dict__.setdefault("stack", [])
    if not stack:
        _LOCAL.base = torch.get_num_threads()
    stack.append(n)
    with _LOCK:
        if not _ACTIVE:
            _SAVED_BLAS = _blas_limits()
        _ACTIVE[n] += 1
        _reapply_blas()
    try:
        _set_torch(min(stack))
        yield
    finally:
        stack.pop()
        _set_torch(min(stack) if stack else _LOCAL.base)
        with _LOCK:
            _ACTIVE[n] -= 1
            if _ACTIVE[n] == 0:
                del _ACTIVE[n]
            _reapply_blas()


def _reapply_blas() -> None:
    """Put the BLAS limit the active blocks ask for in force (the saved one when none is left); under _LOCK."""
    global _SAVED_BLAS, _APPLIED
    if not _ACTIVE:
        if _SAVED_BLAS is not None:
            _apply_blas(_SAVED_BLAS)
        _SAVED_BLAS, _APPLIED = None, None
        return
    n = min(_ACTIVE)
    if n != _APPLIED:
        _apply_blas([n] * len(_SAVED_BLAS or ()))
        _APPLIED = n


def set_threads(n: int) -> None:
    """Thread counts chosen by a command (``--torch-threads``), not restored: torch's (this thread's, and the one
    its row-block pools use), and every thread pool threadpoolctl finds (BLAS and OpenMP).

    Inside :func:`limit_threads` blocks, the new counts are the ones restored when the last block leaves."""
    global _SAVED_BLAS, _APPLIED
    n = max(1, int(n))
    stack = _LOCAL.__dict__.get("stack") or []
    if stack:
        _LOCAL.base = n
    else:
        torch.set_num_threads(n)
    with _LOCK:
        _controller().limit(limits=n)
        if _ACTIVE:
            _SAVED_BLAS = _blas_limits()
            _APPLIED = None
            _reapply_blas()
    if stack:
        _set_torch(min(stack))


def single_threaded(fn: Callable[..., T]) -> Callable[..., T]:
    """`fn` run inside ``limit_threads(1)``: for answers (explanations) that must not depend on the thread count."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with limit_threads(1):
            return fn(*args, **kwargs)

    return wrapper


def row_blocks(n_rows: int, chunk: int = 4096) -> list[tuple[int, int]]:
    """Row ranges ``(start, stop)`` covering `n_rows`: at most `chunk` rows each, a small input cut into
    ``BLOCKS_PER_INPUT`` blocks of at least ``MIN_BLOCK_ROWS``. They depend on the row count only — never on
    threads — because a row's float32 result can depend on the size of the block it is computed in."""
    if n_rows <= 0:
        return []
    size = max(1, min(int(chunk), max(MIN_BLOCK_ROWS, -(-n_rows // BLOCKS_PER_INPUT))))
    return [(i, min(i + size, n_rows)) for i in range(0, n_rows, size)]


def _one_thread() -> None:
    torch.set_num_threads(1)


def map_row_chunks(fn: Callable[[int, int], T], n_rows: int, n_threads: int | None = None,
                   chunk: int = 4096, first_alone: bool = True) -> list[T]:
    """``[fn(start, stop) for (start, stop) in row_blocks(n_rows, chunk)]``, in order, computed by up to
    `n_threads` threads (default: this thread's torch count) with torch and BLAS single-threaded in each, so the
    results are the same whatever the thread count. With `first_alone` the first block runs alone, so lazily built
    caches (lookup tables, fused weights) are built once, not raced; a caller whose caches are built passes False
    and every block shares the threads (a 5,000-row chunk's four blocks: two rounds instead of three)."""
    n_threads = max(1, int(n_threads or torch.get_num_threads()))
    bounds = row_blocks(n_rows, chunk)
    if not bounds:
        return []
    with limit_threads(1):
        if n_threads == 1 or len(bounds) == 1:
            return [fn(a, b) for a, b in bounds]
        with _POOL_LOCK:
            done = [fn(*bounds[0])] if first_alone else []
            with ThreadPoolExecutor(max_workers=n_threads, thread_name_prefix="moa-predict",
                                    initializer=_one_thread) as pool:
                done += list(pool.map(lambda ab: fn(*ab), bounds[len(done):]))
    return done
