"""CMap / L1000 files as model input: the 772 ``g-`` columns plus LISH-MoA meta columns, "gene-only".

CMap files have no cell-viability block (``c-``), so the result holds genes only; :class:`GeneFeatures` says so
and carries the per-file mapping report. Values must be z-scores (CMap level 4/5, like the ``g-`` features):
level-3 files (log2 expression, about 2-16, all positive) are rejected with what to do, not converted, because
a correct conversion needs each plate's own vehicle controls (per plate, enough wells) and a wrong one would
silently give confident nonsense.

LISH-MoA meta columns from CMap metadata (``Metadata_`` prefixes ignored), else defaults:
- ``cp_type``: ``pert_type`` ``ctl_*`` (vehicle, untreated) -> ``ctl_vehicle``, anything else -> ``trt_cp``;
  default ``trt_cp``.
- ``cp_time``: ``pert_time`` (hours) or ``pert_itime`` ("24 h") -> the nearest of 24/48/72 (CMap's 6 h -> 24,
  96/120/144 h -> 72); default 24.
- ``cp_dose``: ``D1`` always (LISH-MoA's D1/D2 are relative levels with no stated concentration, CMap doses
  are absolute; the dose stays available as ``pert_dose`` etc. in the passed-through metadata).
An existing ``cp_type``/``cp_time``/``cp_dose`` column is used as it is.

Nothing is substituted silently: every time or dose the model is asked about in place of the file's own is counted
in ``frame.attrs[SUBSTITUTED_ATTR]`` ({"cp_time": {"6 h": n, ...}, "cp_dose": {"10 uM": n, ...}}: the file's value
and how many profiles), and :func:`substitution_notes` turns the counts into the sentences ``moa predict`` prints
and the API answers ("time: 183 profiles at 6 h answered as 24 h: the model knows 24, 48, 72 h").
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import schema
from ..formats.cmap import DEFAULT_CHUNK, GeneSource, open_genes
from ..errors import DataError
from ..formats.frame_attrs import Shared
from .genes import GeneMapping, MappingReport, count_known, map_genes
from ..formats.io import DEFAULT_MAX_BYTES, Source
from .validate import validate_features

GENE_ONLY_ATTR = "moa_gene_only"
MAPPING_ATTR = "moa_gene_mapping"
SUBSTITUTED_ATTR = "moa_substituted"
"""Keys of ``DataFrame.attrs`` on frames from :func:`load_gene_features`."""

DEFAULT_CP_TYPE, DEFAULT_CP_TIME, DEFAULT_CP_DOSE = schema.TREATED, 24, "D1"
LOG2_MEDIAN = 2.0
"""Median above which (with almost no negative values) values are log2 expression, not z-scores."""


@dataclass
class GeneFeatures:
    """A validated gene-only features frame (sig_id index, cp_type/cp_time/cp_dose, g-0 ... g-771, metadata)
    and how the file's genes were matched."""

    frame: pd.DataFrame
    report: MappingReport
    gene_only: bool = True


def is_gene_only(frame: pd.DataFrame) -> bool:
    """True for frames read from CMap-style files (no c- columns)."""
    return bool(frame.attrs.get(GENE_ONLY_ATTR, False))


def looks_like_gene_table(frame: pd.DataFrame) -> bool:
    """A CSV/Parquet table goes the CMap way only when it is clearly not in the LISH-MoA layout: no
    cp_type/cp_time/cp_dose and no c- column, and at least half of the model genes named on one axis. Every
    other table keeps the LISH-MoA validation and its messages."""
    columns = [str(c).strip() for c in frame.columns]
    if any(c in columns for c in schema.META_COLUMNS[1:]) or any(c in schema.CELL_COLUMNS for c in columns):
        return False
    half = schema.N_GENES // 2
    if count_known([c for c in columns if not c.startswith("g-")]) >= half:
        return True
    if sum(c in schema.GENE_COLUMNS for c in columns) >= half:
        return True
    return len(frame) >= half and count_known(frame.iloc[:, 0].tolist()) >= half


def check_scale(values: np.ndarray, source: str) -> None:
    """Reject level-3 data (log2 expression) and raw intensities: the model takes z-scores centred on 0.

    Judged on an evenly strided sample of at most ~65,000 cells (a view, no copy of the block): the median and the
    share of negative values of a level-3 block are far from a z-score block's, so a sample decides the same way
    while a streamed file's chunk is not copied twice."""
    flat = values.ravel(order="K")  # memory order: a view whether the block is C- or Fortran-ordered
    sample = flat[:: max(1, flat.size // 65_536)]
    finite = sample[np.isfinite(sample)]
    if finite.size == 0:
        finite = flat[np.isfinite(flat)]
    if finite.size == 0:
        return
    median = float(np.median(finite))
    negative = float(np.mean(finite < 0))
    if median > LOG2_MEDIAN and negative < 0.01:
        what = "log2 expression (CMap level 3)" if median < 20 else "raw intensities"
        raise DataError(f"the values look like {what}, not z-scores: median {median:.3g}, {negative:.1%} "
                        "negative (z-scores are centred on 0). The model takes CMap level-5 signatures or level-4 "
                        "z-scores: use those, or convert each plate to robust z-scores against its vehicle "
                        "controls (pert_type ctl_vehicle): (x - median) / (1.4826 * MAD) per gene and plate.",
                        source=source)


def _find(meta: pd.DataFrame, *keys: str) -> pd.Series | None:
    by_name = {re.sub(r"^metadata_", "", str(c).lower()): c for c in meta.columns}
    for key in keys:
        if key in by_name:
            return meta[by_name[key]]
    return None


def _hours(value: object) -> float:
    match = re.match(r"\s*(\d+(?:\.\d+)?)", str(value))
    return float(match.group(1)) if match else np.nan


def lish_meta(meta: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, dict[str, int]]]:
    """cp_type, cp_time, cp_dose for CMap sample metadata (rules in the module docstring), and what was
    substituted: per column, the file's value (or "none given") -> number of profiles answered otherwise."""
    n = len(meta)
    substituted: dict[str, dict[str, int]] = {}
    cp_type = _find(meta, schema.CP_TYPE)
    if cp_type is None:
        pert = _find(meta, "pert_type")
        control = None if pert is None else pert.astype(str).str.strip().str.startswith("ctl")
        cp_type = (pd.Series([DEFAULT_CP_TYPE] * n, index=meta.index) if control is None else
                   control.map({True: schema.CONTROL, False: schema.TREATED}))
    cp_time = _find(meta, schema.CP_TIME)
    if cp_time is None:
        hours = _find(meta, "pert_time", "pert_itime")
        if hours is None:
            cp_time = pd.Series([DEFAULT_CP_TIME] * n, index=meta.index)
            given = pd.Series(NOT_GIVEN, index=meta.index)
        else:
            h = hours.map(_hours).to_numpy(dtype=float)
            allowed = np.array(schema.CP_TIMES)
            nearest = allowed[np.abs(np.nan_to_num(h)[:, None] - allowed[None, :]).argmin(axis=1)]
            cp_time = pd.Series(np.where(np.isfinite(h) & (h > 0), nearest, DEFAULT_CP_TIME), index=meta.index)
            valid = np.isfinite(h) & (h > 0)  # CMap writes -666 for "unknown"
            given = hours.astype(str).str.strip().where(valid, NOT_GIVEN)
            given = given.where(~valid | (h != cp_time.to_numpy()), None)  # exactly 24/48/72 h: as given
        substituted["cp_time"] = _counts(given, cp_time)
    cp_dose = _find(meta, schema.CP_DOSE)
    if cp_dose is None:
        cp_dose = pd.Series([DEFAULT_CP_DOSE] * n, index=meta.index)
        dose = _find(meta, "pert_idose", "pert_dose")
        substituted["cp_dose"] = _counts(pd.Series(NOT_GIVEN, index=meta.index) if dose is None
                                         else dose.astype(str).str.strip(), cp_dose)
    frame = pd.DataFrame({schema.CP_TYPE: cp_type.to_numpy(), schema.CP_TIME: cp_time.to_numpy(),
                          schema.CP_DOSE: cp_dose.to_numpy()}, index=meta.index)
    return frame, {k: v for k, v in substituted.items() if v}


NOT_GIVEN = "none given"


def _counts(given: pd.Series, answered: pd.Series) -> dict[str, int]:
    """{"the file's value -> the value answered": profiles} for the rows where `given` is not None."""
    keep = given.notna().to_numpy()
    pairs = given[keep].astype(str) + " -> " + answered[keep].astype(str)
    return {str(k): int(v) for k, v in pairs.value_counts(sort=False).items()}


def merge_substitutions(total: dict[str, dict[str, int]], more: dict[str, dict[str, int]] | None) -> None:
    """Add one chunk's substitution counts to `total` (in place)."""
    for column, counts in (more or {}).items():
        into = total.setdefault(column, {})
        for key, n in counts.items():
            into[key] = into.get(key, 0) + int(n)


def substitution_notes(substituted: dict[str, dict[str, int]] | None, limit: int = 4) -> list[str]:
    """The counts of ``lish_meta`` as sentences: what the model was asked in place of the file's values."""
    notes = []
    knows = {"cp_time": f"the model knows {', '.join(map(str, schema.CP_TIMES))} h",
             "cp_dose": "the model knows LISH-MoA's relative doses D1 and D2 only, not concentrations"}
    what = {"cp_time": "time", "cp_dose": "dose"}
    for column, counts in (substituted or {}).items():
        parts = []
        for key, n in sorted(counts.items(), key=lambda kv: -kv[1])[:limit]:
            given, answered = key.split(" -> ", 1)
            unit = " h" if column == "cp_time" else ""
            parts.append(f"{n:,} profile{'s' * (n != 1)} with no {what[column]} given answered as {answered}{unit}"
                         if given == NOT_GIVEN else
                         f"{n:,} profile{'s' * (n != 1)} at {given} answered as {answered}{unit}")
        more = len(counts) - limit
        notes.append(f"{what[column]}: {'; '.join(parts)}{f'; and {more} other value(s)' if more > 0 else ''} "
                     f"({knows[column]}).")
    return notes


def mapping_note(mapping: dict | None) -> str | None:
    """How a file's genes were matched to the model's, as the one sentence the CLI prints and the pages show."""
    if not mapping:
        return None
    if mapping.get("summary"):  # a layout's gene block: found by Entrez id / symbol, the missing ones named
        return f"genes: {mapping['summary']}"
    return (f"genes: {mapping['found']} of the model's genes found in the file ({mapping['missing']} missing, "
            f"filled with 0 = no change; {mapping['ignored']} extra genes ignored)")


def _block_frame(meta: pd.DataFrame, values: np.ndarray, mapping: GeneMapping, source: str) -> pd.DataFrame:
    genes = mapping.apply(values, subset=True)
    lish, substituted = lish_meta(meta)
    extra = meta.drop(columns=[c for c in meta.columns if str(c) in schema.META_COLUMNS or
                               schema.FEATURE_LIKE.match(str(c))])
    frame = pd.concat([pd.DataFrame({schema.SIG_ID: meta.index.astype(str)}, index=meta.index), lish,
                       pd.DataFrame(genes, index=meta.index, columns=list(schema.GENE_COLUMNS)), extra], axis=1)
    frame = validate_features(frame.reset_index(drop=True), source, schema.GENE_COLUMNS)
    frame.attrs[SUBSTITUTED_ATTR] = Shared(substituted)
    return frame


def _mapping(source: GeneSource) -> GeneMapping:
    return map_genes(source.genes, source.source)


def iter_gene_features(src: Source, *, name: str | None = None, chunk_size: int = DEFAULT_CHUNK,
                       max_bytes: int | None = DEFAULT_MAX_BYTES, first: int = 0,
                       last: int | None = None) -> Iterator[GeneFeatures]:
    """Validated gene-only frames of at most `chunk_size` samples each, for files of any size; only the model's
    genes are read (samples `first` to `last`, exclusive: a cluster task's part). The scale check runs on
    every block."""
    with open_genes(src, name=name, max_bytes=max_bytes, whole=False) as source:
        mapping = _mapping(source)
        for meta, values in source.blocks(chunk_size, mapping.used, first=first, last=last):
            check_scale(values, source.source)
            frame = _block_frame(meta, values, mapping, source.source)
            _flag(frame, mapping.report)
            yield GeneFeatures(frame, mapping.report)
            del meta, values, frame  # the next block is read with this one already released: flat memory


def load_gene_features(src: Source, *, name: str | None = None, max_bytes: int | None = DEFAULT_MAX_BYTES,
                       frame: pd.DataFrame | None = None) -> GeneFeatures:
    """The whole file as one validated gene-only frame (`frame`: a table already read from `src`)."""
    with open_genes(src, name=name, max_bytes=max_bytes, frame=frame) as source:
        mapping = _mapping(source)
        if source.n_samples == 0:
            raise DataError("the file has no samples. Provide at least one profile.", source=source.source)
        blocks = list(source.blocks(DEFAULT_CHUNK, mapping.used))
        meta = pd.concat([m for m, _ in blocks])
        values = np.vstack([v for _, v in blocks])
        check_scale(values, source.source)
        out = _block_frame(meta, values, mapping, source.source)
    _flag(out, mapping.report)
    return GeneFeatures(out, mapping.report)


def _flag(frame: pd.DataFrame, report: MappingReport) -> None:
    frame.attrs[GENE_ONLY_ATTR] = True
    frame.attrs[MAPPING_ATTR] = Shared(report.to_dict())
