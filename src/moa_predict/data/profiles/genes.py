"""Mapping a file's genes onto the model's 772 ``g-`` columns, with a report of what matched how.

Each gene of a file is identified, in this order, by: its Entrez id (a ``pr_gene_id``/``entrez`` annotation,
or a name that is a whole number), its current HGNC symbol, CMap's older symbol (CMap ``AARS`` = HGNC
``AARS1``), and last the model's own ``g-k`` name. Entrez ids come first because symbols are renamed over
time and ids are not. Genes the model does not use are ignored.

Missing genes: a file may lack up to :data:`MAX_MISSING_SHARE` of the 772 genes; those are filled with 0,
the "no change" value of a z-score, and listed in the report (``filled_with_zero``), which callers show per
file. More missing than that is an error listing them: the model would be guessing from a different gene set.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import identities
from . import schema
from ..errors import DataError

MAX_MISSING_SHARE = 0.05
"""At most 5% of the 772 genes (38) may be missing. Every CMap file (all 978 landmarks, or the 12,328-gene
inferred set) holds all 772, so anything missing is a symbol or id problem; a few zero-filled genes shift a
profile's predictions little, but beyond ~5% the input is no longer the profile the model was trained on."""

ENTREZ = "entrez"
HGNC_SYMBOL = "hgnc_symbol"
CMAP_SYMBOL = "cmap_symbol"
FEATURE = "feature"
MATCH_KINDS: tuple[str, ...] = (ENTREZ, HGNC_SYMBOL, CMAP_SYMBOL, FEATURE)

_INTEGER = re.compile(r"^\s*\d+(\.0+)?\s*$")
_G_COLUMN = re.compile(r"^\s*[gG]\s*-\s*(\d+)\s*$")


@dataclass
class MappingReport:
    """What a file's genes became: per model gene, the file's gene and how it matched."""

    source: str
    n_file_genes: int
    matched: dict[str, tuple[str, str]] = field(default_factory=dict)
    """model column (g-k) -> (the file's gene name, match kind)."""
    filled_with_zero: list[str] = field(default_factory=list)

    @property
    def found(self) -> int:
        return len(self.matched)

    @property
    def missing(self) -> int:
        return len(self.filled_with_zero)

    @property
    def by_kind(self) -> dict[str, int]:
        return count_by_kind(self.matched)

    @property
    def ignored(self) -> int:
        """File genes the model does not use (CMap's other landmarks, inferred genes)."""
        return self.n_file_genes - self.found

    def summary(self) -> str:
        kinds = ", ".join(f"{n} by {k.replace('_', ' ')}" for k, n in self.by_kind.items())
        text = (f"{self.source}: {self.found} of {schema.N_GENES} model genes found ({kinds or 'none'}); "
                f"{self.ignored} other gene(s) in the file ignored")
        if self.filled_with_zero:
            text += f"; {self.missing} missing, filled with 0: {_named(self.filled_with_zero)}"
        return text + "."

    def to_dict(self) -> dict[str, object]:
        return {"source": self.source, "found": self.found, "missing": self.missing, "by_kind": self.by_kind,
                "ignored": self.ignored, "filled_with_zero": list(self.filled_with_zero)}


def count_by_kind(matched: dict[str, tuple[str, str]], kinds: tuple[str, ...] = MATCH_KINDS) -> dict[str, int]:
    """How many model genes each match kind found (kinds in `kinds` order, zeros left out): every mapping report."""
    counts = Counter(kind for _, kind in matched.values())
    return {k: counts[k] for k in kinds if counts[k]}


def listed(labels: list[str], limit: int = 10) -> str:
    """The first `limit` labels joined, then how many more: how every report names missing genes."""
    return ", ".join(labels[:limit]) + (f" and {len(labels) - limit} more" if len(labels) > limit else "")


def _named(features: list[str], limit: int = 10) -> str:
    return listed([identities.feature_label(f) for f in features], limit)


def _text(value: object) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def identify(name: object, entrez: object = None, symbol: object = None) -> tuple[str, str] | None:
    """(model column, match kind) for one gene of a file, or None when it is not a model gene."""
    for candidate in (_text(entrez), _text(name)):
        if candidate is not None and _INTEGER.match(candidate):
            gene = identities.gene_by_entrez(int(float(candidate)))
            if gene is not None:
                return gene.feature, ENTREZ
    hgnc, cmap = identities.symbol_tables()
    for candidate in (_text(symbol), _text(name)):
        if candidate is None:
            continue
        key = candidate.upper()
        for table, kind in ((hgnc, HGNC_SYMBOL), (cmap, CMAP_SYMBOL)):
            gene = identities.gene_by_entrez(table[key]) if key in table else None
            if gene is not None:
                return gene.feature, kind
    text = _text(name)
    if text is not None and (m := _G_COLUMN.match(text)) and int(m.group(1)) < schema.N_GENES:
        return f"g-{int(m.group(1))}", FEATURE
    return None


GENE_NAMINGS: tuple[str, ...] = ("entrez", "symbol", "auto")
"""How a layout's gene block names its columns (``[[blocks]] genes = ...``): Entrez ids, gene symbols (current
HGNC or CMap's older ones), or either (detected per column)."""


def column_entrez(name: object, naming: str = "auto") -> tuple[int, str] | None:
    """(Entrez id, match kind) of a gene column of any layout, named as `naming` says: a whole number is an Entrez
    id (any gene, landmark or not); a symbol is looked up among CMap's 978 landmarks (current HGNC symbol first,
    then CMap's); with "auto", LISH-MoA's ``g-k`` names too. None: not a gene this package can name."""
    text = _text(name)
    if text is None:
        return None
    if naming in ("entrez", "auto") and _INTEGER.match(text):
        return int(float(text)), ENTREZ
    if naming in ("symbol", "auto"):
        hgnc, cmap = identities.symbol_tables()
        key = text.upper()
        for table, kind in ((hgnc, HGNC_SYMBOL), (cmap, CMAP_SYMBOL)):
            if key in table:
                return table[key], kind
    if naming == "auto" and (m := _G_COLUMN.match(text)) and int(m.group(1)) < schema.N_GENES:
        return identities.genes()[int(m.group(1))].entrez, FEATURE
    return None


def landmark_naming(names: list[object]) -> tuple[str | None, int]:
    """How most of `names` name L1000 landmark genes: ("entrez" | "symbol", how many), or (None, 0) when none does
    (``moa layout infer`` declares a gene block from it)."""
    ids = identities.landmark_ids()
    by_id = sum(1 for n in names if (hit := column_entrez(n, "entrez")) is not None and hit[0] in ids)
    by_symbol = sum(1 for n in names if column_entrez(n, "symbol") is not None)
    if not (by_id or by_symbol):
        return None, 0
    return ("entrez", by_id) if by_id >= by_symbol else ("symbol", by_symbol)


def is_gene_name(name: object) -> bool:
    """A model gene, or another CMap landmark (by Entrez id or CMap symbol): a gene column to ignore rather
    than metadata to pass through."""
    if identify(name) is not None:
        return True
    text = _text(name)
    if text is None:
        return False
    _, cmap = identities.symbol_tables()
    return text.upper() in cmap or (bool(_INTEGER.match(text)) and int(float(text)) in identities.landmark_ids())


def count_known(names: list[object]) -> int:
    """How many of `names` identify a model gene (used to tell which axis of a table holds the genes)."""
    return sum(identify(n) is not None for n in names)


@dataclass
class GeneMapping:
    """Positions of the model genes among a file's genes, found once and applied to every block."""

    positions: np.ndarray
    """For g-0 ... g-771: the index of the file's gene, or -1 (missing, filled with 0)."""
    report: MappingReport

    @property
    def used(self) -> np.ndarray:
        """Sorted file-gene indices that are read (so a reader can select only those rows)."""
        return np.unique(self.positions[self.positions >= 0])

    def apply(self, values: np.ndarray, *, subset: bool = False) -> np.ndarray:
        """(samples x file genes) -> (samples x 772) float32. With ``subset=True`` `values` holds only the
        columns :attr:`used`, in that order."""
        index = np.searchsorted(self.used, self.positions) if subset else self.positions
        out = np.zeros((values.shape[0], schema.N_GENES), dtype=np.float32)
        present = self.positions >= 0
        out[:, present] = values[:, index[present]]
        return out


def map_genes(genes: pd.DataFrame, source: str, *, max_missing_share: float = MAX_MISSING_SHARE) -> GeneMapping:
    """Match a file's genes (one row each: ``id`` and optional ``entrez``, ``symbol``) to the model's.

    Raises DataError when two of the file's genes are the same model gene, or when more than
    `max_missing_share` of the model genes are missing."""
    positions = np.full(schema.N_GENES, -1, dtype=np.int64)
    report = MappingReport(source=source, n_file_genes=len(genes))
    names = genes["id"].tolist()
    entrez = genes["entrez"].tolist() if "entrez" in genes else [None] * len(genes)
    symbols = genes["symbol"].tolist() if "symbol" in genes else [None] * len(genes)
    for i, (name, ez, sym) in enumerate(zip(names, entrez, symbols)):
        hit = identify(name, ez, sym)
        if hit is None:
            continue
        feature, kind = hit
        k = int(feature[2:])
        if positions[k] >= 0:
            first = names[positions[k]]
            raise DataError(f"genes {first!r} (position {positions[k] + 1}) and {name!r} (position {i + 1}) are "
                            f"both {identities.feature_label(feature)}: duplicated gene ids. Keep one row per gene "
                            "(average or drop the duplicates).", source=source, column=str(name))
        positions[k] = i
        report.matched[feature] = (str(name), kind)
    missing = [f"g-{k}" for k in np.flatnonzero(positions < 0)]
    report.filled_with_zero = missing
    limit = int(max_missing_share * schema.N_GENES)
    if len(missing) > limit:
        hint = ("" if report.found else " None of the gene names is an Entrez id, a gene symbol or a g-k column: "
                "are genes in rows or columns, and are the names gene ids?")
        raise DataError(f"{len(missing)} of the model's {schema.N_GENES} genes are missing (at most {limit}, "
                        f"{max_missing_share:.0%}, may be; they would be filled with 0 = no change): "
                        f"{_named(missing)}.{hint} Provide all L1000 landmark genes, named by Entrez id or "
                        "symbol.", source=source)
    return GeneMapping(positions, report)
