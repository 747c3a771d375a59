"""One background thread beside the main one, for pipelines that overlap I/O-bound steps with computation.

A streamed prediction reads chunk k+1 and writes chunk k-1 while chunk k is predicted: HDF5 reads, NumPy
kernels and pyarrow's Parquet writer release the GIL, so on 2 cores the step that would otherwise leave one
core idle (reading, validating, writing run single-threaded) fills it. Both helpers hold at most one item
ahead, so memory stays bounded by a fixed number of chunks whatever the length of the input:

- :func:`prefetched`: the items of an iterator, the next one computed in the background while the caller
  works on the current one (at most two items alive: the current and the next);
- :class:`Serial`: calls run in the background one after the other, in order; submitting waits for the
  previous call, so at most one is pending.

Errors surface in the main thread as they were raised, at the item (or the next submission) they belong to.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")

_END = object()


def prefetched(items: Iterable[T], *, enabled: bool = True, name: str = "moa-prefetch") -> Iterator[T]:
    """The items of `items` in order, the next computed in a background thread while the caller holds the
    current one. The next item is asked for only after the caller has taken the current one, so at most two
    are alive at once (the one held, the one being made), and none is made ahead of a caller that stops.

    When the caller stops early (an error, ``close()``), the item in progress is waited for and `items` is
    closed in the caller's thread, so a generator's ``finally`` (an open HDF5 file) runs exactly once."""
    iterator = iter(items)
    if not enabled:
        yield from iterator
        return
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
    pending: Future | None = None
    try:
        pending = pool.submit(next, iterator, _END)
        while True:
            item = pending.result()
            pending = None
            if item is _END:
                return
            pending = pool.submit(next, iterator, _END)  # the next one is made while the caller holds this one
            yield item
            del item  # released before waiting for the next: two items at most
    finally:
        if pending is not None:
            pending.cancel()
            try:
                pending.result()  # a generator cannot be closed while it runs in the other thread
            except BaseException:  # noqa: BLE001  (the error that stopped the caller is the one to report)
                pass
        pool.shutdown(wait=True)
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


class Serial:
    """Calls run one after the other in a background thread, in submission order, at most one pending.

    ``submit`` first waits for the previous call (re-raising its error), so the caller may go on at once and
    at most one call's arguments are held; ``wait`` waits for the last one. Use as a context manager: leaving
    it waits for the call in flight (its error is raised unless another is already on its way)."""

    def __init__(self, *, enabled: bool = True, name: str = "moa-serial") -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name) if enabled else None
        self._pending: Future | None = None

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        self.wait()
        if self._pool is None:
            fn(*args)
        else:
            self._pending = self._pool.submit(fn, *args)

    def wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def __enter__(self) -> "Serial":
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        try:
            if exc_type is None:
                self.wait()
            else:
                try:
                    self.wait()
                except BaseException:  # noqa: BLE001  (the error already raised is the one to report)
                    pass
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
