"""Genes are genes in every layout: a layout's gene blocks (``[[blocks]] genes = "entrez" | "symbol" | "auto"``)
matched to an upload's genes whatever it calls them.

A model trained on a table whose gene columns are Entrez ids (``10007``, ``1001``, ...) is asked about files naming
the same genes by symbol (CMap's level-5 tables: ``PSME1``, ``ATF1``, ...), by current HGNC symbol, or as GCT/GCTX/h5ad
files (genes as rows). Each of the model's gene columns is identified once by its Entrez id (``genes.column_entrez``
over the 978 L1000 landmarks shipped in ``identities/``), each upload column the same way, and the upload's columns
are renamed to the model's. The rules are those of the LISH-MoA gene mapping (``genes``): the number found is
reported, up to 5 % missing are filled with 0 (a z-score's "no change") and listed, more missing is an error naming
them; a file with none of the genes (a Cell Painting table sent to an L1000 model) gets one error saying which genes
the model answers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .. import identities
from ..errors import DataError
from .genes import MATCH_KINDS, MAX_MISSING_SHARE, column_entrez, count_by_kind, listed

if TYPE_CHECKING:
    from .layout import Layout

NAME = "name"
"""Match kind of a model gene column found under its own name (a gene the shipped tables cannot name)."""
NAMING_TEXT = {"entrez": "Entrez id", "symbol": "gene symbol", "auto": "Entrez id or gene symbol"}


def block_genes(columns: Iterable[str], naming: str, *, block: str = "genes",
                source: str = "features") -> dict[str, int | None]:
    """Column -> Entrez id of a gene block's columns named as `naming` says (None: a column the shipped tables
    cannot name, matched by its exact name). Two columns naming the same gene are an error."""
    out: dict[str, int | None] = {}
    seen: dict[int, str] = {}
    for c in columns:
        hit = column_entrez(c, naming)
        entrez = None if hit is None else hit[0]
        if entrez is not None and entrez in seen:
            raise DataError(f"columns {seen[entrez]!r} and {c!r} of gene block {block!r} are both "
                            f"{identities.gene_label(entrez)}: keep one column per gene.", source=source, column=c)
        if entrez is not None:
            seen[entrez] = c
        out[str(c)] = entrez
    if columns and not seen:
        raise DataError(f"gene block {block!r} declares its columns named by {NAMING_TEXT[naming]}, but none of its "
                        f"{len(out)} columns is ({', '.join(list(out)[:3])} ...). Set genes = 'entrez', 'symbol' or "
                        "'auto' as the table names them, or remove `genes` if the block is not genes.", source=source)
    return out


def layout_genes(layout: "Layout", feature_columns: list[str]) -> dict[str, int | None]:
    """Column -> Entrez id of every gene-block column among a model's `feature_columns` (empty: no gene block)."""
    blocks = layout.gene_blocks()
    if not blocks:
        return {}
    columns = layout.block_columns(list(feature_columns), "bundle")
    out: dict[str, int | None] = {}
    for b in blocks:
        out.update(block_genes(columns.get(b.name, []), b.genes or "auto", block=b.name, source="bundle"))
    return out


def describe(genes: dict[str, int | None], examples: int = 3) -> str:
    """'978 L1000 landmark genes (e.g. AARS (16), ABCF1 (23), ABL1 (25))': what a model's gene columns are."""
    known = [e for e in genes.values() if e is not None]
    n_landmarks = sum(1 for e in known if e in identities.landmarks())
    shown = ", ".join(identities.gene_label(e) for e in known[:examples])
    what = "L1000 landmark genes" if n_landmarks == len(genes) else "genes"
    return f"{len(genes)} {what}" + (f" (e.g. {shown})" if shown else "")


@dataclass
class GeneMatch:
    """How an upload's columns were matched to one gene block of the model."""

    block: str
    n_model: int
    matched: dict[str, tuple[str, str]] = field(default_factory=dict)
    """model column -> (the upload's column, match kind)."""
    filled_with_zero: list[str] = field(default_factory=list)
    """Labels ('HMGCR (3156)') of the model genes missing from the upload, filled with 0."""
    n_upload_genes: int = 0

    @property
    def found(self) -> int:
        return len(self.matched)

    @property
    def by_kind(self) -> dict[str, int]:
        return count_by_kind(self.matched, (*MATCH_KINDS, NAME))

    def to_dict(self) -> dict[str, Any]:
        """The same keys as the LISH-MoA mapping report (``genes.MappingReport.to_dict``), plus the block."""
        return {"block": self.block, "of": self.n_model, "found": self.found, "missing": len(self.filled_with_zero),
                "by_kind": self.by_kind, "ignored": max(0, self.n_upload_genes - self.found),
                "filled_with_zero": list(self.filled_with_zero)}

    def summary(self) -> str:
        kinds = ", ".join(f"{n} by {k.replace('_', ' ')}" for k, n in self.by_kind.items())
        text = f"{self.found} of the model's {self.n_model} genes found ({kinds or 'none'})"
        if self.filled_with_zero:
            text += f"; {len(self.filled_with_zero)} missing, filled with 0: {listed(self.filled_with_zero)}"
        return text


def match_genes(frame: pd.DataFrame, layout: "Layout", feature_columns: list[str], *, source: str,
                skip: Iterable[str] = (), max_missing_share: float = MAX_MISSING_SHARE
                ) -> tuple[pd.DataFrame, list[GeneMatch]]:
    """`frame` with its gene columns renamed to the model's gene-block columns and the missing ones (at most
    `max_missing_share` of a block) added as 0; one :class:`GeneMatch` per gene block. `skip`: the upload's meta
    columns, never taken for genes. Errors: no gene of the model in the file (which genes the model answers), too
    many missing (naming them), two upload columns naming one gene."""
    model = layout_genes(layout, feature_columns)
    if not model:
        return frame, []
    skip = set(skip)
    candidates = [c for c in frame.columns if c not in skip]
    upload: dict[str, tuple[int, str] | None] = {c: column_entrez(c, "auto") for c in candidates}
    rename: dict[str, str] = {}
    taken: dict[str, str] = {}
    reports: list[GeneMatch] = []
    added: dict[str, np.ndarray] = {}
    columns = layout.block_columns(list(feature_columns), "bundle")
    for block in layout.gene_blocks():
        genes = {c: model[c] for c in columns.get(block.name, [])}
        by_entrez = {e: c for c, e in genes.items() if e is not None}
        report = GeneMatch(block.name, len(genes), n_upload_genes=sum(hit is not None for hit in upload.values()))
        for c in candidates:
            hit = upload[c]
            if c in genes:
                target, kind = c, (hit[1] if hit is not None else NAME)
            elif hit is not None and hit[0] in by_entrez:
                target, kind = by_entrez[hit[0]], hit[1]
            else:
                continue
            if target in taken:
                raise DataError(f"columns {taken[target]!r} and {c!r} are both "
                                f"{identities.gene_label(genes[target], target)}: keep one column per gene "
                                "(average or drop the duplicates).", source=source, column=c)
            taken[target] = c
            report.matched[target] = (c, kind)
            if c != target:
                rename[c] = target
        missing = [c for c in genes if c not in report.matched]
        report.filled_with_zero = [identities.gene_label(genes[c], c) for c in missing]
        if not report.matched:
            raise DataError(_no_genes_message(genes, block.genes or "auto", candidates), source=source)
        limit = int(max_missing_share * len(genes))
        if len(missing) > limit:
            raise DataError(f"{len(missing)} of the model's {len(genes)} genes are missing (at most {limit}, "
                            f"{max_missing_share:.0%}, may be; they would be filled with 0 = no change): "
                            f"{listed(report.filled_with_zero)}. Provide all of them, named by Entrez id or "
                            "symbol.", source=source)
        for c in missing:
            added[c] = np.zeros(len(frame), np.float32)
        reports.append(report)
    out = frame.rename(columns=rename)
    if added:
        out = pd.concat([out, pd.DataFrame(added, index=out.index)], axis=1)
    out.attrs = dict(frame.attrs)
    return out, reports


def _no_genes_message(genes: dict[str, int | None], naming: str, columns: list[str]) -> str:
    shown = ", ".join(map(str, columns[:3])) + (" ..." if len(columns) > 3 else "")
    return (f"none of the model's genes is in this file (its columns: {shown}). This model answers gene expression "
            f"of {describe(genes)}, as z-scores (CMap level 4/5): a table with one column per gene named by Entrez "
            "id or symbol (HGNC or CMap's), or a GCT / GCTX / h5ad file. Is this file meant for another model?")
