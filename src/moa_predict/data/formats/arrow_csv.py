"""CSV read and written in bulk by pyarrow: the streamed path's reader and writer of LISH-MoA-layout tables.

Reading: ``pyarrow.csv.open_csv`` parses a file block by block (in C++, the GIL released) into record batches,
regrouped here into frames of exactly `rows` rows, with pandas' own types (``read_csv`` would give the same
frame: sig_id as text, pandas' missing-value markers, feature columns as float64). Only what it reads exactly
as pandas does goes this way: a table with columns other than sig_id, cp_* and feature columns (whose types
pandas and pyarrow infer differently: dates, booleans) is left to pandas, and a batch pyarrow cannot parse
(a ragged line, a non-number in a feature column) raises ``ArrowUnparsable`` so the caller re-reads from that
row with pandas, whose frames carry the value validation names in its message.

Writing: each column is formatted as text by pyarrow (floats in their shortest round-trip form, the digits
pandas writes for them) and the rows are joined by pyarrow too, so a chunk of 206 probability columns costs
about a tenth of ``DataFrame.to_csv``. Text columns are quoted as the ``csv`` module (pandas) quotes them.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from typing import IO, Any

import numpy as np
import pandas as pd

from ..profiles import schema

PANDAS_NA_VALUES = ("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
                    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null")
"""The cells ``pandas.read_csv`` reads as missing by default (``pandas._libs.parsers.STR_NA_VALUES``)."""

_MIN_BLOCK, _MAX_BLOCK = 1 << 20, 64 << 20


class ArrowUnparsable(Exception):
    """pyarrow could not read a batch; `rows`: the data rows already given out before it."""

    def __init__(self, rows: int, detail: str) -> None:
        super().__init__(detail)
        self.rows = rows


def readable(names: Sequence[str]) -> bool:
    """True when a table with this header is read by pyarrow exactly as pandas reads it: sig_id, cp_* and
    feature-like columns only (their types are fixed or numbers); any other column goes to pandas."""
    known = set(schema.META_COLUMNS)
    return bool(names) and all(n in known or schema.FEATURE_LIKE.match(n) for n in names)


def _types(names: Sequence[str]) -> dict[str, Any]:
    import pyarrow as pa

    types: dict[str, Any] = {}
    for i, n in enumerate(names):
        if n == schema.SIG_ID:
            types[f"c{i}"] = pa.string()
        elif schema.FEATURE_LIKE.match(n):
            types[f"c{i}"] = pa.float64()  # pandas' type for numbers; validation makes them float32 as before
    return types


def block_size(sample: str, rows: int) -> int:
    """Bytes per pyarrow block: about a quarter of `rows` rows (from the sample's line lengths), so a chunk
    takes a few batches and overshoots by little."""
    lines = sample.splitlines()[1:-1] or sample.splitlines()
    per_row = max(1, sum(len(s) + 1 for s in lines) // max(1, len(lines)))
    return int(min(_MAX_BLOCK, max(_MIN_BLOCK, per_row * rows // 4)))


def csv_frames(handle: IO[bytes], names: Sequence[str], rows: int, *, sep: str = ",", decimal: str = ".",
               block_bytes: int = _MIN_BLOCK) -> Iterator[pd.DataFrame]:
    """Frames of exactly `rows` rows (the last one fewer) of a CSV whose header is `names` (stripped), read
    by pyarrow from the start of `handle`; columns named `names`. Raises ``ArrowUnparsable`` where pyarrow
    fails (nothing of the failing chunk given out)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    columns = [f"c{i}" for i in range(len(names))]
    try:
        reader = pacsv.open_csv(
            handle,
            # one thread: the reading runs beside the prediction (which takes the cores), and pyarrow's thread
            # pools only added heap arenas (CSV -> CSV peak RSS at 200 k: x 1.25 of 20 k with them)
            read_options=pacsv.ReadOptions(column_names=columns, skip_rows=1, block_size=block_bytes,
                                           use_threads=False),
            parse_options=pacsv.ParseOptions(delimiter=sep),
            convert_options=pacsv.ConvertOptions(column_types=_types(names), null_values=list(PANDAS_NA_VALUES),
                                                 strings_can_be_null=True, quoted_strings_can_be_null=True,
                                                 decimal_point=decimal))
    except pa.ArrowException as exc:  # the first block is parsed on opening
        raise ArrowUnparsable(0, str(exc)) from None
    given, pending, held = 0, [], 0
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            break
        except pa.ArrowException as exc:
            raise ArrowUnparsable(given, str(exc)) from None
        pending.append(batch)
        held += batch.num_rows
        while held >= rows:
            table = pa.Table.from_batches(pending)
            yield _frame(table.slice(0, rows), names)
            given += rows
            pending = table.slice(rows).to_batches()
            held -= rows
            del table
    if held:
        yield _frame(pa.Table.from_batches(pending), names)


def _frame(table: Any, names: Sequence[str]) -> pd.DataFrame:
    """The frame of a batch, its feature columns float32 when every value fits (the same numbers validation
    would make of them: one IEEE rounding, as NumPy's), so validation takes its float32 path and a chunk
    costs one float32 copy instead of float64 ones; a column with a value beyond float32 stays float64,
    where validation names that value."""
    import pyarrow as pa
    import pyarrow.compute as pc

    limit = float(np.finfo(np.float32).max)
    columns, fields = [], []
    for i, field in enumerate(table.schema):
        column = table.column(i)
        if field.type == pa.float64():
            low_high = pc.min_max(column)
            low, high = low_high["min"].as_py(), low_high["max"].as_py()
            if low is None or (-limit <= low and high <= limit):
                column, field = pc.cast(column, pa.float32()), field.with_type(pa.float32())
        columns.append(column)
        fields.append(field)
    # one new table (replacing columns one by one rebuilt the whole table each time: quadratic in columns)
    table = pa.Table.from_arrays(columns, schema=pa.schema(fields, metadata=table.schema.metadata))
    frame = table.to_pandas()
    frame.columns = list(names)
    return frame


# -- writing --------------------------------------------------------------------------------------------

def csv_header(columns: Sequence[Any]) -> bytes:
    """The header line as ``DataFrame.to_csv`` writes it (the ``csv`` module's minimal quoting)."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow([str(c) for c in columns])
    return out.getvalue().encode("utf-8")


def _quoted(text: np.ndarray) -> np.ndarray:
    """`text` (str array) with the values that need it quoted as the ``csv`` module quotes them."""
    special = np.char.find(text, ",") >= 0
    for ch in ('"', "\n", "\r"):
        special |= np.char.find(text, ch) >= 0
    if special.any():
        text = text.astype(object)
        text[special] = ['"' + v.replace('"', '""') + '"' for v in text[special]]
    return text


def _text_column(values: pd.Series) -> Any:
    """One column as an Arrow string array holding what ``to_csv`` writes for it (missing: null → '')."""
    import pyarrow as pa
    import pyarrow.compute as pc

    dtype = values.dtype
    if dtype.kind in "fiu" and isinstance(dtype, np.dtype):
        array = pa.array(values.to_numpy(), from_pandas=True)  # NaN → null, as pandas writes '' for it
        return pc.cast(array, pa.large_string())
    missing = values.isna().to_numpy()
    text = values.to_numpy(dtype=object)
    text = np.array(["" if m else str(v) for v, m in zip(text, missing)], dtype=str) if len(text) else \
        np.zeros(0, dtype=str)
    return pa.array(_quoted(text), type=pa.large_string())


def csv_body(frame: pd.DataFrame) -> memoryview:
    """The data lines of `frame` as ``to_csv(index=False, header=False)`` writes them, number for number:
    floats in their shortest round-trip form (pandas writes the same digits; only the notation of some
    numbers differs, e.g. '1' for '1.0' and '1e-7' for '1e-07'), text quoted where the ``csv`` module would."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if len(frame) == 0:
        return memoryview(b"")
    columns = [_text_column(frame.iloc[:, j]) for j in range(frame.shape[1])]
    text = pa.large_string()
    lines = pc.binary_join_element_wise(*columns, pa.scalar(",", text), null_handling="replace",
                                        null_replacement="")
    lines = pc.binary_join_element_wise(lines, pa.scalar("", text), pa.scalar("\n", text))  # each line ends with \n
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64)  # large strings: no 2 GB limit
    start, stop = int(offsets[lines.offset]), int(offsets[lines.offset + len(lines)])
    return memoryview(lines.buffers()[2])[start:stop]
