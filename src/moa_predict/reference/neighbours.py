"""Similar reference profiles: the training profiles nearest to an uploaded one, with their drugs and MoAs.

The reference index is built ONCE at training time (``pipeline.train_bundle``) from every training
profile and stored in the bundle (arrays under ``reference.``, settings under ``"reference"`` in
bundle.json), so a served bundle needs no training data.

The space (chosen on the real-label simulated set, see docs/explain/README.md): the raw z-scores are
standardised per column and projected on their top ``n_components`` (100) principal components, fitted on
the training profiles; this is model-independent, so every bundle (kNN and prior included) can offer it.

- Similarity (the connectivity-style score): the cosine of the WHITENED components (each component scaled
  to unit variance), in [-1, 1]. Whitening keeps the few dominant expression programmes (cell viability,
  proliferation) from deciding every neighbourhood: among held-out new-drug profiles, 28% of the 10 nearest
  references share a scored MoA with the query, against 4% for the cosine of unwhitened components and 1% by
  chance. Each similarity also gets a percentile against the similarities of random pairs of reference
  profiles (the null), so 0.3 can be read as "better than 99.6% of random pairs".
- Out-of-distribution distance (reference/ood.py): 1 − cosine, in the standardised feature space, to the
  nearest reference, NOT whitened, with each profile's part outside the components counted as unshared
  (cos ≈ z_x·z_r / (‖s_x‖·‖s_r‖), s the standardised profile, z its components). Garbage (noise, shuffled
  features) lies mostly outside the components and is unlike every reference; whitening would inflate its
  low-variance components into plausible directions.
- MoA enrichment among the k neighbours: a one-sided hypergeometric p-value per MoA (k draws from the N
  reference profiles, K of which carry the MoA), with the count of distinct drugs behind the hits (a drug's
  profiles are correlated, so read "4 hits from 1 drug" as weak evidence).

Search is exact (brute force: one matrix product), a few milliseconds per profile for 23,814 references.

Any profile layout (``data.profiles``): the space is the layout's feature columns (all blocks, standardised) on the
principal components that hold 90 % of their variance (small screens have few real programmes and many noise
directions, which whitening would otherwise weigh as much as the real ones), and a reference is described by the layout's own meta columns (``meta``: e.g. concentration, plate) instead of LISH-MoA's
``cp_time`` / ``cp_dose``; the compound is the layout's group column.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import hypergeom

from ..data.profiles import schema
from ..data.errors import DataError
from ..data.profiles.layout import Layout
from ..features.meta import feature_matrix
from ..runtime.threads import limit_threads

PREFIX = "reference."
_CHUNK = 1024  # query rows per matrix product (and reference rows per block of the OOD calibration)
COPY_COSINE, COPY_TOLERANCE = 0.9999, 1e-3
"""A query is a copy of a reference profile at this cosine in the components and this relative structure gap."""


def _encode_strings(values: list[str]) -> np.ndarray:
    """Strings as a fixed-width uint8 matrix (safetensors stores numbers only; bundle.json stays small)."""
    raw = [str(v).encode("utf-8") for v in values]
    width = max((len(r) for r in raw), default=1) or 1
    out = np.zeros((len(raw), width), dtype=np.uint8)
    for i, r in enumerate(raw):
        out[i, : len(r)] = np.frombuffer(r, dtype=np.uint8)
    return out


def _decode_strings(matrix: np.ndarray) -> np.ndarray:
    matrix = np.ascontiguousarray(matrix, dtype=np.uint8)
    as_bytes = matrix.view(f"S{matrix.shape[1]}").ravel()
    return np.array([b.decode("utf-8") for b in as_bytes], dtype=object)


def _matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b; a few rows (an interactive query) on one BLAS thread, batches on all. On a busy 2-core machine a
    2-thread BLAS call spends its time waiting for the other thread: a matrix-vector product measured 13 ms
    instead of 1 ms, an 872×872 eigh 4.3 s instead of 0.3 s."""
    if len(a) > 32:
        return a @ b
    with limit_threads(1):
        return a @ b


def _normalise(z: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(z, axis=1, keepdims=True)
    return (z / np.maximum(norm, 1e-12)).astype(np.float32)


def _sparse_labels(*tables: pd.DataFrame | None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """0/1 label tables → CSR (indptr int32, indices int16) and the label names, tables concatenated."""
    names: list[str] = []
    mats = []
    for table in tables:
        if table is not None:
            names += list(table.columns)
            mats.append(table.to_numpy(np.int8) > 0)
    if not mats:
        return np.zeros(1, dtype=np.int32), np.zeros(0, dtype=np.int16), []
    dense = np.hstack(mats)
    rows, cols = np.nonzero(dense)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=len(dense)))]).astype(np.int32)
    return indptr, cols.astype(np.int16), names


def leave_drug_out_distances(index: "ReferenceIndex", sample: int = 5000, seed: int = 0) -> np.ndarray:
    """Nearest-reference OOD distance of (a sample of) the references themselves, other drugs only: the
    calibration of the OOD threshold (reference/ood.py says why leave-drug-out)."""
    n = len(index)
    if n < 2:
        return np.zeros(0, dtype=np.float32)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, sample, replace=False)) if sample < n else np.arange(n)
    drugs = np.asarray(index.drug_ids, dtype=object)
    known = np.array([bool(d) for d in drugs])
    codes = pd.factorize(pd.Series(drugs))[0]
    shape = index._shape
    out = np.empty(len(rows), dtype=np.float32)
    for i in range(0, len(rows), _CHUNK):
        r = rows[i:i + _CHUNK]
        s = shape[r] @ shape.T
        same = (codes[r][:, None] == codes[None, :]) & known[r][:, None]
        same[np.arange(len(r)), r] = True  # never the profile itself
        s[same] = -np.inf
        best = s.max(axis=1)
        best[~np.isfinite(best)] = -1.0  # a drug with every reference: nothing else to compare with
        out[i:i + _CHUNK] = 1.0 - best
    return out


def shuffled_null(index: "ReferenceIndex", x: np.ndarray, sample: int = 5000, seed: int = 0
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(OOD distance, structure) of (a sample of) the training profiles `x` with their features shuffled within
    each profile: what a profile with real values but no gene-to-gene structure scores (the null that
    ``ReferenceIndex.build(noisy_queries=True)`` calibrates against). Its own generator: the index's other
    random draws are unchanged."""
    rng = np.random.default_rng([seed, 1])
    rows = np.sort(rng.choice(len(x), sample, replace=False)) if sample < len(x) else np.arange(len(x))
    shuffled = rng.permuted(np.asarray(x[rows], dtype=np.float32), axis=1)
    dist, _, structure, _ = index.ood_components(shuffled)
    return dist, structure


@dataclass
class ReferenceIndex:
    """The training profiles in the reference space, their metadata and the OOD calibration."""

    scaler_mean: np.ndarray
    scaler_scale: np.ndarray
    components: np.ndarray
    pca_mean: np.ndarray
    explained_variance: np.ndarray
    coords: np.ndarray
    sig_ids: np.ndarray
    drug_ids: np.ndarray
    cp_time: np.ndarray | None
    cp_dose: np.ndarray | None
    """LISH-MoA's time and dose codes; None for another layout (its meta columns are in ``meta_codes``)."""
    is_control: np.ndarray
    label_indptr: np.ndarray
    label_indices: np.ndarray
    label_names: list[str]
    n_scored: int
    null_similarity: np.ndarray
    """Quantiles (0, 0.1, ..., 100 %) of the similarity of random pairs of reference profiles."""
    ood_distances: np.ndarray
    """Quantiles (0, 0.1, ..., 100 %) of the leave-drug-out nearest-reference distance of training profiles."""
    norms: np.ndarray
    """Norm of each reference's standardised profile (its components hold ``structure`` of it)."""
    ood_threshold: float
    structure_threshold: float = 0.0
    """The 0.1% quantile of training profiles' structure (share of the standardised norm in the components)."""
    ood_quantile: float = 0.99
    feature_columns: list[str] = field(default_factory=lambda: list(schema.FEATURE_COLUMNS))
    info: dict[str, Any] = field(default_factory=dict)
    meta_columns: list[str] = field(default_factory=list)
    """Another layout's meta columns shown for each reference (concentration, plate, ...); empty for LISH-MoA."""
    meta_values: dict[str, list[str]] = field(default_factory=dict)
    """The distinct values of each of ``meta_columns`` (as text); ``meta_codes`` index them (-1: missing)."""
    meta_codes: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.coords = np.ascontiguousarray(self.coords, dtype=np.float32)
        scale = np.sqrt(np.maximum(np.asarray(self.explained_variance, dtype=np.float64), 1e-12))
        self._whiten = (1.0 / scale).astype(np.float32)
        self._search = _normalise(self.coords * self._whiten)  # similarity space
        # OOD space: components over the FULL standardised norm (the rest counted as unshared)
        self._shape = (self.coords / np.maximum(np.asarray(self.norms, np.float32), 1e-12)[:, None]).astype(np.float32)
        # one affine map from raw features to components: z = x @ W + c
        comp = np.asarray(self.components, dtype=np.float64)
        w = comp / np.asarray(self.scaler_scale, dtype=np.float64)[None, :]
        self._w = np.ascontiguousarray(w.T, dtype=np.float32)
        shift = np.asarray(self.scaler_mean, np.float64) / np.asarray(self.scaler_scale, np.float64)
        self._c = (-(shift + np.asarray(self.pca_mean, np.float64)) @ comp.T).astype(np.float32)
        counts = np.bincount(self.label_indices.astype(np.int64), minlength=len(self.label_names))
        self._label_counts = counts.astype(np.int64)

    # -- building ----------------------------------------------------------------------------------------
    @classmethod
    def build(cls, features: pd.DataFrame, targets: pd.DataFrame | None = None,
              nonscored: pd.DataFrame | None = None, drugs: pd.Series | None = None, *, n_components: int = 100,
              ood_quantile: float = 0.99, ood_sample: int = 5000, null_pairs: int = 50_000,
              seed: int = 0, feature_columns: list[str] | tuple[str, ...] = schema.FEATURE_COLUMNS,
              meta_columns: list[str] | tuple[str, ...] | None = None,
              noisy_queries: bool = False, layout: Layout | None = None) -> "ReferenceIndex":
        """Index every training profile (controls included: 'looks like vehicle' is an answer too).

        `layout`: the layout the profiles were read through (default ``Layout.lish_moa()``). A layout with fixed
        columns stores LISH-MoA's dose and time per reference; any other is described by `meta_columns` (default:
        the layout's categorical and numeric meta columns the profiles have), and keeps only the principal
        components holding 90 % of the variance.

        `noisy_queries`: the references are averages (consensus signatures) while queries may be single, noisier
        signatures (a layout with ``profile_scale``). The references' own spread would then flag nearly every
        single signature (on the L1000 reference: 252 of 272 real level-5 signatures), so each OOD threshold is
        also calibrated on a null, the references with their features shuffled within each profile (same values,
        gene identities lost): a profile is flagged only when it is both unlike the references and no more
        structured, or no nearer to them, than such shuffled profiles (``shuffled_null``)."""
        with limit_threads(1):
            return cls._build(features, targets, nonscored, drugs, n_components=n_components,
                              ood_quantile=ood_quantile, ood_sample=ood_sample, null_pairs=null_pairs, seed=seed,
                              feature_columns=feature_columns, meta_columns=meta_columns, noisy_queries=noisy_queries,
                              layout=layout or Layout.lish_moa())

    @classmethod
    def _build(cls, features: pd.DataFrame, targets: pd.DataFrame | None, nonscored: pd.DataFrame | None,
               drugs: pd.Series | None, *, n_components: int, ood_quantile: float, ood_sample: int,
               null_pairs: int, seed: int, feature_columns: list[str] | tuple[str, ...],
               meta_columns: list[str] | tuple[str, ...] | None, noisy_queries: bool,
               layout: Layout) -> "ReferenceIndex":
        from sklearn.decomposition import PCA

        t0 = time.perf_counter()
        rng = np.random.default_rng(seed)
        x = feature_matrix(features, tuple(feature_columns)).astype(np.float64)
        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        scale[scale < 1e-8] = 1.0
        s = (x - mean) / scale
        n_comp = int(min(n_components, s.shape[1], max(len(s) - 1, 1)))
        # the exact solver through the covariance matrix: no randomness, ~2x faster than randomised SVD here
        pca = PCA(n_components=n_comp, svd_solver="covariance_eigh").fit(s)
        if not layout.fixed_columns and n_comp > 2:
            # another layout (often tens to hundreds of features, a few hundred wells): whitening every component
            # would blow its noise directions up to the weight of the real programmes, so only the components
            # holding 90 % of the variance are kept (LISH-MoA keeps its 100, chosen on the simulated set)
            keep = int(np.searchsorted(np.cumsum(pca.explained_variance_ratio_), 0.90) + 1)
            keep = max(2, min(keep, n_comp))
            if keep < n_comp:
                pca = PCA(n_components=keep, svd_solver="covariance_eigh").fit(s)
        coords = pca.transform(s).astype(np.float32)
        drug_ids = (drugs.astype(str).to_numpy() if drugs is not None
                    else np.array([""] * len(features), dtype=object))
        indptr, indices, names = _sparse_labels(targets, nonscored)
        time_code = dose_code = meta_codes = None
        meta_values: dict[str, list[str]] = {}
        if layout.fixed_columns:  # LISH-MoA: its dose and time, as codes
            time_code = features[schema.CP_TIME].map({t: i for i, t in enumerate(schema.CP_TIMES)}).to_numpy(np.int8)
            dose_code = features[schema.CP_DOSE].map({d: i for i, d in enumerate(schema.CP_DOSES)}).to_numpy(np.int8)
        else:
            wanted = list(meta_columns) if meta_columns is not None else [*layout.meta_categorical,
                                                                            *layout.meta_numeric]
            cols = [c for c in dict.fromkeys(wanted) if c in features.columns and c not in feature_columns]
            meta_codes = np.full((len(features), len(cols)), -1, dtype=np.int32)
            for j, c in enumerate(cols):
                codes, uniques = pd.factorize(features[c].astype("string").str.strip(), sort=True)
                meta_codes[:, j] = codes
                meta_values[c] = [str(u) for u in uniques]
        index = cls(
            scaler_mean=mean.astype(np.float32), scaler_scale=scale.astype(np.float32),
            components=pca.components_.astype(np.float32), pca_mean=pca.mean_.astype(np.float32),
            explained_variance=pca.explained_variance_.astype(np.float32), coords=coords,
            sig_ids=np.asarray(features.index.astype(str), dtype=object), drug_ids=np.asarray(drug_ids, dtype=object),
            cp_time=time_code, cp_dose=dose_code,
            is_control=(features[schema.CP_TYPE] == schema.CONTROL).to_numpy(np.uint8),
            label_indptr=indptr, label_indices=indices, label_names=names,
            n_scored=0 if targets is None else targets.shape[1],
            null_similarity=np.zeros(1001, np.float32), ood_distances=np.zeros(1001, np.float32),
            norms=np.linalg.norm(s, axis=1).astype(np.float32), ood_threshold=float("inf"),
            ood_quantile=ood_quantile, feature_columns=list(feature_columns), meta_columns=list(meta_values),
            meta_values=meta_values, meta_codes=meta_codes)
        # the null of the similarity: random pairs of distinct reference profiles
        n = len(coords)
        if n > 1:
            a = rng.integers(0, n, null_pairs)
            b = (a + rng.integers(1, n, null_pairs)) % n
            sims = (index._search[a] * index._search[b]).sum(axis=1)
            index.null_similarity = np.quantile(sims, np.linspace(0, 1, 1001)).astype(np.float32)
        dist = leave_drug_out_distances(index, sample=ood_sample, seed=seed)
        if len(dist):
            index.ood_distances = np.quantile(dist, np.linspace(0, 1, 1001)).astype(np.float32)
            index.ood_threshold = float(np.quantile(dist, ood_quantile))
        structure = np.linalg.norm(coords, axis=1) / np.maximum(index.norms, 1e-12)
        index.structure_threshold = float(np.quantile(structure, 0.001))
        calibration = "the training profiles' own spread (leave-drug-out distance: 99th percentile; structure: 0.1%)"
        if noisy_queries and n > 1:
            null_dist, null_structure = shuffled_null(index, x, sample=ood_sample, seed=seed)
            index.ood_threshold = max(index.ood_threshold, float(np.quantile(null_dist, 0.001)))
            index.structure_threshold = min(index.structure_threshold, float(np.quantile(null_structure, 0.999)))
            calibration = ("for single signatures against consensus references: the training profiles' spread, "
                           "widened to the null of shuffled profiles (distance: their 0.1% quantile; structure: "
                           "their 99.9%)")
        blocks = [b for b, cols in layout.present_blocks(list(feature_columns)).items() if cols]
        space = ("standardised g-/c- z-scores" if layout.fixed_columns else
                 f"the layout's {len(feature_columns)} feature columns ({', '.join(blocks)}), standardised")
        index.info = {"space": f"{space}, top {n_comp} principal components",
                      "similarity": "cosine of whitened components", "rows": int(n),
                      "ood_sample": int(min(ood_sample, n)), "ood_calibration": calibration,
                      "explained_variance_ratio": round(float(pca.explained_variance_ratio_.sum()), 4),
                      "build_seconds": round(time.perf_counter() - t0, 2)}
        return index

    # -- projecting and searching ------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.coords)

    def project(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Principal-component coordinates (n, d) of features (a frame, or a raw matrix in feature order)."""
        return _matmul(self._matrix(X), self._w) + self._c

    def _matrix(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        x = X if isinstance(X, np.ndarray) else feature_matrix(X, tuple(self.feature_columns))
        return np.asarray(x, dtype=np.float32)

    def standardised_norm(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        x = self._matrix(X)
        return np.linalg.norm((x - self.scaler_mean) / self.scaler_scale, axis=1).astype(np.float32)

    def search(self, X: pd.DataFrame | np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The k most similar references per query: (indices, similarities), most similar first."""
        q = _normalise(self.project(X) * self._whiten)
        k = int(min(max(k, 1), len(self)))
        idx = np.empty((len(q), k), dtype=np.int64)
        sim = np.empty((len(q), k), dtype=np.float32)
        for i in range(0, len(q), _CHUNK):
            s = _matmul(q[i:i + _CHUNK], self._search.T)
            part = np.argpartition(-s, k - 1, axis=1)[:, :k] if k < s.shape[1] else np.tile(np.arange(k), (len(s), 1))
            ps = np.take_along_axis(s, part, axis=1)
            order = np.argsort(-ps, axis=1, kind="stable")
            idx[i:i + _CHUNK] = np.take_along_axis(part, order, axis=1)
            sim[i:i + _CHUNK] = np.take_along_axis(ps, order, axis=1)
        return idx, sim

    def nearest_distance(self, X: pd.DataFrame | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """OOD distance to the nearest reference (see the module docstring), and that reference's row."""
        dist, near, *_ = self.ood_components(X)
        return dist, near

    def ood_components(self, X: pd.DataFrame | np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(distance, nearest reference row, structure, copy) per profile; structure is the share of the
        standardised profile's norm inside the reference components (real profiles ≈ 0.9, noise ≈ 0.4); copy is
        True for a profile that IS a reference profile (the same components and the same share outside them, to
        float precision: a training well sent again), whose nearest reference is then itself at distance 0 (the
        distance otherwise counts the part outside the components as unshared, even with itself)."""
        x = self._matrix(X)
        z = self.project(x)
        norm = np.maximum(self.standardised_norm(x), 1e-12)
        q = (z / norm[:, None]).astype(np.float32)
        structure = (np.linalg.norm(z, axis=1) / norm).astype(np.float32)
        ref_structure = np.linalg.norm(self._shape, axis=1)
        dist = np.empty(len(q), dtype=np.float32)
        near = np.empty(len(q), dtype=np.int64)
        copy = np.zeros(len(q), dtype=bool)
        for i in range(0, len(q), _CHUNK):
            s = _matmul(q[i:i + _CHUNK], self._shape.T)
            near[i:i + _CHUNK] = s.argmax(axis=1)
            dist[i:i + _CHUNK] = 1.0 - s.max(axis=1)
            # a copy: cosine ≈ 1 in the components and the same structure, so s ≈ st²; the few pairs near that
            # are checked exactly (one boolean pass over the chunk, no float temporaries of its size)
            st = structure[i:i + _CHUNK]
            rows, cols = np.nonzero(s >= (COPY_COSINE * (1 - COPY_TOLERANCE) ** 2 * st * st)[:, None])
            if len(rows):
                sr, rs = st[rows], ref_structure[cols]
                ok = (s[rows, cols] >= COPY_COSINE * sr * rs) & (np.abs(rs - sr) <= COPY_TOLERANCE * sr)
                rows, cols = rows[ok], cols[ok]
                copy[i + rows] = True
                near[i + rows] = cols
                dist[i + rows] = 0.0
        return dist, near, structure, copy

    def similarity_percentile(self, sim: np.ndarray) -> np.ndarray:
        """Percent of random reference pairs less similar than `sim`."""
        return np.interp(sim, self.null_similarity, np.linspace(0, 100, len(self.null_similarity)))

    # -- labels and enrichment ---------------------------------------------------------------------------
    def labels_of(self, i: int) -> list[int]:
        return [int(j) for j in self.label_indices[self.label_indptr[i]:self.label_indptr[i + 1]]]

    def label_matrix(self, rows: np.ndarray | None = None, scored_only: bool = True) -> np.ndarray:
        """Dense 0/1 labels (rows × labels) for a subset of reference rows."""
        rows = np.arange(len(self)) if rows is None else np.asarray(rows)
        n_lab = self.n_scored if scored_only else len(self.label_names)
        out = np.zeros((len(rows), n_lab), dtype=np.int8)
        for r, i in enumerate(rows):
            lab = [j for j in self.labels_of(int(i)) if j < n_lab]
            out[r, lab] = 1
        return out

    def enrichment(self, neighbours: np.ndarray, max_results: int = 10, alpha: float = 1.0) -> list[dict[str, Any]]:
        """Scored MoAs over-represented among `neighbours` (reference row indices): hypergeometric test."""
        k = len(neighbours)
        N = len(self)
        hits: dict[int, list[int]] = {}
        for i in neighbours:
            for j in self.labels_of(int(i)):
                if j < self.n_scored:
                    hits.setdefault(j, []).append(int(i))
        rows = []
        for j, members in hits.items():
            x, K = len(members), int(self._label_counts[j])
            p = float(hypergeom.sf(x - 1, N, K, k))
            if p <= alpha:
                rows.append({"moa": self.label_names[j], "count": x, "k": k,
                             "n_drugs": len({self.drug_ids[i] for i in members}),
                             "expected": round(k * K / N, 4), "fold_enrichment": round(x / max(k * K / N, 1e-12), 2),
                             "p_value": p})
        rows.sort(key=lambda r: (r["p_value"], -r["count"]))
        return rows[:max_results]

    @property
    def generic(self) -> bool:
        """Built from profiles of another layout than LISH-MoA (no dose/time codes)."""
        return self.cp_time is None

    def describe(self, i: int) -> dict[str, Any]:
        """One reference profile as a JSON-able dict: LISH-MoA references carry ``cp_time`` and ``cp_dose``,
        those of another layout ``meta`` ({column: value} of the layout's meta columns)."""
        labels = self.labels_of(i)
        out: dict[str, Any] = {
            "sig_id": str(self.sig_ids[i]),
            "drug_id": str(self.drug_ids[i]) or None,
            "cp_type": schema.CONTROL if self.is_control[i] else schema.TREATED,
        }
        if self.generic:
            codes = self.meta_codes[i] if self.meta_codes is not None else ()
            out["meta"] = {c: (self.meta_values[c][k] if k >= 0 else None)
                           for c, k in zip(self.meta_columns, (int(v) for v in codes))}
        else:
            out["cp_time"] = (schema.CP_TIMES[self.cp_time[i]] if 0 <= self.cp_time[i] < len(schema.CP_TIMES)
                              else None)
            out["cp_dose"] = (schema.CP_DOSES[self.cp_dose[i]] if 0 <= self.cp_dose[i] < len(schema.CP_DOSES)
                              else None)
        out["moas"] = [self.label_names[j] for j in labels if j < self.n_scored]
        out["nonscored_moas"] = [self.label_names[j] for j in labels if j >= self.n_scored]
        return out

    def neighbours(self, X: pd.DataFrame | np.ndarray, k: int = 10, enrichment: int = 10) -> list[dict[str, Any]]:
        """Per query profile: its k most similar references (described) and the MoA enrichment among them."""
        idx, sim = self.search(X, k)
        pct = self.similarity_percentile(sim)
        out = []
        for r in range(len(idx)):
            refs = [{**self.describe(int(i)), "similarity": round(float(s), 4), "percentile": round(float(p), 2)}
                    for i, s, p in zip(idx[r], sim[r], pct[r])]
            out.append({"neighbours": refs, "enrichment": self.enrichment(idx[r], enrichment) if enrichment else []})
        return out

    # -- persistence (bundle arrays under PREFIX, settings in bundle.json) --------------------------------
    _ARRAYS = ("scaler_mean", "scaler_scale", "components", "pca_mean", "explained_variance", "coords", "cp_time",
               "cp_dose", "is_control", "label_indptr", "label_indices", "null_similarity", "ood_distances", "norms")

    def get_state(self, prefix: str = PREFIX) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays = {f"{prefix}{name}": np.ascontiguousarray(getattr(self, name)) for name in self._ARRAYS
                  if getattr(self, name) is not None}
        if self.generic:
            arrays[f"{prefix}meta_codes"] = np.ascontiguousarray(
                self.meta_codes if self.meta_codes is not None else np.zeros((len(self), 0), np.int32))
        arrays[f"{prefix}sig_ids"] = _encode_strings(list(self.sig_ids))
        arrays[f"{prefix}drug_ids"] = _encode_strings(list(self.drug_ids))
        settings = {"label_names": list(self.label_names), "n_scored": int(self.n_scored),
                    "ood_threshold": float(self.ood_threshold), "ood_quantile": float(self.ood_quantile),
                    "structure_threshold": float(self.structure_threshold),
                    "feature_columns": list(self.feature_columns), "info": self.info}
        if self.generic:  # LISH-MoA bundles keep their old form
            settings["meta_columns"] = list(self.meta_columns)
            settings["meta_values"] = {c: list(v) for c, v in self.meta_values.items()}
        return settings, arrays

    @classmethod
    def from_state(cls, settings: dict[str, Any], arrays: dict[str, np.ndarray],
                   prefix: str = PREFIX) -> "ReferenceIndex":
        optional = {"cp_time", "cp_dose"}  # absent from the index of another layout
        get = {name: (np.asarray(arrays[f"{prefix}{name}"]) if name not in optional or f"{prefix}{name}" in arrays
                      else None) for name in cls._ARRAYS}
        return cls(**get, sig_ids=_decode_strings(arrays[f"{prefix}sig_ids"]),
                   drug_ids=_decode_strings(arrays[f"{prefix}drug_ids"]),
                   label_names=list(settings["label_names"]), n_scored=int(settings["n_scored"]),
                   ood_threshold=float(settings["ood_threshold"]), ood_quantile=float(settings["ood_quantile"]),
                   structure_threshold=float(settings.get("structure_threshold", 0.0)),
                   feature_columns=list(settings["feature_columns"]), info=dict(settings.get("info", {})),
                   meta_columns=list(settings.get("meta_columns", [])),
                   meta_values={c: list(v) for c, v in (settings.get("meta_values") or {}).items()},
                   meta_codes=(np.asarray(arrays[f"{prefix}meta_codes"]) if f"{prefix}meta_codes" in arrays
                               else None))


def reference_meta_columns(layout: Any) -> list[str]:
    """The columns that describe a reference of another layout: its treatment columns other than the compound
    (concentration), its meta columns, its plate and batch."""
    cols = [*layout.treatment, *layout.meta_categorical, *layout.meta_numeric, layout.plate, layout.batch]
    if layout.batch_from_plate:
        cols.append("batch")
    return [c for c in dict.fromkeys(cols) if c and c != layout.group]


def similar_profiles(bundle: Any, features: pd.DataFrame, k: int = 10, enrichment: int = 10) -> list[dict[str, Any]]:
    """For the web layer / CLI: per uploaded profile, {sig_id, neighbours: [...], enrichment: [...]}."""
    index = require_reference(bundle)
    found = index.neighbours(features, k=k, enrichment=enrichment)
    return [{"sig_id": str(s), **f} for s, f in zip(features.index, found)]


def require_reference(bundle: Any) -> ReferenceIndex:
    index = getattr(bundle, "reference", None)
    if index is None:
        raise DataError("this bundle has no reference index (it was trained before moa-predict stored one, or "
                        "with reference=False); retrain it with 'moa train' to get similar profiles and OOD flags.",
                        source=str(getattr(bundle, "path", "") or "bundle"))
    return index
