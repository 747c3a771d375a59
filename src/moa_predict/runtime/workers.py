"""Worker processes, through joblib (loky), for work that parallelises by task (a blend's members).

joblib reuses its worker processes between calls (a 5-fold CV starts them once), passes large arrays as
memory maps instead of copies, and is the hook for other backends (``joblib.parallel_config``: a Dask
cluster) without changing the callers. Each task runs with one torch and one BLAS thread: the tasks are the
parallelism, and more threads per task would only oversubscribe the cores.
"""

from __future__ import annotations

import os
import resource
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Callable, Iterator, Sequence

_BACKEND: ContextVar[str | None] = ContextVar("moa_joblib_backend", default=None)


def cpu_seconds() -> float:
    """CPU time (user + system) of this process so far."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _single_threaded(fn: Callable[..., Any], args: tuple) -> Any:
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)  # a worker process of its own: nothing else in it to restore
    with threadpool_limits(1):
        return fn(*args)


@contextmanager
def joblib_backend(name: str) -> Iterator[None]:
    """Inside the block, :func:`run_tasks` sends its tasks to joblib backend `name` (``"dask"``: the cluster of
    the active ``distributed.Client``), every task at once: the cluster, not this machine's cores, decides how
    many run together. Outside, the local default (loky) is unchanged."""
    from joblib import parallel_config

    token = _BACKEND.set(name)
    try:
        with parallel_config(backend=name):
            yield
    finally:
        _BACKEND.reset(token)


def task_slots(n_jobs: int, n_tasks: int) -> int:
    """How many of `n_tasks` tasks run at once: up to `n_jobs` and this machine's cores, or all of them on a
    cluster backend (:func:`joblib_backend`)."""
    if _BACKEND.get() is not None:
        return max(1, n_tasks)
    return max(1, min(int(n_jobs or 1), n_tasks, os.cpu_count() or 1))


def run_tasks(fn: Callable[..., Any], tasks: Sequence[tuple], n_jobs: int) -> list[Any]:
    """``[fn(*task) for task in tasks]`` in up to `n_jobs` worker processes (in order); in this process when
    one job is asked for or only one task exists, unless a cluster backend is active (:func:`joblib_backend`)."""
    backend = _BACKEND.get()
    n_jobs = task_slots(n_jobs, len(tasks))
    if n_jobs == 1 and backend is None:
        return [fn(*t) for t in tasks]
    from joblib import Parallel, delayed

    # the cluster backend comes from joblib_backend's parallel_config: naming it again here would make joblib
    # build a second instance that passes its nesting level on to the Dask tasks (joblib 1.6)
    parallel = Parallel(n_jobs=n_jobs) if backend else Parallel(n_jobs=n_jobs, backend="loky")
    return parallel(delayed(_single_threaded)(fn, tuple(t)) for t in tasks)


def release_memory() -> None:
    """Give freed heap memory back to the operating system (glibc's ``malloc_trim``; a no-op elsewhere).

    A long streamed prediction allocates and frees one chunk's arrays per step from several threads; glibc keeps
    the freed pages in its per-thread arenas, so without a trim the resident size creeps up with the number of
    chunks although the live data stay one chunk."""
    global _LIBC
    if _LIBC is None:
        import ctypes
        import ctypes.util

        name = ctypes.util.find_library("c")
        try:
            _LIBC = ctypes.CDLL(name) if name else False
        except OSError:
            _LIBC = False
    if _LIBC and hasattr(_LIBC, "malloc_trim"):
        _LIBC.malloc_trim(0)


_LIBC: Any = None
