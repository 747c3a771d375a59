"""Reading any profile table through its :class:`~moa_predict.data.profiles.layout.Layout` into a ``Dataset``: the one
reader of the package. LISH-MoA directories and files (and the CMap gene tables a LISH-MoA model answers) are read
through ``Layout.lish_moa()``, whose fixed columns are checked by their own rules (``dataset``); every other
layout is read here.

The internal form is the one every model, explanation and page already speaks: a frame indexed by profile id with
a ``cp_type`` column (treated / control, from the layout's control rule), the layout's meta columns, and the feature
columns under their own names. The ``Dataset`` carries the layout and each block's columns (``Dataset.inputs``:
what a model fits on), never the frame: the same models fit any layout.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

from . import schema
from ..formats.cmap import detect_format, open_genes, read_genes, table_source
from ..errors import DataError
from ..formats.io import Source, read_table
from .gene_blocks import GeneMatch, block_genes, match_genes
from .gene_features import MAPPING_ATTR, check_scale
from .genes import column_entrez, landmark_naming
from .layout import Labels, Layout, short_name
from ..formats.chunks import SigIds, _checked, _table_chunks, iter_features, parquet_frames, shift_row
from ..formats.frame_attrs import Shared
from .normalize import ProfileNormalizer, scale_profiles
from ..formats.partitions import Partition
from .validate import lookalike_hint

ID_FALLBACKS = ("sig_id", "sample_id", "id")
"""An upload's own profile ids when it lacks the layout's id columns (``sample_id``: GCT/GCTX/h5ad sample ids)."""

def _name(src: Source, name: str | None) -> str:
    if name:
        return name
    if isinstance(src, (str, os.PathLike)):
        return os.path.basename(os.fspath(src))
    return os.path.basename(str(getattr(src, "name", "") or "profiles"))


def read_raw_table(src: Source, *, name: str | None = None, max_bytes: int | None = None,
                   genes_as_rows: bool = False) -> pd.DataFrame:
    """A table of profiles as rows: CSV/Parquet as they are; GCT/GCTX/h5ad turned to one row per sample (sample
    metadata, then one column per gene named by its symbol, else its id). `genes_as_rows`: a CSV/Parquet table
    whose genes are rows (a gene-name column, one numeric column per sample) is turned the same way (a layout with a
    gene block reads such tables as the CMap path does)."""
    label = _name(src, name)
    kwargs = {} if max_bytes is None else {"max_bytes": max_bytes}
    if detect_format(src, label) == "table":
        frame = read_table(src, name=label, **kwargs)
        turned = _turned(frame, label) if genes_as_rows else None
        return frame if turned is None else turned
    values, meta, genes = read_genes(src, name=label)
    return _sample_rows(values, meta, genes)


def _sample_rows(values: pd.DataFrame, meta: pd.DataFrame, genes: pd.DataFrame) -> pd.DataFrame:
    """Samples x genes values and sample metadata as one table: sample_id, metadata, then the genes (named by
    symbol where the file gives unique symbols, else by id)."""
    names = genes["symbol"].astype(str).tolist() if "symbol" in genes else genes["id"].astype(str).tolist()
    if len(set(names)) != len(names):
        names = genes["id"].astype(str).tolist()
    values.columns = names
    meta = meta.copy()
    meta.insert(0, "sample_id", meta.index.astype(str))
    frame = pd.concat([meta.reset_index(drop=True), values.reset_index(drop=True)], axis=1)
    frame.attrs["sample_metadata"] = list(meta.columns)  # the file says which columns are metadata
    return frame


def _turned(frame: pd.DataFrame, name: str) -> pd.DataFrame | None:
    """`frame` as one row per sample when its genes are rows (``cmap.table_source`` tells the orientation); None
    when its columns already name genes, or when its rows are not one gene each (at least half of them, ten or more,
    each named once: a Cell Painting table's column of compound targets is no gene axis), so that the gene matching
    says what is wrong."""
    if landmark_naming(list(frame.columns))[1] >= 10:
        return None
    try:
        source = table_source(frame, name)
    except DataError:
        return None
    if source.orientation != "genes as rows":
        return None
    hits = [h[0] for i, s in zip(source.genes["id"], source.genes.get("symbol", source.genes["id"]))
            if (h := column_entrez(i, "auto") or column_entrez(s, "auto")) is not None]
    if len(hits) < max(10, len(source.genes) // 2) or len(set(hits)) != len(hits):
        return None
    values, meta = source.read_all()
    return _sample_rows(values, meta, source.genes)


def _key(series: pd.Series) -> pd.Series:
    """Join keys compared as text, numbers written the same way whatever their source (3 == 3.0 == '3.000')."""
    num = pd.to_numeric(series, errors="coerce")
    text = series.astype(str).str.strip()
    as_num = num.map(lambda v: f"{v:.6g}" if pd.notna(v) else None)
    return as_num.where(num.notna(), text.str.lower())


def _lookup(frame: pd.DataFrame, table: pd.DataFrame, on: tuple[tuple[str, str], ...], values: list[str], *,
            source: str, file: str, what: str) -> pd.DataFrame:
    """`values` of the `table` row matching each row of `frame` on `on` ((frame column, table column) pairs), keys
    compared by ``_key``; rows without a match get missing values. Rules shared by every join of a layout: a key
    listed twice with the same values counts once; a key listed twice with different values is an error naming it
    (the table must be fixed, nothing is guessed)."""
    left = [a for a, _ in on]
    right = [b for _, b in on]
    for col, where, t in [*((c, source, frame) for c in left), *((c, file, table) for c in right + values)]:
        if col not in t.columns:
            raise DataError(f"column {col!r} not found ({what} joined on {dict(on)}, taking "
                            f"{', '.join(map(repr, values))}).", source=where, column=col)
    keys = pd.DataFrame({f"_k{i}": _key(table[c]).to_numpy() for i, c in enumerate(right)})
    kcols = list(keys.columns)
    for v in values:
        keys[v] = table[v].to_numpy()
    keys = keys.drop_duplicates()
    dup = keys.duplicated(kcols, keep=False)
    if dup.any():
        first = keys.loc[dup].iloc[0]
        clash = keys.loc[dup & (keys[kcols] == first[kcols]).all(axis=1), values]
        shown = " vs ".join(repr(r[0] if len(r) == 1 else tuple(r)) for r in clash.itertuples(index=False))
        raise DataError(f"conflicting {what} for {', '.join(str(first[k]) for k in kcols)}: {shown}. Keep one row "
                        "per key in that table.", source=file)
    fk = pd.DataFrame({f"_k{i}": _key(frame[c]).to_numpy() for i, c in enumerate(left)})
    return fk.merge(keys, on=kcols, how="left")[values]


def metadata_lookups(layout: Layout) -> list[pd.DataFrame]:
    """Each ``[[metadata]]`` table of the layout cut to its join keys and joined columns, one row per key: what a
    bundle stores so that a raw file in the training form is joined exactly as the training table was."""
    out = []
    for meta in layout.metadata:
        path = layout.resolve(meta.file)
        stamp = os.stat(path).st_mtime_ns if os.path.isfile(path) else 0
        out.append(_lookup_table(str(path), stamp, meta.file, tuple(b for _, b in meta.on), meta.columns))
    return out


@functools.lru_cache(maxsize=8)
def _lookup_table(path: str, stamp: int, file: str, right: tuple[str, ...], columns: tuple[str, ...]
                  ) -> pd.DataFrame:
    """``metadata_lookups`` of one table (cached by path and modification time: a benchmark trains many bundles)."""
    table = read_table(path, name=file)
    keep = list(columns) or [c for c in table.columns if c not in right]
    missing = [c for c in [*right, *keep] if c not in table.columns]
    if missing:
        raise DataError(f"column {missing[0]!r} not found in the metadata table.", source=file, column=missing[0])
    return table[list(dict.fromkeys([*right, *keep]))].drop_duplicates().reset_index(drop=True)


def join_metadata(frame: pd.DataFrame, layout: Layout, source: str,
                   stored: list[pd.DataFrame] | None = None) -> pd.DataFrame:
    """The layout's ``[[metadata]]`` tables joined onto `frame`. With `stored` (a bundle's ``metadata_lookups``,
    predicting): a join whose columns the upload already has, or whose keys it lacks, is skipped; the others use the
    stored table."""
    for i, meta in enumerate(layout.metadata):
        right = {b for _, b in meta.on}
        if stored is not None:
            if i >= len(stored):
                continue  # a bundle from before joins were stored: the upload must carry the columns itself
            table = stored[i]
            if (all(c in frame.columns for c in meta.columns or [c for c in table.columns if c not in right])
                    or any(a not in frame.columns for a, _ in meta.on)):
                continue  # the upload carries these columns itself, or lacks the keys to join them on
        else:
            table = read_table(layout.resolve(meta.file), name=meta.file)
        keep = list(meta.columns) or [c for c in table.columns if c not in right]
        joined = _lookup(frame, table, meta.on, keep, source=source, file=meta.file, what="metadata values")
        added = pd.DataFrame({c if c not in frame.columns else f"{c}_joined": joined[c].to_numpy() for c in keep})
        frame = pd.concat([frame, added], axis=1)
    return frame


def _ids(frame: pd.DataFrame, layout: Layout, source: str, *, upload: bool = False, first_row: int = 0) -> pd.Index:
    """The profile ids: the layout's id columns; an upload without them uses its own unique ``sig_id`` /
    ``sample_id`` / ``id`` column, else row numbers (counted from `first_row` + 1)."""
    if upload and (not layout.id or any(c not in frame.columns for c in layout.id)):
        own = next((c for c in ID_FALLBACKS if c in frame.columns and frame[c].notna().all()
                    and frame[c].astype(str).str.strip().is_unique), None)
        if own is not None:
            return pd.Index(frame[own].astype(str).str.strip().to_numpy(), name=schema.SIG_ID)
    if not layout.id or (upload and any(c not in frame.columns for c in layout.id)):
        return pd.Index([f"row-{first_row + i + 1}" for i in range(len(frame))], name=schema.SIG_ID)
    for c in layout.id:
        if c not in frame.columns:
            raise DataError(f"the layout's id column {c!r} is not in the table."
                            f"{lookalike_hint([c], list(frame.columns))}", source=source, column=c)
    ids = frame[list(layout.id)].astype(str).agg("_".join, axis=1).str.strip()
    dup = ids.duplicated(keep=False)
    if dup.any():
        rows = np.flatnonzero(dup.to_numpy())[:2] + 1
        raise DataError(f"id {ids.iloc[rows[0] - 1]!r} appears more than once (rows {rows[0]} and {rows[1]}); the "
                        f"id ({' + '.join(layout.id)}) must be unique per profile.", source=source, row=int(rows[1]),
                        column=layout.id[0])
    return pd.Index(ids.to_numpy(), name=schema.SIG_ID)


def _feature_block(frame: pd.DataFrame, columns: list[str], source: str,
                   own_names: dict[str, str] | None = None) -> np.ndarray:
    """The features as float64 (missing and infinite values as NaN); a text cell is an error naming its row and
    its column as the file names it (`own_names`: model column -> the upload's column, for matched genes)."""
    block = frame[columns]
    text = [c for c, d in zip(columns, block.dtypes) if not pd.api.types.is_numeric_dtype(d)]
    if not text:  # every column read as numbers (GCTX, Parquet, most CSVs): no per-column parsing
        values = block.to_numpy(np.float64, copy=True)
        values[~np.isfinite(values)] = np.nan
        return values
    numeric = block.copy()
    numeric[text] = block[text].apply(pd.to_numeric, errors="coerce")
    bad = numeric.isna() & block.notna()
    if bad.to_numpy().any():
        r, c = np.argwhere(bad.to_numpy())[0]
        column = (own_names or {}).get(columns[c], columns[c])
        raise DataError(f"row {int(r) + 1}, column {column!r}: value {block.iat[r, c]!r} is not a number; feature "
                        "columns must be numeric (fix the cell, or name the column as meta in the layout).",
                        source=source, row=int(r) + 1, column=column)
    values = numeric.to_numpy(np.float64, copy=True)
    values[~np.isfinite(values)] = np.nan
    return values


def _labels(frame: pd.DataFrame, ids: pd.Index, labels: Labels, layout: Layout, source: str
            ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(0/1 targets indexed like the profiles, report). Rows without an annotation get all zeros and are listed."""
    if labels.source == "wide":
        path = layout.resolve(labels.file)
        table = read_table(path, name=labels.file)
        if labels.key not in table.columns:
            raise DataError(f"key column {labels.key!r} not in the label table.", source=labels.file,
                            column=labels.key)
        table = table.set_index(table[labels.key].astype(str).str.strip()).drop(columns=[labels.key])
        if table.index.duplicated().any():
            raise DataError(f"id {table.index[table.index.duplicated()][0]!r} appears twice in the label table.",
                            source=labels.file)
        targets = table.reindex(ids).fillna(0).astype(np.int8)
        missing = int((~ids.isin(table.index)).sum())
        return targets, {"unannotated_rows": missing}
    if labels.source == "column":
        if labels.column not in frame.columns:
            raise DataError(f"label column {labels.column!r} is not in the table."
                            f"{lookalike_hint([labels.column], list(frame.columns))}", source=source,
                            column=labels.column)
        raw = frame[labels.column]
    else:
        raw = annotate(frame, labels, layout, source)
    text = raw.astype("string").str.strip()
    text = text.where(text.notna() & (text != "") & (text.str.lower() != "nan"), None)
    text = pd.Series([v if isinstance(v, str) else None for v in text], index=text.index, dtype=object)
    if labels.separator:
        lists = [sorted({m.strip() for m in str(v).split(labels.separator) if m.strip()}) if pd.notna(v) else []
                 for v in text]
    else:
        joined = text.dropna()
        joined = joined[joined.str.contains("|", regex=False)]
        if len(joined):
            raise DataError(f"single-label layout, but the label {joined.iloc[0]!r} holds several MoAs joined by '|'; "
                            "set separator = '|' under [labels] (multi-label).", source=source,
                            row=int(np.flatnonzero(text.index == joined.index[0])[0]) + 1)
        lists = [[str(v)] if v is not None else [] for v in text]
    classes = sorted({m for ms in lists for m in ms})
    index = {c: i for i, c in enumerate(classes)}
    Y = np.zeros((len(lists), len(classes)), np.int8)
    for r, ms in enumerate(lists):
        Y[r, [index[m] for m in ms]] = 1
    return pd.DataFrame(Y, index=ids, columns=classes), {}


def annotate(frame: pd.DataFrame, labels: Labels, layout: Layout, source: str) -> pd.Series:
    """The MoA of each row from the annotation table, joined on ``labels.on`` (rules: ``_lookup``; rows of the
    annotation without a MoA are ignored)."""
    table = read_annotation(layout.resolve(labels.file), labels)
    if labels.column in table.columns:
        table = table.assign(**{labels.column: table[labels.column].astype("string").str.strip()})
        table = table.dropna(subset=[labels.column])
    return _lookup(frame, table, labels.on, [labels.column], source=source, file=labels.file,
                   what="annotations")[labels.column]


def read_annotation(path: os.PathLike, labels: Labels) -> pd.DataFrame:
    if not labels.comment:
        return read_table(path, name=labels.file)
    import io

    try:
        lines = [ln for ln in open(path, encoding="utf-8") if not ln.startswith(labels.comment)]
    except FileNotFoundError:
        raise DataError("annotation file not found; check the path in the layout (relative paths are read from "
                        "the layout file's folder).", source=labels.file) from None
    return read_table(io.BytesIO("".join(lines).encode()), name=labels.file)


def _alias_meta(frame: pd.DataFrame, layout: Layout) -> pd.DataFrame:
    """An upload's meta columns under the layout's names when it names them with or without CellProfiler's
    ``Metadata_`` prefix (``Metadata_pert_iname`` for the layout's ``pert_iname``, or the reverse): one candidate
    only, and never a column the layout names itself."""
    named = set(layout.meta_columns()) | set(layout.ignore)
    by_short: dict[str, list[str]] = {}
    for c in frame.columns:
        if c not in named:
            by_short.setdefault(short_name(c), []).append(c)
    rename: dict[str, str] = {}
    for c in layout.meta_columns():
        options = by_short.get(short_name(c), [])
        if c not in frame.columns and len(options) == 1 and options[0] not in rename:
            rename[options[0]] = c
    return frame.rename(columns=rename) if rename else frame


def _gene_notes(reports: list[GeneMatch]) -> dict[str, Any]:
    """One mapping report for all gene blocks of an upload, with the keys of the LISH-MoA one (``found``,
    ``missing``, ``ignored``, ``filled_with_zero``), which ``moa predict`` prints."""
    return {"found": sum(r.found for r in reports), "of": sum(r.n_model for r in reports),
            "missing": sum(len(r.filled_with_zero) for r in reports),
            "ignored": max(r.to_dict()["ignored"] for r in reports),
            "filled_with_zero": [x for r in reports for x in r.filled_with_zero],
            "summary": "; ".join(r.summary() + (f" (block {r.block})" if len(reports) > 1 else "") for r in reports),
            "blocks": [r.to_dict() for r in reports]}


def _fill_missing(values: np.ndarray, notes: dict[str, Any]) -> np.ndarray:
    """Missing cells get their column's median over the table; the count goes to the report."""
    med = np.nanmedian(values, axis=0)
    med = np.where(np.isfinite(med), med, 0.0)
    r, c = np.nonzero(np.isnan(values))
    values[r, c] = med[c]
    notes["missing_values_filled"] = {"cells": int(len(r)), "columns": int(len(set(c.tolist())))}
    return values


def load_profiles(src: Source, layout: Layout, *, name: str | None = None, max_bytes: int | None = None,
                  labels: bool = True, feature_columns: list[str] | None = None,
                  normalizer: "ProfileNormalizer | None" = None, metadata: list[pd.DataFrame] | None = None,
                  label_set: str | None = None, allow_gene_only: bool = False):
    """Read a table (or, for a layout with ``fixed_columns``, a data directory) through `layout` into a
    :class:`~moa_predict.data.profiles.dataset.Dataset` that carries the layout.

    `labels`: read the labels (training); rows whose compound has no annotation are kept (for prediction), get no
    label, and are counted in ``dataset.notes``. `feature_columns`: the columns a trained model needs (an upload must
    have all of them, except a gene block's genes, which are matched by identity with up to 5 % missing; extra
    columns are ignored; of the meta columns only the model's meta inputs are required). `normalizer`: the fitted
    normalisation of the training table (a bundle stores it: pooled control scale, whitening), else one is fit on
    this table's control wells and returned as ``dataset.normalizer``. `metadata`: the layout's metadata tables as a
    bundle stored them (``metadata_lookups``): joined where the upload lacks their columns, instead of reading the
    files. `label_set`: the targets are this extra label set of the layout (``[label_sets.NAME]``: the protein
    targets) instead of ``[labels]``.

    A layout with ``fixed_columns`` (LISH-MoA) is read by its schema's rules: a directory gives its train split
    (`labels`) or its test features; a file gives its profiles, or, for a CMap gene table (GCTX, GCT, h5ad, genes
    named by id or symbol), its gene block alone when `feature_columns` are genes only or `allow_gene_only`."""
    if layout.fixed_columns:
        return _fixed_dataset(src, layout, name=name, max_bytes=max_bytes, labels=labels,
                              feature_columns=feature_columns, allow_gene_only=allow_gene_only)
    source = _name(src, name)
    frame = read_raw_table(src, name=source, max_bytes=max_bytes, genes_as_rows=bool(layout.gene_blocks()))
    dataset = _dataset(frame, layout, source, labels=labels, feature_columns=feature_columns, normalizer=normalizer,
                       metadata=metadata, label_set=label_set)
    if isinstance(src, (str, os.PathLike)):
        from .dataset import simulated_marker

        dataset.simulated = simulated_marker(Path(src).parent)
    return dataset


def _fixed_dataset(src: Source, layout: Layout, *, name: str | None, max_bytes: int | None, labels: bool,
                   feature_columns: list[str] | None, allow_gene_only: bool):
    """A fixed-column (LISH-MoA) directory or file as a ``Dataset`` (``data.profiles.dataset``'s schema checks)."""
    from .dataset import Dataset, fixed_blocks, load_dataset, load_features, simulated_marker

    if isinstance(src, (str, os.PathLike)) and (Path(src).is_dir() or not (Path(src).exists() or Path(src).suffix)):
        # a data directory (a missing path without a file suffix: one, whose error says so)
        return load_dataset(src, split="train" if labels else "test")
    kwargs = {} if feature_columns is None else {"feature_columns": feature_columns}
    features = load_features(src, name=name, max_bytes=max_bytes, allow_gene_only=allow_gene_only, **kwargs)
    simulated = simulated_marker(Path(src).parent) if isinstance(src, (str, os.PathLike)) else None
    return Dataset(features, source=_name(src, name), simulated=simulated, layout=layout,
                   blocks=fixed_blocks(features, layout))


def streams(layout: Layout, normalizer: "ProfileNormalizer | None") -> bool:
    """Whether an upload can be read through `layout` in row chunks with the answers of a whole read: every step
    works on one profile at a time (no plate normalisation, no whitening: those need whole plates), and the
    normalisation is already fitted (a bundle's); without a normaliser, when the layout transforms no profile."""
    if normalizer is None:
        return not layout.transforms_profiles
    return normalizer.fitted and normalizer.row_local


def iter_profiles(path: str | os.PathLike, layout: Layout, *, feature_columns: list[str],
                  normalizer: "ProfileNormalizer | None", name: str | None = None, chunk_rows: int = 5_000,
                  metadata: list[pd.DataFrame] | None = None, part: "Partition | None" = None) -> Iterator[Any]:
    """An upload's profiles read through `layout` as ``Dataset`` s of at most `chunk_rows` profiles each, for files of
    any size with flat memory (a layout that ``streams`` only). Each chunk is read exactly as ``load_profiles``
    reads a whole file, with row numbers in errors counted from the start of the file and ids unique across
    chunks. One difference: a missing cell gets its column's median over its chunk, not over the whole file (a
    file of at most `chunk_rows` profiles is one chunk, answered as a whole read).

    `part`: only this partition of the file (``data.formats.partitions``: GCTX/h5ad samples or Parquet row groups, a
    cluster task's share), rows and ids still counted from the start of the file; ids are checked for repeats
    within the partition (across partitions: the caller's check)."""
    if not streams(layout, normalizer):
        raise ValueError("this layout normalises whole plates: read the table whole (load_profiles)")
    if layout.fixed_columns:
        yield from _fixed_chunks(path, layout, feature_columns=feature_columns, name=name, chunk_rows=chunk_rows,
                                 part=part)
        return
    source = _name(path, name)
    seen = SigIds(source)
    offset = first = part.first if part is not None and part.first is not None else 0
    for frame in iter_raw_tables(path, source, chunk_rows, genes_as_rows=bool(layout.gene_blocks()), part=part):
        try:
            data = _dataset(frame, layout, source, labels=False, feature_columns=feature_columns,
                            normalizer=normalizer, metadata=metadata, first_row=offset)
        except DataError as exc:
            raise shift_row(exc, offset) from None
        seen.add(data.features.index, offset)  # its rows counted from the start of the file already
        offset += len(frame)
        del frame
        yield data
    if offset == first and part is None:
        raise DataError("the table has no rows.", source=source)


def _fixed_chunks(path: Source, layout: Layout, *, feature_columns: list[str], name: str | None, chunk_rows: int,
                  part: "Partition | None") -> Iterator[Any]:
    """A fixed-column (LISH-MoA) file, or a CMap gene file, as ``Dataset`` s of at most `chunk_rows` profiles
    (``formats.chunks.iter_features``: flat memory; `part`: one partition of it, ``formats.partitions.iter_partition``,
    its error rows counted from the partition's first row)."""
    from .dataset import Dataset, fixed_blocks
    from ..formats.partitions import iter_partition

    source = _name(path, name)
    frames = (iter_features(path, feature_columns=feature_columns, chunk_rows=chunk_rows, name=name) if part is None
              else iter_partition(path, part, feature_columns=feature_columns, chunk_rows=chunk_rows))
    for features in frames:
        yield Dataset(features, source=source, layout=layout, blocks=fixed_blocks(features, layout))


def iter_raw_tables(path: str | os.PathLike, source: str, rows: int, *, genes_as_rows: bool = False,
                    part: "Partition | None" = None) -> Iterator[pd.DataFrame]:
    """``read_raw_table`` in chunks of at most `rows` profiles: CSV/Parquet by record batches (``chunks``),
    GCTX/h5ad by sample blocks; a GCT file, or a table whose genes are rows, is read whole (one chunk).
    `part`: a partition's samples or row groups only (``data.formats.partitions``; "whole": the file)."""
    if part is not None and part.kind == "row_groups":
        yield from parquet_frames(Path(path), source, rows, part.row_groups)
        return
    if part is not None and part.kind not in ("samples", "whole"):
        raise ValueError(f"a layout file is partitioned by samples or row groups, not {part.kind}")
    kind = detect_format(path, source)
    if kind == "hdf5":
        first, last = (part.first, part.last) if part is not None and part.kind == "samples" else (0, None)
        with open_genes(path, name=source, max_bytes=None, whole=False) as genes:
            ids = genes.genes["id"].tolist()
            for meta, values in genes.blocks(rows, first=first, last=last):
                frame = _sample_rows(pd.DataFrame(values, columns=ids), meta, genes.genes)
                del meta, values
                yield frame
        return
    if kind == "table":
        path = Path(path)
        chunks = _checked(_table_chunks(path, source, rows), path, source)
        first = next(chunks, None)
        if first is None:
            return
        if not genes_as_rows or landmark_naming(list(first.columns))[1] >= 10:  # profiles as rows: stream
            yield first
            del first
            yield from chunks
            return
        chunks.close()
    yield read_raw_table(path, name=source, max_bytes=None, genes_as_rows=genes_as_rows)


def _dataset(frame: pd.DataFrame, layout: Layout, source: str, *, labels: bool, feature_columns: list[str] | None,
             normalizer: "ProfileNormalizer | None", metadata: list[pd.DataFrame] | None, first_row: int = 0,
             label_set: str | None = None):
    """The ``Dataset`` of a raw table already read (``load_profiles``'s work after reading); `first_row`: the
    rows of the file before this table (a chunk's ids by row number continue the file's)."""
    from .dataset import Dataset

    frame = join_metadata(frame.reset_index(drop=True), layout, source, metadata)
    if len(frame) == 0:
        raise DataError("the table has no rows.", source=source)
    upload = feature_columns is not None
    gene_reports: list[GeneMatch] = []
    if upload:
        frame = _alias_meta(frame, layout)
        frame, gene_reports = match_genes(frame, layout, feature_columns, source=source,
                                          skip=[*layout.meta_columns(), *layout.ignore, *ID_FALLBACKS])
    ids = _ids(frame, layout, source, upload=upload, first_row=first_row)
    if feature_columns is None:
        blocks = layout.block_columns(list(frame.columns), source)
    else:
        missing = [c for c in feature_columns if c not in frame.columns]
        if missing:
            raise DataError(f"{len(missing)} feature column(s) the model was trained on are missing "
                            f"({', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''})."
                            f"{lookalike_hint(missing, list(frame.columns))}", source=source, column=missing[0])
        wanted = set(feature_columns)
        blocks = {k: [c for c in v if c in wanted]
                  for k, v in layout.block_columns(list(frame.columns), source).items()}
    columns = [c for cols in blocks.values() for c in cols]
    genes: dict[str, int | None] = {}
    for b in layout.gene_blocks():
        genes.update(block_genes(blocks.get(b.name, []), b.genes or "auto", block=b.name, source=source))
    own_names = {model: own for r in gene_reports for model, (own, _) in r.matched.items()}
    values = _feature_block(frame, columns, source, own_names)
    notes: dict[str, Any] = {}
    if gene_reports:
        notes["genes"] = _gene_notes(gene_reports)
    if layout.controls is not None and upload and layout.controls.column not in frame.columns:
        is_control = np.zeros(len(frame), bool)
        notes["controls"] = f"no control column {layout.controls.column!r}: every profile taken as treated"
    elif layout.controls is not None:
        if layout.controls.column not in frame.columns:
            raise DataError(f"the control column {layout.controls.column!r} is not in the table.", source=source,
                            column=layout.controls.column)
        wanted_ctl = {v.lower() for v in layout.controls.values}
        is_control = frame[layout.controls.column].astype(str).str.strip().str.lower().isin(wanted_ctl).to_numpy()
    else:
        is_control = np.zeros(len(frame), bool)
    meta_cols = [c for c in layout.meta_columns() if c in frame.columns]
    spec_labels = layout.labels if label_set is None else layout.label_set(label_set)
    needed = layout.prediction_columns() if upload else [
        c for c in layout.meta_columns() if c not in layout.id and not (
            labels is False and layout.labels is not None and c == layout.labels.column)]
    for c in needed:
        if c not in frame.columns and upload:
            raise DataError(f"the model takes column {c!r} as an input (a meta column of its layout, or the plate / "
                            "control column its normalisation needs), and it is not in the table. Add it.",
                            source=source, column=c)
        if c not in frame.columns:
            raise DataError(f"the layout names column {c!r}, which is not in the table.", source=source, column=c)
    meta = frame[meta_cols].copy()
    meta.index = ids
    if layout.batch_from_plate:
        plate = meta[layout.plate].astype(str)
        batch = plate.str.extract(layout.batch_from_plate, expand=False)
        meta["batch"] = batch.fillna(plate)
    if normalizer is None:
        normalizer = layout.normalizer()
    fit = not normalizer.fitted
    gene_positions = [i for i, c in enumerate(columns) if c in genes]
    # a gene block's values are z-scores: level-3 (log2 expression) files are refused, not answered. Judged on the
    # values as read unless the layout normalises to control wells (then raw level-3 is its input): a per-profile
    # scaling would hide log2 expression, not turn it into a signature
    raw_check = bool(gene_positions) and layout.normalize == "none" and not layout.whiten
    if raw_check:
        check_scale(values if len(gene_positions) == values.shape[1] else values[:, gene_positions], source)
    if layout.transforms_profiles:
        if np.isnan(values).any():  # statistics over controls must not see holes: fill first (median of the column)
            values = _fill_missing(values, notes)
        plates = meta[layout.plate].to_numpy() if layout.plate in meta.columns else None
        bcol = layout.batch_column
        batches = meta[bcol].to_numpy() if bcol in meta.columns else None
        values, sentences = normalizer.transform(values, plates, batches, is_control, source=source, fit=fit)
        notes["normalization"] = "; ".join(sentences)
    if np.isnan(values).any():
        values = _fill_missing(values, notes)
    if gene_positions and not raw_check:
        check_scale(values if len(gene_positions) == values.shape[1] else values[:, gene_positions], source)
    features = pd.concat([pd.DataFrame({schema.CP_TYPE: np.where(is_control, schema.CONTROL, schema.TREATED)},
                                       index=ids), meta,
                          pd.DataFrame(values.astype(np.float32), index=ids, columns=columns)], axis=1)
    if gene_reports:
        features.attrs[MAPPING_ATTR] = Shared(notes["genes"])
    targets = drugs = None
    if layout.group is not None and layout.group in meta.columns:
        drugs = meta[layout.group].astype(str).rename("drug_id")
    if labels and spec_labels is not None:
        targets, report = _labels(frame, ids, spec_labels, layout, source)
        targets.loc[is_control] = 0
        # a class only controls carry (BBBC021 annotates DMSO itself) is no MoA
        targets = targets.loc[:, targets.sum(axis=0).to_numpy() > 0]
        if spec_labels.min_compounds > 1:
            targets, few = _enough_compounds(targets, drugs, spec_labels.min_compounds)
            report["too_few_compounds"] = few
        unlabelled = (targets.sum(axis=1).to_numpy() == 0) & ~is_control
        notes.update(report)
        notes["unlabelled_rows"] = int(unlabelled.sum())
        if drugs is not None:
            notes["unlabelled_compounds"] = sorted(set(drugs[unlabelled]), key=str)[:50]
        notes["labelled_rows"] = int((~unlabelled & ~is_control).sum())
        notes["classes"] = len(targets.columns)
        if spec_labels.single_label and (targets.sum(axis=1) > 1).any():
            raise DataError("single-label layout but a row has several MoAs; set labels.separator.", source=source)
    return Dataset(features, targets, None, drugs, source=source, simulated=None, layout=layout, notes=notes,
                   normalizer=normalizer, blocks=blocks, label_set=label_set)


def _enough_compounds(targets: pd.DataFrame, drugs: pd.Series | None, minimum: int
                      ) -> tuple[pd.DataFrame, dict[str, int]]:
    """`targets` without the labels carried by fewer than `minimum` compounds (rows, without a compound column),
    and those labels with their count: listed as "too few compounds", never trained (nothing to learn a label
    from when its one compound is held out)."""
    Y = targets.to_numpy() > 0
    if drugs is None:
        counts = Y.sum(axis=0)
    else:
        codes = pd.factorize(drugs.astype(str).to_numpy())[0]
        counts = np.array([len(np.unique(codes[Y[:, j]])) for j in range(Y.shape[1])])
    keep = counts >= minimum
    few = {str(c): int(n) for c, n in zip(targets.columns[~keep], counts[~keep])}
    return targets.loc[:, keep], few


def training_rows(dataset) -> np.ndarray:
    """Positions a model trains on: controls and labelled rows (rows without an annotation are left out)."""
    if dataset.targets is None:
        return np.arange(len(dataset.features))
    labelled = dataset.targets.to_numpy().sum(axis=1) > 0
    return np.flatnonzero(labelled | dataset.is_control)


def treatment_keys(frame: pd.DataFrame, by: list[str]) -> pd.Series:
    """One text key per row naming its treatment (the values of the `by` columns joined by " @ "): the index of
    ``treatment_means``, and how wells are grouped wherever treatments are counted or averaged."""
    return frame[list(by)].astype(str).agg(" @ ".join, axis=1)


def treatment_means(dataset, by: list[str] | None = None):
    """One profile per treatment (the layout's treatment columns; controls dropped): mean features, first meta value,
    labels of the treatment (the union). How the field reports image-based MoA calls."""
    from .dataset import Dataset

    layout = dataset.layout
    by = list(by or layout.treatment or [layout.group])
    f = dataset.features.loc[~dataset.is_control]
    feats = dataset.feature_columns
    keys = treatment_keys(f, by)
    grouped = f.groupby(keys.to_numpy(), sort=True)
    means = grouped[feats].mean()
    if layout.profile_scale == "zscore":  # a mean of scaled profiles is scaled again
        means = pd.DataFrame(scale_profiles(means.to_numpy()), index=means.index, columns=means.columns)
    means = means.astype(np.float32)
    meta = grouped[[c for c in f.columns if c not in feats]].first()
    out = pd.concat([meta, means], axis=1)
    out.index.name = schema.SIG_ID
    targets = drugs = None
    if dataset.targets is not None:
        t = dataset.targets.loc[~dataset.is_control]
        targets = t.groupby(keys.to_numpy(), sort=True).max().astype(np.int8)
        targets.index = out.index
    if dataset.drugs is not None:
        drugs = dataset.drugs.loc[~dataset.is_control].groupby(keys.to_numpy(), sort=True).first()
        drugs.index = out.index
    return Dataset(out, targets, None, drugs, source=dataset.source, layout=layout, notes=dict(dataset.notes),
                   blocks=dataset.blocks, label_set=dataset.label_set)
