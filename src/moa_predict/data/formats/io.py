"""Reading and writing LISH-MoA tables (CSV or Parquet), turning every failure into a DataError."""

from __future__ import annotations

import csv
import gzip
import io
import math
import os
import re
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from ..profiles import schema
from ..errors import DataError

DECIMAL_COMMA = re.compile(r"[-+]?\d*,\d+(?:[eE][-+]?\d+)?")
"""'0,123' or '-1,5E-02': a number written with a decimal comma (a spreadsheet in a European locale)."""
DEFAULT_MAX_BYTES = 2 * 1024**3
"""Files above this size are refused (the real train_features.csv is about 160 MB)."""

Source = str | os.PathLike | IO[bytes]


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()
"""Permissions of written files (what open() would give); temporary files are created private."""
DIR_MODE = 0o777 & ~_umask()


def _size_of(handle: IO[bytes]) -> int:
    pos = handle.tell()
    handle.seek(0, os.SEEK_END)
    size = handle.tell()
    handle.seek(pos)
    return size


def _human_size(n: int) -> str:
    """'2.1 GB', '340 kB', '12 bytes': a size limit of a few bytes must not read '0 MB'."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"


def _is_parquet(name: str, head: bytes) -> bool:
    return name.lower().endswith(".parquet") or head[:4] == b"PAR1"


def _read_parquet(src: IO[bytes], name: str) -> pd.DataFrame:
    """A Parquet table with sig_id as a column, even when it was written as the index."""
    try:
        frame = pd.read_parquet(src)
    except Exception as exc:  # pyarrow raises many types for corrupt files
        raise DataError(f"not a readable Parquet file ({type(exc).__name__}: {exc}). Check that the file is "
                        "complete (not truncated), or save the table again as Parquet or CSV.",
                        source=name) from None
    if any(n is not None for n in frame.index.names):  # e.g. df.set_index("sig_id").to_parquet(...)
        frame = frame.reset_index()
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


_SNIFF_CHARS = 1 << 16


def sniff_dialect(text: IO[str]) -> tuple[str, str]:
    """(separator, decimal mark) of a CSV, from its header line and first rows; the stream is rewound.

    Comma-separated unless the header has no comma but a ';' (or a tab): spreadsheets in European locales
    export ';'-separated files, often with decimal commas. With ';' or tab separators a comma inside a number
    can only be a decimal mark, so such files are read as they are, not refused: the decimal mark is ',' when
    a value of the first rows is written '0,123'. A comma-separated file with decimal commas is ambiguous
    (the commas split the numbers) and is refused by validation with the fix."""
    sample = text.read(_SNIFF_CHARS)
    text.seek(0)
    header = sample.split("\n", 1)[0]
    if "," in header or not any(sep in header for sep in ";\t"):
        return ",", "."
    sep = ";" if header.count(";") >= header.count("\t") else "\t"
    rows = sample.splitlines()[1:-1] or sample.splitlines()[1:]  # the last line of the sample may be cut
    decimal = "," if any(DECIMAL_COMMA.fullmatch(v.strip().strip('"')) for r in rows[:20] for v in r.split(sep)) \
        else "."
    return sep, decimal


def _ragged_line(text: IO[str], n_fields: int, sep: str = ",") -> tuple[int, int] | None:
    """(line number, field count) of the first line whose field count differs from the header's.

    Only called when pandas has already found such a line, to name it in the error message."""
    text.seek(0)
    reader = csv.reader(text, delimiter=sep)
    try:
        for fields in reader:
            if fields and len(fields) != n_fields:
                return reader.line_num, len(fields)
    except csv.Error:  # e.g. an unterminated quote: pandas' own message says more
        pass
    return None


_BOMS = ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe\x00\x00", "utf-32"), (b"\x00\x00\xfe\xff", "utf-32"),
         (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"))
ENCODING_NAMES = {"utf-8-sig": "UTF-8", "utf-16": "UTF-16", "utf-16-le": "UTF-16 (little-endian, no BOM)",
                  "utf-16-be": "UTF-16 (big-endian, no BOM)", "utf-32": "UTF-32"}


def sniff_encoding(head: bytes) -> str | None:
    """The text encoding of a CSV from its first bytes: its byte-order mark (UTF-8, UTF-16 or UTF-32, as Excel's
    "Unicode text" and Windows tools write them), UTF-16 without one (ASCII text with every other byte 0), else
    UTF-8 ("utf-8-sig" reads it with or without a BOM); None for binary data (zero bytes in other places)."""
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            return encoding
    even, odd = head[0::2], head[1::2]
    if len(head) >= 4 and b"\x00" not in even and odd.count(0) >= 0.9 * len(odd):
        return "utf-16-le"
    if len(head) >= 4 and b"\x00" not in odd and even.count(0) >= 0.9 * len(even):
        return "utf-16-be"
    return None if b"\x00" in head else "utf-8-sig"


def _tail(src: IO[bytes], n: int = 1 << 16) -> bytes:
    pos = src.tell()
    src.seek(0, os.SEEK_END)
    size = src.tell()
    src.seek(max(0, size - n))
    tail = src.read(n)
    src.seek(pos)
    return tail


def _count_lines(src: IO[bytes]) -> int:
    """Line ends in the whole stream (read in 1 MB blocks), the stream rewound."""
    pos, n = src.tell(), 0
    src.seek(0)
    for block in iter(lambda: src.read(1 << 20), b""):
        n += block.count(b"\n")
    src.seek(pos)
    return n


def check_complete(src: IO[bytes], name: str, n_fields: int, sep: str, encoding: str) -> None:
    """A CSV whose last line has fewer fields than the header and no line end was cut off (an interrupted copy
    or download): say so, with its row, instead of reading the row's missing values as holes. Only the end of the
    file is read, unless it is cut off (then its lines are counted); streams that cannot seek are not checked."""
    if encoding != "utf-8-sig" or not src.seekable() or isinstance(src, gzip.GzipFile):
        return
    tail = _tail(src)
    if not tail or tail.endswith((b"\n", b"\r")):
        return
    last = tail.rsplit(b"\n", 1)[-1].decode("utf-8", errors="replace")
    try:
        fields = len(next(csv.reader([last], delimiter=sep), []))
    except csv.Error:  # an open quote: cut inside a quoted field
        fields = 0
    if fields >= n_fields:
        return
    row = _count_lines(src)  # line ends before the last line = rows before it, the header's included
    raise DataError(f"the file seems cut off at row {row:,} (line {row + 1:,}): its last line has {fields} of the "
                    f"header's {n_fields} fields and no line end. Copy or export the file again.", source=name,
                    row=row)


def open_csv_text(src: IO[bytes], name: str) -> tuple[io.TextIOWrapper, list[str], str, str]:
    """(text stream, header names, separator, decimal mark) of a CSV: its encoding sniffed (``sniff_encoding``:
    binary data and a cut-off last line are refused here, naming what they are), its dialect too
    (``sniff_dialect``); the text stream is rewound. The one opening of every CSV reader (whole file or chunks);
    the caller detaches the stream."""
    head = src.read(4096)
    src.seek(0)
    encoding = sniff_encoding(head)
    if encoding is None:
        raise DataError("this is not a CSV file (it contains binary data). Provide a comma-separated text file "
                        "or a Parquet file.", source=name)
    text = io.TextIOWrapper(src, encoding=encoding, newline="")
    try:
        sep, decimal = sniff_dialect(text)
        header = next(csv.reader(text, delimiter=sep), [])
        text.seek(0)
    except UnicodeDecodeError as exc:
        text.detach()
        raise _encoding_error(exc, encoding, name) from None
    except BaseException:
        text.detach()
        raise
    try:
        check_complete(src, name, len(header), sep, encoding)
    except DataError:
        text.detach()
        raise
    return text, header, sep, decimal


def _encoding_error(exc: UnicodeDecodeError, encoding: str, name: str) -> DataError:
    label = ENCODING_NAMES.get(encoding, encoding)
    guess = (" It may be Latin-1 / Windows-1252 (older spreadsheets save so)." if encoding == "utf-8-sig" and
             isinstance(exc.object, bytes) and any(0x80 <= b <= 0xFF for b in exc.object[exc.start:exc.start + 1])
             else "")
    return DataError(f"this is not a {label} text file (it holds bytes such as {exc.object[exc.start:exc.start + 1]!r} "
                     f"that are not {label}).{guess} Save it as CSV (UTF-8) and try again.", source=name)


def _read_csv(src: IO[bytes], name: str) -> pd.DataFrame:
    """Read a CSV (UTF-8 with or without BOM, UTF-16 / UTF-32; Windows line endings allowed; ',' or ';' separated,
    see ``open_csv_text``) with the header's names kept verbatim."""
    text, header, sep, decimal = open_csv_text(src, name)
    try:
        with warnings.catch_warnings():
            # index_col=False: pandas would otherwise turn a first column that has no header name (a line with
            # one field too many) into the index and shift every column by one, silently.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            sig_id_as_text = {h: str for h in header if h.strip() == schema.SIG_ID}  # keep '001' as '001'
            frame = pd.read_csv(text, low_memory=False, dtype=sig_id_as_text, index_col=False, sep=sep,
                                decimal=decimal)
    except UnicodeDecodeError as exc:
        raise _encoding_error(exc, text.encoding, name) from None
    except pd.errors.EmptyDataError:
        raise DataError("the file has no header line or data. Provide a CSV with a header line.", source=name) from None
    except (pd.errors.ParserError, pd.errors.ParserWarning) as exc:
        where = _ragged_line(text, len(header), sep)
        detail = (f"line {where[0]} has {where[1]} fields but the header has {len(header)}" if where
                  else str(exc).strip())
        what = {",": "comma", ";": "semicolon", "\t": "tab"}[sep]
        raise DataError(f"not a well-formed CSV file ({detail}). Check that every line has the same number of "
                        f"{what}-separated fields as the header.", source=name,
                        row=None if where is None else where[0] - 1) from None
    finally:
        text.detach()  # leave the caller's handle open
    if len(header) == len(frame.columns):
        # Our own names, not pandas': pandas renames duplicated headers ('g-1.1') and unnamed ones ('Unnamed: 5').
        names = [h.strip() for h in header]
    else:
        names = [str(c).strip() for c in frame.columns]
    # Trailing commas (spreadsheet exports) make nameless, empty columns: drop them.
    keep = [not (n == "" and frame.iloc[:, j].isna().all()) for j, n in enumerate(names)]
    frame = frame.loc[:, keep]
    frame.columns = [n or f"unnamed column {j + 1}" for j, n in enumerate(names) if keep[j]]
    return frame


GZIP_MAGIC = b"\x1f\x8b"


def _gunzip(src: IO[bytes], name: str, max_bytes: int | None) -> IO[bytes]:
    """A gzip-compressed table (``.csv.gz``, as CMap and many repositories ship them) decompressed in memory,
    refusing to inflate past `max_bytes`."""
    limit = DEFAULT_MAX_BYTES if max_bytes is None else max_bytes
    try:
        with gzip.GzipFile(fileobj=src, mode="rb") as z:
            data = z.read(limit + 1)
    except EOFError:  # the compressed stream ends early: an interrupted copy or download
        raise gzip_cut_off(src, name) from None
    except OSError as exc:
        raise DataError(f"not a readable gzip file ({exc}). Copy it again, or provide it uncompressed.",
                        source=name) from None
    finally:
        src.seek(0)
    if len(data) > limit:
        raise DataError(f"file is over the {_human_size(limit)} limit once decompressed. Split it into smaller "
                        "files or raise the limit.", source=name)
    out = io.BytesIO(data)
    out.name = name.removesuffix(".gz")
    return out


def gzip_cut_off(src: IO[bytes], name: str) -> DataError:
    """The error for a gzip file whose compressed stream ends early (an interrupted copy or download), naming the
    row it stops in: the whole-file reader and the streamed chunks say the same. `src`: the compressed bytes
    (read again from the start, block by block: flat memory whatever the file's size)."""
    src.seek(0)
    row = _readable_lines(src)
    return DataError(f"the file seems cut off at row {row:,} (line {row + 1:,}): its gzip stream ends early. "
                     "Copy or download the file again, or provide it uncompressed.", source=name, row=row)


def _readable_lines(src: IO[bytes]) -> int:
    """Complete lines in a gzip stream that ends early (what can be decompressed before it stops)."""
    import zlib

    z = zlib.decompressobj(wbits=47)  # gzip or zlib header
    lines = 0
    for block in iter(lambda: src.read(1 << 20), b""):
        try:
            lines += z.decompress(block).count(b"\n")
        except zlib.error:
            break
    return lines


def missing_file(path: str | os.PathLike, name: str) -> DataError:
    """The error for a path that is not a readable file: a directory says so, anything else is not found."""
    path = Path(path)
    if path.is_dir():
        return DataError(f"{path} is a directory, not a file. Give a file inside it (for a LISH-MoA data directory "
                         "use 'moa train --data DIR').", source=name)
    return DataError(f"file not found: {path}. Check the path.", source=name)


def read_table(src: Source, *, name: str | None = None, max_bytes: int | None = DEFAULT_MAX_BYTES) -> pd.DataFrame:
    """Read a CSV or Parquet table from a path or a binary file object.

    Values are read as pandas infers them (sig_id always as text); validation converts and checks them
    afterwards. Column names are the header's, stripped; duplicated names are kept (pandas would silently
    rename them) so validation can report them.
    """
    if isinstance(src, (str, os.PathLike)):
        path = Path(src)
        name = name or path.name
        if not path.is_file():
            raise missing_file(path, name)
        with open(path, "rb") as handle:
            return read_table(handle, name=name, max_bytes=max_bytes)
    name = name or getattr(src, "name", None) or "upload"
    name = os.path.basename(str(name))
    size = _size_of(src)
    if max_bytes is not None and size > max_bytes:
        raise DataError(f"file is {_human_size(size)}, over the {_human_size(max_bytes)} limit. "
                        "Split it into smaller files or raise the limit.", source=name)
    if size == 0:
        raise DataError("the file is empty (0 bytes). Provide a table with a header line and at least one "
                        "profile.", source=name)
    head = src.read(4096)
    src.seek(0)
    if head[:2] == GZIP_MAGIC:
        return read_table(_gunzip(src, name, max_bytes), name=name.removesuffix(".gz"), max_bytes=max_bytes)
    if _is_parquet(name, head):
        return _read_parquet(src, name)
    return _read_csv(src, name)


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
        os.chmod(tmp, FILE_MODE)  # mkstemp makes 0600 files; outputs should be as readable as any other file
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


def jsonable(value: Any, *, strict: bool = False) -> Any:
    """`value` as plain JSON types, recursively: numpy scalars and arrays, paths, estimator-like settings objects
    (their ``get_params``), non-finite floats as None. Anything else becomes its text, or with `strict` (files
    that must round-trip, such as bundle.json) raises TypeError at write time instead of failing at load time."""
    if isinstance(value, dict):
        return {str(k): jsonable(v, strict=strict) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v, strict=strict) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist(), strict=strict)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "get_params"):  # nested settings (a network's TrainConfig, its preprocessor)
        return jsonable(value.get_params(deep=False), strict=strict)
    if strict:
        raise TypeError(f"{type(value).__name__} is not JSON serialisable")
    return str(value)


def write_text(text: str, path: str | os.PathLike) -> Path:
    """Write a text file (JSON, HTML, Markdown) atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path
