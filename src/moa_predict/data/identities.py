"""What the anonymised LISH-MoA columns are: genes (``g-k``) and cell lines (``c-k``).

The tables ship with the package (``identities/``, see its README for sources), are read once and cached,
and never touch the network. People get :func:`feature_label` ("TP53 (7157)"), programs
:func:`feature_info`; :func:`entrez_for_symbol` resolves both current HGNC symbols and the older ones
CMap's own files use, because 34 of the 772 genes were renamed since CMap released its data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import pandas as pd

_PACKAGE = "moa_predict.data"


@dataclass(frozen=True)
class Gene:
    """One of the model's 772 genes."""

    feature: str
    entrez: int
    symbol: str
    description: str
    cmap_symbol: str


@dataclass(frozen=True)
class CellLine:
    """One of the model's 100 viability columns: a CCLE cell line (or a PRISM control)."""

    feature: str
    ccle_name: str
    cell_line: str
    tissue: str | None


def _read(name: str) -> pd.DataFrame:
    with resources.files(_PACKAGE).joinpath("identities", name).open("rb") as handle:
        return pd.read_csv(handle, dtype=str, keep_default_na=False)


@lru_cache(maxsize=1)
def cmap_landmarks() -> pd.DataFrame:
    """CMap's 978 landmark genes: ``entrez`` (int), ``cmap_symbol``, ``cmap_title``."""
    table = _read("cmap_landmarks.csv")
    table["entrez"] = table["entrez"].astype(int)
    return table


@lru_cache(maxsize=1)
def genes() -> tuple[Gene, ...]:
    """The 772 model genes in column order (g-0 ... g-771)."""
    cmap = dict(zip(cmap_landmarks()["entrez"], cmap_landmarks()["cmap_symbol"]))
    table = _read("genes.csv")
    out = tuple(Gene(r.feature, int(r.entrez), r.symbol, r.description, cmap.get(int(r.entrez), r.symbol))
                for r in table.itertuples(index=False))
    assert [g.feature for g in out] == [f"g-{i}" for i in range(len(out))], "genes.csv must be in g-k order"
    return out


def _split_ccle(name: str) -> tuple[str, str | None]:
    """'A375_SKIN' -> ('A375', 'skin'); 'prism invariant 1' -> (itself, None)."""
    if "_" not in name:
        return name, None
    line, tissue = name.split("_", 1)
    return line, tissue.replace("_", " ").lower()


@lru_cache(maxsize=1)
def cell_lines() -> tuple[CellLine, ...]:
    """The 100 viability columns in order (c-0 ... c-99)."""
    return tuple(CellLine(r.feature, r.ccle_name, *_split_ccle(r.ccle_name))
                 for r in _read("cells.csv").itertuples(index=False))


@lru_cache(maxsize=1)
def _by_feature() -> dict[str, Gene | CellLine]:
    return {x.feature: x for x in (*genes(), *cell_lines())}


@lru_cache(maxsize=1)
def _by_entrez() -> dict[int, Gene]:
    return {g.entrez: g for g in genes()}


@lru_cache(maxsize=1)
def symbol_tables() -> tuple[dict[str, int], dict[str, int]]:
    """(current HGNC symbol -> Entrez, CMap symbol -> Entrez), upper-cased keys, for all 978 landmarks
    where CMap's names are concerned. Kept apart so a caller can say which one matched."""
    hgnc = {g.symbol.upper(): g.entrez for g in genes()}
    cmap = {s.upper(): e for s, e in zip(cmap_landmarks()["cmap_symbol"], cmap_landmarks()["entrez"])}
    return hgnc, cmap


@lru_cache(maxsize=1)
def landmark_ids() -> frozenset[int]:
    """Entrez ids of CMap's 978 landmark genes (the 772 model genes among them)."""
    return frozenset(int(e) for e in cmap_landmarks()["entrez"])


@dataclass(frozen=True)
class Landmark:
    """One of CMap's 978 L1000 landmark genes, the genes any L1000 layout is measured on."""

    entrez: int
    symbol: str
    """The current HGNC symbol where the package knows it (the 772 LISH-MoA genes), else CMap's symbol."""
    cmap_symbol: str
    description: str


@lru_cache(maxsize=1)
def landmarks() -> dict[int, Landmark]:
    """CMap's 978 landmark genes by Entrez id (``cmap_landmarks.csv``), with the current HGNC symbol and
    description of the 772 LISH-MoA genes (``genes.csv``) where they have one: how a layout's gene columns are
    named for people, whatever the table called them."""
    current = {g.entrez: g for g in genes()}
    out = {}
    for e, sym, title in zip(cmap_landmarks()["entrez"], cmap_landmarks()["cmap_symbol"],
                             cmap_landmarks()["cmap_title"]):
        gene = current.get(int(e))
        out[int(e)] = Landmark(int(e), gene.symbol if gene else sym, sym, gene.description if gene else title)
    return out


def gene_label(entrez: int | None, fallback: str = "") -> str:
    """'HMGCR (3156)' for a landmark gene, 'gene 12345' for another Entrez id, `fallback` when unknown."""
    if entrez is None:
        return fallback
    item = landmarks().get(int(entrez))
    return f"{item.symbol} ({item.entrez})" if item else f"gene {int(entrez)}"


def gene_info(feature: str, entrez: int | None) -> dict[str, object]:
    """Machine-readable identity of a layout's gene column (the column keeps its own name in ``feature``)."""
    item = None if entrez is None else landmarks().get(int(entrez))
    if item is None:
        return {"feature": str(feature), "kind": "gene", "entrez": entrez}
    return {"feature": str(feature), "kind": "gene", "entrez": item.entrez, "symbol": item.symbol,
            "cmap_symbol": item.cmap_symbol, "description": item.description}


def gene_by_entrez(entrez: int | str) -> Gene | None:
    """The model gene with this Entrez id, or None (not one of the 772)."""
    try:
        return _by_entrez().get(int(str(entrez).strip()))
    except ValueError:
        return None


def entrez_for_symbol(symbol: str) -> int | None:
    """Entrez id of a gene symbol: current HGNC first, then CMap's (older) symbols; case-insensitive."""
    key = str(symbol).strip().upper()
    hgnc, cmap = symbol_tables()
    return hgnc.get(key, cmap.get(key))


def gene_by_symbol(symbol: str) -> Gene | None:
    """The model gene called `symbol` (current HGNC or CMap's name), or None."""
    entrez = entrez_for_symbol(symbol)
    return None if entrez is None else _by_entrez().get(entrez)


def feature_label(name: str) -> str:
    """A readable name: 'TP53 (7157)' for a g- column, 'A375 (skin)' for a c- column, others unchanged."""
    item = _by_feature().get(str(name))
    if isinstance(item, Gene):
        return f"{item.symbol} ({item.entrez})"
    if isinstance(item, CellLine):
        return item.cell_line if item.tissue is None else f"{item.cell_line} ({item.tissue})"
    return str(name)


def feature_info(name: str) -> dict[str, object]:
    """Machine-readable identity of a feature column: ``kind`` is 'gene', 'cell_line' or 'other'."""
    item = _by_feature().get(str(name))
    if isinstance(item, Gene):
        return {"feature": item.feature, "kind": "gene", "entrez": item.entrez, "symbol": item.symbol,
                "cmap_symbol": item.cmap_symbol, "description": item.description}
    if isinstance(item, CellLine):
        return {"feature": item.feature, "kind": "cell_line", "cell_line": item.cell_line, "tissue": item.tissue,
                "ccle_name": item.ccle_name}
    return {"feature": str(name), "kind": "other"}


def feature_fields(name: str, genes: Mapping[str, int | None] | None = None) -> dict[str, object]:
    """``feature`` (the g-/c- column, for machines), ``label`` and ``info``: what every explanation, chart and
    download that names a feature carries, so people read "TP53 (7157)" and programs keep "g-k". `genes`: a
    layout's gene columns (column -> Entrez id, ``data.profiles.gene_blocks``), named the same way."""
    if genes and str(name) in genes:
        return {"feature": str(name), "label": gene_label(genes[str(name)], str(name)),
                "info": gene_info(name, genes[str(name)])}
    return {"feature": str(name), "label": feature_label(name), "info": feature_info(name)}


def block_summary(feature_columns: list[str] | tuple[str, ...], examples: int = 3) -> list[dict[str, object]]:
    """The model's feature blocks for its card: what the g- and c- columns are, with a few named examples."""
    gene_cols = [c for c in feature_columns if str(c).startswith("g-")]
    cell_cols = [c for c in feature_columns if str(c).startswith("c-")]
    out: list[dict[str, object]] = []
    if gene_cols:
        shown = ", ".join(feature_label(c) for c in gene_cols[:examples])
        out.append({"block": "gene", "columns": f"{gene_cols[0]} … {gene_cols[-1]}", "count": len(gene_cols),
                    "text": f"{len(gene_cols)} L1000 landmark genes, each named by its gene symbol with its Entrez "
                            f"Gene id in brackets (e.g. {shown})"})
    if cell_cols:
        shown = ", ".join(feature_label(c) for c in cell_cols[:examples])
        out.append({"block": "cell_line", "columns": f"{cell_cols[0]} … {cell_cols[-1]}", "count": len(cell_cols),
                    "text": f"{len(cell_cols)} cancer cell lines (CCLE; viability), each named by its cell line "
                            f"with its tissue in brackets (e.g. {shown})"})
    return out
