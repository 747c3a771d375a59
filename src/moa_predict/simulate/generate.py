"""A realistic simulator of the LISH-MoA feature files.

The real ``train_features.csv`` / ``test_features.csv`` cannot be obtained on these machines, so every
figure in this project is computed on simulated features.  The simulator reproduces the real file layout
exactly and the published marginal and correlation statistics of the real features closely, and it plants
a MoA signal whose predictability resembles the real data's: about thirty targets (proteasome, HSP,
tubulin, CDK, kinase inhibitors, glucocorticoids, ...) are well predictable, most receptor agonist /
antagonist classes are close to unpredictable, drugs differ in potency and many labelled drugs show no
effect at all, and every drug has its own idiosyncratic response, so a split grouped by drug is clearly
harder than a split by rows.

Two modes:

* synthetic (``labels_from=None``): drugs, label sets and drug sizes are drawn from the catalog of the real
  label files shipped with the package (``moa_catalog.json``, made by ``bench/make_catalog.py``), so target
  prevalences, label cardinalities, label co-occurrence and drug sizes match the real data in expectation;
* conditioned (``labels_from=DIR``): the real ``sig_id``s, drug ids, control rows and label matrices are
  kept exactly; only the features are generated.  The test rows take the ``sample_submission.csv`` ids.

In both modes the test profiles come from NEW drugs (drug ids not in the training set), generated exactly
like the training drugs, which is the honest setting for judging generalisation to unseen compounds.

Generative model (per profile *i* of drug *d*, effect size ``m_i`` set by dose and time):

``g_i = B z_i + lambda * v_i + m_i * r_d + noise``, ``c_i = a * v_i + noise``, ``v_i = u_i - m_i * tau_d``

where ``B z_i`` is a low-rank background, ``v_i`` the cell-viability state (``tau_d`` the drug's
cytotoxicity, which drives the pile of c- values at -10), and ``r_d`` the drug's gene response: the sum of
the signatures of the MoAs it is active for (sparse signed gene sets, strength per target; co-occurring
MoAs share part of their signature) plus the drug's own idiosyncratic effect.  Controls get the background
and noise only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.profiles import schema

# --------------------------------------------------------------------------------------------------------
# Knobs of the generative model (calibrated with bench/calibrate_simulator.py, see the module docstring).
# --------------------------------------------------------------------------------------------------------

STRONG_TARGETS: tuple[str, ...] = (
    "proteasome_inhibitor", "nfkb_inhibitor", "raf_inhibitor", "hmgcr_inhibitor", "egfr_inhibitor",
    "cdk_inhibitor", "kit_inhibitor", "pdgfr_inhibitor", "flt3_inhibitor", "glucocorticoid_receptor_agonist",
    "tubulin_inhibitor", "hsp_inhibitor", "mek_inhibitor", "aurora_kinase_inhibitor", "topoisomerase_inhibitor",
    "hdac_inhibitor", "jak_inhibitor", "mtor_inhibitor", "vegfr_inhibitor", "pi3k_inhibitor", "atpase_inhibitor",
    "protein_synthesis_inhibitor", "bromodomain_inhibitor", "chk_inhibitor", "mdm_inhibitor",
    "ribonucleoside_reductase_inhibitor", "rna_polymerase_inhibitor", "bcr-abl_inhibitor",
    "thymidylate_synthase_inhibitor", "corticosteroid_agonist", "monopolar_spindle_1_kinase_inhibitor",
)
"""About thirty real targets whose compounds leave a strong, consistent transcriptional footprint."""

MODERATE_TARGETS: tuple[str, ...] = (
    "dna_inhibitor", "akt_inhibitor", "alk_inhibitor", "atr_kinase_inhibitor", "atm_kinase_inhibitor",
    "btk_inhibitor", "casein_kinase_inhibitor", "fgfr_inhibitor", "focal_adhesion_kinase_inhibitor", "gsk_inhibitor",
    "igf-1_inhibitor", "ikk_inhibitor", "p38_mapk_inhibitor", "parp_inhibitor", "pkc_inhibitor", "src_inhibitor",
    "syk_inhibitor", "tgf-beta_receptor_inhibitor", "tyrosine_kinase_inhibitor", "protein_tyrosine_kinase_inhibitor",
    "rho_associated_kinase_inhibitor", "wnt_inhibitor", "histone_lysine_demethylase_inhibitor",
    "histone_lysine_methyltransferase_inhibitor", "gamma_secretase_inhibitor", "bcl_inhibitor",
    "dna_alkylating_agent", "apoptosis_stimulant", "dihydrofolate_reductase_inhibitor",
    "estrogen_receptor_agonist", "progesterone_receptor_agonist", "retinoid_receptor_agonist",
    "androgen_receptor_agonist", "vitamin_d_receptor_agonist", "ppar_receptor_agonist", "lxr_agonist",
    "membrane_integrity_inhibitor", "atp_synthase_inhibitor", "pdk_inhibitor", "nrf2_activator",
    "immunosuppressant", "protein_kinase_inhibitor", "erbb2_inhibitor", "angiogenesis_inhibitor",
    "cholesterol_inhibitor", "smoothened_receptor_antagonist", "farnesyltransferase_inhibitor",
    "tropomyosin_receptor_kinase_inhibitor", "calcineurin_inhibitor", "caspase_activator",
)
"""Targets with a partial, less consistent footprint (other kinases, epigenetic and nuclear-receptor classes)."""

CYTOTOXIC_TARGETS: dict[str, float] = {
    "proteasome_inhibitor": 1.0, "hsp_inhibitor": 0.8, "atpase_inhibitor": 0.85, "protein_synthesis_inhibitor": 0.85,
    "rna_polymerase_inhibitor": 0.75, "tubulin_inhibitor": 0.7, "topoisomerase_inhibitor": 0.7, "cdk_inhibitor": 0.6,
    "hdac_inhibitor": 0.55, "aurora_kinase_inhibitor": 0.5, "monopolar_spindle_1_kinase_inhibitor": 0.5,
    "membrane_integrity_inhibitor": 0.5, "dna_inhibitor": 0.4, "chk_inhibitor": 0.4,
    "ribonucleoside_reductase_inhibitor": 0.4, "apoptosis_stimulant": 0.4, "bromodomain_inhibitor": 0.35,
    "mdm_inhibitor": 0.3, "thymidylate_synthase_inhibitor": 0.3, "dna_alkylating_agent": 0.3, "bcl_inhibitor": 0.3,
    "nfkb_inhibitor": 0.25, "mtor_inhibitor": 0.2, "pi3k_inhibitor": 0.2, "caspase_activator": 0.3,
}
"""How strongly an active compound of the class kills cells (0..1; 1 = the whole c- block at about -10)."""

DOSE_EFFECT = {"D1": 0.8, "D2": 1.0}
TIME_EFFECT = {24: 0.75, 48: 1.0, 72: 1.2}
"""Effect-size multipliers: the higher dose and later times give stronger responses (labels unchanged)."""

DOSE_TIME_CYCLE: tuple[tuple[str, int], ...] = tuple((d, t) for d in schema.CP_DOSES for t in schema.CP_TIMES)

_P = {
    # background
    "n_factors": 12,
    "factor_scale": 0.08,
    "gene_noise": 0.63,
    "gene_noise_df": 5.0,
    "control_scale": 0.85,
    "viability_sd": 0.45,
    "viability_rho_min": 0.2,
    "viability_rho_max": 0.97,
    "viability_rho_power": 2.5,
    "viability_loading": 0.47,
    "cell_loading_low": 0.85,
    "cell_loading_high": 1.0,
    "cell_noise_low": 0.45,
    "cell_noise_high": 0.7,
    "cell_noise_df": 8.0,
    "cell_sens_low": 0.1,
    "cell_sens_high": 0.75,
    # drugs
    "potency_mu": -0.6,
    "potency_sigma": 0.9,
    "signature_genes": (20, 80),
    "n_programs": 40,
    "program_genes": (40, 120),
    "program_share": 0.7,
    "idio_program": 0.5,
    "responsiveness_shape": 0.7,
    "signature_amp": 2.0,
    "moa_potency_exp": 0.5,
    "shared_signature": 0.8,
    "strong_strength": (0.75, 1.0),
    "moderate_strength": (0.3, 0.55),
    "weak_strength": (0.0, 0.12),
    "nonscored_strength": (0.0, 0.35),
    "activity_base": 0.15,
    "activity_slope": 0.75,
    "inactive_residual": 0.1,
    "drug_signature_jitter": 0.35,
    "idio_scale": 1.5,
    "idio_genes": (20, 100),
    "idio_lowrank": 0.1,
    "tox_max": 9.0,
    "kill_power": 3.0,
    "kill_saturation": 12.0,
    "random_tox_prob": 0.06,
    "random_tox_low": 0.5,
    "random_tox_high": 1.3,
    "profile_jitter": 0.15,
    "zero_threshold": 0.0041,
}


# --------------------------------------------------------------------------------------------------------
# Catalog
# --------------------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def load_catalog() -> dict:
    """The facts distilled from the real label files (targets, counts, drug sizes, label sets)."""
    text = resources.files("moa_predict.data").joinpath("moa_catalog.json").read_text(encoding="utf-8")
    return json.loads(text)


# --------------------------------------------------------------------------------------------------------
# Result container
# --------------------------------------------------------------------------------------------------------


@dataclass
class SimulatedData:
    """One simulated data set in the LISH-MoA layout (plus the ground truth the real files do not carry)."""

    train_features: pd.DataFrame
    targets_scored: pd.DataFrame
    targets_nonscored: pd.DataFrame
    drugs: pd.DataFrame
    test_features: pd.DataFrame
    sample_submission: pd.DataFrame
    test_targets_scored: pd.DataFrame
    """Simulator-only: the true scored labels of the test rows, so demos can score predictions."""
    truth: dict = field(default_factory=dict)
    """JSON-able: seed, mode and, per scored MoA, its signal strength and the features carrying its signal."""


# --------------------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------------------


def _hex_ids(rng: np.random.Generator, n: int, taken: set[str] = frozenset()) -> list[str]:
    """``n`` distinct random 9-character lowercase hex strings, avoiding ``taken``."""
    out: list[str] = []
    seen = set(taken)
    while len(out) < n:
        draw = rng.integers(0, 16**9, size=(n - len(out)) * 2 + 8, dtype=np.int64)
        for v in draw:
            s = format(int(v), "09x")
            if s not in seen:
                seen.add(s)
                out.append(s)
                if len(out) == n:
                    break
    return out


def _round_sig(x: np.ndarray, digits: int = 4) -> np.ndarray:
    """Round to ``digits`` significant digits, so memory holds exactly what the CSV (``%.4g``) holds."""
    x = np.asarray(x, dtype=np.float64)
    ax = np.abs(x)
    with np.errstate(divide="ignore", invalid="ignore"):
        exp = np.floor(np.log10(np.where(ax > 0, ax, 1.0)))
    scale = 10.0 ** (digits - 1 - exp)
    return np.round(x * scale) / scale


def _uniform(rng: np.random.Generator, bounds: tuple[float, float], size=None) -> np.ndarray:
    return rng.uniform(bounds[0], bounds[1], size=size)


# --------------------------------------------------------------------------------------------------------
# The fixed "biology" of one simulated world (depends on the seed only)
# --------------------------------------------------------------------------------------------------------


@dataclass
class _World:
    factors: np.ndarray  # (n_factors, genes) background loadings
    programs: np.ndarray  # (n_programs, genes) gene programs that responses are built from
    death: np.ndarray  # (genes,) gene loading on the viability state
    cell_loading: np.ndarray  # (cells,)
    cell_noise: np.ndarray  # (cells,)
    cell_sensitivity_sd: np.ndarray  # (cells,) spread of the per-drug sensitivity of each cell line
    sig_scored: np.ndarray  # (206, genes)
    sig_nonscored: np.ndarray  # (402, genes)
    strength_scored: np.ndarray
    strength_nonscored: np.ndarray
    tox_scored: np.ndarray
    tox_nonscored: np.ndarray


def _strength_class(name: str) -> str:
    if name in STRONG_TARGETS:
        return "strong"
    if name in MODERATE_TARGETS:
        return "moderate"
    return "weak"


def _co_occurrence(catalog: dict) -> np.ndarray:
    """Overlap coefficient of scored targets over drugs: |drugs with both| / |drugs with the rarer one|.

    Only pairs sharing at least two drugs count (e.g. kit / pdgfr / flt3 / vegfr inhibitors).
    """
    n_targets = len(catalog["scored_targets"])
    together = np.zeros((n_targets, n_targets))
    records = [(ls["scored"], sum(ls["drug_sizes"].values())) for ls in catalog["label_sets"]]
    records += [(b["scored"], 1) for b in catalog["big_drugs"]]
    for scored, n_drugs in records:
        together[np.ix_(scored, scored)] += n_drugs
    n_of = np.diag(together).copy()
    overlap = together / np.maximum(np.minimum.outer(n_of, n_of), 1)
    overlap[together < 2] = 0.0
    np.fill_diagonal(overlap, 0.0)
    return overlap


def _sparse_signature(rng: np.random.Generator, responsiveness: np.ndarray, n_genes: int) -> np.ndarray:
    """A signed sparse gene vector with unit RMS over its genes; responsive genes are chosen more often."""
    vec = np.zeros(schema.N_GENES)
    idx = rng.choice(schema.N_GENES, size=n_genes, replace=False, p=responsiveness)
    w = rng.standard_normal(n_genes)
    vec[idx] = w / np.sqrt(np.mean(w**2))
    return vec


def _make_world(rng: np.random.Generator, catalog: dict) -> _World:
    p = _P
    n_g, n_c = schema.N_GENES, schema.N_CELLS
    factors = rng.standard_normal((p["n_factors"], n_g)) * p["factor_scale"]
    factors *= np.linspace(1.6, 0.5, p["n_factors"])[:, None]
    # Correlations of genes with the viability axis spread over [0, rho_max] (most genes weakly); a loading of
    # rho / sqrt(1 - rho^2) (times the ratio of the other gene variation to the viability variation)
    # gives that correlation, which yields the real spread of g-g correlations and the ~25 % first PC.
    lo, hi = p["viability_rho_min"], p["viability_rho_max"]
    rho = lo + (hi - lo) * rng.uniform(0.0, 1.0, n_g) ** p["viability_rho_power"]
    death = p["viability_loading"] * rho / np.sqrt(1.0 - rho**2) * rng.choice([-1.0, 1.0], n_g)
    cell_loading = rng.uniform(p["cell_loading_low"], p["cell_loading_high"], n_c)
    cell_noise = rng.uniform(p["cell_noise_low"], p["cell_noise_high"], n_c)
    cell_sens = rng.uniform(p["cell_sens_low"], p["cell_sens_high"], n_c)

    responsiveness = rng.gamma(p["responsiveness_shape"], 1.0, n_g)
    responsiveness /= responsiveness.sum()

    # Gene programs: co-regulated gene sets that many perturbations act through.  A MoA signature is a
    # signed mix of one to three programs plus a private sparse part, so responses share a low-dimensional
    # structure (as real L1000 responses do) and different MoAs partly overlap.
    programs = np.array([
        _sparse_signature(rng, responsiveness, int(rng.integers(*p["program_genes"])))
        for _ in range(p["n_programs"])
    ])

    def signatures(names: list[str], strength_of) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        sig = np.zeros((len(names), n_g))
        strength = np.zeros(len(names))
        tox = np.zeros(len(names))
        for j, name in enumerate(names):
            n_genes = int(rng.integers(p["signature_genes"][0], p["signature_genes"][1] + 1))
            private = _sparse_signature(rng, responsiveness, n_genes)
            chosen = rng.choice(p["n_programs"], size=int(rng.integers(1, 4)), replace=False)
            mix = rng.standard_normal(len(chosen)) @ programs[chosen]
            mix /= np.sqrt(np.mean(mix[mix != 0] ** 2))
            v = p["program_share"] * mix + np.sqrt(1 - p["program_share"] ** 2) * private
            sig[j] = v / np.sqrt(np.mean(v[v != 0] ** 2))
            strength[j] = strength_of(name)
            tox[j] = CYTOTOXIC_TARGETS.get(name, 0.0)
        return sig, strength, tox

    def scored_strength(name: str) -> float:
        return float(_uniform(rng, p[f"{_strength_class(name)}_strength"]))

    sig_s, str_s, tox_s = signatures(catalog["scored_targets"], scored_strength)
    sig_n, str_n, tox_n = signatures(
        catalog["nonscored_targets"], lambda _: float(rng.uniform(*p["nonscored_strength"]) ** 1.5)
    )
    # Co-occurring MoAs share part of their signature: each mixes in its partners' own parts, in
    # proportion to how often they are labelled together.
    overlap = _co_occurrence(catalog)
    mixed = sig_s + p["shared_signature"] * overlap @ sig_s
    rms = np.sqrt((mixed**2).sum(axis=1) / np.maximum((mixed != 0).sum(axis=1), 1))
    sig_s = mixed / rms[:, None]
    return _World(factors, programs, death, cell_loading, cell_noise, cell_sens, sig_s, sig_n, str_s, str_n, tox_s, tox_n)


# --------------------------------------------------------------------------------------------------------
# Drugs and profiles
# --------------------------------------------------------------------------------------------------------


@dataclass
class _Drugs:
    """Per-drug label sets (indices) and response; row ``k`` describes drug ``k``."""

    ids: list[str]
    scored: list[list[int]]
    nonscored: list[list[int]]
    reference: np.ndarray  # heavily replicated reference compounds: always active


def _drug_responses(rng: np.random.Generator, world: _World, drugs: _Drugs) -> tuple[np.ndarray, np.ndarray]:
    """Gene response ``r_d`` (drugs x genes) and cytotoxicity ``tau_d`` of each drug."""
    p = _P
    n = len(drugs.ids)
    potency = np.exp(rng.normal(p["potency_mu"], p["potency_sigma"], n))
    potency[drugs.reference] = np.maximum(potency[drugs.reference], 1.0) * 1.3
    resp = np.zeros((n, schema.N_GENES))
    tau = np.zeros(n)
    # Idiosyncratic effect: a low-rank part in the background space plus a sparse gene part.
    n_idio = rng.integers(p["idio_genes"][0], p["idio_genes"][1] + 1, n)
    for k in range(n):
        idx = rng.choice(schema.N_GENES, size=n_idio[k], replace=False)
        resp[k, idx] = rng.standard_normal(n_idio[k])
    low = rng.standard_normal((n, world.factors.shape[0])) @ world.factors
    resp += p["idio_lowrank"] * low / np.sqrt(np.mean(low**2, axis=1, keepdims=True))
    # Off-target activity through the shared gene programs (what makes MoAs confusable).
    n_prog = world.programs.shape[0]
    for k in range(n):
        chosen = rng.choice(n_prog, size=int(rng.integers(1, 3)), replace=False)
        resp[k] += p["idio_program"] * rng.standard_normal(len(chosen)) @ world.programs[chosen]
    resp *= (p["idio_scale"] * potency)[:, None]
    random_tox = rng.random(n) < p["random_tox_prob"]
    tau += random_tox * rng.uniform(p["random_tox_low"], p["random_tox_high"], n)

    for k in range(n):
        tox = 0.0
        for sig, strength, tox_of, labels in (
            (world.sig_scored, world.strength_scored, world.tox_scored, drugs.scored[k]),
            (world.sig_nonscored, world.strength_nonscored, world.tox_nonscored, drugs.nonscored[k]),
        ):
            for t in labels:
                s = strength[t]
                active = drugs.reference[k] or rng.random() < p["activity_base"] + p["activity_slope"] * s
                level = 1.0 if active else p["inactive_residual"]
                jitter = np.zeros(schema.N_GENES)
                nz = sig[t] != 0
                jitter[nz] = rng.standard_normal(nz.sum()) * p["drug_signature_jitter"]
                moa_potency = potency[k] ** p["moa_potency_exp"]
                resp[k] += level * moa_potency * p["signature_amp"] * 2.0 * s * (sig[t] + jitter)
                if active:
                    tox = max(tox, tox_of[t])
        tau[k] += tox * min(potency[k], 1.6) ** 0.5
    return resp.astype(np.float32), tau


def _profiles(
    rng: np.random.Generator,
    world: _World,
    drug_of_row: np.ndarray,
    is_control: np.ndarray,
    dose: np.ndarray,
    time: np.ndarray,
    resp: np.ndarray,
    tau: np.ndarray,
) -> np.ndarray:
    """Feature matrix (rows x 872, float32): background + viability + effect-size x drug response + noise."""
    p = _P
    n = len(drug_of_row)
    m = np.where(dose == "D2", DOSE_EFFECT["D2"], DOSE_EFFECT["D1"]) * np.select(
        [time == 24, time == 48], [TIME_EFFECT[24], TIME_EFFECT[48]], TIME_EFFECT[72]
    )
    m = m * np.exp(rng.normal(0.0, p["profile_jitter"], n))
    m[is_control] = 0.0
    scale = np.where(is_control, p["control_scale"], 1.0)

    z = rng.standard_normal((n, world.factors.shape[0])).astype(np.float32)
    g = z @ world.factors.astype(np.float32)
    t_sd = np.sqrt(p["gene_noise_df"] / (p["gene_noise_df"] - 2))
    g += (rng.standard_t(p["gene_noise_df"], (n, schema.N_GENES)) * (p["gene_noise"] / t_sd)).astype(np.float32)
    g *= scale[:, None].astype(np.float32)
    d = np.where(is_control, 0, drug_of_row)
    g += (m[:, None] * resp[d]).astype(np.float32)
    u = rng.normal(0.0, p["viability_sd"], n) * scale  # ordinary variation of cell viability
    # Loss of viability caused by the drug: sigmoid-like in effect size x cytotoxicity, saturating (dead is dead).
    kill = p["kill_saturation"] * np.tanh(p["tox_max"] * (m * tau[d]) ** p["kill_power"] / p["kill_saturation"])
    g += ((u - kill)[:, None] * world.death[None, :]).astype(np.float32)

    # Cell lines differ in how sensitive they are to each killing drug: this keeps the c-c correlations
    # below 1 in the cytotoxic tail without widening the body of the distribution.
    sens = np.exp(rng.normal(0.0, 1.0, (len(resp), schema.N_CELLS)) * world.cell_sensitivity_sd[None, :])
    c = u[:, None] * world.cell_loading[None, :] - kill[:, None] * (world.cell_loading[None, :] * sens[d])
    t_sd = np.sqrt(p["cell_noise_df"] / (p["cell_noise_df"] - 2))
    c += rng.standard_t(p["cell_noise_df"], (n, schema.N_CELLS)) * (world.cell_noise / t_sd)[None, :] * scale[:, None]
    x = np.concatenate([g, c.astype(np.float32)], axis=1)
    if n == 0:
        return x
    # Like the real robust z-scores (normalised against the plate population), each column's median is 0.
    x -= np.median(x, axis=0, keepdims=True)
    np.clip(x, schema.CLIP_LOW, schema.CLIP_HIGH, out=x)
    gene_part = x[:, : schema.N_GENES]
    gene_part[np.abs(gene_part) < p["zero_threshold"]] = 0.0
    return _round_sig(x).astype(np.float32)


def _assign_dose_time(rng: np.random.Generator, drug_of_row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each drug's profiles (in row order) cycle through the 6 (dose, time) combinations from a random start."""
    n_drugs = int(drug_of_row.max()) + 1 if len(drug_of_row) else 0
    start = rng.integers(0, len(DOSE_TIME_CYCLE), n_drugs)
    order = np.argsort(drug_of_row, kind="stable")
    sorted_drugs = drug_of_row[order]
    first = np.searchsorted(sorted_drugs, sorted_drugs, side="left")
    rank = np.empty(len(drug_of_row), dtype=np.int64)
    rank[order] = np.arange(len(order)) - first
    combo = (start[drug_of_row] + rank) % len(DOSE_TIME_CYCLE)
    dose = np.array([c[0] for c in DOSE_TIME_CYCLE], dtype=object)[combo]
    time = np.array([c[1] for c in DOSE_TIME_CYCLE], dtype=np.int64)[combo]
    return dose, time


# --------------------------------------------------------------------------------------------------------
# Label sets and synthetic drugs
# --------------------------------------------------------------------------------------------------------


def _catalog_label_sets(catalog: dict) -> tuple[list[tuple[list[int], list[int]]], np.ndarray, np.ndarray]:
    """The real small drugs as (label set, size) records: label sets, per-record set index and size."""
    sets, set_idx, sizes = [], [], []
    for k, ls in enumerate(catalog["label_sets"]):
        sets.append((ls["scored"], ls["nonscored"]))
        for size, count in ls["drug_sizes"].items():
            set_idx += [k] * count
            sizes += [int(size)] * count
    return sets, np.array(set_idx), np.array(sizes)


def _synthetic_drugs(
    rng: np.random.Generator, catalog: dict, n_treated: int, n_reference_rows: int, taken: set[str]
) -> tuple[_Drugs, np.ndarray]:
    """Draw drugs until ``n_treated`` rows are filled; returns the drugs and each row's drug index (shuffled).

    Small drugs resample the real (label set, size) records uniformly, so expected row prevalences, label
    cardinalities and co-occurrences equal the real ones; the eight heavily replicated reference compounds
    come with their real label sets, their sizes scaled to the requested number of rows.
    """
    sets, set_idx, sizes = _catalog_label_sets(catalog)
    scored: list[list[int]] = []
    nonscored: list[list[int]] = []
    drug_sizes: list[int] = []
    reference: list[bool] = []
    scale = n_reference_rows / (catalog["n_rows"] - catalog["n_control_rows"])
    for big in catalog["big_drugs"]:
        size = max(6, int(round(big["profiles"] * scale)))
        if sum(drug_sizes) + size > n_treated // 2:
            continue
        scored.append(list(big["scored"]))
        nonscored.append(list(big["nonscored"]))
        drug_sizes.append(size)
        reference.append(True)
    filled = sum(drug_sizes)
    while filled < n_treated:
        r = int(rng.integers(len(sizes)))
        size = min(int(sizes[r]), n_treated - filled)
        sc, ns = sets[set_idx[r]]
        scored.append(list(sc))
        nonscored.append(list(ns))
        drug_sizes.append(size)
        reference.append(False)
        filled += size
    ids = _hex_ids(rng, len(drug_sizes), taken | {schema.CONTROL_DRUG_ID})
    drug_of_row = np.repeat(np.arange(len(drug_sizes)), drug_sizes)
    drug_of_row = rng.permutation(drug_of_row)
    return _Drugs(ids, scored, nonscored, np.array(reference, dtype=bool)), drug_of_row


def _label_frame(sig_ids, names: list[str], label_lists: list[list[int]], drug_of_row, is_control) -> pd.DataFrame:
    y = np.zeros((len(sig_ids), len(names)), dtype=np.int64)
    for r in np.flatnonzero(~is_control):
        y[r, label_lists[drug_of_row[r]]] = 1
    frame = pd.DataFrame(y, columns=names)
    frame.insert(0, schema.SIG_ID, list(sig_ids))
    return frame


def _feature_frame(sig_ids, is_control, dose, time, x: np.ndarray) -> pd.DataFrame:
    meta = pd.DataFrame(
        {
            schema.SIG_ID: list(sig_ids),
            schema.CP_TYPE: np.where(is_control, schema.CONTROL, schema.TREATED),
            schema.CP_TIME: time.astype(np.int64),
            schema.CP_DOSE: dose.astype(str),
        }
    )
    feats = pd.DataFrame(x, columns=list(schema.FEATURE_COLUMNS), copy=False)
    return pd.concat([meta, feats], axis=1)


def _simulate_part(
    rng: np.random.Generator,
    world: _World,
    sig_ids: list[str],
    is_control: np.ndarray,
    drugs: _Drugs,
    drug_of_row: np.ndarray,
) -> pd.DataFrame:
    """Features for one file given the row -> drug assignment (``drug_of_row`` ignored for controls)."""
    resp, tau = _drug_responses(rng, world, drugs)
    assign = np.where(is_control, len(drugs.ids), drug_of_row)  # controls cycle as one extra "drug"
    dose, time = _assign_dose_time(rng, assign)
    x = _profiles(rng, world, drug_of_row, is_control, dose, time, resp, tau)
    return _feature_frame(sig_ids, is_control, dose, time, x)


# --------------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------------


def _read_real_labels(src: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    def read(name: str) -> pd.DataFrame:
        for suffix in schema.TABLE_SUFFIXES:
            path = src / f"{name}{suffix}"
            if path.exists():
                return pd.read_parquet(path) if suffix == ".parquet" else pd.read_csv(path)
        raise FileNotFoundError(f"{src} has no {name}.csv: labels_from must be a directory with the real label files")

    scored, nonscored, drugs = read(schema.TARGETS_SCORED), read(schema.TARGETS_NONSCORED), read(schema.DRUGS)
    submission = read(schema.SAMPLE_SUBMISSION)
    if not (scored[schema.SIG_ID].equals(drugs[schema.SIG_ID]) and scored[schema.SIG_ID].equals(nonscored[schema.SIG_ID])):
        raise ValueError(f"label files in {src} are not row-aligned on {schema.SIG_ID}")
    return scored, nonscored, drugs, submission


def _drug_split(drug_ids: pd.Series, share: float, seed: int, held_out: bool) -> np.ndarray:
    """Rows to keep: controls, and the drugs outside (or, with `held_out`, inside) a seeded `share` of the
    drugs. The draw depends on the drug ids and the seed only."""
    ids = drug_ids.astype(str).to_numpy()
    control = ids == schema.CONTROL_DRUG_ID
    drugs = np.unique(ids[~control])
    rng = np.random.default_rng([int(seed), 23])
    chosen = set(rng.choice(drugs, size=int(round(share * len(drugs))), replace=False).tolist())
    inside = np.array([d in chosen for d in ids])
    return control | (inside if held_out else ~inside & ~control)


def _random_sig_ids(rng: np.random.Generator, n: int, taken: set[str] = frozenset()) -> list[str]:
    return sorted("id_" + h for h in _hex_ids(rng, n, {t[3:] for t in taken}))


def simulate(
    n_train: int = 23814,
    n_test: int = 3982,
    seed: int = 0,
    labels_from: str | Path | None = None,
    world_seed: int | None = None,
    hold_out_drugs: float = 0.0,
    held_out_only: bool = False,
) -> SimulatedData:
    """Simulate a LISH-MoA data set (features SIMULATED, layout exact).

    ``labels_from=None``: fully synthetic, ``n_train`` / ``n_test`` rows.  ``labels_from=DIR`` (a directory
    with the real label files): the real sig_ids, drugs and labels are kept, only features are generated, and
    ``n_train`` / ``n_test`` are ignored (the sizes are the files').  Deterministic given ``seed``.

    ``world_seed`` (default: ``seed``) fixes the simulated biology (MoA signatures, cell lines, background), so
    two data sets with the same world seed and different seeds are two screens of the same biology with
    independent drugs' responses and noise. ``hold_out_drugs`` (``labels_from`` only): that share of the
    drugs, drawn with the world seed (so every run with that world seed agrees), is left out of the training
    files; ``held_out_only`` writes only those drugs instead (with the controls): a drug-disjoint second data
    set on which a model trained on the first can be checked.
    """
    rng = np.random.default_rng(seed)
    catalog = load_catalog()
    scored_names = list(catalog["scored_targets"])
    nonscored_names = list(catalog["nonscored_targets"])
    world = _make_world(rng, catalog)
    if world_seed is not None and world_seed != seed:  # the same biology as another seed's data set
        world = _make_world(np.random.default_rng(world_seed), catalog)
    if not 0.0 <= hold_out_drugs < 1.0:
        raise ValueError("hold_out_drugs must be a share in [0, 1)")
    if (hold_out_drugs or held_out_only) and labels_from is None:
        raise ValueError("hold_out_drugs / held_out_only need labels_from (the real drugs to split)")
    if held_out_only and not hold_out_drugs:
        raise ValueError("held_out_only needs hold_out_drugs > 0")

    if labels_from is None:
        if n_train < 1 or n_test < 0:
            raise ValueError("n_train must be >= 1 and n_test >= 0")
        n_ctrl = int(round(catalog["control_fraction"] * n_train))
        train_drugs, dor = _synthetic_drugs(rng, catalog, n_train - n_ctrl, n_train - n_ctrl, set())
        train_ids = _random_sig_ids(rng, n_train)
        is_ctrl = np.zeros(n_train, dtype=bool)
        is_ctrl[rng.choice(n_train, n_ctrl, replace=False)] = True
        drug_of_row = np.zeros(n_train, dtype=np.int64)
        drug_of_row[~is_ctrl] = dor
        mode = "synthetic"
        scored_frame = _label_frame(train_ids, scored_names, train_drugs.scored, drug_of_row, is_ctrl)
        nonscored_frame = _label_frame(train_ids, nonscored_names, train_drugs.nonscored, drug_of_row, is_ctrl)
        test_ids = _random_sig_ids(rng, n_test, set(train_ids))
    else:
        src = Path(labels_from)
        scored_frame, nonscored_frame, real_drugs, submission = _read_real_labels(src)
        if list(scored_frame.columns[1:]) != scored_names or list(nonscored_frame.columns[1:]) != nonscored_names:
            raise ValueError(f"the target columns in {src} differ from the real LISH-MoA targets")
        if hold_out_drugs:
            keep = _drug_split(real_drugs[schema.DRUG_ID], hold_out_drugs,
                               seed if world_seed is None else world_seed, held_out_only)
            scored_frame, nonscored_frame, real_drugs = (f.loc[keep].reset_index(drop=True)
                                                         for f in (scored_frame, nonscored_frame, real_drugs))
        train_ids = list(scored_frame[schema.SIG_ID])
        n_train = len(train_ids)
        is_ctrl = (real_drugs[schema.DRUG_ID] == schema.CONTROL_DRUG_ID).to_numpy()
        codes, uniques = pd.factorize(real_drugs[schema.DRUG_ID])
        s_mat = scored_frame[scored_names].to_numpy()
        n_mat = nonscored_frame[nonscored_names].to_numpy()
        first = pd.Series(np.arange(n_train)).groupby(codes).first().to_numpy()
        sizes = np.bincount(codes)
        train_drugs = _Drugs(
            [str(u) for u in uniques],
            [list(np.flatnonzero(s_mat[r])) for r in first],
            [list(np.flatnonzero(n_mat[r])) for r in first],
            sizes >= catalog["big_drug_min_profiles"],
        )
        train_drugs.reference[np.asarray(uniques) == schema.CONTROL_DRUG_ID] = False
        drug_of_row = codes.astype(np.int64)
        mode = "labels_from"
        test_ids = list(submission[schema.SIG_ID])
        n_test = len(test_ids)
        scored_frame = scored_frame.copy()
        nonscored_frame = nonscored_frame.copy()

    train_features = _simulate_part(rng, world, train_ids, is_ctrl, train_drugs, drug_of_row)
    drugs_frame = pd.DataFrame(
        {
            schema.SIG_ID: train_ids,
            schema.DRUG_ID: np.where(is_ctrl, schema.CONTROL_DRUG_ID, np.array(train_drugs.ids, dtype=object)[drug_of_row]),
        }
    )

    # Test: new drugs, generated the same way (reference compounds included, sizes scaled).
    n_test_ctrl = int(round(catalog["control_fraction"] * n_test))
    test_ctrl = np.zeros(n_test, dtype=bool)
    if n_test:
        test_ctrl[rng.choice(n_test, n_test_ctrl, replace=False)] = True
    test_drugs, tdor = _synthetic_drugs(rng, catalog, n_test - n_test_ctrl, n_test - n_test_ctrl, set(train_drugs.ids))
    test_dor = np.zeros(n_test, dtype=np.int64)
    test_dor[~test_ctrl] = tdor
    test_features = _simulate_part(rng, world, test_ids, test_ctrl, test_drugs, test_dor)
    test_targets = _label_frame(test_ids, scored_names, test_drugs.scored, test_dor, test_ctrl)
    submission = pd.DataFrame(0.5, index=range(n_test), columns=scored_names)
    submission.insert(0, schema.SIG_ID, test_ids)

    truth = _truth(world, seed, mode, scored_names, n_train, n_test)
    if world_seed is not None and world_seed != seed:
        truth["world_seed"] = int(world_seed)
    if hold_out_drugs:
        truth["drugs"] = (f"only the {hold_out_drugs:g} share of drugs held out (drawn with world seed "
                          f"{truth.get('world_seed', seed)})" if held_out_only else
                          f"without the {hold_out_drugs:g} share of drugs held out (drawn with world seed "
                          f"{truth.get('world_seed', seed)})")
    return SimulatedData(
        train_features=train_features,
        targets_scored=scored_frame,
        targets_nonscored=nonscored_frame,
        drugs=drugs_frame,
        test_features=test_features,
        sample_submission=submission,
        test_targets_scored=test_targets,
        truth=truth,
    )


def _truth(world: _World, seed: int, mode: str, names: list[str], n_train: int, n_test: int) -> dict:
    """Per scored MoA: its signal strength and the g-/c- features carrying its signal, by |weight|."""
    targets = {}
    for t, name in enumerate(names):
        s = float(world.strength_scored[t])
        w_gene = 2.0 * _P["signature_amp"] * s * world.sig_scored[t]
        feats = [(schema.GENE_COLUMNS[j], float(w_gene[j])) for j in np.flatnonzero(w_gene)]
        tox = float(world.tox_scored[t])
        if tox > 0:
            feats += [
                (schema.CELL_COLUMNS[j], float(-tox * _P["tox_max"] * world.cell_loading[j]))
                for j in range(schema.N_CELLS)
            ]
        feats.sort(key=lambda fw: -abs(fw[1]))
        targets[name] = {
            "strength": round(s, 4),
            "class": _strength_class(name),
            "cytotoxicity": round(tox, 4),
            "features": [f for f, _ in feats],
            "weights": [round(w, 4) for _, w in feats],
        }
    return {
        "seed": int(seed),
        "mode": mode,
        "n_train": int(n_train),
        "n_test": int(n_test),
        "test_drugs": "new drugs (none of the test drug ids occur in train_drug.csv)",
        "dose_effect": DOSE_EFFECT,
        "time_effect": {str(k): v for k, v in TIME_EFFECT.items()},
        "note": "features are SIMULATED by moa_predict.simulate; weights are per unit effect size",
        "targets": targets,
    }
