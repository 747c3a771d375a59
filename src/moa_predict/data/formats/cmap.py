"""Readers for the files CMap / L1000 users hold: GCTX (HDF5), GCT 1.2/1.3 text, AnnData ``.h5ad``, and
CSV/Parquet tables with genes in either orientation.

Every reader gives the same thing, a :class:`GeneSource`: the file's genes (``genes``: one row per gene with
``id`` and, where the file says, ``entrez`` and ``symbol``) and sample blocks ``(meta, values)`` with samples
as rows, so a caller maps genes once (:mod:`.genes`) and then reads only the gene rows it needs. HDF5 files
are read block by block: memory grows with the block size, never with the number of samples (the full CMap
compound file is 720,216 x 12,328 floats, 33 GB). Text files are read whole (they are small in practice).

Every failure is a :class:`DataError` naming the file and what to do.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
import numpy as np
import pandas as pd

from ..profiles import schema
from ..errors import DataError
from ..profiles.genes import count_known, is_gene_name
from .io import DEFAULT_MAX_BYTES, Source, _human_size, _size_of, missing_file, read_table

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
GCT_SUFFIXES = (".gct",)
HDF5_SUFFIXES = (".gctx", ".h5ad", ".h5", ".hdf5")
DEFAULT_CHUNK = 2000
"""Samples per block: 2,000 x 12,328 float32 = 99 MB at most, 2,000 x 978 = 8 MB."""

_ENTREZ_KEYS = ("pr_gene_id", "entrez", "entrez_id", "entrezid", "gene_id")
_SYMBOL_KEYS = ("pr_gene_symbol", "symbol", "gene_symbol", "hgnc_symbol", "gene_name")

Block = tuple[pd.DataFrame, np.ndarray]
"""(sample metadata indexed by sample id, values: samples x selected genes, float32)."""


def _annotation(columns: Sequence[str], keys: Sequence[str]) -> str | None:
    lower = {str(c).lower(): c for c in columns}
    return next((lower[k] for k in keys if k in lower), None)


def gene_table(ids: Sequence[object], annotations: pd.DataFrame | None = None) -> pd.DataFrame:
    """The ``id`` / ``entrez`` / ``symbol`` table the mapping reads, from a file's gene ids and annotations."""
    table = pd.DataFrame({"id": [str(i).strip() for i in ids]})
    if annotations is not None:
        for out, keys in (("entrez", _ENTREZ_KEYS), ("symbol", _SYMBOL_KEYS)):
            if (col := _annotation(list(annotations.columns), keys)) is not None:
                table[out] = annotations[col].to_numpy()
    return table


class GeneSource:
    """A file's genes and its samples, readable in blocks of samples."""

    source: str
    genes: pd.DataFrame
    n_samples: int
    orientation: str = "genes as rows"

    def blocks(self, chunk_size: int = DEFAULT_CHUNK, genes: np.ndarray | None = None, *, first: int = 0,
               last: int | None = None) -> Iterator[Block]:
        """Blocks of at most `chunk_size` samples from sample `first` to `last` (exclusive; None: the end);
        `genes`: sorted positions of the genes to read (all if None). A range lets cluster tasks each read only
        their own part of one file."""
        raise NotImplementedError

    def read_all(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(values: samples x genes with the gene ids as columns, sample metadata): for small files."""
        metas, values = zip(*self.blocks(max(self.n_samples, 1))) if self.n_samples else ((), ())
        meta = pd.concat(metas) if metas else pd.DataFrame(index=pd.Index([], name="id"))
        data = np.vstack(values) if values else np.zeros((0, len(self.genes)), np.float32)
        return pd.DataFrame(data, index=meta.index, columns=self.genes["id"].tolist()), meta


class MemorySource(GeneSource):
    """A table already in memory (GCT text, CSV, Parquet)."""

    def __init__(self, values: np.ndarray, meta: pd.DataFrame, genes: pd.DataFrame, source: str,
                 orientation: str) -> None:
        self.values, self.meta, self.genes, self.source = values, meta, genes, source
        self.n_samples, self.orientation = len(meta), orientation

    def blocks(self, chunk_size: int = DEFAULT_CHUNK, genes: np.ndarray | None = None, *, first: int = 0,
               last: int | None = None) -> Iterator[Block]:
        cols = slice(None) if genes is None else genes
        end = self.n_samples if last is None else min(last, self.n_samples)
        for start in range(first, end, chunk_size):
            stop = min(start + chunk_size, end)
            yield self.meta.iloc[start:stop], np.asarray(self.values[start:stop][:, cols], dtype=np.float32)


# ---------------------------------------------------------------------------------------------------------
# HDF5: GCTX and h5ad
# ---------------------------------------------------------------------------------------------------------


def _decode(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind in "SO":
        return np.array([v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in values], dtype=object)
    return values


@contextmanager
def _open_hdf5(src: Source, name: str) -> Iterator[object]:
    import h5py  # noqa: PLC0415  (only HDF5 readers need it)

    try:
        handle = h5py.File(src, "r")
    except (OSError, ValueError) as exc:
        raise DataError(f"not a readable HDF5 file ({exc}). The file may be truncated or damaged: download or "
                        "copy it again; a GCTX/h5ad file must be HDF5.", source=name) from None
    try:
        yield handle
    finally:
        handle.close()


def _read_dataset(dset: object, selection: tuple, name: str) -> np.ndarray:
    try:
        return dset[selection]
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"cannot read {dset.name} ({exc}): the file is truncated or damaged. Download or copy "
                        "it again.", source=name) from None


class GctxSource(GeneSource):
    """CMap's GCTX: ``/0/DATA/0/matrix`` (stored samples x genes, as CMap writes it), ``/0/META/ROW`` (genes:
    ``id``, ``pr_gene_id``, ``pr_gene_symbol``, ...) and ``/0/META/COL`` (samples: ``id``, ``pert_iname``,
    ``pert_type``, ``pert_dose``, ...)."""

    MATRIX, ROW, COL = "0/DATA/0/matrix", "0/META/ROW", "0/META/COL"

    def __init__(self, handle: object, source: str) -> None:
        self.h, self.source = handle, source
        missing = [p for p in (self.MATRIX, f"{self.ROW}/id", f"{self.COL}/id") if p not in handle]
        if missing:
            raise DataError(f"HDF5 file without the GCTX group(s) {', '.join('/' + p for p in missing)}. A GCTX "
                            "file (CMap) has /0/DATA/0/matrix, /0/META/ROW/id and /0/META/COL/id; save it with "
                            "cmapPy/cmapR, or provide a GCT, h5ad or CSV file.", source=source)
        self.matrix = handle[self.MATRIX]
        row = handle[self.ROW]
        row_ids = _decode(_read_dataset(row["id"], (), source))
        annotations = pd.DataFrame({k: _decode(_read_dataset(row[k], (), source)) for k in row
                                    if k != "id" and row[k].ndim == 1 and len(row[k]) == len(row_ids)})
        self.genes = gene_table(row_ids, annotations)
        self.col = handle[self.COL]
        self.n_samples = len(self.col["id"])
        shape, n_genes = self.matrix.shape, len(row_ids)
        if len(shape) != 2 or sorted(shape) != sorted((self.n_samples, n_genes)):
            raise DataError(f"/0/DATA/0/matrix is {'x'.join(map(str, shape))} but META lists {n_genes} genes and "
                            f"{self.n_samples} samples. The file is inconsistent: write it again.", source=source)
        # CMap stores the matrix samples x genes; accept the transposed layout other writers produce.
        self.transposed = shape != (self.n_samples, n_genes)

    def blocks(self, chunk_size: int = DEFAULT_CHUNK, genes: np.ndarray | None = None, *, first: int = 0,
               last: int | None = None) -> Iterator[Block]:
        # h5py's fancy indexing is slow: read the span of the wanted genes, then select in memory.
        span = slice(None) if genes is None or not len(genes) else slice(int(genes[0]), int(genes[-1]) + 1)
        within = None if genes is None or not len(genes) else np.asarray(genes) - int(genes[0])
        if within is not None and len(within) == within[-1] + 1:
            within = None  # every gene of the span (sorted, unique): the block as read, without a copy
        meta_keys = [k for k in self.col if self.col[k].ndim == 1 and len(self.col[k]) == self.n_samples]
        end = self.n_samples if last is None else min(last, self.n_samples)
        for start in range(first, end, chunk_size):
            stop = min(start + chunk_size, end)
            if self.transposed:
                values = _read_dataset(self.matrix, (span, slice(start, stop)), self.source).T
            else:
                values = _read_dataset(self.matrix, (slice(start, stop), span), self.source)
            if within is not None:
                values = values[:, within]
            meta = {k: _decode(_read_dataset(self.col[k], (slice(start, stop),), self.source)) for k in meta_keys}
            ids = pd.Index([str(i) for i in meta.pop("id")], name="id")
            yield pd.DataFrame(meta, index=ids), np.asarray(values, dtype=np.float32)


def _h5ad_column(group: object, key: str, sl: slice, name: str) -> np.ndarray:
    """One column of an AnnData dataframe (plain, categorical or nullable encoding) for rows `sl`."""
    item = group[key]
    kind = item.attrs.get("encoding-type", "")
    if kind == "categorical":
        codes = _read_dataset(item["codes"], (sl,), name)
        categories = _decode(_read_dataset(item["categories"], (), name))
        return np.array([categories[c] if c >= 0 else None for c in codes], dtype=object)
    if hasattr(item, "keys"):  # nullable-* encodings: values + mask
        values = _decode(_read_dataset(item["values"], (sl,), name)).astype(object)
        if "mask" in item:
            values[_read_dataset(item["mask"], (sl,), name).astype(bool)] = None
        return values
    return _decode(_read_dataset(item, (sl,), name))


class H5adSource(GeneSource):
    """AnnData ``.h5ad`` read with h5py: X dense or CSR, obs = samples, var = genes (the AnnData convention;
    when obs names are genes and var names are not, the file is read transposed).

    Why not the ``anndata`` package: its releases for Python 3.11 (<= 0.12) require pandas < 3 (this project
    uses pandas 3) and refuse to write pandas 3 string columns by default; the on-disk format is documented
    and stable, so reading it directly with h5py (and in blocks, like backed mode) is simpler and lighter."""

    def __init__(self, handle: object, source: str) -> None:
        self.h, self.source = handle, source
        missing = [p for p in ("X", "obs", "var") if p not in handle]
        if missing:
            raise DataError(f"HDF5 file without the AnnData group(s) {', '.join(missing)}. An .h5ad file has "
                            "X, obs and var: save it with anndata's write_h5ad.", source=source)
        self.x = handle["X"]
        self.sparse = self.x.attrs.get("encoding-type", "") in ("csr_matrix", "csc_matrix")
        if self.sparse and self.x.attrs["encoding-type"] == "csc_matrix":
            raise DataError("X is stored as a CSC sparse matrix, which cannot be read in sample blocks. Convert "
                            "it (adata.X = adata.X.tocsr()) or store it dense.", source=source)
        shape = tuple(self.x.attrs["shape"]) if self.sparse else self.x.shape
        obs, var = self._frame("obs"), self._frame("var")
        if (len(obs), len(var)) != tuple(shape):
            raise DataError(f"X is {shape[0]}x{shape[1]} but obs has {len(obs)} and var {len(var)} rows: the "
                            "file is inconsistent. Write it again.", source=source)
        self.transposed = count_known(list(obs.index)) > count_known(list(var.index))
        self.orientation = "genes as rows (obs)" if self.transposed else "genes as columns (var)"
        if self.transposed and self.sparse:
            raise DataError("genes are in obs (rows) of a sparse X; transpose the AnnData (adata.T) so samples "
                            "are obs and genes var.", source=source)
        samples, gene_frame = (var, obs) if self.transposed else (obs, var)
        self.sample_meta = samples
        self.genes = gene_table(list(gene_frame.index), gene_frame)
        self.n_samples = len(samples)

    def _frame(self, key: str) -> pd.DataFrame:
        group = self.h[key]
        index_key = group.attrs.get("_index", "_index")
        if index_key not in group:
            raise DataError(f"/{key} has no index ({index_key!r}). Write the file with anndata's write_h5ad.",
                            source=self.source)
        everything = slice(None)
        index = _h5ad_column(group, index_key, everything, self.source)
        columns = [c for c in group.attrs.get("column-order", []) if c in group]
        data = {str(c): _h5ad_column(group, c, everything, self.source) for c in columns}
        return pd.DataFrame(data, index=pd.Index([str(i) for i in index], name="id"))

    def blocks(self, chunk_size: int = DEFAULT_CHUNK, genes: np.ndarray | None = None, *, first: int = 0,
               last: int | None = None) -> Iterator[Block]:
        n_genes = len(self.genes)
        end = self.n_samples if last is None else min(last, self.n_samples)
        for start in range(first, end, chunk_size):
            stop = min(start + chunk_size, end)
            if self.sparse:
                values = self._csr_rows(start, stop, n_genes)
            elif self.transposed:
                values = _read_dataset(self.x, (slice(None), slice(start, stop)), self.source).T
            else:
                values = _read_dataset(self.x, (slice(start, stop),), self.source)
            values = np.asarray(values, dtype=np.float32)
            yield self.sample_meta.iloc[start:stop], values if genes is None else values[:, genes]

    def _csr_rows(self, start: int, stop: int, n_genes: int) -> np.ndarray:
        indptr = _read_dataset(self.x["indptr"], (slice(start, stop + 1),), self.source)
        lo, hi = int(indptr[0]), int(indptr[-1])
        data = _read_dataset(self.x["data"], (slice(lo, hi),), self.source)
        indices = _read_dataset(self.x["indices"], (slice(lo, hi),), self.source)
        out = np.zeros((stop - start, n_genes), dtype=np.float32)
        rows = np.repeat(np.arange(stop - start), np.diff(indptr))
        out[rows, indices] = data
        return out


# ---------------------------------------------------------------------------------------------------------
# Text: GCT 1.2 / 1.3
# ---------------------------------------------------------------------------------------------------------


def _numeric(cells: pd.DataFrame, source: str, first_line: int, n_meta: int) -> np.ndarray:
    """GCT data cells to float, naming the first cell that is not a number (line of the file, sample)."""
    values = cells.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    bad = np.isnan(values) & ~cells.isin(["", "NaN", "nan", "NA", "na"]).to_numpy() & cells.notna().to_numpy()
    if bad.any():
        i, j = (int(k[0]) for k in np.nonzero(bad))
        raise DataError(f"line {first_line + i}, sample {cells.columns[j]!r} (field {n_meta + j + 1}): "
                        f"{cells.iat[i, j]!r} is not a number ({int(bad.sum())} non-numeric value(s) in all). "
                        "GCT data values must be plain decimal numbers.", source=source, row=first_line + i,
                        column=str(cells.columns[j]))
    return values


def read_gct(src: Source, name: str) -> MemorySource:
    """GCT 1.3 (row and column metadata) or 1.2 (Name, Description): genes are rows, samples columns."""
    raw = _bytes(src, name)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError("this GCT file is not UTF-8 text. Save it again as text.", source=name) from None
    lines = text.splitlines()
    version = lines[0].strip() if lines else ""
    if version not in ("#1.2", "#1.3"):
        raise DataError(f"line 1 is {version[:20]!r}, not '#1.2' or '#1.3': not a GCT file. Check the format.",
                        source=name, row=1)
    try:
        dims = [int(x) for x in lines[1].split("\t") if x.strip()]
        n_rows, n_cols = dims[0], dims[1]
        n_rmeta, n_cmeta = (dims[2], dims[3]) if version == "#1.3" else (1, 0)
    except (IndexError, ValueError):
        raise DataError("line 2 must give the numbers of rows and columns (and, in GCT 1.3, of row and column "
                        "metadata fields), tab-separated.", source=name, row=2) from None
    header = lines[2].split("\t") if len(lines) > 2 else []
    if len(header) != 1 + n_rmeta + n_cols:
        raise DataError(f"line 3 has {len(header)} fields; line 2 announces {1 + n_rmeta + n_cols} (id, {n_rmeta} "
                        f"row metadata field(s), {n_cols} samples). The file is truncated or inconsistent.",
                        source=name, row=3)
    body = lines[3:3 + n_cmeta + n_rows]
    if len(body) < n_cmeta + n_rows:
        raise DataError(f"the file has {len(body) - n_cmeta} data line(s); line 2 announces {n_rows}. The file is "
                        "truncated: copy it again.", source=name)
    fields = [line.split("\t") for line in body]
    ragged = next((k for k, f in enumerate(fields) if len(f) != len(header)), None)
    if ragged is not None:
        raise DataError(f"line {4 + ragged} has {len(fields[ragged])} fields but the header has {len(header)}. "
                        "Every line must have the same number of tab-separated fields.", source=name, row=4 + ragged)
    samples = header[1 + n_rmeta:]
    cmeta = pd.DataFrame({f[0]: f[1 + n_rmeta:] for f in fields[:n_cmeta]}, index=pd.Index(samples, name="id"))
    data = pd.DataFrame(fields[n_cmeta:], dtype=object)
    rmeta = data.iloc[:, 1:1 + n_rmeta].set_axis(header[1:1 + n_rmeta], axis=1)
    cells = data.iloc[:, 1 + n_rmeta:].set_axis(samples, axis=1)
    values = _numeric(cells, name, 4 + n_cmeta, 1 + n_rmeta)
    genes = gene_table(data.iloc[:, 0].tolist(), rmeta)
    return MemorySource(values.T.copy(), _typed(cmeta), genes, name, "genes as rows")


def _typed(meta: pd.DataFrame) -> pd.DataFrame:
    """Numbers in metadata as numbers (pert_dose, pert_time), the rest as text; CMap's -666 means missing."""
    out = meta.copy()
    for c in out.columns:
        numbers = pd.to_numeric(out[c], errors="coerce")
        if numbers.notna().all():
            out[c] = numbers
    return out


# ---------------------------------------------------------------------------------------------------------
# CSV / Parquet in either orientation
# ---------------------------------------------------------------------------------------------------------


def table_source(frame: pd.DataFrame, name: str) -> MemorySource:
    """A table with genes as columns or as rows, told apart by the names: the axis whose names identify more
    model genes (Entrez ids, HGNC or CMap symbols, g-k) holds the genes. For rows, the gene names are looked for
    in the first column and the other text columns (e.g. ``pr_gene_symbol``); the numeric columns are samples."""
    columns = [str(c) for c in frame.columns]
    by_columns = count_known(columns)
    candidates = [c for j, c in enumerate(frame.columns) if j == 0 or not pd.api.types.is_numeric_dtype(frame[c])]
    by_rows = {c: count_known(frame[c].tolist()) for c in candidates}
    best_row = max(by_rows, key=by_rows.get) if by_rows else None
    if by_columns == 0 and (best_row is None or by_rows[best_row] == 0):
        raise DataError("no gene found: neither the column names nor the first column's values are Entrez ids, "
                        "gene symbols or g-k names. Name genes by Entrez id or symbol.", source=name)
    if by_columns >= (by_rows[best_row] if best_row is not None else 0):
        gene_cols = [c for c, s in zip(frame.columns, columns) if is_gene_name(s)]
        meta = frame.drop(columns=gene_cols)
        id_col = schema.SIG_ID if schema.SIG_ID in meta.columns else (meta.columns[0] if len(meta.columns) else None)
        ids = meta[id_col].astype(str).str.strip() if id_col is not None else pd.Series(
            [f"row{i + 1}" for i in range(len(frame))])
        meta = meta.drop(columns=[id_col]) if id_col is not None else meta
        meta = meta.set_axis(pd.Index(ids.tolist(), name="id"))
        values = _table_numbers(frame[gene_cols], name)
        return MemorySource(values, meta, gene_table([str(c) for c in gene_cols]), name, "genes as columns")
    annotation_cols = [c for c in candidates if c != best_row]
    sample_cols = [c for c in frame.columns if c != best_row and c not in annotation_cols]
    values = _table_numbers(frame[sample_cols], name).T.copy()
    genes = gene_table(frame[best_row].tolist(), frame[annotation_cols])
    meta = pd.DataFrame(index=pd.Index([str(c) for c in sample_cols], name="id"))
    return MemorySource(values, meta, genes, name, "genes as rows")


def _table_numbers(block: pd.DataFrame, name: str) -> np.ndarray:
    coerced = block.apply(pd.to_numeric, errors="coerce")
    bad = coerced.isna().to_numpy() & block.notna().to_numpy()
    if bad.any():
        i, j = (int(k[0]) for k in np.nonzero(bad))
        raise DataError(f"row {i + 1}, column {block.columns[j]}: {block.iat[i, j]!r} is not a number "
                        f"({int(bad.sum())} non-numeric value(s) in all). Expression values must be plain decimal "
                        "numbers.", source=name, row=i + 1, column=str(block.columns[j]))
    return coerced.to_numpy(dtype=np.float64)


# ---------------------------------------------------------------------------------------------------------
# Format detection and the entry point
# ---------------------------------------------------------------------------------------------------------


def _bytes(src: Source, name: str) -> bytes:
    if isinstance(src, (str, os.PathLike)):
        return Path(src).read_bytes()
    src.seek(0)
    data = src.read()
    src.seek(0)
    return data


def _head(src: Source, n: int = 8) -> bytes:
    if isinstance(src, (str, os.PathLike)):
        with open(src, "rb") as handle:
            return handle.read(n)
    pos = src.tell()
    head = src.read(n)
    src.seek(pos)
    return head


def detect_format(src: Source, name: str) -> str:
    """'hdf5', 'gct' or 'table', from the first bytes (a file's suffix can lie: a real CMap '.gctx' file in
    the wild is GCT text), then the suffix."""
    if isinstance(src, (str, os.PathLike)) and not Path(src).is_file():
        return "table"  # read_table says "file not found"
    head = _head(src, 8)
    lower = name.lower()
    if not head:
        if lower.endswith(HDF5_SUFFIXES + GCT_SUFFIXES):
            raise DataError("the file is empty (0 bytes). Provide a file with at least one profile.", source=name)
        return "table"  # read_table says the table is empty
    if head.startswith(HDF5_MAGIC):
        return "hdf5"
    if head.lstrip(b"\xef\xbb\xbf").startswith((b"#1.2", b"#1.3")):
        return "gct"
    if lower.endswith(HDF5_SUFFIXES):
        kind = "GCTX" if lower.endswith(".gctx") else "h5ad/HDF5"
        raise DataError(f"not an HDF5 file (the first bytes are {head[:8]!r}), so not a valid {kind} file. The file "
                        "may be damaged or mis-named: copy it again, or provide a GCT, CSV or Parquet file.",
                        source=name)
    if lower.endswith(GCT_SUFFIXES):
        raise DataError("line 1 is not '#1.2' or '#1.3': not a GCT file. Check the format.", source=name, row=1)
    return "table"


@contextmanager
def open_genes(src: Source, *, name: str | None = None, max_bytes: int | None = DEFAULT_MAX_BYTES,
               frame: pd.DataFrame | None = None, whole: bool = True) -> Iterator[GeneSource]:
    """Open any supported file as a :class:`GeneSource` (HDF5 files stay open inside the ``with`` block).

    `max_bytes` limits what is read into memory at once: text files always, HDF5 files when the caller reads
    them `whole`; an HDF5 file read in blocks (``whole=False``) may have any size."""
    name = name or (os.path.basename(os.fspath(src)) if isinstance(src, (str, os.PathLike))
                    else os.path.basename(str(getattr(src, "name", "upload"))))
    if isinstance(src, (str, os.PathLike)) and not Path(src).is_file():
        raise missing_file(src, name)
    size = os.path.getsize(src) if isinstance(src, (str, os.PathLike)) else _size_of(src)
    if size == 0:
        raise DataError("the file is empty (0 bytes). Provide a file with at least one profile.", source=name)
    if frame is not None:
        yield table_source(frame, name)
        return
    kind = detect_format(src, name)
    if max_bytes is not None and size > max_bytes and (whole or kind != "hdf5"):
        hint = (" or read it in blocks (moa_predict.data.profiles.gene_features.iter_gene_features)"
                if kind == "hdf5" else "")
        raise DataError(f"file is {_human_size(size)}, over the {_human_size(max_bytes)} limit. Split it into "
                        f"smaller files{hint}, or raise the limit.", source=name)
    if kind == "hdf5":
        with _open_hdf5(src, name) as handle:
            yield GctxSource(handle, name) if "0" in handle or "X" not in handle else H5adSource(handle, name)
        return
    if kind == "gct":
        yield read_gct(src, name)
        return
    yield table_source(read_table(src, name=name, max_bytes=max_bytes), name)


def read_genes(src: Source, *, name: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Convenience for small files: (values samples x genes, sample metadata, gene table)."""
    with open_genes(src, name=name) as source:
        values, meta = source.read_all()
        return values, meta, source.genes
