"""Reading and writing LISH-MoA tables (CSV or Parquet), turning every failure into a DataError."""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import pandas as pd

from . import schema
from .errors import DataError

DEFAULT_MAX_BYTES = 2 * 1024**3
"""Files above this size are refused (the real train_features.csv is about 160 MB)."""

Source = str | os.PathLike | IO[bytes]


def _size_of(handle: IO[bytes]) -> int:
    pos = handle.tell()
    handle.seek(0, os.SEEK_END)
    size = handle.tell()
    handle.seek(pos)
    return size


def _is_parquet(name: str, head: bytes) -> bool:
    return name.lower().endswith(".parquet") or head[:4] == b"PAR1"


def read_table(src: Source, *, name: str | None = None, max_bytes: int | None = DEFAULT_MAX_BYTES) -> pd.DataFrame:
    """Read a CSV or Parquet table from a path or a binary file object.

    Values are read as pandas infers them; validation converts and checks them afterwards.
    Duplicated CSV header names are kept verbatim (pandas would silently rename them).
    """
    if isinstance(src, (str, os.PathLike)):
        path = Path(src)
        name = name or path.name
        if not path.is_file():
            raise DataError(f"file not found: {path}. Check the path.", source=name)
        with open(path, "rb") as handle:
            return read_table(handle, name=name, max_bytes=max_bytes)
    name = name or getattr(src, "name", None) or "upload"
    name = os.path.basename(str(name))
    size = _size_of(src)
    if max_bytes is not None and size > max_bytes:
        raise DataError(f"file is {size / 1e6:.0f} MB, over the {max_bytes / 1e6:.0f} MB limit. "
                        "Split it into smaller files or raise the limit.", source=name)
    if size == 0:
        raise DataError("the file is empty. Provide a table with a header line and at least one profile.",
                        source=name)
    head = src.read(4096)
    src.seek(0)
    if _is_parquet(name, head):
        try:
            return pd.read_parquet(src)
        except Exception as exc:  # pyarrow raises many types for corrupt files
            raise DataError(f"not a readable Parquet file ({type(exc).__name__}: {exc}).", source=name) from None
    if b"\x00" in head:
        raise DataError("this is not a CSV file (it contains binary data). Upload a comma-separated text file "
                        "or a Parquet file.", source=name)
    try:
        text = io.TextIOWrapper(src, encoding="utf-8-sig", newline="")
        header = next(csv.reader(text), [])
        text.seek(0)
        frame = pd.read_csv(text, low_memory=False, dtype={schema.SIG_ID: str})
        text.detach()
    except UnicodeDecodeError:
        raise DataError("this is not a UTF-8 text CSV file. Save it as CSV (UTF-8) and try again.",
                        source=name) from None
    except pd.errors.EmptyDataError:
        raise DataError("the file has no header line or data. Provide a CSV with a header line.", source=name) from None
    except pd.errors.ParserError as exc:
        raise DataError(f"not a well-formed CSV file ({str(exc).strip()}). Check that every line has the same "
                        "number of comma-separated fields as the header.", source=name) from None
    if len(header) == len(frame.columns) and len(set(header)) < len(header):
        frame.columns = [h.strip() for h in header]
    else:
        frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def find_table(directory: str | os.PathLike, stem: str, *, required: bool = True) -> Path | None:
    """The CSV or Parquet file called `stem` in a directory."""
    directory = Path(directory)
    for suffix in schema.TABLE_SUFFIXES:
        candidate = directory / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    if required:
        raise DataError(f"no {stem}.csv or {stem}.parquet in {directory}. "
                        "Point --data at a directory in the LISH-MoA layout (or run 'moa simulate' to make one).",
                        source=str(directory))
    return None


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds,
    so an interrupted job never leaves a half-written output."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_table(frame: pd.DataFrame, path: str | os.PathLike, *, float_format: str | None = None,
                index: bool = False) -> Path:
    """Write CSV or Parquet (by suffix) atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix.lower() == ".parquet":
            frame.to_parquet(tmp, index=index)
        else:
            frame.to_csv(tmp, index=index, float_format=float_format)
    return path


def write_text(text: str, path: str | os.PathLike) -> Path:
    """Write a text file (JSON, HTML, Markdown) atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path
