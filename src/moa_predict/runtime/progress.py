"""A progress line for work that reports no steps of its own (a blend's members fit in worker processes)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from tqdm.auto import tqdm


@contextmanager
def elapsed(desc: str, *, enabled: bool = True, every: float = 1.0) -> Iterator[None]:
    """Show '`desc`: 01:23 elapsed' on stderr, refreshed every `every` seconds, while the block runs: a fit
    of several minutes should not look like a hung program."""
    if not enabled:
        yield
        return
    if not sys.stderr.isatty():
        every = max(every, 30.0)  # a log file gets a line every 30 s, not every second
    bar = tqdm(desc=desc, bar_format="{desc}: {elapsed} elapsed", leave=False)
    done = threading.Event()

    def tick() -> None:
        while not done.wait(every):
            bar.refresh()

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        bar.close()
