"""A Dask cluster for work one machine cannot do fast enough: an existing one (``--scheduler ADDRESS``) or a
local one of N worker processes (``--dask-workers N``).

Dask is an optional extra: without it the commands say in one line how to get it, never an ImportError.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Iterator

from ..data.errors import DataError

INSTALL_HINT = "pip install 'moa-predict[dask]'"


def require_dask() -> None:
    """DataError (one line: how to install it) when dask.distributed is not installed."""
    try:
        import distributed  # noqa: F401
        import joblib  # noqa: F401
    except ImportError:
        raise DataError(f"--scheduler / --dask-workers need Dask, which is not installed. Install it with: "
                        f"{INSTALL_HINT}") from None


def local_threads(n_workers: int) -> int:
    """Torch/BLAS threads per local worker process: the cores shared out, so N workers do not oversubscribe."""
    return max(1, (os.cpu_count() or 1) // max(1, n_workers))


@contextmanager
def dask_client(scheduler: str | None = None, n_workers: int | None = None) -> Iterator[Any]:
    """A ``distributed.Client`` on the cluster at `scheduler`, or on a LocalCluster of `n_workers` processes
    (one thread each: the tasks are the parallelism) closed on exit."""
    require_dask()
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise DataError(f"cannot reach the Dask scheduler at {scheduler} ({type(exc).__name__}: {exc}). Check "
                            "the address (tcp://HOST:8786) and that the scheduler is running.") from None
        with client:
            yield client
        return
    if not n_workers or n_workers < 1:
        raise DataError("--dask-workers wants a number of worker processes of at least 1.")
    with LocalCluster(n_workers=int(n_workers), threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=50) as cluster, Client(cluster) as client:
        yield client


@contextmanager
def training_on_cluster(scheduler: str | None = None, n_workers: int | None = None) -> Iterator[Any]:
    """``workers.run_tasks`` (a blend's member fits) sent to the cluster through joblib's Dask backend."""
    from .workers import joblib_backend

    with dask_client(scheduler, n_workers) as client, joblib_backend("dask"):
        yield client
