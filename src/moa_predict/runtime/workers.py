"""Worker processes, through joblib (loky), for work that parallelises by task (a blend's members).

joblib reuses its worker processes between calls (a 5-fold CV starts them once), passes large arrays as
memory maps instead of copies, and is the hook for other backends (``joblib.parallel_config``: a Dask
cluster) without changing the callers. Each task runs with one torch and one BLAS thread: the tasks are the
parallelism, and more threads per task would only oversubscribe the cores.
"""

from __future__ import annotations

import os
import resource
from typing import Any, Callable, Sequence


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


def run_tasks(fn: Callable[..., Any], tasks: Sequence[tuple], n_jobs: int) -> list[Any]:
    """``[fn(*task) for task in tasks]`` in up to `n_jobs` worker processes (in order); in this process when
    one job is asked for or only one task exists."""
    n_jobs = max(1, min(int(n_jobs or 1), len(tasks), os.cpu_count() or 1))
    if n_jobs == 1:
        return [fn(*t) for t in tasks]
    from joblib import Parallel, delayed

    return Parallel(n_jobs=n_jobs, backend="loky")(delayed(_single_threaded)(fn, tuple(t)) for t in tasks)
