"""Simulated profiles as a CMap-style GCTX file, written block by block.

Genes are rows as in CMap: all 978 landmark genes, ``id`` = Entrez id (text, as CMap's files), with
``pr_gene_id`` and ``pr_gene_symbol`` (CMap's symbols); samples are columns with ``pert_iname``,
``pert_type``, ``pert_time``, ``pert_dose``. The matrix is stored samples x genes, as cmapPy/cmapR write it.
Memory grows with the block size only, so 200,000 samples need no 200,000-sample array.

Values: a small pool of profiles from :func:`moa_predict.simulate.simulate` (the model's 772 genes), drawn with
replacement and perturbed with Gaussian noise; the 206 landmarks the model does not use get N(0, 1) noise.
Deterministic given (seed, pool size, chunk size).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from ..data import identities
from ..data.profiles import schema
from ..data.formats.io import atomic_path

GCTX_VERSION = "GCTX1.0"
MATRIX = "0/DATA/0/matrix"
ROW = "0/META/ROW"
COL = "0/META/COL"


def landmark_rows() -> pd.DataFrame:
    """Row metadata of CMap's 978 landmarks: id (Entrez, text), pr_gene_id, pr_gene_symbol, model column."""
    table = identities.cmap_landmarks()
    model = {g.entrez: g.feature for g in identities.genes()}
    return pd.DataFrame({"id": table["entrez"].astype(str).to_numpy(), "pr_gene_id": table["entrez"].to_numpy(),
                         "pr_gene_symbol": table["cmap_symbol"].to_numpy(),
                         "feature": [model.get(int(e), "") for e in table["entrez"]]})


def _column(values: pd.Series) -> tuple[np.ndarray, object]:
    import h5py  # noqa: PLC0415

    if pd.api.types.is_integer_dtype(values):
        return values.to_numpy(np.int64), np.int64
    if pd.api.types.is_float_dtype(values):
        return values.to_numpy(np.float64), np.float64
    return values.astype(str).to_numpy(dtype=object), h5py.string_dtype()


def write_gctx(path: str | os.PathLike, rows: pd.DataFrame, n_samples: int,
               blocks: Iterable[tuple[pd.DataFrame, np.ndarray]]) -> Path:
    """Write a GCTX file from `blocks` of (column metadata with an ``id`` column, values samples x genes).

    `rows`: gene metadata, one row per gene (``id`` first). The blocks must hold `n_samples` samples in all
    and the same metadata columns. Written atomically: an interrupted run leaves no half file."""
    import h5py  # noqa: PLC0415  (only GCTX writing needs it)

    path = Path(path)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as out:
        out.attrs["version"] = GCTX_VERSION
        for key in rows.columns:
            data, dtype = _column(rows[key])
            out.create_dataset(f"{ROW}/{key}", data=data, dtype=dtype)
        n_genes = len(rows)
        matrix = out.create_dataset(MATRIX, shape=(n_samples, n_genes), dtype=np.float32,
                                    chunks=(max(1, min(256, n_samples)), n_genes))
        start = 0
        for meta, values in blocks:
            stop = start + len(meta)
            if stop > n_samples or values.shape != (len(meta), n_genes):
                raise ValueError(f"block of {values.shape} at sample {start} does not fit {n_samples} x {n_genes}")
            matrix[start:stop] = values
            for key in meta.columns:
                data, dtype = _column(meta[key])
                name = f"{COL}/{key}"
                if name not in out:
                    out.create_dataset(name, shape=(n_samples,), dtype=dtype)
                out[name][start:stop] = data
            start = stop
        if start != n_samples:
            raise ValueError(f"the blocks held {start} samples, not {n_samples}")
    return path


def write_gct(path: str | os.PathLike, rows: pd.DataFrame, meta: pd.DataFrame, values: np.ndarray) -> Path:
    """Write a GCT 1.3 text file (CMap's text format): genes as rows with `rows`' metadata (``id`` first), samples
    as columns with `meta`'s (``id`` first); `values` is samples x genes, as for :func:`write_gctx`. Atomic."""
    if values.shape != (len(meta), len(rows)):
        raise ValueError(f"values are {values.shape}, not {len(meta)} samples x {len(rows)} genes")
    row_keys, col_keys = list(rows.columns[1:]), list(meta.columns[1:])
    lines = ["#1.3", f"{len(rows)}\t{len(meta)}\t{len(row_keys)}\t{len(col_keys)}",
             "\t".join(["id", *row_keys, *meta["id"].astype(str)])]
    lines += ["\t".join([key, *["na"] * len(row_keys), *meta[key].astype(str)]) for key in col_keys]
    for j, r in enumerate(rows.astype(str).itertuples(index=False)):
        lines.append("\t".join([*r, *(f"{v:.6g}" for v in values[:, j])]))
    path = Path(path)
    with atomic_path(path) as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def simulate_gctx(path: str | os.PathLike, n_samples: int, *, seed: int = 0, chunk_size: int = 2000,
                  pool: int = 400, noise: float = 0.3) -> Path:
    """Write `n_samples` simulated profiles as a CMap-style GCTX (see the module docstring)."""
    from . import simulate  # noqa: PLC0415  (the LISH-MoA simulator is heavy; import only when used)

    data = simulate(n_train=pool, n_test=1, seed=seed)
    base = data.train_features
    gene_values = base[list(schema.GENE_COLUMNS)].to_numpy(np.float32)
    drug = data.drugs.set_index(schema.SIG_ID)[schema.DRUG_ID].reindex(base[schema.SIG_ID]).to_numpy()
    rows = landmark_rows()
    model_rows = np.flatnonzero(rows["feature"].to_numpy() != "")
    model_cols = np.array([int(f[2:]) for f in rows["feature"].iloc[model_rows]])
    rng = np.random.default_rng(seed)

    def blocks():
        for start in range(0, n_samples, chunk_size):
            n = min(chunk_size, n_samples - start)
            pick = rng.integers(0, len(base), n)
            values = rng.standard_normal((n, len(rows)), dtype=np.float32)
            values[:, model_rows] = gene_values[pick][:, model_cols] + noise * values[:, model_rows]
            meta = pd.DataFrame({
                "id": [f"SIM{seed}_{start + i:07d}" for i in range(n)],
                "pert_iname": drug[pick].astype(str),
                "pert_type": base[schema.CP_TYPE].to_numpy()[pick],
                "pert_time": base[schema.CP_TIME].to_numpy()[pick].astype(np.int64),
                "pert_idose": base[schema.CP_DOSE].to_numpy()[pick],
            })
            yield meta, values

    return write_gctx(path, rows.drop(columns="feature"), n_samples, blocks())
