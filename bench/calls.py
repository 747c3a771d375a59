"""Confident calls and sets, measured: nested precision / coverage, and a check on data the calibration never saw.

Three jobs (``trust.calls``, ``trust.model``), each printing a table and writing JSON under docs/trust/:

``--oof NPZ`` with the bundle's training data (``--data DIR`` LISH-MoA, or ``--features FILE --layout TOML``): the
  trust layer refit from cached out-of-fold predictions exactly as ``moa train`` fits it, and the calls' precision
  and coverage at P = 0.7 / 0.8 / 0.9 measured nested (thresholds fit on the other folds).
``--check DIR --bundle B``: the bundle (trained on one simulated data set) asked about an independent, drug-disjoint
  simulation (``moa simulate --labels-from ... --seed 1 --world-seed 0 --hold-out-drugs 0.2 --held-out-only``):
  promised vs observed recall of the sets and precision of the calls.
  Each observed figure comes with its bootstrap standard deviation over the check's drugs.
``--bbbc021 DIR``: BBBC021 treatments, leave-one-compound-out: per compound a model trained through train_bundle on
  the other compounds' wells predicts its wells, pooled per treatment (mean logit, as ``moa predict --level
  treatment`` pools them); the thresholds for each compound are fit on the other 37 compounds' treatments
  (``--cache NPZ`` keeps those predictions, so a change of the calls' procedure is re-measured in seconds).

Example (the README's numbers):
  python bench/calls.py --data /tmp/simA --oof /tmp/simA_blend.oof.npz --bundle /tmp/simA_blend --check /tmp/simB \
      --name lish-moa-simulated
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from moa_predict.data.formats.io import jsonable, write_text  # noqa: E402
from moa_predict.trust.calls import REPORT_LEVELS, fit_call_model, measure_calls  # noqa: E402
from moa_predict.trust.calibration import sigmoid  # noqa: E402
from moa_predict.trust.model import fit_trust, pool_logits  # noqa: E402
from moa_predict.training.crossval import CVResult  # noqa: E402


def precision_at_coverage(P: np.ndarray, Y: np.ndarray, coverage: float) -> float:
    """The share right among the `coverage` most confident top calls (ranked by top probability): what a perfect
    threshold at that coverage would reach, with no guarantee (context for the certified figures)."""
    top = P.max(axis=1)
    right = np.asarray(Y)[np.arange(len(P)), P.argmax(axis=1)] > 0
    keep = np.argsort(-top, kind="stable")[: max(1, int(round(coverage * len(P))))]
    return float(right[keep].mean())


def load_data(args):
    if args.data:
        from moa_predict.data.profiles.dataset import load_dataset

        return load_dataset(args.data)
    from moa_predict.data.profiles.layout import load_layout
    from moa_predict.data.profiles.reader import load_profiles, training_rows

    data = load_profiles(args.features, load_layout(args.layout))
    return data.subset(training_rows(data))


def refit_calls(data, npz: Path, bundle_path: str):
    """Only the calls refit on the cached out-of-fold predictions (as ``fit_trust`` fits them), the rest of the
    bundle's trust layer kept: minutes instead of the whole trust fit on a busy machine."""
    from moa_predict.trust.model import _fit_compound, compound_units, fit_calls_of
    from moa_predict.bundle import load_bundle

    z = np.load(npz)
    rows = z["fold"] >= 0
    P = np.asarray(z["oof"], dtype=np.float64)[rows]
    Y = data.targets.to_numpy()[rows].astype(np.float64)
    fold = z["fold"][rows]
    drugs = None if data.drugs is None else data.drugs.to_numpy()[rows]
    pooled = None if drugs is None else _fit_compound(P, Y, drugs, fold, (0.9,))[1]
    trust = load_bundle(bundle_path).trust
    trust.calls = fit_calls_of(data, rows, P, Y, fold, compound_units(drugs), pooled)
    return trust


def refit_trust(data, npz: Path):
    z = np.load(npz)
    result = CVResult(oof=z["oof"], fold=z["fold"], score=float(z["score"]), per_target=None, fold_scores=[],
                      rows="", grouped=data.drugs is not None, n_splits=int(z["fold"].max()) + 1, seed=0,
                      fit_seconds=0.0, predict_seconds=0.0, n_predicted=0)
    return fit_trust(result, data), result


def calls_rows(summary: dict, name: str) -> list[str]:
    out = []
    for unit in ("profile", "treatment", "compound"):
        for m in summary.get(unit) or []:
            prec = "—" if m["precision"] is None else f"{100 * m['precision']:.1f} %"
            fam = f"{m['family_calls']:,} ({100 * m['precision_family']:.0f} %)" if m.get("family_calls") else "0"
            cc = m.get("coverage_compounds")
            compounds = "" if cc is None or unit != "profile" else f"{100 * cc:.1f} %"
            out.append(f"| {name} | {unit}s | {m['level']:.1f} | {prec} | {100 * m['coverage_profiles']:.1f} % | "
                       f"{compounds} | {m['moa_calls']:,} | {fam} |")
    return out


HEADER = ["| data | unit | P | precision (held out) | units called | compounds called | MoA calls | family calls "
          "(precision) |", "|---|---|---|---|---|---|---|---|"]


def sets_rows(trust, name: str, n_targets: int) -> list[str]:
    out = []
    for s in trust.summary()["sets"]:
        q = s["set_size_quantiles"]
        out.append(f"| {name} | {100 * s['level']:.0f} % | {100 * s['pooled_recall']:.1f} % | {q['median']:.0f} "
                   f"({q['p10']:.0f}-{q['p90']:.0f}) of {n_targets} | {100 * s['narrowing_share']:.1f} % |")
    return out


def drug_bootstrap_sd(hits: np.ndarray, totals: np.ndarray, drug_codes: np.ndarray, n: int = 2000) -> float | None:
    """The standard deviation of sum(hits) / sum(totals) over resamples of whole drugs (the unit a new drug is)."""
    G = int(drug_codes.max()) + 1 if len(drug_codes) else 0
    h = np.bincount(drug_codes, weights=np.asarray(hits, dtype=float), minlength=G)
    t = np.bincount(drug_codes, weights=np.asarray(totals, dtype=float), minlength=G)
    if t.sum() == 0:
        return None
    rng = np.random.default_rng(0)
    draws = rng.integers(0, G, (n, G))
    ratio = h[draws].sum(axis=1) / np.maximum(t[draws].sum(axis=1), 1e-12)
    return float(ratio.std())


def check(bundle_path: str, check_dir: str) -> dict:
    """Promised (nested CV) vs observed on a drug-disjoint simulation the calibration never saw."""
    from moa_predict.data.profiles.dataset import load_dataset
    from moa_predict.trust.conformal import set_recall
    from moa_predict.bundle import load_bundle

    bundle = load_bundle(bundle_path)
    data = load_dataset(check_dir)
    treated = ~data.is_control
    P = bundle.predict_proba(data.features.loc[treated]).astype(np.float64)
    Y = data.targets.to_numpy()[treated] > 0
    trust = bundle.trust
    drug_codes = pd.factorize(data.drugs[treated].astype(str))[0]
    out: dict = {"profiles": int(treated.sum()), "drugs": int(data.drugs[treated].nunique()), "sets": [],
                 "calls": [], "sd": "bootstrap over the check's drugs (2,000 resamples, seed 0): the sampling error "
                                   "of an observed figure on this many new drugs"}
    for level in (0.8, 0.9, 0.95):
        S = trust.sets(P, level)
        got = set_recall(Y, S)
        promised = trust.measured_at(level)
        out["sets"].append({"level": level, "promised_recall": promised["pooled_recall"],
                            "observed_recall": got["pooled_recall"],
                            "observed_recall_sd": drug_bootstrap_sd((S & Y).sum(axis=1), Y.sum(axis=1), drug_codes),
                            "promised_median_size": promised["set_size_quantiles"]["median"],
                            "observed_median_size": got["set_size_quantiles"]["median"],
                            "observed_narrowing_share": got["narrowing_share"]})
    model = trust.call_model
    for level in REPORT_LEVELS:
        calls = model.call(P, bundle.target_names, level)
        made = (calls["kind"] != "none").to_numpy()
        moa = (calls["kind"] == "moa").to_numpy()
        j = np.array([bundle.target_names.index(c) if k == "moa" else 0 for c, k in zip(calls["call"],
                                                                                       calls["kind"])])
        right = np.zeros(len(calls), dtype=bool)
        right[moa] = Y[np.flatnonzero(moa), j[moa]]
        fam = (calls["kind"] == "family").to_numpy()
        if fam.any():
            M = model.family_matrix(len(bundle.target_names))
            names = [f["name"] for f in model.families]
            f_idx = np.array([names.index(c) for c in calls.loc[fam, "call"]])
            right[fam] = ((Y[fam].astype(float) @ M) > 0)[np.arange(int(fam.sum())), f_idx]
        promised = model.measured_at(level)
        out["calls"].append({"level": level, "promised_precision_at_least": level,
                             "nested_cv_precision": promised["precision"],
                             "nested_cv_coverage": promised["coverage_profiles"],
                             "observed_precision": float(right[made].mean()) if made.any() else None,
                             "observed_precision_sd": drug_bootstrap_sd(right & made, made, drug_codes),
                             "observed_coverage": float(made.mean()), "observed_calls": int(made.sum())})
    return out


def bbbc021(data_dir: str, model_name: str, params: dict, cache: str | None = None) -> dict:
    """Leave-one-compound-out treatment-level out-of-fold predictions and their calls (see module docstring);
    with `cache` (an .npz path), the predictions are kept there and reused."""
    if cache and Path(cache).exists():
        z = np.load(cache, allow_pickle=False)
        return bbbc021_calls(z["P"], z["Y"], z["compound"].astype(str), model_name, params)
    P, Y, comp_t = bbbc021_loco(data_dir, model_name, params)
    if cache:
        np.savez_compressed(cache, P=P, Y=Y, compound=comp_t.astype(str))
    return bbbc021_calls(P, Y, comp_t, model_name, params)


def bbbc021_loco(data_dir: str, model_name: str, params: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per BBBC021 treatment: probabilities pooled from its wells, each well predicted by a model trained on the
    other compounds' wells; the treatment's labels and compound."""
    from moa_predict.benchmarks.real import load_bbbc021
    from moa_predict.data.profiles.reader import treatment_keys
    from moa_predict.models.registry import make_model
    from moa_predict.training.train import train_bundle

    wells = load_bbbc021(data_dir)
    compound = wells.drugs.to_numpy().astype(str)
    control = wells.is_control
    treated = np.flatnonzero(~control & (wells.targets.to_numpy().sum(axis=1) == 1))
    keys = treatment_keys(wells.features.iloc[treated], wells.layout.treatment).to_numpy()
    P_wells = np.zeros((len(treated), len(wells.target_names)))
    for c in np.unique(compound[treated]):
        train = np.flatnonzero((compound != c) | control)
        bundle, _ = train_bundle(make_model(model_name, **params), wells.subset(train), cv=False, progress=False,
                                 reference=False, gene_only=False)
        rows = compound[treated] == c
        P_wells[rows] = bundle.predict_proba(wells.features.iloc[treated[rows]])
    codes, uniques = pd.factorize(keys, sort=True)
    zbar, _ = pool_logits(P_wells, codes, len(uniques))
    P = sigmoid(zbar)
    Y = np.zeros((len(uniques), P.shape[1]))
    np.maximum.at(Y, codes, wells.targets.to_numpy()[treated])
    comp_t = np.empty(len(uniques), dtype=object)
    comp_t[codes] = compound[treated]
    return P, Y, comp_t


def bbbc021_calls(P: np.ndarray, Y: np.ndarray, comp_t: np.ndarray, model_name: str, params: dict) -> dict:
    """The calls measured leave-one-compound-out: each compound's thresholds fit on the other compounds."""
    fold = pd.factorize(comp_t)[0]  # leave one compound out: each compound its own fold
    levels = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
    measured = measure_calls(P, Y, comp_t, fold, None, levels)
    top1 = float((Y[np.arange(len(P)), P.argmax(axis=1)] > 0).mean())
    # the same measurement with treatments as the unit (treatments of one compound treated as exchangeable:
    # not what the guarantee assumes, shown to separate the method's limit from the 38 compounds')
    by_treatment = measure_calls(P, Y, None, fold, None, levels)
    return {"model": model_name, "params": params, "treatments": int(len(P)), "compounds": int(len(set(comp_t))),
            "top1_accuracy_loco": top1, "uncertified_precision_of_top": {
                str(c): precision_at_coverage(P, Y, c) for c in (0.2, 0.5, 0.8)}, "measured": measured, "measured_treatment_units": by_treatment}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", default="run")
    ap.add_argument("--data")
    ap.add_argument("--features")
    ap.add_argument("--layout")
    ap.add_argument("--oof")
    ap.add_argument("--bundle")
    ap.add_argument("--check")
    ap.add_argument("--calls-only", action="store_true",
                    help="with --oof and --bundle: refit only the calls, keep the bundle's other trust parts")
    ap.add_argument("--bbbc021")
    ap.add_argument("--model", default="knn")
    ap.add_argument("--param", action="append", default=[], help="KEY=VALUE for the BBBC021 model")
    ap.add_argument("--cache", help="BBBC021: keep (or reuse) the leave-one-compound-out predictions in this .npz")
    ap.add_argument("--out", default=str(ROOT / "docs" / "trust"))
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {"name": args.name, "command": "python bench/calls.py " + " ".join(sys.argv[1:] if argv is None
                                                                                        else argv)}
    t0 = time.perf_counter()
    lines: list[str] = []
    if args.oof:
        data = load_data(args)
        trust = refit_calls(data, Path(args.oof), args.bundle) if args.calls_only else refit_trust(data, Path(args.oof))[0]
        summary = trust.summary()
        report["simulated"] = bool(data.simulated)
        report["calls"] = summary["calls"]
        report["families"] = trust.call_model.family_report()
        report["sets"] = summary["sets"]
        z = np.load(args.oof)
        rows = z["fold"] >= 0
        P_oof, Y_oof = z["oof"][rows], data.targets.to_numpy()[rows]
        report["uncertified_precision_of_top"] = {str(c): precision_at_coverage(P_oof, Y_oof, c)
                                                  for c in (0.02, 0.05, 0.1, 0.2, 0.3, 0.5)}
        lines += ["Top calls ranked by top probability (out-of-fold, no guarantee: what a perfect threshold would "
                  "reach): the most confident 2 / 5 / 10 / 20 / 30 % of profiles are right "
                  + " / ".join(f"{100 * v:.1f} %" for v in list(report["uncertified_precision_of_top"].values())[:5])
                  + " of the time.", ""]
        lines += HEADER + calls_rows(summary["calls"], args.name)
        lines += ["", "| data | level | recall (held out) | median set size (10-90 %) | sets narrower than half |",
                  "|---|---|---|---|---|"] + sets_rows(trust, args.name, len(data.target_names))
        if args.bundle:  # the bundle answers with the calls refit by this (current) code
            from moa_predict.bundle import load_bundle, save_bundle

            bundle = load_bundle(args.bundle)
            bundle.trust = trust
            bundle.info.setdefault("cv", {})["trust"] = summary
            save_bundle(bundle, args.bundle)
    if args.check:
        report["check"] = check(args.bundle, args.check)
        lines += ["", f"Drug-disjoint check ({report['check']['profiles']:,} treated profiles of "
                      f"{report['check']['drugs']:,} drugs the calibration never saw):", "",
                  "| sets at | promised recall (nested CV) | observed (± sd over drugs) | median size promised / "
                  "observed |", "|---|---|---|---|"]
        for s in report["check"]["sets"]:
            lines.append(f"| {100 * s['level']:.0f} % | {100 * s['promised_recall']:.1f} % | "
                         f"{100 * s['observed_recall']:.1f} ± {100 * s['observed_recall_sd']:.1f} % | "
                         f"{s['promised_median_size']:.0f} / "
                         f"{s['observed_median_size']:.0f} |")
        lines += ["", "| calls at P | nested CV precision / coverage | observed precision (± sd) / coverage |",
                  "|---|---|---|"]
        for c in report["check"]["calls"]:
            nested = ("no calls" if c["nested_cv_precision"] is None else
                      f"{100 * c['nested_cv_precision']:.1f} % / {100 * c['nested_cv_coverage']:.1f} %")
            seen = ("no calls" if c["observed_precision"] is None else
                    f"{100 * c['observed_precision']:.1f} ± {100 * c['observed_precision_sd']:.1f} % / "
                    f"{100 * c['observed_coverage']:.1f} %")
            lines.append(f"| {c['level']:.1f} | {nested} | {seen} |")
    if args.bbbc021:
        params = {}
        for kv in args.param:
            k, v = kv.split("=", 1)
            params[k] = json.loads(v) if v[:1].isdigit() or v in ("true", "false") else v
        b = bbbc021(args.bbbc021, args.model, params, args.cache)
        report["bbbc021"] = b
        top = b["uncertified_precision_of_top"]
        lines += [f"BBBC021 treatments, leave-one-compound-out, {args.model} {params or ''}: top-1 accuracy "
                  f"{100 * b['top1_accuracy_loco']:.1f} % over {b['treatments']} treatments of {b['compounds']} "
                  f"compounds; the most confident 80 % of treatments are right {100 * top['0.8']:.1f} % of the time "
                  "(a perfect threshold, no guarantee)", "", "| P | precision | treatments called | compounds called | "
                  "(treatments as units: precision / called) |", "|---|---|---|---|---|"]
        for m, t in zip(b["measured"], b["measured_treatment_units"]):
            if m["level"] in (0.7, 0.8, 0.85, 0.9, 0.95):
                p = "—" if m["precision"] is None else f"{100 * m['precision']:.1f} %"
                tp = "—" if t["precision"] is None else f"{100 * t['precision']:.1f} %"
                lines.append(f"| {m['level']:.2f} | {p} | {100 * m['coverage_profiles']:.1f} % | "
                             f"{100 * m['coverage_compounds']:.1f} % | {tp} / {100 * t['coverage_profiles']:.1f} % |")
    report["seconds"] = round(time.perf_counter() - t0, 1)
    write_text(json.dumps(jsonable(report), indent=1), out / f"calls_{args.name}.json")
    text = "\n".join(lines)
    write_text(text + "\n", out / f"calls_{args.name}.md")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
