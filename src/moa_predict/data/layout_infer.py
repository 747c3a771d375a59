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

import numpy as np
import pandas as pd

from .genes import landmark_naming
from .io import Source
from .layout import Block, Controls, Labels, Layout, short_name
from .profiles import read_raw_table

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


def infer_layout(src: Source, *, name: str | None = None, max_rows: int | None = None) -> tuple[Layout, list[str]]:
    """(layout, reasons): meta columns are the non-numeric ones and those named ``Metadata_*``/known meta names;
    features are the numeric rest, in blocks by their common prefix; controls, plate, compound and labels are
    found by name and by value."""
    frame = read_raw_table(src, name=name)
    if max_rows:
        frame = frame.head(max_rows)
    reasons: list[str] = []
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
    if moa:
        values = frame[moa].dropna().astype(str)
        sep = "|" if values.str.contains("|", regex=False).any() else ""
        labels = Labels("column", column=moa, separator=sep)
        reasons.append(f"labels: column {moa!r}" + (" (several MoAs joined by '|': multi-label)" if sep
                                                     else " (one MoA per row: single-label)"))
    else:
        reasons.append("no MoA column: add [labels] (an annotation table joined on the compound, or a label column)")
    meta_cat = tuple(c for c in (cell,) if c and frame[c].nunique() > 1)
    layout = Layout(name=os.path.splitext(os.path.basename(name or str(src)))[0].split(".")[0] or "custom",
                    id=ids, group=compound, treatment=tuple(c for c in (compound, dose) if c), plate=plate,
                    batch=batch if batch and batch != plate else None, meta_categorical=meta_cat,
                    controls=controls, blocks=blocks, labels=labels,
                    normalize="robust_z" if plate and controls is not None and not _looks_normalised(frame, feats)
                    else "none")
    used = set(layout.meta_columns())
    layout = dataclasses.replace(layout, ignore=tuple(c for c in meta if c not in used))
    reasons.append(f"normalize = {layout.normalize!r}" + (
        " (raw values: each plate is scaled to its control wells)" if layout.normalize == "robust_z" else
        " (values look already normalised, or no plate/controls)"))
    return layout, reasons


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
