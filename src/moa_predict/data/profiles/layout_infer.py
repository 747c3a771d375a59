"""``moa layout infer``: a starting layout read off a table's columns and values, with the reasons for each guess.

Hand-written rules (no library infers profiling layouts): the naming conventions of CellProfiler / pycytominer
(``Metadata_*`` meta, ``Cells_``/``Nuclei_``/``Cytoplasm_`` compartments), CMap (``pert_iname``, ``pert_type``,
genes), LISH-MoA (``g-``/``c-``). The user reviews and edits the TOML; nothing here is trusted silently.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from . import practice
from ..errors import DataError
from .genes import landmark_naming
from ..formats.io import Source, read_table
from .layout import Block, Controls, Labels, Layout, MetadataTable, short_name
from .reader import annotate, join_metadata, read_annotation, read_raw_table

CONTROL_VALUES = ("dmso", "ctl_vehicle", "control", "vehicle", "negcon", "ctrl", "untreated", "pbs")
_COMPOUND = ("compound", "pert_iname", "broad_sample", "pert_id", "drug", "treatment", "cmpd", "perturbation")
_PLATE = ("plate",)
_WELL = ("well",)
_BATCH = ("batch", "week")
_DOSE = ("dose", "concentration", "conc", "mmoles_per_liter", "um")
_MOA = ("moa",)
_CELL = ("cell_id", "cell_line", "cell_iname", "cell")
_TIME = ("time", "timepoint", "hours")


def _find(columns: list[str], words: tuple[str, ...], exclude: tuple[str, ...] = ()) -> str | None:
    """The first meta column whose short name is one of `words`, else contains one (in `words` order)."""
    shorts = {c: short_name(c) for c in columns}
    for w in words:
        for c, s in shorts.items():
            if s == w and not any(x in s for x in exclude):
                return c
    for w in words:
        for c, s in shorts.items():
            if w in s and not any(x in s for x in exclude):
                return c
    return None


def infer_layout(src: Source, *, name: str | None = None, max_rows: int | None = None,
                 metadata: Sequence[str | os.PathLike] = (), annotation: str | os.PathLike | None = None,
                 relative_to: str | os.PathLike | None = None) -> tuple[Layout, list[str]]:
    """(layout, reasons): meta columns are the non-numeric ones and those named ``Metadata_*``/known meta names;
    features are the numeric rest, in blocks by their common prefix; controls, plate, compound and labels are
    found by name and by value. `metadata`: tables joined on plate + well (an image table holding compound and
    concentration); `annotation`: a table mapping compound (and concentration) to MoA. File paths in the layout are
    written relative to `relative_to` (the folder of the TOML file) when given. CellProfiler tables with raw values
    get the field's practice (``data.profiles.practice``): pycytominer's blocklist, pooled or per-plate control scaling,
    whitening and batch alignment on control wells when there are enough of them."""
    frame = read_raw_table(src, name=name)
    if max_rows:
        frame = frame.head(max_rows)
    reasons: list[str] = []
    joins: list[MetadataTable] = []
    for path in metadata:
        frame, join = _propose_join(frame, path, relative_to, reasons)
        joins.append(join)
    columns = [str(c) for c in frame.columns]
    numeric = {c for c in columns if pd.api.types.is_numeric_dtype(frame[c])}
    named_meta = {c for c in columns if re.match(r"^(image_)?metadata_|^(sig_id|cp_type|cp_time|cp_dose|drug_id)$",
                                                 c.lower()) or short_name(c) in _COMPOUND + ("sample_id", "pert_type")}
    named_meta |= set(frame.attrs.get("sample_metadata", ()))  # GCT/GCTX/h5ad: the file's sample metadata
    meta = [c for c in columns if c in named_meta or c not in numeric]
    feats = [c for c in columns if c not in meta]
    reasons.append(f"{len(meta)} meta columns (named Metadata_* or not numeric), {len(feats)} numeric feature "
                   "columns")
    blocks = _gene_blocks(feats, reasons) or _blocks(feats)
    for b in blocks:
        n = sum(1 for c in feats if b.matches(c))
        reasons.append(f"block {b.name!r}: {n} columns " + (
            f"starting with {b.prefix!r}" if b.prefix else f"named as genes by {b.genes}" if b.genes
            else "(every numeric non-meta column)"))
    compound = _find(meta, _COMPOUND)
    plate = _find(meta, _PLATE, exclude=("map", "barcode"))
    well = _find(meta, _WELL)
    batch = _find(meta, _BATCH)
    dose = _find(meta, _DOSE, exclude=("unit",))
    moa = _find(meta, _MOA, exclude=("alternative",))
    cell = _find(meta, _CELL)
    controls = _controls(frame, meta, reasons)
    if compound:
        reasons.append(f"compound (folds grouped by it): {compound!r}")
    else:
        reasons.append("no compound column found: set `group` by hand (folds must never split a compound)")
    ids: tuple[str, ...] = ()
    for cand in ("sig_id", "sample_id", *(c for c in meta if c.lower().endswith("_id") and frame[c].notna().all())):
        if cand in columns and frame[cand].is_unique:
            ids = (cand,)
            break
    if not ids and plate and well and not frame[[plate, well]].duplicated().any():
        ids = (plate, well)
    if ids:
        reasons.append(f"id: {' + '.join(ids)} (unique per row)")
    labels = None
    if annotation is not None:
        labels = _propose_annotation(frame, annotation, compound, dose, controls, relative_to, reasons)
    elif moa:
        values = frame[moa].dropna().astype(str)
        sep = "|" if values.str.contains("|", regex=False).any() else ""
        labels = Labels("column", column=moa, separator=sep)
        reasons.append(f"labels: column {moa!r}" + (" (several MoAs joined by '|': multi-label)" if sep
                                                     else " (one MoA per row: single-label)"))
    if labels is None:
        reasons.append("no MoA column: add [labels] (an annotation table joined on the compound, or a label column)")
    meta_cat = tuple(c for c in (cell,) if c and frame[c].nunique() > 1)
    batch = batch if batch and batch != plate else None
    batch_regex = None
    if batch is None and plate:
        batch_regex = practice.batch_from_plate_names(frame[plate].astype(str).tolist())
        if batch_regex:
            heads = sorted(set(frame[plate].astype(str).str.extract(batch_regex, expand=False).dropna()))
            reasons.append(f"batch from the plate names: batch_from_plate = {batch_regex!r} ({len(heads)} batches: "
                           f"{', '.join(heads[:4])}{' ...' if len(heads) > 4 else ''})")
    elif batch:
        reasons.append(f"batch: column {batch!r} ({frame[batch].nunique()} batches)")
    blocked = _blocklist(feats, reasons)
    layout = Layout(name=os.path.splitext(os.path.basename(name or str(src)))[0].split(".")[0] or "custom",
                    id=ids, group=compound, treatment=tuple(c for c in (compound, dose) if c), plate=plate,
                    batch=batch, batch_from_plate=batch_regex, meta_categorical=meta_cat,
                    controls=controls, blocks=blocks, labels=labels, metadata=tuple(joins),
                    exclude=tuple(f"^{re.escape(c)}$" for c in blocked))
    layout = _normalisation(frame, layout, [c for c in feats if c not in set(blocked)], reasons)
    used = set(layout.meta_columns())
    layout = dataclasses.replace(layout, ignore=tuple(c for c in meta if c not in used))
    return layout, reasons


def _blocklist(feats: list[str], reasons: list[str]) -> list[str]:
    """The columns on pycytominer's blocklist for CellProfiler feature names (``data.profiles.practice``)."""
    if not practice.is_cellprofiler(feats):
        return []
    blocked = practice.pycytominer_blocklist(feats)
    if blocked:
        reasons.append(f"exclude: {len(blocked)} columns on pycytominer's lists (its default blocklist and its "
                       "per-object bookkeeping columns: object numbers, parent/child links, neighbour ids), e.g. "
                       f"{', '.join(blocked[:3])}")
    else:
        reasons.append("exclude: no column is on pycytominer's blocklist")
    return blocked


def _normalisation(frame: pd.DataFrame, layout: Layout, feats: list[str], reasons: list[str]) -> Layout:
    """The control-based normalisation the field's practice gives this table (``data.profiles.practice``)."""
    plate, controls = layout.plate, layout.controls
    if not (plate and controls is not None) or _looks_normalised(frame, feats):
        reasons.append("normalize = 'none' (values look already normalised, or no plate / control wells)")
        return dataclasses.replace(layout, normalize="none")
    if not practice.is_cellprofiler(feats):
        reasons.append("normalize = 'robust_z' (raw values: each plate is scaled to its control wells)")
        return dataclasses.replace(layout, normalize="robust_z")
    wanted = {v.lower() for v in controls.values}
    is_control = frame[controls.column].astype(str).str.strip().str.lower().isin(wanted).to_numpy()
    plates = frame[plate].astype(str).to_numpy()
    per_plate = np.array([int((is_control & (plates == p)).sum()) for p in sorted(set(plates.tolist()))])
    method, why = practice.scaling_rule(per_plate)
    reasons.append(why)
    k, why = practice.whitening_rule(int(is_control.sum()), len(feats))
    reasons.append(why)
    batches = None
    if layout.batch_from_plate:
        batches = frame[plate].astype(str).str.extract(layout.batch_from_plate, expand=False).fillna(
            frame[plate].astype(str)).to_numpy()
    elif layout.batch:
        batches = frame[layout.batch].astype(str).to_numpy()
    counts = {} if batches is None else {b: int((is_control & (batches == b)).sum()) for b in set(batches.tolist())}
    alpha, why = practice.alignment_rule(counts, k)
    reasons.append(why)
    return dataclasses.replace(layout, normalize=method, whiten=k, whiten_reg=practice.WHITEN_REG if k else 0.1,
                               align_batches=alpha)


def _path_for_layout(path: str | os.PathLike, relative_to: str | os.PathLike | None) -> str:
    """`path` as the layout file should name it: relative to the layout's folder when it lies below it, else
    absolute (relative paths in a layout are read from its folder)."""
    path = os.path.abspath(os.fspath(path))
    if relative_to is None:
        return path
    rel = os.path.relpath(path, os.path.abspath(os.fspath(relative_to)))
    return path if rel.startswith("..") else rel


def _propose_join(frame: pd.DataFrame, path: str | os.PathLike, relative_to: str | os.PathLike | None,
                  reasons: list[str]) -> tuple[pd.DataFrame, MetadataTable]:
    """Join a metadata table (an image table) on plate + well, found by name in both tables; it brings the
    columns that name a compound, concentration, control type, batch, cell line or MoA and have one value per well.
    Returns the joined frame and the ``[[metadata]]`` entry."""
    file = os.fspath(path)
    table = read_table(path, name=os.path.basename(file))
    left_cols = [str(c) for c in frame.columns if not pd.api.types.is_float_dtype(frame[c])]
    right_cols = [str(c) for c in table.columns]
    keys = []
    for words, exclude in ((_PLATE, ("map", "barcode")), (_WELL, ())):
        a, b = _find(left_cols, words, exclude), _find(right_cols, words, exclude)
        if a is None or b is None:
            raise DataError(f"cannot join {os.path.basename(file)}: no {words[0]} column found in "
                            f"{'the profile table' if a is None else 'the metadata table'}; write the [[metadata]] "
                            "entry by hand (docs/layout.md).", source=file)
        keys.append((a, b))
    on = tuple(keys)
    wanted = []
    for words, exclude in ((_COMPOUND, ()), (_DOSE, ("unit",)), (_BATCH, ()), (_CELL, ()), (_MOA, ("alternative",)),
                           (("pert_type", "control", "type"), ())):
        c = _find([c for c in right_cols if c not in {b for _, b in on}], words, exclude)
        if c and c not in wanted and c not in frame.columns:
            wanted.append(c)
    columns = []
    right = [b for _, b in on]
    for c in wanted:  # one value per well, or it is not a property of the well (a per-image column)
        if table[[*right, c]].astype(str).drop_duplicates().duplicated(right).any():
            reasons.append(f"metadata {os.path.basename(file)}: {c!r} has several values per well: not joined")
        else:
            columns.append(c)
    if not columns:
        raise DataError(f"{os.path.basename(file)} has no compound / concentration / MoA column to join; write the "
                        "[[metadata]] entry by hand (docs/layout.md).", source=file)
    entry = MetadataTable(file, on, tuple(columns))
    joined = join_metadata(frame, Layout(blocks=(Block("x", regex="."),), metadata=(entry,)), file)
    matched = float(joined[columns[0]].notna().mean())
    reasons.append(f"metadata: {os.path.basename(file)} joined on "
                   f"{', '.join(f'{a} = {b}' for a, b in on)}, bringing {', '.join(columns)} "
                   f"({matched:.0%} of the rows matched)")
    return joined, MetadataTable(_path_for_layout(path, relative_to), on, tuple(columns))


def _propose_annotation(frame: pd.DataFrame, path: str | os.PathLike, compound: str | None, dose: str | None,
                        controls: Controls | None, relative_to: str | os.PathLike | None,
                        reasons: list[str]) -> Labels:
    """Labels from an annotation table: its MoA column, joined on the compound (and the concentration when both
    tables have one), found by name; several MoAs joined by ``|`` make it multi-label."""
    file = os.fspath(path)
    base = os.path.basename(file)
    comment = "!" if _starts_with(file, "!") else None
    table = read_annotation(Path(file), Labels("annotation", file=file, comment=comment))
    cols = [str(c) for c in table.columns]
    moa = _find(cols, _MOA, exclude=("alternative",))
    ann_compound = _find(cols, _COMPOUND + ("name",))
    if moa is None or ann_compound is None or compound is None:
        raise DataError(f"cannot propose the labels from {base}: "
                        + ("no MoA column" if moa is None else "no compound column" if ann_compound is None else
                           "the profile table has no compound column") + "; write [labels] by hand (docs/layout.md).",
                        source=file)
    on = [(compound, ann_compound)]
    ann_dose = _find([c for c in cols if c not in (moa, ann_compound)], _DOSE, exclude=("unit",))
    if dose and ann_dose:
        on.append((dose, ann_dose))
    sep = "|" if table[moa].dropna().astype(str).str.contains("|", regex=False).any() else ""
    labels = Labels("annotation", file=file, on=tuple(on), column=moa, separator=sep, comment=comment)
    values = annotate(frame, labels, Layout(blocks=(Block("x", regex="."),)), base)
    treated = np.ones(len(frame), bool)
    if controls is not None:
        treated = ~frame[controls.column].astype(str).str.strip().str.lower().isin(
            {v.lower() for v in controls.values}).to_numpy()
    hit = values.notna().to_numpy() & treated
    reasons.append(f"labels: {base} joined on {', '.join(f'{a} = {b}' for a, b in on)}, MoA column {moa!r} "
                   + ("(several MoAs joined by '|': multi-label)" if sep else "(one MoA per row: single-label)")
                   + f"; {int(hit.sum())} of {int(treated.sum())} treated rows annotated")
    return dataclasses.replace(labels, file=_path_for_layout(path, relative_to))


def _starts_with(file: str, prefix: str) -> bool:
    """Whether the (plain or gzip) text file's first line starts with `prefix` (Repurposing Hub header lines)."""
    import gzip

    opener = gzip.open if file.endswith(".gz") else open
    try:
        with opener(file, "rt", encoding="utf-8", errors="replace") as handle:
            return handle.readline().startswith(prefix)
    except OSError:
        return False


def _gene_blocks(feats: list[str], reasons: list[str]) -> tuple[Block, ...]:
    """One gene block when most feature columns are L1000 landmark genes named by Entrez id or symbol (the L1000
    consensus table, CMap level-5 tables, GCT/GCTX files): declared so uploads naming them either way are matched
    and explanations name genes by symbol."""
    naming, n = landmark_naming(feats)
    if naming is None or n < max(10, len(feats) // 2):
        return ()
    block = Block("genes", genes=naming, pca=min(50, max(0, n // 10)))
    left = [c for c in feats if not block.matches(c)]
    reasons.append(f"{n} feature columns are L1000 landmark genes named by "
                   f"{'Entrez id' if naming == 'entrez' else 'gene symbol'}: a gene block (genes = {naming!r})"
                   + (f"; {len(left)} other numeric column(s) left out ({', '.join(left[:3])} ...): add a block for "
                      "them if they are features" if left else ""))
    return (block,)


def _blocks(feats: list[str]) -> tuple[Block, ...]:
    if not feats:
        return ()
    heads = Counter(re.split(r"(?<=[-_])", c, maxsplit=1)[0] for c in feats)
    big = [h for h, n in heads.items() if n >= max(5, len(feats) // 50) and h != "" and h[-1] in "-_"]
    covered = sum(heads[h] for h in big)
    if not big or covered < 0.9 * len(feats):
        return (Block("features", regex=".", pca=min(50, max(0, len(feats) // 10))),)
    return tuple(Block(h.rstrip("-_") or h, prefix=h, pca=min(50, max(0, heads[h] // 10))) for h in big)


def _controls(frame: pd.DataFrame, meta: list[str], reasons: list[str]) -> Controls | None:
    for c in meta:
        values = frame[c].dropna().astype(str).str.strip()
        hits = sorted({v for v in values.unique() if v.lower() in CONTROL_VALUES})
        if hits and 0 < values.str.lower().isin(CONTROL_VALUES).mean() < 0.9:
            reasons.append(f"controls: {c!r} in {hits} ({int(values.isin(hits).sum())} rows)")
            return Controls(c, tuple(hits))
    reasons.append("no control wells found (values such as DMSO / ctl_vehicle / control): plate normalisation off")
    return None


def _looks_normalised(frame: pd.DataFrame, feats: list[str]) -> bool:
    """Features already centred and scaled (median |median| < 0.5 and median IQR within 0.2-5)."""
    x = frame[feats].to_numpy(np.float64)
    med = np.nanmedian(x, axis=0)
    iqr = np.nanpercentile(x, 75, axis=0) - np.nanpercentile(x, 25, axis=0)
    return bool(np.nanmedian(np.abs(med)) < 0.5 and 0.2 < np.nanmedian(iqr) < 5)
