"""Validation of LISH-MoA tables: every check the CLI, the API and the web pages share.

Each check raises :class:`DataError` naming the file, the row (1-based data row, the
header not counted), the column, what was expected and what to do. Checks are
vectorised so a 24k x 876 table validates in well under a second.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from . import schema
from ..errors import DataError
from ..formats.io import DECIMAL_COMMA

_MAX_LISTED = 5


def _listing(items: Sequence[object]) -> str:
    shown = ", ".join(repr(i) for i in list(items)[:_MAX_LISTED])
    more = len(items) - _MAX_LISTED
    return shown + (f" and {more} more" if more > 0 else "")


_LOOKALIKES = str.maketrans({
    **{c: "-" for c in "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d"},  # dashes, minus
    **dict(zip("АВЕКМНОРСТХУаеорсухкмтіј", "ABEKMHOPCTXYaeopcyxkmtij")),  # Cyrillic
    **dict(zip("ΑΒΕΖΗΙΚΜΝΟΡΤΥΧοντ", "ABEZHIKMNOPTYXovt")),  # Greek
    **{c: " " for c in "\u00a0\u2007\u202f"}, **{c: "" for c in "\u200b\u200c\u200d\u2060\ufeff"}})
"""Characters that look like ASCII ones in a header (a spreadsheet's auto-corrected hyphen, a Cyrillic 'с'):
mapped to the ASCII they look like, so a header that differs from an expected one only by them is recognised."""


def lookalike_hint(missing: Sequence[str], present: Sequence[object]) -> str:
    """A sentence naming the columns present that differ from missing ones only by look-alike characters
    (non-ASCII hyphens, Cyrillic or Greek letters, invisible spaces), with the odd characters; '' if none."""
    import unicodedata

    def plain(name: str) -> str:
        return unicodedata.normalize("NFKC", str(name)).translate(_LOOKALIKES).strip()

    wanted = {plain(m): m for m in missing}
    found = [(str(c), wanted[plain(c)]) for c in present if str(c) not in wanted.values() and plain(c) in wanted]
    if not found:
        return ""
    column, meant = found[0]
    odd = ", ".join(f"U+{ord(ch):04X} {unicodedata.name(ch, '?')}" for ch in dict.fromkeys(column) if ord(ch) > 127)
    more = f" ({len(found)} columns are like that)" if len(found) > 1 else ""
    return (f" Column {column!r} looks like {meant!r} but is written with look-alike characters ({odd}){more}: "
            "retype the header in plain ASCII (a spreadsheet may have auto-corrected it).")


def _show(value: object) -> str:
    """A cell as the user typed it: '36', 'abc', 'empty' (not np.int64(36) or nan)."""
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return "empty"
    if isinstance(value, np.generic):
        value = value.item()
    return repr(value) if isinstance(value, str) else str(value)


def _sig_id_strings(df: pd.DataFrame) -> pd.Series:
    """sig_ids as stripped text: the form used for uniqueness checks, the index and matching files."""
    ids = df[schema.SIG_ID]
    return ids.astype(str).str.strip().where(ids.notna())


def _row_hint(df: pd.DataFrame, i: int) -> str:
    """'row 7 (sig_id id_0abc)': the 1-based data row and, when readable, its sig_id."""
    sig = None
    if schema.SIG_ID in df.columns:
        value = df[schema.SIG_ID].iloc[i]
        if not pd.isna(value) and str(value).strip():
            sig = str(value).strip()
    return f"row {i + 1}" + (f" (sig_id {sig})" if sig else "")


def check_not_empty(df: pd.DataFrame, source: str) -> None:
    if df.shape[1] == 0 or len(df) == 0:
        raise DataError("the file has no data rows. Provide a table with a header line and at least one profile.",
                        source=source)


def check_unique_columns(columns: Sequence[str], source: str) -> None:
    seen: set[str] = set()
    dups = [c for c in columns if c in seen or seen.add(c)]  # type: ignore[func-returns-value]
    if dups:
        where = [i + 1 for i, c in enumerate(columns) if c == dups[0]]
        raise DataError(f"duplicated column(s) {_listing(dups)} ({dups[0]!r} is in columns "
                        f"{', '.join(map(str, where))} of the header). Each column name must appear once; "
                        "remove the duplicates.", source=source, column=str(dups[0]))


def check_sig_ids(df: pd.DataFrame, source: str) -> None:
    if schema.SIG_ID not in df.columns:
        raise DataError(f"no '{schema.SIG_ID}' column (found {_listing(list(df.columns))}). The table needs a "
                        f"'{schema.SIG_ID}' column holding one unique id per profile.", source=source,
                        column=schema.SIG_ID)
    ids = _sig_id_strings(df)
    blank = ids.isna() | (ids == "")
    if blank.any():
        i = int(np.flatnonzero(blank.to_numpy())[0])
        raise DataError(f"row {i + 1}: '{schema.SIG_ID}' is empty ({int(blank.sum())} row(s) in all). "
                        "Every profile needs a unique id.", source=source, row=i + 1, column=schema.SIG_ID)
    dup = ids.duplicated(keep=False).to_numpy()
    if dup.any():
        rows = np.flatnonzero(dup)
        first = ids.iloc[rows[0]]
        same = np.flatnonzero((ids == first).to_numpy()) + 1
        raise DataError(f"sig_id {first!r} appears more than once (rows {_listing(same.tolist())}); "
                        f"{int(ids.duplicated().sum())} duplicated row(s) in all. Each sig_id must be unique: "
                        "remove or rename the duplicates.", source=source, row=int(same[0]), column=schema.SIG_ID)


def _check_values(df: pd.DataFrame, column: str, allowed: Sequence[object], source: str,
                  numeric: bool = False) -> pd.Series:
    values = df[column]
    if numeric:
        coerced = pd.to_numeric(values, errors="coerce")
        ok = coerced.isin(allowed)
        values = coerced
    else:
        values = values.astype("string").str.strip()
        ok = values.isin(allowed)
    bad = ~ok.fillna(False).to_numpy(dtype=bool)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{_row_hint(df, i)}: {column} is {_show(df[column].iloc[i])}; expected one of "
                        f"{', '.join(map(str, allowed))} ({int(bad.sum())} bad row(s) in all). Fix or drop those rows.",
                        source=source, row=i + 1, column=column)
    return values.astype(int) if numeric else values.astype(str)




def _all_finite(values: np.ndarray) -> bool:
    """True when no value is NaN or infinite, without a mask the size of `values`: the float64 sum of finite
    float32 values cannot overflow, and a NaN or infinite value makes the sum NaN or infinite (a float64 block
    whose sum overflows is reported not finite: the caller then checks it cell by cell)."""
    return bool(np.isfinite(values.sum(dtype=np.float64)))


def _numeric_block(df: pd.DataFrame, columns: Sequence[str], source: str, what: str,
                   keep_float32: bool = False) -> np.ndarray:
    """Convert columns to float64, naming the first non-numeric, NaN or infinite cell.

    With `keep_float32`, a block whose columns are all float32 already (CMap readers, Parquet written by
    float32 writers) comes back as float32 and, when every value is finite, without any per-cell check:
    the common case of a large file costs one copy and one pass instead of a float64 copy and three masks."""
    block = df.loc[:, list(columns)]
    if keep_float32 and len(block.columns) and all(t == np.float32 for t in block.dtypes):
        values = block.to_numpy(dtype=np.float32)
        if _all_finite(values):
            return values
        values = values.astype(np.float64)  # a bad cell: the checks below name it
        nonnumeric = np.zeros(values.shape, dtype=bool)
    elif all(pd.api.types.is_numeric_dtype(t) for t in block.dtypes):
        values = block.to_numpy(dtype=np.float64)
        nonnumeric = np.zeros(values.shape, dtype=bool)
    else:
        coerced = block.apply(pd.to_numeric, errors="coerce")
        values = coerced.to_numpy(dtype=np.float64)
        nonnumeric = np.isnan(values) & block.notna().to_numpy()
    checks = (
        (nonnumeric, lambda i, j, n: f"{_show(block.iat[i, j])} is not a number ({n} non-numeric {what} value(s) "
                                     f"in all). {what.capitalize()} values must be plain decimal numbers."
                                     + (" It has a decimal comma: save the file with '.' as the decimal separator "
                                        "(in a spreadsheet: set the language to English before exporting as CSV)."
                                        if DECIMAL_COMMA.fullmatch(str(block.iat[i, j]).strip()) else "")),
        (np.isnan(values), lambda i, j, n: f"value is missing (NaN/empty; {n} missing {what} value(s) in all). "
                                           "Fill or drop incomplete profiles."),
        (np.isinf(values), lambda i, j, n: f"value is infinite ({n} infinite {what} value(s) in all). Replace it "
                                           "with a finite number."),
    )
    for bad, message in checks:  # the first kind of bad value found, at its first cell
        if bad.any():
            i, j = (int(k[0]) for k in np.nonzero(bad))
            raise DataError(f"{_row_hint(df, i)}, column {columns[j]}: {message(i, j, int(bad.sum()))}",
                            source=source, row=i + 1, column=columns[j])
    return values


OTHER_LAYOUT = (" This model reads the LISH-MoA layout (sig_id, cp_type, cp_time, cp_dose, g-0 ..., c-0 ...); "
                "this looks like a table of another layout (Cell Painting, your own screen). Train a model on your "
                "layout: 'moa layout infer FILE --out layout.toml', then 'moa train --features FILE --layout "
                "layout.toml'.")


def _layout_hint(df: pd.DataFrame) -> str:
    """Why a table has none of the LISH-MoA columns: a targets file (sig_id and 0/1 columns), a file that is
    not comma-separated (one column), or a table of another layout (numbers under other names)."""
    others = [c for c in df.columns if c != schema.SIG_ID]
    if len(df.columns) <= 1:
        return " This does not look like a features file (is it comma-separated?)."
    numeric = df[others].select_dtypes("number")
    if schema.SIG_ID in df.columns and numeric.shape[1] == len(others) and numeric.isin([0, 1]).all().all():
        return " This does not look like a features file: it looks like a targets file (sig_id and 0/1 columns)."
    return OTHER_LAYOUT


def validate_features(df: pd.DataFrame, source: str,
                      feature_columns: Sequence[str] = schema.FEATURE_COLUMNS) -> pd.DataFrame:
    """Return the profiles indexed by sig_id: meta columns, float32 features in the
    expected order, then any other columns (compound names, notes) passed through untouched."""
    check_not_empty(df, source)
    check_unique_columns(list(df.columns), source)
    required = list(schema.META_COLUMNS) + list(feature_columns)
    missing = [c for c in required if c not in df.columns]
    if missing:
        hint = lookalike_hint(missing, list(df.columns))
        if not hint and not any(c in df.columns for c in required if c != schema.SIG_ID):
            hint = _layout_hint(df)
        raise DataError(f"missing column(s) {_listing(missing)} ({len(missing)} in all). A features file needs "
                        f"{', '.join(schema.META_COLUMNS)} and the {len(feature_columns)} columns "
                        f"{feature_columns[0]} ... {feature_columns[-1]}.{hint}", source=source, column=missing[0])
    known = set(required)
    unknown_features = [c for c in df.columns if c not in known and schema.FEATURE_LIKE.match(str(c))]
    if unknown_features:
        raise DataError(f"unexpected feature column(s) {_listing(unknown_features)}: the model knows "
                        f"{feature_columns[0]} ... {feature_columns[-1]} only. Remove or rename them.",
                        source=source, column=str(unknown_features[0]))
    check_sig_ids(df, source)
    cp_type = _check_values(df, schema.CP_TYPE, schema.CP_TYPES, source)
    cp_time = _check_values(df, schema.CP_TIME, schema.CP_TIMES, source, numeric=True)
    cp_dose = _check_values(df, schema.CP_DOSE, schema.CP_DOSES, source)
    values = _numeric_block(df, feature_columns, source, "feature", keep_float32=True)
    # float64 values beyond float32's range would silently become inf (a finite float32 block cannot be)
    too_large = (np.abs(values) > np.finfo(np.float32).max) if values.dtype != np.float32 else np.zeros(0, bool)
    if too_large.any():
        i, j = (int(k[0]) for k in np.nonzero(too_large))
        raise DataError(f"{_row_hint(df, i)}, column {feature_columns[j]}: value {values[i, j]:.3g} is too large "
                        f"({int(too_large.sum())} such value(s)); real features lie within "
                        f"[{schema.CLIP_LOW:g}, {schema.CLIP_HIGH:g}]. Check the file's units and scaling.",
                        source=source, row=i + 1, column=feature_columns[j])
    values = values.astype(np.float32, copy=False)
    index = pd.Index(_sig_id_strings(df), name=schema.SIG_ID)
    meta = pd.DataFrame({schema.CP_TYPE: cp_type.to_numpy(), schema.CP_TIME: cp_time.to_numpy(),
                         schema.CP_DOSE: cp_dose.to_numpy()}, index=index)
    feats = pd.DataFrame(values, columns=list(feature_columns), index=index, copy=False)  # values: ours alone
    extra = [c for c in df.columns if c not in known]
    parts = [meta, feats]
    if extra:
        parts.append(df[extra].set_axis(index))
    return pd.concat(parts, axis=1)


def validate_targets(df: pd.DataFrame, source: str) -> pd.DataFrame:
    """Return a 0/1 int8 label matrix indexed by sig_id, columns in the file's order."""
    check_not_empty(df, source)
    check_unique_columns(list(df.columns), source)
    check_sig_ids(df, source)
    names = [c for c in df.columns if c != schema.SIG_ID]
    if not names:
        raise DataError("no target columns after sig_id. A targets file has one 0/1 column per MoA.", source=source)
    values = _numeric_block(df, names, source, "target")
    bad = (values != 0) & (values != 1)
    if bad.any():
        i, j = (int(k[0]) for k in np.nonzero(bad))
        raise DataError(f"{_row_hint(df, i)}, column {names[j]}: target value {_show(df[names[j]].iloc[i])} is not 0 or 1 "
                        f"({int(bad.sum())} such value(s)). Targets are binary labels.",
                        source=source, row=i + 1, column=names[j])
    index = pd.Index(_sig_id_strings(df), name=schema.SIG_ID)
    return pd.DataFrame(values.astype(np.int8), columns=names, index=index)


def validate_drugs(df: pd.DataFrame, source: str) -> pd.Series:
    """Return drug_id per sig_id."""
    check_not_empty(df, source)
    check_unique_columns(list(df.columns), source)
    check_sig_ids(df, source)
    if schema.DRUG_ID not in df.columns:
        raise DataError(f"no '{schema.DRUG_ID}' column. The drug file maps {schema.SIG_ID} to {schema.DRUG_ID}.",
                        source=source, column=schema.DRUG_ID)
    drugs = df[schema.DRUG_ID]
    blank = drugs.isna() | (drugs.astype(str).str.strip() == "")
    if blank.any():
        i = int(np.flatnonzero(blank.to_numpy())[0])
        raise DataError(f"{_row_hint(df, i)}: drug_id is empty. Every profile needs its drug id.",
                        source=source, row=i + 1, column=schema.DRUG_ID)
    index = pd.Index(_sig_id_strings(df), name=schema.SIG_ID)
    return pd.Series(drugs.astype(str).str.strip().to_numpy(), index=index, name=schema.DRUG_ID)


def align_to(features_index: pd.Index, table: pd.DataFrame | pd.Series, source: str,
             features_source: str) -> pd.DataFrame | pd.Series:
    """Reorder a per-profile table (validated, rows in file order) to the feature rows; fail if the sig_ids
    differ, naming the first row of `table` whose sig_id is not among the features."""
    missing = features_index.difference(table.index, sort=False)
    extra_mask = ~table.index.isin(features_index)
    extra = table.index[extra_mask]
    row = int(np.flatnonzero(extra_mask)[0]) + 1 if extra_mask.any() else None
    if len(missing) or len(extra):
        parts = []
        if len(missing):
            parts.append(f"{len(missing)} sig_id(s) of {features_source} are missing here ({_listing(list(missing))})")
        if len(extra):
            parts.append(f"{len(extra)} sig_id(s) here are not in {features_source} ({_listing(list(extra))})")
        first = f" First unknown id: row {row} (sig_id {extra[0]})." if row is not None else ""
        raise DataError("; ".join(parts) + f".{first} Both files must describe the same profiles, one row "
                        "each.", source=source, row=row, column=schema.SIG_ID)
    return table.loc[features_index]


def check_probabilities(frame: pd.DataFrame, columns: Sequence[str], source: str) -> np.ndarray:
    """The `columns` of a predictions table as a float matrix: numeric, finite and within [0, 1]."""
    values = _numeric_block(frame, columns, source, "probability")
    bad = (values < 0) | (values > 1)
    if bad.any():
        i, j = (int(k[0]) for k in np.nonzero(bad))
        raise DataError(f"{_row_hint(frame, i)}, column {columns[j]}: probability {values[i, j]:g} is outside "
                        f"[0, 1] ({int(bad.sum())} such value(s)). Predictions must be probabilities.",
                        source=source, row=i + 1, column=columns[j])
    return values
