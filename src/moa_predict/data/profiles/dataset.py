"""The typed in-memory form of any profile table (``Dataset``: profiles, labels and the layout they were read
through), and the LISH-MoA layout's own file rules: its fixed-column files are checked cell by cell
(``load_features``, ``load_targets``) and its data directory read as one data set (``load_dataset``). Every table
reaches a ``Dataset`` through ``data.profiles.reader.load_profiles(path, layout)``, which calls these for a layout with
``fixed_columns`` (``Layout.lish_moa()``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import schema
from ..errors import DataError
from ..formats.cmap import detect_format
from .gene_features import load_gene_features, looks_like_gene_table
from ..formats.io import Source, find_table, read_table
from .layout import Layout, ModelInputs
from .validate import (align_to, check_not_empty, check_probabilities, check_sig_ids, check_unique_columns,
                       validate_drugs, validate_features, validate_targets)


@dataclass
class Dataset:
    """Profiles and, for training data, their labels; every table indexed by profile id in the same order, with the
    layout they were read through (``Layout.lish_moa()`` for LISH-MoA data) and its feature blocks' columns."""

    features: pd.DataFrame
    targets: pd.DataFrame | None = None
    nonscored: pd.DataFrame | None = None
    drugs: pd.Series | None = None
    source: str = ""
    simulated: dict | None = None
    """The simulator's marker (``schema.SIMULATED_MARKER``) when the features are simulated, else None."""
    layout: Layout = field(default_factory=Layout.lish_moa)
    """How the table was read (``data.profiles.reader.load_profiles``): ``Layout.lish_moa()`` for LISH-MoA data."""
    notes: dict = field(default_factory=dict)
    """What reading did to the table (unlabelled rows, normalisation, filled cells), for reports."""
    normalizer: Any = None
    """The fitted ``normalize.ProfileNormalizer`` of a layout that transforms profiles (stored in bundles)."""
    blocks: dict[str, list[str]] = field(default_factory=dict)
    """The feature columns of each of the layout's blocks, as read (a gene-only CMap table has no cell block);
    empty: every column of the frame a block of the layout catches."""
    label_set: str | None = None
    """The layout's extra label set the targets are (``[label_sets.NAME]``), None for its MoAs (``[labels]``)."""

    @property
    def inputs(self) -> ModelInputs:
        """What a model fits on in these profiles (``models.base.MoAModel.fit``'s `inputs`)."""
        return ModelInputs.of(self.layout, list(self.features.columns), blocks=self.blocks or None,
                              single_label=self.single_label)

    @property
    def feature_columns(self) -> list[str]:
        blocks = self.blocks or self.layout.present_blocks(list(self.features.columns))
        return [c for cols in blocks.values() for c in cols]

    @property
    def single_label(self) -> bool:
        labels = self.layout.labels if self.label_set is None else self.layout.label_set(self.label_set)
        return labels is not None and labels.single_label

    @property
    def target_names(self) -> list[str]:
        if self.targets is None:
            raise DataError("this data set has no targets.", source=self.source)
        return list(self.targets.columns)

    @property
    def is_control(self) -> np.ndarray:
        return control_mask(self.features)

    def fingerprint(self) -> str:
        """A short hash of features and labels, stored in bundles and benchmark reports."""
        h = hashlib.sha256()
        h.update("|".join(map(str, self.features.index)).encode())
        h.update(np.ascontiguousarray(self.features[self.feature_columns].to_numpy(np.float32)).tobytes())
        for table in (self.targets, self.nonscored):
            if table is not None:
                h.update("|".join(table.columns).encode())
                h.update(np.ascontiguousarray(table.to_numpy(np.int8)).tobytes())
        return h.hexdigest()[:16]

    def genes_only(self) -> "Dataset":
        """The same profiles without the c- (cell viability) block: what a gene-only model trains on."""
        features = self.features.drop(columns=[c for c in schema.CELL_COLUMNS if c in self.features.columns])
        blocks = {k: [c for c in v if c in features.columns] for k, v in self.blocks.items()}
        return dataclasses.replace(self, features=features, blocks={k: v for k, v in blocks.items() if v})

    def subset(self, rows: np.ndarray) -> "Dataset":
        """The rows at positions `rows` (used for subsampling and folds)."""
        take = lambda t: None if t is None else t.iloc[rows]  # noqa: E731
        return dataclasses.replace(self, features=self.features.iloc[rows], targets=take(self.targets),
                                   nonscored=take(self.nonscored), drugs=take(self.drugs))


_FEATURE_SET = set(schema.FEATURE_COLUMNS)


def fixed_blocks(features: pd.DataFrame, layout: Layout) -> dict[str, list[str]]:
    """The blocks of a fixed-column (LISH-MoA) frame as validated: each block's columns present, in schema order
    (a gene-only CMap frame has no cell block)."""
    blocks = {b.name: [c for c in schema.FEATURE_COLUMNS if c in features.columns and b.matches(c)]
              for b in layout.blocks}
    return {k: v for k, v in blocks.items() if v}


COMPOUND_COLUMNS: tuple[str, ...] = (schema.DRUG_ID, "compound", "compound_id",
                                     # CMap / LINCS metadata, as GCTX, GCT and level-5 tables name it
                                     "pert_iname", "Metadata_pert_iname", "cmap_name", "Metadata_cmap_name",
                                     "pert_id", "Metadata_pert_id")
"""Columns taken as the compound of an upload, the first present (names before CMap's BRD ids)."""


def find_compound_column(features: pd.DataFrame, column: str | None = None) -> str | None:
    """The upload's compound column: `column` if given (must exist), else the first known name present."""
    if column is not None:
        if column not in features.columns:
            raise DataError(f"no column {column!r} in the features; compound columns are looked for under "
                            f"{', '.join(COMPOUND_COLUMNS)}.", column=column)
        return column
    return next((c for c in COMPOUND_COLUMNS if c in features.columns), None)


CONTROL_COLUMN = schema.CP_TYPE
"""The column of every read frame (any layout) that says treated or control (``control_mask``)."""


def control_mask(features: pd.DataFrame) -> np.ndarray:
    """True for control (vehicle) rows, which carry no MoA by definition."""
    return (features[CONTROL_COLUMN] == schema.CONTROL).to_numpy()


def load_features(src: Source, *, name: str | None = None, max_bytes: int | None = None,
                  feature_columns: list[str] | tuple[str, ...] = schema.FEATURE_COLUMNS,
                  allow_gene_only: bool | None = None) -> pd.DataFrame:
    """Read and validate a features table (train_features / test_features layout), or a CMap-style file
    (GCTX, GCT, h5ad, or CSV/Parquet with genes named by Entrez id / symbol, either orientation).

    CMap files give a gene-only frame (g- columns, no c- block) marked by ``is_gene_only(frame)`` with the
    mapping report in ``frame.attrs``. They are accepted when the requested `feature_columns` are genes only
    (a gene-only model) or `allow_gene_only` is True; otherwise a DataError says the model needs the c- columns.
    """
    name = name or (os.path.basename(os.fspath(src)) if isinstance(src, (str, os.PathLike)) else None)
    kwargs = {} if max_bytes is None else {"max_bytes": max_bytes}
    label = name or os.path.basename(str(getattr(src, "name", "") or "features"))
    frame = None
    if detect_format(src, label) == "table":
        frame = read_table(src, name=name, **kwargs)
        if not looks_like_gene_table(frame):
            return validate_features(frame, name or "features", feature_columns)
    gene_only = load_gene_features(src, name=label, frame=frame, **kwargs).frame
    needs_cells = [c for c in feature_columns if c not in schema.GENE_COLUMNS]
    if needs_cells and not allow_gene_only:
        raise DataError(f"this file has gene expression only (CMap/L1000 layout, no cell-viability columns), but "
                        f"the model also needs {needs_cells[0]} ... {needs_cells[-1]} ({len(needs_cells)} columns). "
                        "Use a gene-only model, or provide a file in the LISH-MoA layout.", source=label)
    genes = [c for c in feature_columns if c in schema.GENE_COLUMNS]
    if genes != list(schema.GENE_COLUMNS):
        keep = list(schema.META_COLUMNS[1:]) + genes + [c for c in gene_only.columns if c not in _FEATURE_SET
                                                        and c not in schema.META_COLUMNS]
        attrs = dict(gene_only.attrs)
        gene_only = gene_only[keep]
        gene_only.attrs.update(attrs)
    return gene_only


def load_targets(src: Source, *, name: str | None = None) -> pd.DataFrame:
    name = name or (os.path.basename(os.fspath(src)) if isinstance(src, (str, os.PathLike)) else "targets")
    return validate_targets(read_table(src, name=name), name)


def load_dataset(directory: str | os.PathLike, *, split: str = "train") -> Dataset:
    """Load `train` (features + scored targets, optional non-scored targets and drugs) or `test` features."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory} is not a directory. Point --data at a directory in the LISH-MoA layout.",
                        source=str(directory))
    simulated = simulated_marker(directory)
    layout = Layout.lish_moa()
    if split == "test":
        path = find_table(directory, schema.TEST_FEATURES)
        features = load_features(path)
        return Dataset(features, source=str(path), simulated=simulated, layout=layout,
                       blocks=fixed_blocks(features, layout))
    fpath = find_table(directory, schema.TRAIN_FEATURES)
    features = load_features(fpath)
    tpath = find_table(directory, schema.TARGETS_SCORED)
    targets = align_to(features.index, load_targets(tpath), tpath.name, fpath.name)
    nonscored = drugs = None
    if (npath := find_table(directory, schema.TARGETS_NONSCORED, required=False)) is not None:
        nonscored = align_to(features.index, load_targets(npath), npath.name, fpath.name)
    if (dpath := find_table(directory, schema.DRUGS, required=False)) is not None:
        drugs = align_to(features.index, validate_drugs(read_table(dpath), dpath.name), dpath.name, fpath.name)
    return Dataset(features, targets, nonscored, drugs, source=str(directory), simulated=simulated, layout=layout,
                   blocks=fixed_blocks(features, layout))


def simulated_marker(directory: Path) -> dict | None:
    """The simulator's marker in `directory` (``SIMULATED.json``), else None: a simulated set never passes for real."""
    path = directory / schema.SIMULATED_MARKER
    if not path.is_file():
        if (directory / "simulation_truth.json").is_file():  # written by simulators before the marker existed
            return {"simulated": True, "note": "features SIMULATED by moa-predict's simulator (simulation_truth.json)"}
        return None
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        marker = None
    # a damaged marker still means simulated: never let a simulated set pass for real data
    return marker if isinstance(marker, dict) else {"simulated": True, "note": f"{path.name} is unreadable"}


def load_predictions(src: Source, *, columns: list[str] | None = None, name: str | None = None) -> pd.DataFrame:
    """A predictions file (``moa predict``'s output): sig_id + one probability column per target.

    With `columns`, only those are read (and must all be there), so other columns such as the ones
    ``moa predict --keep-columns`` appends do not get in the way."""
    name = name or (os.path.basename(os.fspath(src)) if isinstance(src, (str, os.PathLike)) else "predictions")
    frame = read_table(src, name=name)
    check_not_empty(frame, name)
    check_unique_columns(list(frame.columns), name)
    check_sig_ids(frame, name)
    if columns is None:
        cols = [c for c in frame.columns if c != schema.SIG_ID]
    else:
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise DataError(f"predictions lack {len(missing)} target column(s) ({', '.join(missing[:5])}"
                            f"{' ...' if len(missing) > 5 else ''}). Predict with a bundle trained on these "
                            "targets.", source=name, column=missing[0])
        cols = list(columns)
    values = check_probabilities(frame, cols, name)
    index = pd.Index(frame[schema.SIG_ID].astype(str).str.strip(), name=schema.SIG_ID)
    return pd.DataFrame(values, columns=cols, index=index)
