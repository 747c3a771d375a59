"""A profile layout: which columns of a lab's table are the id, the compound, the plate, the controls, the feature
blocks and the labels. LISH-MoA is a layout like any other, shipped with the package (``builtin/lish_moa.toml``,
``Layout.lish_moa()``); any other table is described by a small TOML file (``docs/layout.md``) or the same settings
as CLI flags, and ``infer_layout`` writes a starting one. What differs between tables is declared here (its
normalisation, controls, labels' source, fixed columns), never decided by the code from the table's origin.

A layout is data, not code: it is stored in every bundle trained on it, so ``moa predict`` and the web app read an
upload exactly as the training table was read.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tomli_w

from ..errors import DataError
from .genes import GENE_NAMINGS, column_entrez

if TYPE_CHECKING:
    from .normalize import ProfileNormalizer


def short_name(column: str) -> str:
    """A column's name without CellProfiler's ``Metadata_`` / ``Image_Metadata_`` prefix, lower-case: how a layout's
    meta column is recognised in a table that prefixes it (``pert_iname`` = ``Metadata_pert_iname``)."""
    return re.sub(r"^(image_)?metadata_", "", str(column).lower())


LABEL_SOURCES = ("wide", "column", "annotation")
NORMALIZATIONS = ("none", "z", "robust_z", "robust_z_pooled")
PROFILE_SCALES = ("none", "zscore")


@dataclass(frozen=True)
class Block:
    """A feature block: the columns whose name starts with `prefix` or matches `regex`. Each block gets its own
    PCA (`pca` components appended to the inputs; 0 for none), as the gene and cell-viability blocks do.

    `genes` declares the block's columns genes, named by "entrez" id, "symbol" (HGNC or CMap's) or "auto"
    (either): uploads naming them either way, or as GCT/GCTX/h5ad files, are matched gene by gene
    (``data.profiles.gene_blocks``), and explanations name them by symbol. Without a prefix or regex such a block takes
    every column named as `genes` says."""

    name: str
    prefix: str | None = None
    regex: str | None = None
    pca: int = 0
    genes: str | None = None

    def matches(self, column: str) -> bool:
        if self.regex is not None:
            return re.search(self.regex, column) is not None
        if self.prefix is None and self.genes is not None:
            return column_entrez(column, self.genes) is not None
        return column.startswith(self.prefix or "")


@dataclass(frozen=True)
class Controls:
    """Rows whose `column` holds one of `values` are controls (vehicle wells): never labelled, used to normalise."""

    column: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Labels:
    """Where the MoA labels come from.

    * ``wide``: a 0/1 table (one column per MoA) in `file`, rows matched on `key` (LISH-MoA's targets file).
    * ``column``: the table's own `column`; several MoAs per row joined by `separator` (Repurposing Hub: ``|``),
      one MoA per row when `separator` is empty (single-label: a softmax over the classes).
    * ``annotation``: a separate table `file` joined on `on` (table column → annotation column, e.g. compound
      name → ``pert_iname``, or compound + concentration), its `column` holding the MoA (split on `separator`).
    """

    source: str
    column: str | None = None
    separator: str = ""
    file: str | None = None
    key: str | None = None
    on: tuple[tuple[str, str], ...] = ()
    comment: str | None = None
    """Lines of `file` starting with this are skipped (the Repurposing Hub's header lines start with ``!``)."""
    min_compounds: int = 1
    """A label carried by fewer labelled compounds (rows without a compound column) is listed as "too few
    compounds" and not trained: 1 (keep every label) for ``[labels]``, 2 by default for a ``[label_sets.NAME]``
    (a label with one compound cannot be learnt from the others)."""
    negatives: bool = False
    """A profile without any label is known to have none of the MoAs (LISH-MoA's targets: every treated profile was
    annotated) and is trained on as such; by default it is a profile nobody annotated: predicted, never trained on."""

    @property
    def single_label(self) -> bool:
        return self.source != "wide" and not self.separator


@dataclass(frozen=True)
class MetadataTable:
    """Another table joined onto the profiles (BBBC021's image table: plate + well → compound, concentration)."""

    file: str
    on: tuple[tuple[str, str], ...]
    columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class Layout:
    """How to read one lab's profile table. Column names are the table's own; see ``docs/layout.md``."""

    name: str = "custom"
    id: tuple[str, ...] = ()
    """The profile id column, or several joined with ``_`` (plate + well); empty: row numbers."""
    group: str | None = None
    """The compound column: cross-validation folds are grouped by it, never split."""
    treatment: tuple[str, ...] = ()
    """Columns that define a treatment (compound, concentration): wells averaged for treatment-level calls."""
    plate: str | None = None
    batch: str | None = None
    batch_from_plate: str | None = None
    """A regex with one group taking the batch out of the plate name (BBBC021: ``^(Week\\d+)_``)."""
    meta_categorical: tuple[str, ...] = ()
    meta_numeric: tuple[str, ...] = ()
    controls: Controls | None = None
    blocks: tuple[Block, ...] = ()
    labels: Labels | None = None
    label_sets: tuple[tuple[str, Labels], ...] = ()
    """More label sets beside ``labels`` (the MoAs), by name: ``[label_sets.target]`` takes the Repurposing Hub's
    ``target`` column (gene symbols joined by ``|``). Each is trained as its own model beside the MoA model, with
    the same features and folds (``training.train.train_label_sets``)."""
    normalize: str = "none"
    """Per-plate normalisation to control wells: none, z (mean / sd), robust_z (median / MAD of the plate's controls),
    robust_z_pooled (plate median, MAD pooled over every plate's controls: stable with few controls per plate)."""
    clip: float | None = None
    """Clip normalised values to ±clip (None: no clipping)."""
    whiten: int = 0
    """Whiten on control wells (TVN) keeping this many principal directions (0: off)."""
    whiten_reg: float = 0.1
    align_batches: float | None = None
    """Per-batch alignment to the batch's control wells (CORAL) with this shrinkage alpha (None: off; needs whiten)."""
    profile_scale: str = "none"
    """After the plate steps, each profile scaled over its own features: ``zscore`` (centred, unit sd) puts
    consensus and single signatures on one scale (the L1000 reference); ``none``."""
    about: tuple[tuple[str, str], ...] = ()
    """What the data are, for the model card: ``data`` ("real" / "simulated"), ``description``, ``sources``,
    ``licence``, ``citation`` (a TOML table ``[about]``)."""
    metadata: tuple[MetadataTable, ...] = ()
    ignore: tuple[str, ...] = ()
    """Columns that are neither features nor used meta (QC values, file names): never caught by a block."""
    exclude: tuple[str, ...] = ()
    """Regexes of columns never used as features, e.g. image-based profiling's blocklist (object locations, object
    numbers, parent/child counts: ``_Location_``, ``AreaShape_Center_``, ``_Parent_``), decided before training."""
    fixed_columns: bool = False
    """The table's columns are fixed by a known schema (LISH-MoA's: sig_id, cp_type, cp_time, cp_dose, g-0 ... g-771,
    c-0 ... c-99), checked cell by cell with that schema's messages (``validate``), a directory of its files
    read as one data set (``data.lish_moa``), and fed to the models' fixed inputs (one-hot dose and time, the
    public recipe's block PCA); models whose inputs are those exact columns (``needs_full_layout``) need it."""
    base_dir: str = field(default="", compare=False)
    """The directory of the TOML file: relative file paths in it are read from there."""

    # -- built-in --------------------------------------------------------------------------------
    @classmethod
    def lish_moa(cls) -> "Layout":
        """The LISH-MoA layout, shipped with the package (``data/builtin/lish_moa.toml``): how LISH-MoA data
        directories and files are read, and the layout of every bundle trained on them."""
        return _lish_moa()

    @property
    def is_lish_moa(self) -> bool:
        return self.name == "lish-moa"

    @property
    def unlabelled_are_negatives(self) -> bool:
        """Whether a profile without any MoA is trained on as having none (``[labels] negatives``), or left out of
        training as not annotated."""
        return self.labels is not None and self.labels.negatives

    @property
    def single_label(self) -> bool:
        return self.labels is not None and self.labels.single_label

    @property
    def label_set_names(self) -> list[str]:
        """The names of the extra label sets (``label_sets``), in the layout's order."""
        return [name for name, _ in self.label_sets]

    def label_set(self, name: str) -> Labels:
        """The extra label set `name` (a DataError naming the known ones otherwise)."""
        for known, labels in self.label_sets:
            if known == name:
                return labels
        raise DataError(f"the layout has no label set {name!r}; it has "
                        f"{', '.join(map(repr, self.label_set_names)) or 'none'} (add [label_sets.{name}]).",
                        source=self.name)

    def label_columns(self) -> list[str]:
        """Columns of the table the label sets read (``source = 'column'``): never features, never required."""
        return [lab.column for _, lab in self.label_sets if lab.source == "column" and lab.column]

    def normalizer(self) -> "ProfileNormalizer":
        """An unfitted ``data.profiles.normalize.ProfileNormalizer`` with this layout's settings."""
        from .normalize import ProfileNormalizer

        return ProfileNormalizer(self.normalize, self.clip, self.whiten, self.whiten_reg, self.align_batches,
                                 self.profile_scale)

    @property
    def transforms_profiles(self) -> bool:
        """Whether any profile-level step (plate normalisation, clipping, whitening, per-profile scaling) is on."""
        return bool(self.normalize != "none" or self.whiten or self.clip or self.profile_scale != "none")

    @property
    def about_dict(self) -> dict[str, str]:
        return dict(self.about)

    @property
    def batch_column(self) -> str | None:
        """The batch column of a loaded frame: the layout's, or ``batch`` derived from the plate name."""
        return "batch" if self.batch_from_plate else self.batch

    def resolve(self, file: str) -> Path:
        path = Path(file)
        return path if path.is_absolute() or not self.base_dir else Path(self.base_dir) / path

    # -- columns ---------------------------------------------------------------------------------
    def meta_columns(self) -> list[str]:
        """Every non-feature column the layout names, in a stable order, without repeats."""
        cols: list[str] = [*self.id]
        for c in (self.group, *self.treatment, self.plate, self.batch, *self.meta_categorical, *self.meta_numeric,
                  self.controls.column if self.controls else None,
                  self.labels.column if self.labels and self.labels.source == "column" else None):
            if c and c not in cols:
                cols.append(c)
        return cols

    def prediction_columns(self) -> list[str]:
        """The meta columns an upload must have: the model's meta inputs, and the plate, batch and control columns
        when the layout normalises to control wells (without them the upload would be on another scale). The id,
        compound, treatment and label columns are optional at prediction (the upload's own ids or row numbers; no
        compound-level calls), and any of them may carry a ``Metadata_`` prefix the training table lacked."""
        normalises = self.normalize != "none" or bool(self.whiten)
        cols = [*self.meta_categorical, *self.meta_numeric]
        if normalises:
            cols += [c for c in (self.plate, self.batch, self.controls.column if self.controls else None) if c]
        return list(dict.fromkeys(cols))

    def gene_blocks(self) -> tuple[Block, ...]:
        """The blocks whose columns are genes (``genes = ...``)."""
        return tuple(b for b in self.blocks if b.genes is not None)

    def present_blocks(self, columns: list[str]) -> dict[str, list[str]]:
        """The columns each block catches among `columns` (blocks catching none left out, no error): a frame read
        before, such as a subset of a data set's features."""
        meta = set(self.meta_columns()) | set(self.ignore) | set(self.label_columns())
        blocks = {b.name: [c for c in columns if c not in meta and b.matches(c)] for b in self.blocks}
        return {k: v for k, v in blocks.items() if v}

    def block_columns(self, columns: list[str], source: str = "features") -> dict[str, list[str]]:
        """The feature columns of each block, in table order. Errors: a block that matches nothing, a column in two
        blocks, a named meta column caught by a block pattern."""
        meta = set(self.meta_columns()) | set(self.ignore) | set(self.label_columns())
        if self.exclude:
            pattern = re.compile("|".join(f"(?:{x})" for x in self.exclude))
            meta |= {c for c in columns if pattern.search(c)}
        out: dict[str, list[str]] = {}
        seen: dict[str, str] = {}
        for block in self.blocks:
            cols = [c for c in columns if c not in meta and block.matches(c)]
            if not cols:
                how = (f"regex {block.regex!r}" if block.regex else f"prefix {block.prefix!r}" if block.prefix
                       is not None else f"genes named by {block.genes}")
                raise DataError(f"feature block {block.name!r} ({how}) matches no column. Columns start with: "
                                f"{', '.join(sorted({c[:12] for c in columns})[:8])} ... Fix the block in the layout "
                                "(`moa layout infer FILE` proposes blocks).", source=source)
            for c in cols:
                if c in seen:
                    raise DataError(f"column {c!r} is in two feature blocks ({seen[c]!r} and {block.name!r}); make the "
                                    "block patterns disjoint.", source=source, column=c)
                seen[c] = block.name
            out[block.name] = cols
        return out

    # -- (de)serialisation -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/TOML-able form (None and empty values left out)."""
        d = dataclasses.asdict(self)
        d.pop("base_dir")
        for lab in [d["labels"], *(lab for _, lab in d["label_sets"])]:
            if lab is not None:
                lab["on"] = dict(lab["on"])
                if not lab["negatives"]:
                    del lab["negatives"]  # the default: stored layouts stay as they were
        if d["labels"] is not None and d["labels"]["min_compounds"] == 1:
            del d["labels"]["min_compounds"]  # the default of [labels]: stored layouts stay as they were
        d["label_sets"] = {name: lab for name, lab in d["label_sets"]}
        for m in d["metadata"]:
            m["on"] = dict(m["on"])
        d["about"] = dict(d["about"])
        for key, default in (("normalize", "none"), ("whiten", 0), ("whiten_reg", 0.1), ("profile_scale", "none"),
                             ("fixed_columns", False)):
            if d[key] == default:
                del d[key]
        return _drop_empty(d)

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, source: str = "layout", base_dir: str = "") -> "Layout":
        """Parse and check a layout (a TOML file's content, or a bundle's stored copy)."""
        known = {f.name for f in dataclasses.fields(cls)} - {"base_dir"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise DataError(f"unknown layout key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))} "
                            "(docs/layout.md).", source=source)
        try:
            blocks = tuple(Block(**_check_keys(b, Block, source, "blocks")) for b in d.get("blocks", ()))
            controls = d.get("controls")
            if controls is not None:
                controls = Controls(str(controls["column"]), tuple(str(v) for v in _as_list(controls["values"])))
            labels = d.get("labels")
            if labels is not None:
                labels = _labels_entry(labels, source, "labels")
            sets = d.get("label_sets") or {}
            if not isinstance(sets, dict):
                raise TypeError("label_sets must be a table of named label sets ([label_sets.NAME])")
            label_sets = tuple((str(name), _labels_entry(lab, source, f"label_sets.{name}", min_compounds=2))
                               for name, lab in sets.items())
            metadata = tuple(MetadataTable(file=str(m["file"]), on=_pairs(m["on"]),
                                           columns=tuple(_as_list(m.get("columns", ()))))
                             for m in d.get("metadata", ()))
            layout = cls(name=str(d.get("name", "custom")), id=tuple(_as_list(d.get("id", ()))),
                         group=d.get("group"), treatment=tuple(_as_list(d.get("treatment", ()))),
                         plate=d.get("plate"), batch=d.get("batch"), batch_from_plate=d.get("batch_from_plate"),
                         meta_categorical=tuple(_as_list(d.get("meta_categorical", ()))),
                         meta_numeric=tuple(_as_list(d.get("meta_numeric", ()))), controls=controls, blocks=blocks,
                         labels=labels, label_sets=label_sets, normalize=str(d.get("normalize", "none")),
                         metadata=metadata,
                         clip=None if d.get("clip") is None else float(d["clip"]), whiten=int(d.get("whiten", 0)),
                         whiten_reg=float(d.get("whiten_reg", 0.1)),
                         align_batches=None if d.get("align_batches") is None else float(d["align_batches"]),
                         ignore=tuple(_as_list(d.get("ignore", ()))), exclude=tuple(_as_list(d.get("exclude", ()))),
                         profile_scale=str(d.get("profile_scale", "none")),
                         fixed_columns=_flag(d.get("fixed_columns", False), "fixed_columns"),
                         about=tuple((str(k), str(v)) for k, v in dict(d.get("about") or {}).items()),
                         base_dir=base_dir)
        except (KeyError, TypeError) as exc:
            raise DataError(f"layout entry is incomplete or of the wrong type ({exc}); see docs/layout.md.",
                            source=source) from None
        layout.check(source)
        return layout

    def check(self, source: str = "layout") -> None:
        if not self.blocks:
            raise DataError("the layout names no feature block; add at least one [[blocks]] with a prefix or regex.",
                            source=source)
        for b in self.blocks:
            if b.genes is not None and b.genes not in GENE_NAMINGS:
                raise DataError(f"block {b.name!r}: genes = {b.genes!r}; use one of {', '.join(GENE_NAMINGS)} (how "
                                "the table names its gene columns).", source=source)
            if (b.prefix is not None and b.regex is not None) or (b.prefix is None and b.regex is None
                                                                   and b.genes is None):
                raise DataError(f"block {b.name!r} needs exactly one of prefix or regex (or genes = 'entrez' | "
                                "'symbol' | 'auto' alone: every column named as a gene that way).", source=source)
            if b.regex is not None:
                _regex(b.regex, f"block {b.name!r}", source)
            if int(b.pca) < 0:
                raise DataError(f"block {b.name!r}: pca must be >= 0.", source=source)
        for x in self.exclude:
            _regex(x, "exclude", source)
        if len({b.name for b in self.blocks}) != len(self.blocks):
            raise DataError("two feature blocks share a name.", source=source)
        if self.profile_scale not in PROFILE_SCALES:
            raise DataError(f"profile_scale = {self.profile_scale!r}; use one of {', '.join(PROFILE_SCALES)}.",
                            source=source)
        if self.normalize not in NORMALIZATIONS:
            raise DataError(f"normalize = {self.normalize!r}; use one of {', '.join(NORMALIZATIONS)}.", source=source)
        if self.normalize != "none" and (self.plate is None or self.controls is None):
            raise DataError(f"normalize = {self.normalize!r} standardises each plate to its control wells: the layout "
                            "needs `plate` and [controls].", source=source)
        if (self.whiten or self.align_batches is not None) and self.controls is None:
            raise DataError("whiten / align_batches are fit on control wells: the layout needs [controls].",
                            source=source)
        if self.align_batches is not None and not self.whiten:
            raise DataError("align_batches works in the whitened space: set whiten (e.g. 100) too.", source=source)
        if self.align_batches is not None and not (self.batch or self.batch_from_plate):
            raise DataError("align_batches needs `batch` or `batch_from_plate`.", source=source)
        if self.batch_from_plate is not None:
            if self.plate is None:
                raise DataError("batch_from_plate needs `plate`.", source=source)
            if _regex(self.batch_from_plate, "batch_from_plate", source).groups != 1:
                raise DataError("batch_from_plate must have exactly one (group).", source=source)
        for where, lab in [("labels", self.labels), *((f"label_sets.{n}", lab) for n, lab in self.label_sets)]:
            if lab is not None:
                _check_labels(lab, where, source)
        if self.label_sets and self.labels is None:
            raise DataError("[label_sets] are trained beside the MoA labels: the layout needs [labels] too.",
                            source=source)
        if (len(set(self.label_set_names)) != len(self.label_sets) or "moa" in self.label_set_names
                or not all(re.fullmatch(r"[A-Za-z0-9_-]+", n) for n in self.label_set_names)):
            raise DataError("label set names must be unique, made of letters, digits, '_' or '-', and not 'moa' (the "
                            "name of [labels]).", source=source)


@dataclass(frozen=True)
class ModelInputs:
    """What a model fits on in a frame read through a layout: each block's columns and PCA components, the meta
    columns the frame has, its treatment and compound columns, single- or multi-label, and whether the columns are a
    fixed schema's (LISH-MoA: the public recipe's inputs). Given to ``fit`` (scikit-learn's fit parameters): a
    frame carries no layout. ``Dataset.inputs`` builds it; ``ModelInputs.of(layout, columns)`` for a bare frame."""

    blocks: dict[str, list[str]]
    pca: dict[str, int]
    meta_categorical: list[str] = field(default_factory=list)
    meta_numeric: list[str] = field(default_factory=list)
    treatment: list[str] = field(default_factory=list)
    group: str | None = None
    single_label: bool = False
    fixed_columns: bool = False

    @property
    def feature_columns(self) -> list[str]:
        """The feature columns, block after block."""
        return [c for cols in self.blocks.values() for c in cols]

    @classmethod
    def of(cls, layout: Layout, columns: list[str], *, blocks: dict[str, list[str]] | None = None,
           single_label: bool | None = None) -> "ModelInputs":
        """The inputs of a frame with these `columns` read through `layout` (`blocks`: the reader's, else every
        column a block catches; `single_label`: of the label set trained, else of the layout's labels)."""
        have = set(columns)
        return cls(blocks=dict(blocks or layout.present_blocks(list(columns))),
                   pca={b.name: int(b.pca) for b in layout.blocks},
                   meta_categorical=[c for c in layout.meta_categorical if c in have],
                   meta_numeric=[c for c in layout.meta_numeric if c in have],
                   # a treatment is defined by all its columns (a training table has them; LISH-MoA's drug_id is
                   # in another file): without them each profile is its own treatment
                   treatment=list(layout.treatment) if have.issuperset(layout.treatment) else [],
                   group=layout.group if layout.group in have else None,
                   single_label=layout.single_label if single_label is None else single_label,
                   fixed_columns=layout.fixed_columns)

    @classmethod
    def lish_moa(cls, columns: list[str]) -> "ModelInputs":
        """A LISH-MoA frame's inputs (what a model fit without ``inputs`` takes its frame for)."""
        return cls.of(Layout.lish_moa(), columns)


def _flag(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{key} must be true or false")
    return value


@functools.lru_cache(maxsize=1)
def _lish_moa() -> Layout:
    """The shipped LISH-MoA layout, read once."""
    from importlib import resources

    text = resources.files("moa_predict.data").joinpath("builtin/lish_moa.toml").read_text(encoding="utf-8")
    return Layout.from_dict(tomllib.loads(text), source="lish_moa.toml (shipped)")


def _labels_entry(d: dict[str, Any], source: str, where: str, min_compounds: int = 1) -> Labels:
    """A ``[labels]`` or ``[label_sets.NAME]`` table as ``Labels`` (`min_compounds`: its default there)."""
    entry = dict(_check_keys(d, Labels, source, where))
    entry["on"] = _pairs(entry.get("on", ()))
    entry["min_compounds"] = int(entry.get("min_compounds", min_compounds))
    entry["negatives"] = _flag(entry.get("negatives", False), f"{where}.negatives")
    return Labels(**entry)


def _check_labels(lab: Labels, where: str, source: str) -> None:
    """One label set's entries are complete for its source."""
    if lab.source not in LABEL_SOURCES:
        raise DataError(f"{where}.source = {lab.source!r}; use one of {', '.join(LABEL_SOURCES)}.", source=source)
    if lab.source == "wide" and not (lab.file and lab.key):
        raise DataError(f"{where}.source = 'wide' needs `file` (the 0/1 table) and `key` (the id column).",
                        source=source)
    if lab.source == "column" and not lab.column:
        raise DataError(f"{where}.source = 'column' needs `column`.", source=source)
    if lab.source == "annotation" and not (lab.file and lab.on and lab.column):
        raise DataError(f"{where}.source = 'annotation' needs `file`, `on` (table column = annotation column) "
                        "and `column` (the label column of the annotation table).", source=source)
    if lab.min_compounds < 1:
        raise DataError(f"{where}.min_compounds must be >= 1.", source=source)


def _regex(pattern: str, where: str, source: str) -> re.Pattern:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise DataError(f"{where}: bad regex {pattern!r} ({exc}).", source=source) from None


def _check_keys(d: dict[str, Any], kind: type, source: str, where: str) -> dict[str, Any]:
    known = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise DataError(f"unknown key(s) {', '.join(unknown)} in [{where}]; known: {', '.join(sorted(known))}.",
                        source=source)
    return d


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(value)] if isinstance(value, str) else [str(v) for v in value]


def _pairs(value: Any) -> tuple[tuple[str, str], ...]:
    """`on` as ((table column, annotation column), ...) from a TOML table or a list of names (same on both sides)."""
    if isinstance(value, dict):
        return tuple((str(k), str(v)) for k, v in value.items())
    return tuple((str(v), str(v)) if isinstance(v, str) else (str(v[0]), str(v[1])) for v in value)


def _drop_empty(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _drop_empty(v) for k, v in d.items() if v not in (None, "", (), [], {})}
    if isinstance(d, (list, tuple)):
        return [_drop_empty(v) for v in d]
    return d


def load_layout(path: str | os.PathLike) -> Layout:
    """Read a layout TOML file (errors name the file and the key)."""
    path = Path(path)
    try:
        d = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError("layout file not found; write one with `moa layout infer FEATURES --out layout.toml`.",
                        source=str(path)) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"not a valid TOML file ({exc}).", source=str(path)) from None
    return Layout.from_dict(d, source=str(path), base_dir=str(path.parent))


def dump_layout(layout: Layout, comment: str = "") -> str:
    """The layout as TOML text (``tomli_w``), with an optional comment block on top."""
    head = "".join(f"# {line}\n" if line else "#\n" for line in comment.splitlines())
    return head + tomli_w.dumps(layout.to_dict())
