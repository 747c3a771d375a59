"""``moa benchmark real``: MoA calls on REAL data, BBBC021 (Caie et al. 2010; Ljosa et al. 2013), by the field's
protocol: each plate normalised to its DMSO wells, wells averaged per treatment (compound x concentration), each of
the 103 treatments classified without ever using its own compound (not-same-compound, NSC) and, stricter, also
without any treatment from its batch (the week in the plate name; NSCB).

* the field's baseline: 1-nearest neighbour by correlation between treatment means;
* moa-predict's models, trained through ``training.train.train_bundle`` (what ``moa train`` runs) on the wells of
  every other compound (NSC; for NSCB also without the wells of the query's batches), then asked for the MoA of the
  query's treatment mean, (a) on the layout ``moa layout infer`` proposes, unedited (what a new user gets), and (b)
  on the shipped layout, whose steps and settings were TUNED while looking at these treatments; the split-half
  nested estimate (``split_half``) says how much of (b) is that choice.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..data.profiles.dataset import Dataset
from ..data.errors import DataError
from ..data.profiles.layout import Layout, load_layout
from ..data.profiles.reader import load_profiles, treatment_keys, treatment_means

PUBLISHED = {
    "Ljosa et al. 2013, factor analysis of per-cell features": {"nsc_accuracy": 0.94, "nscb_accuracy": None,
                                                               "note": "single-cell features, not per-well means"},
    "Ando et al. 2017, deep embeddings + TVN (per cell)": {"nsc_accuracy": 0.96, "nscb_accuracy": 0.95,
                                                          "note": "images / single cells, not per-well means"},
}


def bbbc021_layout(data_dir: str | Path) -> Layout:
    """The shipped BBBC021 layout (``benchmarks/layouts/bbbc021.toml``) reading its files from `data_dir`."""
    text = resources.files("moa_predict.benchmarks").joinpath("layouts/bbbc021.toml")
    with resources.as_file(text) as path:
        layout = load_layout(path)
    return dataclasses.replace(layout, base_dir=str(data_dir))


def inferred_layout(data_dir: str | Path) -> tuple[Layout, list[str]]:
    """What a new user gets: ``moa layout infer per_well_mean.csv.gz --metadata image.csv.gz --annotation moa.csv``,
    unedited (no BBBC021-specific setting: ``data.profiles.practice`` holds the rules)."""
    from ..data.profiles.layout_infer import infer_layout

    data_dir = Path(data_dir)
    return infer_layout(_features_file(data_dir), metadata=[data_dir / "image.csv.gz"],
                        annotation=data_dir / "moa.csv")


def _features_file(data_dir: Path) -> Path:
    features = data_dir / "per_well_mean.csv.gz"
    if not features.is_file():
        raise DataError(f"{features} not found: --data must be the BBBC021 folder with per_well_mean.csv.gz, "
                        "image.csv.gz and moa.csv (see ../shared/real/README.md).", source=str(data_dir))
    return features


def load_bbbc021(data_dir: str | Path, *, inferred: bool = False, **layout_changes: Any) -> Dataset:
    """The BBBC021 wells through the shipped (tuned) layout, or with `inferred` through the layout ``moa layout
    infer`` proposes; `layout_changes` replace some of its settings."""
    data_dir = Path(data_dir)
    features = _features_file(data_dir)
    layout = inferred_layout(data_dir)[0] if inferred else bbbc021_layout(data_dir)
    return load_profiles(features, dataclasses.replace(layout, **layout_changes))


@dataclasses.dataclass
class Treatments:
    """The 103 treatment means and what the protocol needs about each."""

    data: Dataset
    moa: np.ndarray
    compound: np.ndarray
    batches: list[frozenset[str]]

    @classmethod
    def of(cls, wells: Dataset) -> "Treatments":
        t = treatment_means(wells)
        labelled = t.targets.to_numpy().sum(axis=1) == 1
        t = t.subset(np.flatnonzero(labelled))
        names = np.asarray(t.targets.columns)
        treated = wells.features.loc[~wells.is_control]
        batches = treated.groupby(treatment_keys(treated, wells.layout.treatment).to_numpy())["batch"].agg(frozenset)
        return cls(t, names[t.targets.to_numpy().argmax(axis=1)], t.drugs.to_numpy(),
                   [batches[k] for k in t.features.index])


def _other_batches(t: Treatments, batches: frozenset[str]) -> np.ndarray:
    """Treatments none of whose wells come from `batches` (NSCB candidates)."""
    return np.array([not (b & batches) for b in t.batches])


def _queries(t: Treatments, nscb: bool) -> list[tuple[np.ndarray, str, frozenset[str]]]:
    """Groups of query treatments that share one exclusion (compound, and for NSCB the batches)."""
    groups: dict[tuple[str, frozenset[str]], list[int]] = {}
    for i, (c, b) in enumerate(zip(t.compound, t.batches)):
        groups.setdefault((c, b if nscb else frozenset()), []).append(i)
    return [(np.asarray(rows), c, b) for (c, b), rows in groups.items()]


def _answerable(t: Treatments, nscb: bool) -> np.ndarray:
    """Queries whose MoA has at least one treatment left after the exclusion (else no method can be right)."""
    ok = np.zeros(len(t.moa), bool)
    for i in range(len(t.moa)):
        other = (t.compound != t.compound[i]) & (t.moa == t.moa[i])
        if nscb:
            other &= _other_batches(t, t.batches[i])
        ok[i] = other.any()
    return ok


Method = Callable[[Dataset, Treatments, np.ndarray, np.ndarray, np.ndarray], np.ndarray]
"""(wells, treatments, training-well mask, candidate-treatment mask, query rows) -> predicted MoA per query."""


def nearest_neighbour(wells: Dataset, t: Treatments, train_wells: np.ndarray, candidates: np.ndarray,
                      queries: np.ndarray) -> np.ndarray:
    """The field's baseline: the MoA of the most correlated other treatment mean (Pearson)."""
    x = t.data.features[t.data.feature_columns].to_numpy(np.float64)
    x = x - x.mean(axis=1, keepdims=True)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sim = x[queries] @ x[candidates].T
    return t.moa[candidates][sim.argmax(axis=1)]


def trained_model(name: str, **params: Any) -> Method:
    """A registered moa-predict model trained on the allowed wells through ``train_bundle`` (what ``moa train``
    runs, without CV), asked for the MoA of each query treatment mean."""
    from ..models.registry import make_model
    from ..training.train import train_bundle

    def method(wells: Dataset, t: Treatments, train_wells: np.ndarray, candidates: np.ndarray,
               queries: np.ndarray) -> np.ndarray:
        model = make_model(name, **params)
        bundle, _ = train_bundle(model, wells.subset(np.flatnonzero(train_wells)), cv=False, progress=False,
                                 reference=False, gene_only=False)
        proba = bundle.predict_proba(t.data.features.iloc[queries])
        return np.asarray(bundle.target_names)[proba.argmax(axis=1)]

    return method


BASELINE_LAYOUT = {"normalize": "z", "exclude": (), "whiten": 0, "align_batches": None}
"""The field's baseline reads the wells as the literature's simple pipeline does: each plate z-scored to its DMSO
wells (mean, standard deviation), every feature kept, no whitening."""
INFERRED = {"inferred": True}
"""The wells read through the layout ``moa layout infer`` proposes (``inferred_layout``), unedited."""
TUNED_KNN = "knn (moa-predict layout: pooled robust z + TVN + CORAL)"

METHODS: dict[str, tuple[str, dict[str, Any], Method]] = {
    "1-NN correlation (field baseline)": (
        "per-plate z-score to DMSO (mean/sd), all 516 features, treatment means, nearest other treatment by Pearson "
        "correlation", BASELINE_LAYOUT, nearest_neighbour),
    "knn, inferred layout (new user, no edits)": (
        "what a new user gets: the layout `moa layout infer per_well_mean.csv.gz --metadata image.csv.gz --annotation "
        "moa.csv` writes, unedited (its rules were fixed on other data: docs/layout.md), and moa-predict's `knn` model "
        "trained on the wells of the other compounds through train_bundle", INFERRED, trained_model("knn")),
    "default model, inferred layout (new user, no edits)": (
        "the same inferred layout and moa-predict's default model (the blend of 5 networks) trained on the wells of "
        "the other compounds through train_bundle without its inner cross-validation (the blend keeps its default "
        "member weights: fitting the stack would need a nested cross-validation inside each leave-out fit, ~6x the "
        "cost)", INFERRED, trained_model("blend")),
    "1-NN correlation, inferred layout": (
        "the field's baseline (treatment means, nearest other treatment by Pearson correlation) on the wells as the "
        "inferred layout normalises them", INFERRED, nearest_neighbour),
    TUNED_KNN: (
        "TUNED on these treatments: moa-predict's `knn` model (1 nearest reference treatment, cosine) trained on the "
        "wells of the other compounds through train_bundle, on the shipped BBBC021 layout's normalisation (blocklist, "
        "plate median + pooled DMSO MAD, TVN 100 on DMSO, per-week CORAL alpha 0.5 on that week's DMSO), whose steps "
        "and settings were chosen while looking at these 103 treatments", {}, trained_model("knn")),
    "1-NN correlation, tuned layout": (
        "the field's baseline (treatment means, nearest other treatment by Pearson correlation) on the wells as the "
        "tuned layout normalises them: how much of the tuned figure is the normalisation", {}, nearest_neighbour),
    "logreg (tuned layout)": ("moa-predict logistic regression with a softmax head on the tuned layout's wells",
                              {}, trained_model("logreg")),
    "mlp (tuned layout)": ("moa-predict MLP with a softmax head on the tuned layout's wells", {},
                           trained_model("mlp")),
}
FIGURES = {"a": ("knn, inferred layout (new user, no edits)", "default model, inferred layout (new user, no edits)",
                 "1-NN correlation, inferred layout"),
           "b": (TUNED_KNN, "1-NN correlation, tuned layout", "logreg (tuned layout)", "mlp (tuned layout)")}
"""(a) what a new user gets without edits; (b) the layout tuned on these treatments. The field's baseline (plain
per-plate z-scores) stands beside both."""
RENAMED = {"logreg (same normalisation)": "logreg (tuned layout)", "mlp (same normalisation)": "mlp (tuned layout)"}
"""Earlier names of methods (rows kept from an earlier run are shown under the new name)."""


def evaluate(wells: Dataset, method: Method, *, nscb: bool, progress: bool = False) -> dict[str, Any]:
    """Accuracy of `method` over the treatments under NSC (or NSCB), with the count of treatments scored."""
    t = Treatments.of(wells)
    well_compound = wells.drugs.to_numpy()
    well_batch = wells.features["batch"].to_numpy()
    control = wells.is_control
    predicted = np.empty(len(t.moa), dtype=object)
    t0 = time.perf_counter()
    for rows, compound, batches in tqdm(_queries(t, nscb), disable=not progress, leave=False,
                                        desc="NSCB" if nscb else "NSC"):
        train = (well_compound != compound) | control
        train &= ~np.isin(well_batch, list(batches)) | control if nscb else True
        candidates = t.compound != compound
        if nscb:
            candidates &= _other_batches(t, batches)
        predicted[rows] = method(wells, t, train, candidates, rows)
    scored = _answerable(t, nscb)
    correct = predicted == t.moa
    return {"accuracy": float(correct[scored].mean()), "treatments": int(scored.sum()),
            "accuracy_all_103": float(correct.mean()), "seconds": round(time.perf_counter() - t0, 1),
            "per_treatment": {k: bool(v) for k, v in zip(t.data.features.index, correct)}}


SENSITIVITY_GRID = {"clip": (None, 20.0), "whiten": (50, 100, 150, 200), "align_batches": (0.3, 0.5, 1.0, 2.0)}
"""Neighbouring normalisation settings around the shipped layout's (whiten 100, CORAL 0.5, no clipping): how much the
knn result depends on that one declared choice."""


def sensitivity(data_dir: str | Path, *, progress: bool = True) -> dict[str, Any]:
    """The knn method on every setting of ``SENSITIVITY_GRID``: spread of NSC / NSCB, how many meet the goal, and
    the split-half nested estimate (``split_half``)."""
    import itertools

    _, _, method = METHODS[TUNED_KNN]
    rows, correct = [], []
    grid = list(itertools.product(*SENSITIVITY_GRID.values()))
    for clip, k, alpha in tqdm(grid, disable=not progress, leave=False, desc="settings"):
        wells = load_bbbc021(data_dir, clip=clip, whiten=k, align_batches=alpha)
        nsc, nscb = evaluate(wells, method, nscb=False), evaluate(wells, method, nscb=True)
        rows.append({"clip": clip, "whiten": k, "align_batches": alpha,
                     "nsc_accuracy": nsc["accuracy"], "nscb_accuracy": nscb["accuracy"]})
        correct.append((nsc, nscb))
    nsc = np.array([r["nsc_accuracy"] for r in rows])
    nscb = np.array([r["nscb_accuracy"] for r in rows])
    t = Treatments.of(load_bbbc021(data_dir))
    return {"settings": rows, "nsc_min_median_max": [float(nsc.min()), float(np.median(nsc)), float(nsc.max())],
            "nscb_min_median_max": [float(nscb.min()), float(np.median(nscb)), float(nscb.max())],
            "meeting_both_goals": int(((nsc >= 0.90) & (nscb >= 0.80)).sum()), "of": len(rows),
            "split_half": split_half(t, correct)}


SPLIT_HALF_REPEATS = 2000


def split_half(t: Treatments, results: list[tuple[dict[str, Any], dict[str, Any]]], *,
               repeats: int = SPLIT_HALF_REPEATS, seed: int = 0) -> dict[str, Any]:
    """A nested estimate of the tuned figure: the compounds split at random into two halves; the setting with the
    best mean of NSC and NSCB on the first half's treatments is scored on the other half's; mean and standard
    deviation over `repeats` splits. Still an upper bound: the family of steps was chosen on all 103 treatments."""
    names = list(t.data.features.index)
    nsc = np.array([[r[0]["per_treatment"][n] for n in names] for r in results], dtype=float)
    nscb = np.array([[r[1]["per_treatment"][n] for n in names] for r in results], dtype=float)
    nscb_ok = _answerable(t, nscb=True)
    compounds = np.array(sorted(set(t.compound)))
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(repeats):
        first = np.isin(t.compound, rng.permutation(compounds)[: len(compounds) // 2])
        second = ~first
        pick = np.argmax(nsc[:, first].mean(axis=1) + nscb[:, first & nscb_ok].mean(axis=1))
        scores.append((nsc[pick, second].mean(), nscb[pick, second & nscb_ok].mean()))
    s = np.array(scores)
    return {"repeats": repeats, "nsc_mean": float(s[:, 0].mean()), "nsc_sd": float(s[:, 0].std()),
            "nscb_mean": float(s[:, 1].mean()), "nscb_sd": float(s[:, 1].std()), "seed": seed}


def run(data_dir: str | Path, methods: list[str] | None = None, *, progress: bool = True,
        with_sensitivity: bool = True, previous: list[dict[str, Any]] | None = None,
        with_nscb: bool = True) -> dict[str, Any]:
    """The benchmark (NSC, and NSCB unless `with_nscb` is False: the default model's leave-out fits are costly);
    `previous` (earlier reports): their rows of the methods not run now are kept (the first
    report holding a method wins), with their command, and so is a sensitivity grid when `with_sensitivity` is
    False."""
    wells = load_bbbc021(data_dir)
    t = Treatments.of(wells)
    layout, reasons = inferred_layout(data_dir)
    out: dict[str, Any] = {
        "data": {"source": str(data_dir), "wells": len(wells.features), "dmso_wells": int(wells.is_control.sum()),
                 "treatments": len(t.moa), "compounds": len(set(t.compound)), "moas": len(set(t.moa)),
                 "features": len(wells.feature_columns), "batches": int(wells.features["batch"].nunique()),
                 "normalisation": wells.notes.get("normalization"), "real": True},
        "protocol": ("treatment = compound x concentration, mean of its normalised wells; NSC: the query's compound is "
                     "never seen (no training well, no candidate); NSCB: nor any well or treatment of the query's "
                     "batches (weeks). Accuracy over the treatments whose MoA has another compound left after the "
                     "exclusion (all 103 for NSC)"),
        "inferred_layout": {"reasons": reasons, "settings": {k: v for k, v in layout.to_dict().items()
                                                              if k not in ("exclude", "metadata", "labels")}},
        "figures": {k: list(v) for k, v in FIGURES.items()},
        "methods": {}, "published": PUBLISHED,
    }
    loaded: dict[str, Dataset] = {}
    for name in methods or list(METHODS):
        if name not in METHODS:
            raise DataError(f"unknown method {name!r}; available: {', '.join(METHODS)}")
        what, changes, method = METHODS[name]
        key = repr(sorted(changes.items()))
        if changes and key not in loaded:
            loaded[key] = load_bbbc021(data_dir, **changes)
        data = loaded[key] if changes else wells
        nsc = evaluate(data, method, nscb=False, progress=progress)
        nscb = evaluate(data, method, nscb=True, progress=progress) if with_nscb else None
        out["methods"][name] = {"description": what, "nsc_accuracy": nsc["accuracy"],
                                "nscb_accuracy": nscb and nscb["accuracy"], "nsc_treatments": nsc["treatments"],
                                "nscb_treatments": nscb and nscb["treatments"],
                                "nscb_accuracy_all_103": nscb and nscb["accuracy_all_103"],
                                "seconds": nsc["seconds"] + (nscb["seconds"] if nscb else 0.0),
                                "nsc_per_treatment": nsc["per_treatment"],
                                "nscb_per_treatment": nscb and nscb["per_treatment"]}
        if progress:
            print(f"{name}: NSC {nsc['accuracy']:.3f} ({nsc['treatments']})"
                  + (f", NSCB {nscb['accuracy']:.3f} ({nscb['treatments']})" if nscb else ", NSCB not run")
                  + f", {out['methods'][name]['seconds']:.0f} s", flush=True)
    for report in previous or ():
        for name, row in report.get("methods", {}).items():
            name = RENAMED.get(name, name)
            if name in METHODS and name not in out["methods"]:
                out["methods"][name] = {**row, "command": row.get("command", report.get("command"))}
        if not with_sensitivity and report.get("sensitivity") and "sensitivity" not in out:
            out["sensitivity"] = {**report["sensitivity"],
                                  "command": report["sensitivity"].get("command", report.get("command"))}
    out["methods"] = {k: out["methods"][k] for k in METHODS if k in out["methods"]}
    if with_sensitivity:
        out["sensitivity"] = sensitivity(data_dir, progress=progress)
    return out
