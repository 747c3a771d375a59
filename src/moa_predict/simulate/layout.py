"""A simulated Cell Painting data set in a CellProfiler-style layout (not LISH-MoA), with its ``layout.toml``.

The "any layout" reader (``data.profiles.reader.load_profiles``) needs a table to be exercised on that is
not LISH-MoA: per-well profiles of raw CellProfiler features (``Cells_AreaShape_...``, ``Nuclei_Intensity_...``,
``Cytoplasm_Texture_...``) with ``Metadata_`` columns for plate, well, compound, dose, perturbation type and batch.
``simulate_profiles`` writes one, deterministic from its seed, with the layout file that reads it and the
``SIMULATED.json`` marker every simulated set carries.

Generative model, per well *i* of compound *c* at dose *d* on plate *p* (features *j* in standard units):

``z_ij = s(c, d) * (sum over the compound's MoAs m of U_m w_cm)_j + s(c, d) * o_cj + b_ij + e_ij``

* ``U_m``: a random orthonormal basis of a small subspace (``SUBSPACE_DIM``) per MoA; ``w_cm`` the compound's
  coordinates in it, its MoA's centre plus a compound-specific deviation (compounds of one MoA look alike, not the
  same); ``o_cj`` a compound-specific offset outside any MoA subspace;
* ``s(c, d) = log(1 + d / EC50_c)``: the effect grows with log dose, EC50 drawn per compound;
* ``b_ij``: a low-rank biological background shared by all wells (cell count, cell cycle), ``e_ij`` noise.

Raw values: ``x_ij = m_pj * (mu_j + sd_j * z_ij) + a_pj`` with a feature's own scale (areas in pixels,
intensities in (0, 1), texture statistics) and plate effects: a multiplicative ``m_pj`` and an additive ``a_pj``,
each a batch part plus a plate part, large next to the signal, so reading without per-plate normalisation to the
control wells (DMSO) loses most of it. A few cells are left empty (NaN), as CellProfiler leaves them.
"""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.profiles import schema
from ..data.formats.io import atomic_path, write_table, write_text
from ..data.profiles.layout import Block, Controls, Labels, Layout, dump_layout

LABEL_MODES = ("single", "multi", "annotation")
DEFAULT_BLOCKS: dict[str, int] = {"Cells": 40, "Nuclei": 30, "Cytoplasm": 30}
DOSES_UM: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0, 10.0)
"""Concentrations (µM) a compound is tested at (a half-log series)."""
SUBSPACE_DIM = 3
"""Dimension of each MoA's signal subspace."""
MOA_STRENGTH = (2.5, 4.5)
"""Range of the length of a MoA's signal vector at s(c, d) = 1, in units of the per-feature noise sd."""
COMPOUND_SPREAD = 0.35
"""A compound's deviation from its MoA's centre, relative to the centre's length."""
COMPOUND_OFFSET = 0.25
"""Sd per feature of a compound's own offset (scaled by s(c, d) like the MoA signal)."""
MULTI_FRACTION = 0.3
"""In label mode "multi", the fraction of compounds that carry a second MoA."""
MISSING_FRACTION = 0.0005
"""Fraction of feature cells left empty (at least one)."""
PLATES_PER_BATCH = 2

MOA_NAMES: tuple[str, ...] = (
    "tubulin polymerization inhibitor", "HDAC inhibitor", "proteasome inhibitor", "Aurora kinase inhibitor",
    "DNA synthesis inhibitor", "Eg5 inhibitor", "actin disruptor", "HMGCR inhibitor", "protein synthesis inhibitor",
    "topoisomerase inhibitor", "microtubule stabilizer", "CDK inhibitor", "HSP inhibitor", "mTOR inhibitor",
    "EGFR inhibitor", "glucocorticoid receptor agonist",
)
"""MoA names in the style of the Drug Repurposing Hub (never containing ``|``); more MoAs get numbered names."""

CHANNELS = ("DNA", "ER", "RNA", "AGP", "Mito")
_AREASHAPE = ("Area", "Perimeter", "FormFactor", "Eccentricity", "Solidity", "Extent", "Compactness",
              "MajorAxisLength", "MinorAxisLength", "MaxFeretDiameter", "MinFeretDiameter", "MeanRadius",
              "MedianRadius", "MaximumRadius", "Orientation", "EulerNumber", "BoundingBoxArea", "ConvexArea",
              "EquivalentDiameter") + tuple(f"Zernike_{n}_{m}" for n in range(10) for m in range(n % 2, n + 1, 2))
_INTENSITY = ("MeanIntensity", "MedianIntensity", "IntegratedIntensity", "StdIntensity", "MaxIntensity",
              "MinIntensity", "LowerQuartileIntensity", "UpperQuartileIntensity", "MADIntensity",
              "MassDisplacement", "IntegratedIntensityEdge", "MeanIntensityEdge")
_TEXTURE = ("AngularSecondMoment", "Contrast", "Correlation", "Variance", "InverseDifferenceMoment", "SumAverage",
            "SumVariance", "SumEntropy", "Entropy", "DifferenceVariance", "DifferenceEntropy", "InfoMeas1",
            "InfoMeas2")
_GRANULARITY = tuple(range(1, 17))
_RADIAL = ("FracAtD", "MeanFrac", "RadialCV")


def simulate_profiles(out_dir: str | Path, *, n_compounds: int = 24, n_moas: int = 6, plates: int = 4,
                      wells_per_plate: int = 96, controls_per_plate: int = 16,
                      n_features_per_block: dict[str, int] | None = None, label_mode: str = "single",
                      seed: int = 0) -> Path:
    """Write a simulated Cell Painting profile table to `out_dir` and return the directory.

    Files: ``profiles.csv.gz`` (one row per well: ``Metadata_`` columns, then raw features), ``layout.toml`` (how
    ``load_profiles`` reads it), ``annotation.csv`` in label mode "annotation", ``simulation_truth.json`` (every
    compound's MoAs, EC50 and plates) and the ``SIMULATED.json`` marker. Label modes: "single" (one MoA per
    compound in ``Metadata_moa``), "multi" (some compounds carry two, joined by ``|``), "annotation" (no label
    column; ``annotation.csv`` maps compound -> MoA and leaves one compound out on purpose).
    """
    blocks = dict(DEFAULT_BLOCKS if n_features_per_block is None else n_features_per_block)
    _check(n_compounds, n_moas, plates, wells_per_plate, controls_per_plate, blocks, label_mode)
    rng = np.random.default_rng(seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    # -- compounds, MoAs, potencies ------------------------------------------------------------------------------
    moas = [MOA_NAMES[m] if m < len(MOA_NAMES) else f"MoA {m + 1}" for m in range(n_moas)]
    compounds = _compound_names(rng, n_compounds)
    primary = np.arange(n_compounds) % n_moas  # every MoA gets >= 2 compounds (n_compounds >= 2 * n_moas)
    rng.shuffle(primary)
    compound_moas: list[list[int]] = [[int(m)] for m in primary]
    if label_mode == "multi":
        n_multi = max(1, round(MULTI_FRACTION * n_compounds))
        for c in rng.choice(n_compounds, n_multi, replace=False):
            second = int(rng.choice([m for m in range(n_moas) if m != primary[c]]))
            compound_moas[c].append(second)
    ec50 = np.exp(rng.normal(np.log(1.0), 0.8, n_compounds))  # µM

    # -- plate map -----------------------------------------------------------------------------------------------
    treated_per_plate = wells_per_plate - controls_per_plate
    plate_names = [f"SQ{14810 + p:08d}" for p in range(plates)]
    batches = [f"Batch_{p // PLATES_PER_BATCH + 1}" for p in range(plates)]
    wells = _well_names(wells_per_plate)
    plate_of, compound_of, dose_of = _plate_map(rng, n_compounds, plates, treated_per_plate)
    rows = []
    for p in range(plates):
        positions = rng.permutation(wells_per_plate)
        slots = np.flatnonzero(plate_of == p)
        for k, pos in enumerate(positions):
            if k < controls_per_plate:
                rows.append((p, int(pos), -1, 0.0))
            else:
                s = slots[k - controls_per_plate]
                rows.append((p, int(pos), int(compound_of[s]), float(dose_of[s])))
    rows.sort(key=lambda r: (r[0], r[1]))  # plate, then well order, as plate readers export
    plate_idx = np.array([r[0] for r in rows])
    comp_idx = np.array([r[2] for r in rows])
    dose = np.array([r[3] for r in rows])

    # -- features ------------------------------------------------------------------------------------------------
    names = [n for block, k in blocks.items() for n in _feature_names(block, k)]
    n_feat = len(names)
    n = len(rows)
    bases = [np.linalg.qr(rng.normal(size=(n_feat, SUBSPACE_DIM)))[0] for _ in range(n_moas)]
    centres = []
    for _ in range(n_moas):
        w = rng.normal(size=SUBSPACE_DIM)
        centres.append(w / np.linalg.norm(w) * rng.uniform(*MOA_STRENGTH))
    signature = np.zeros((n_compounds, n_feat))
    for c in range(n_compounds):
        for rank, m in enumerate(compound_moas[c]):
            w = centres[m] + rng.normal(size=SUBSPACE_DIM) * COMPOUND_SPREAD * np.linalg.norm(centres[m]) / math.sqrt(
                SUBSPACE_DIM)
            signature[c] += (1.0 if rank == 0 else 0.8) * (bases[m] @ w)
        signature[c] += rng.normal(0.0, COMPOUND_OFFSET, n_feat)
    treated = comp_idx >= 0
    strength = np.zeros(n)
    strength[treated] = np.log1p(dose[treated] / ec50[comp_idx[treated]])
    background = rng.normal(size=(n, 2)) @ (rng.normal(size=(2, n_feat)) * 0.5)
    z = background + rng.normal(size=(n, n_feat))
    z[treated] += strength[treated, None] * signature[comp_idx[treated]]

    mu, sd = _feature_scales(rng, names)
    batch_of_plate = np.array([p // PLATES_PER_BATCH for p in range(plates)])
    n_batches = int(batch_of_plate.max()) + 1
    add = (rng.normal(0.0, 1.5, (n_batches, n_feat))[batch_of_plate] + rng.normal(0.0, 1.0, (plates, n_feat))) * sd
    mult = np.exp(rng.normal(0.0, 0.15, (n_batches, n_feat))[batch_of_plate] + rng.normal(0.0, 0.1, (plates, n_feat)))
    raw = mult[plate_idx] * (mu + sd * z) + add[plate_idx]
    n_missing = max(1, round(MISSING_FRACTION * raw.size))
    flat = rng.choice(raw.size, n_missing, replace=False)
    raw.flat[flat] = np.nan

    # -- tables --------------------------------------------------------------------------------------------------
    meta = pd.DataFrame({
        "Metadata_Plate": [plate_names[p] for p in plate_idx],
        "Metadata_Well": [wells[r[1]] for r in rows],
        "Metadata_compound": ["DMSO" if c < 0 else compounds[c] for c in comp_idx],
        "Metadata_dose": dose,
        "Metadata_pert_type": np.where(treated, "trt", "control"),
        "Metadata_batch": [batches[p] for p in plate_idx],
    })
    if label_mode != "annotation":
        meta["Metadata_moa"] = ["" if c < 0 else "|".join(moas[m] for m in compound_moas[c]) for c in comp_idx]
    table = pd.concat([meta, pd.DataFrame(raw, columns=names)], axis=1)
    _write_csv_gz(table, out / "profiles.csv.gz")

    unannotated = None
    if label_mode == "annotation":
        # leave out a compound of the MoA with most compounds, so every MoA keeps as many labelled ones as it can
        counts = np.bincount(primary, minlength=n_moas)
        unannotated = int(np.flatnonzero(primary == int(np.argmax(counts)))[-1])
        ann = pd.DataFrame({"compound": compounds, "moa": [moas[m[0]] for m in compound_moas]})
        write_table(ann.drop(index=unannotated).reset_index(drop=True), out / "annotation.csv")

    layout = cellpainting_layout(label_mode, list(blocks))
    comment = (f"SIMULATED Cell Painting profiles (moa simulate --layout-kind cellpainting --label-mode {label_mode} "
               f"--seed {seed}); not measured data.")
    write_text(dump_layout(layout, comment), out / "layout.toml")

    truth = {"mode": "cellpainting", "seed": seed, "label_mode": label_mode, "moas": moas,
             "compounds": {compounds[c]: {"moas": [moas[m] for m in compound_moas[c]], "ec50_um": float(ec50[c]),
                                          "plates": sorted({plate_names[p] for p in plate_idx[comp_idx == c]})}
                           for c in range(n_compounds)},
             "unannotated_compound": None if unannotated is None else compounds[unannotated],
             "missing_cells": int(n_missing)}
    write_text(json.dumps(truth, indent=1), out / "simulation_truth.json")
    marker = {"simulated": True, "mode": "cellpainting", "seed": seed,
              "note": "features SIMULATED by moa-predict's simulator (Cell Painting layout, synthetic compounds and "
                      "labels); not measured data"}
    write_text(json.dumps(marker, indent=1), out / schema.SIMULATED_MARKER)
    return out


def cellpainting_layout(label_mode: str = "single", blocks: list[str] | tuple[str, ...] = tuple(DEFAULT_BLOCKS),
                        pca: int = 5) -> Layout:
    """The layout of ``simulate_profiles``'s table for a label mode (labels from the column, the column split on
    ``|``, or ``annotation.csv``)."""
    if label_mode not in LABEL_MODES:
        raise ValueError(f"label_mode must be one of {', '.join(LABEL_MODES)}, not {label_mode!r}")
    labels = {"single": Labels("column", column="Metadata_moa"),
              "multi": Labels("column", column="Metadata_moa", separator="|"),
              "annotation": Labels("annotation", file="annotation.csv", on=(("Metadata_compound", "compound"),),
                                   column="moa")}[label_mode]
    return Layout(name=f"simulated-cellpainting-{label_mode}", id=("Metadata_Plate", "Metadata_Well"),
                  group="Metadata_compound", treatment=("Metadata_compound", "Metadata_dose"),
                  plate="Metadata_Plate", batch="Metadata_batch",
                  controls=Controls("Metadata_pert_type", ("control",)),
                  blocks=tuple(Block(b, prefix=f"{b}_", pca=pca) for b in blocks), labels=labels,
                  normalize="robust_z")


# -- pieces ------------------------------------------------------------------------------------------------------
def _check(n_compounds: int, n_moas: int, plates: int, wells_per_plate: int, controls_per_plate: int,
           blocks: dict[str, int], label_mode: str) -> None:
    if label_mode not in LABEL_MODES:
        raise ValueError(f"label_mode must be one of {', '.join(LABEL_MODES)}, not {label_mode!r}")
    if n_moas < 2 or n_compounds < 2 * n_moas:
        raise ValueError("need n_moas >= 2 and n_compounds >= 2 * n_moas (grouped cross-validation needs at least "
                         "two compounds per MoA)")
    if plates < 2:
        raise ValueError("need plates >= 2 (every compound is put on several plates)")
    if controls_per_plate < 3:
        raise ValueError("need controls_per_plate >= 3 (robust z-scores per plate need control wells)")
    if wells_per_plate > 1536:
        raise ValueError("wells_per_plate is at most 1536")
    treated = plates * (wells_per_plate - controls_per_plate)
    if treated < 2 * n_compounds:
        raise ValueError(f"{treated} treated wells for {n_compounds} compounds: every compound needs at least two "
                         "wells (on two plates); add plates or wells")
    if not blocks or any(int(k) < 1 for k in blocks.values()):
        raise ValueError("n_features_per_block needs at least one block with >= 1 feature")
    names = list(blocks)
    if any(a != b and b.startswith(a + "_") for a in names for b in names) or any("_" in b or not b for b in names):
        raise ValueError("block names are CellProfiler compartments (Cells, Nuclei, Cytoplasm, ...): non-empty, "
                         "without '_'")


def _compound_names(rng: np.random.Generator, n: int) -> list[str]:
    """Broad-style compound ids (``BRD-K12345678``), distinct."""
    ids = rng.choice(10**8, n, replace=False)
    return [f"BRD-K{i:08d}" for i in ids]


def _well_names(n: int) -> list[str]:
    """A01, A02, ... in row-major order on the smallest standard plate holding `n` wells (96, 384, 1536)."""
    n_rows, n_cols = next((r, c) for r, c in ((8, 12), (16, 24), (32, 48)) if r * c >= n)
    letters = [chr(65 + i) if i < 26 else "A" + chr(65 + i - 26) for i in range(n_rows)]
    return [f"{letters[r]}{c + 1:02d}" for r in range(n_rows) for c in range(n_cols)][:n]


def _plate_map(rng: np.random.Generator, n_compounds: int, plates: int, per_plate: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(plate, compound, dose) of every treated slot. Compounds fill the slots in turn, each at its doses in turn;
    each well goes to the plate where that compound has fewest wells yet (ties: the emptiest plate, then chance),
    so every compound is spread over several plates and plates fill evenly."""
    total = plates * per_plate
    compound = np.arange(total) % n_compounds
    dose_at = np.array(DOSES_UM)[(np.arange(total) // n_compounds) % len(DOSES_UM)]
    free = np.full(plates, per_plate)
    on_plate = np.zeros((n_compounds, plates), int)
    plate = np.empty(total, int)
    for s in range(total):
        c = compound[s]
        key = [(on_plate[c, p], -free[p], rng.random()) if free[p] > 0 else (math.inf, 0, 0.0) for p in range(plates)]
        p = min(range(plates), key=key.__getitem__)
        plate[s] = p
        free[p] -= 1
        on_plate[c, p] += 1
    return plate, compound, dose_at


def _feature_names(block: str, k: int) -> list[str]:
    """`k` distinct CellProfiler-style names for compartment `block`, cycling through the measurement families
    (AreaShape, Intensity, Texture, Granularity, RadialDistribution; nuclei have no radial distribution)."""
    families: list[list[str]] = [
        [f"AreaShape_{m}" for m in _AREASHAPE],
        [f"Intensity_{m}_{ch}" for m in _INTENSITY for ch in CHANNELS],
        [f"Texture_{m}_{ch}_{scale}_{angle:02d}_256" for scale in (3, 5, 10) for m in _TEXTURE for ch in CHANNELS
         for angle in range(4)],
        [f"Granularity_{g}_{ch}" for g in _GRANULARITY for ch in CHANNELS],
    ]
    if block != "Nuclei":
        families.append([f"RadialDistribution_{m}_{ch}_{r}of4" for m in _RADIAL for ch in CHANNELS
                         for r in range(1, 5)])
    names: list[str] = []
    i = 0
    while len(names) < k:
        fam = families[i % len(families)]
        j = i // len(families)
        if j < len(fam):
            names.append(f"{block}_{fam[j]}")
        elif all(i // len(families) >= len(f) for f in families):
            names.append(f"{block}_Texture_Extra_{len(names)}")  # only past tens of thousands of features
        i += 1
    return names


def _feature_scales(rng: np.random.Generator, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Each feature's control mean and sd in its own units: areas and lengths in pixels, intensities in (0, 1),
    shape ratios in (0, 1), texture and granularity statistics of their usual size."""
    mu = np.empty(len(names))
    sd = np.empty(len(names))
    for j, name in enumerate(names):
        family = name.split("_")[1]
        if family == "AreaShape":
            measure = name.split("_")[2]
            if measure in ("Area", "BoundingBoxArea", "ConvexArea"):
                m = rng.uniform(300, 3000)
            elif measure in ("FormFactor", "Eccentricity", "Solidity", "Extent", "Zernike"):
                m = rng.uniform(0.05, 0.9)
            elif measure in ("EulerNumber", "Compactness"):
                m = rng.uniform(0.9, 1.5)
            else:
                m = rng.uniform(5, 60)
            cv = rng.uniform(0.05, 0.2)
        elif family == "Intensity":
            m = rng.uniform(20, 200) if "Integrated" in name else rng.uniform(0.02, 0.4)
            cv = rng.uniform(0.08, 0.25)
        elif family == "Granularity":
            m, cv = rng.uniform(0.5, 8.0), rng.uniform(0.1, 0.3)
        elif family == "RadialDistribution":
            m, cv = rng.uniform(0.1, 1.2), rng.uniform(0.05, 0.15)
        else:  # Texture
            m, cv = rng.uniform(0.5, 40.0), rng.uniform(0.05, 0.2)
        mu[j], sd[j] = m, m * cv
    return mu, sd


def _write_csv_gz(frame: pd.DataFrame, path: Path) -> Path:
    """A gzip CSV written atomically, byte-identical for identical frames (no time stamp in the gzip header)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh, gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=0) as gz:
            gz.write(frame.to_csv(index=False, float_format="%.6g").encode("utf-8"))
    return path
