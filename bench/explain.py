"""Benchmark of the explanations: do attributions find the planted signal, and how fast are neighbours?

On the real-label simulated set (``moa simulate --labels-from /work/shared/lish-moa --out /tmp/realsim
--seed 0``; ``simulation_truth.json`` lists, per scored MoA, the g-/c- features that carry its signal):

1. Train a neural model through the registry (default ``paper-nn``) and ``pipeline.train_bundle`` (which
   also builds the reference index), or reuse the cached bundle.
2. Attribution overlap: on held-out test profiles (new drugs) of well-predicted MoAs (test AUC ≥ 0.9, at
   least 3 test positives), the profile's positive MoA with p ≥ 0.5 is attributed by integrated gradients
   through the generic capability (``explain.attributions``). precision@K = share of the K g-/c- features
   with the largest |attribution| that carry the MoA's signal; chance = |signal set| / 872. Reported next to
   a strong naive ranking, the profile's own largest |z-scores| (MoA-agnostic).
3. Completeness of the attributions (|sum − (p − p₀)|; bench/completeness.py measures it on the calls users see).
4. Reference index: single-profile and batch latency of the neighbour search (+ OOD), over the 23,814
   training profiles; MoA agreement of the neighbours; OOD flag rates on held-out, shuffled and noise
   profiles.

Writes docs/explain/explain_benchmark.json (or --out) and prints a table. Example:
    nice -n 10 python bench/explain.py --data /tmp/realsim --model paper-nn
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]


def _param(text: str):
    key, value = text.split("=", 1)
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def get_bundle(args, data, console):
    from moa_predict.bundle import load_bundle, save_bundle
    from moa_predict.models import make_model
    from moa_predict.training.train import train_bundle

    params = dict(args.param or [])
    cache = Path(args.bundle or ROOT / "runs" / "explain_bench" / f"{args.model}")
    spec = {"model": args.model, "params": params, "fingerprint": data.fingerprint()}
    stamp = cache / "bench_spec.json"
    if cache.exists() and stamp.exists() and json.loads(stamp.read_text()) == spec and not args.retrain:
        console.print(f"reusing the bundle in {cache}")
        return load_bundle(cache), None
    console.print(f"training {args.model} {params} on {len(data.features):,} profiles (no CV) ...")
    t0 = time.perf_counter()
    bundle, _ = train_bundle(make_model(args.model, **params), data, cv=False, progress=False,
                             command="bench/explain.py")
    seconds = time.perf_counter() - t0
    save_bundle(bundle, cache)
    stamp.write_text(json.dumps(spec))
    return load_bundle(cache), seconds


def attribution_overlap(bundle, test, test_y, truth, args, console):
    from sklearn.metrics import roc_auc_score

    from moa_predict.data.profiles import schema
    from moa_predict.explain.attributions import attribution_path, completeness_tolerance, integrated_gradients

    model, names = bundle.model, list(bundle.target_names)
    treated = (test[schema.CP_TYPE] == schema.TREATED).to_numpy()
    proba = bundle.predict_proba(test)
    y = test_y.loc[test.index, names].to_numpy()
    good = []
    for j, name in enumerate(names):
        pos = int(y[treated, j].sum())
        if pos >= 3:
            auc = roc_auc_score(y[treated, j], proba[treated, j])
            if auc >= args.min_auc:
                good.append((name, j, auc, pos))
    rng = np.random.default_rng(args.seed)
    pairs = []
    for name, j, auc, pos in good:
        rows = np.flatnonzero(treated & (y[:, j] > 0) & (proba[:, j] >= 0.5))
        if len(rows) > args.per_moa:
            rows = np.sort(rng.choice(rows, args.per_moa, replace=False))
        pairs += [(int(r), j) for r in rows]
    console.print(f"{len(good)} well-predicted MoAs (test AUC ≥ {args.min_auc}); attributing {len(pairs)} "
                  "(profile, MoA) pairs")
    path = attribution_path(model)
    covers = path.covers
    raw, raw_names = model.attribution_inputs(test.iloc[[r for r, _ in pairs]])
    t0 = time.perf_counter()
    res = integrated_gradients(path, raw, [j for _, j in pairs], n_steps=args.steps)
    seconds = time.perf_counter() - t0
    n_feat = len(schema.FEATURE_COLUMNS)
    feat_index = {f: i for i, f in enumerate(raw_names[:n_feat])}
    ks = sorted(set(args.k))
    per_k = {k: {"attr": [], "absx": [], "chance": [], "positive_true": []} for k in ks}
    per_moa: dict[str, dict[str, list[float]]] = {}
    for p, (r, j) in enumerate(pairs):
        signal = {feat_index[f] for f in truth[names[j]]["features"]}
        a = res["attributions"][p, :n_feat]
        x = raw[p, :n_feat]
        by_attr = np.argsort(-np.abs(a), kind="stable")
        by_x = np.argsort(-np.abs(x), kind="stable")
        for k in ks:
            hit = [i in signal for i in by_attr[:k]]
            per_k[k]["attr"].append(np.mean(hit))
            per_k[k]["absx"].append(np.mean([i in signal for i in by_x[:k]]))
            per_k[k]["chance"].append(len(signal) / n_feat)
            true_top = [i for i in by_attr[:k] if i in signal]
            if true_top:
                per_k[k]["positive_true"].append(float(np.mean(a[true_top] > 0)))
        k0 = ks[0]
        m = per_moa.setdefault(names[j], {"precision": [], "chance": []})
        m["precision"].append(per_k[k0]["attr"][-1])
        m["chance"].append(len(signal) / n_feat)
    gap = res["probability"] - res["baseline_probability"]
    err = np.abs(res["completeness_error"])
    summary = {
        "model": model.name, "attribution_members": covers, "n_pairs": len(pairs), "n_moas": len(good),
        "n_moas_attributed": len({j for _, j in pairs}),
        "n_steps": args.steps, "min_auc": args.min_auc, "per_moa_cap": args.per_moa,
        "attribution_seconds": round(seconds, 2), "seconds_per_pair": round(seconds / max(len(pairs), 1), 4),
        "precision_at_k": {
            str(k): {"attributions": round(float(np.mean(v["attr"])), 4),
                     "largest_abs_z": round(float(np.mean(v["absx"])), 4),
                     "chance": round(float(np.mean(v["chance"])), 4),
                     "lift_over_chance": round(float(np.mean(v["attr"]) / np.mean(v["chance"])), 2),
                     "true_features_pushing_up": round(float(np.mean(v["positive_true"])), 4)
                     if v["positive_true"] else None}
            for k, v in per_k.items()},
        "completeness": {"path": path.space, "max_abs_error": round(float(err.max()), 6),
                         "failing": int((err > completeness_tolerance(gap)).sum()),
                         "median_abs_error": round(float(np.median(err)), 6),
                         "median_relative_error": round(float(np.median(err / np.maximum(np.abs(gap), 1e-6))), 6)},
        "per_moa_precision_at_%d" % ks[0]: {
            name: {"precision": round(float(np.mean(v["precision"])), 3),
                   "chance": round(float(np.mean(v["chance"])), 3),
                   "profiles": len(v["precision"]), "class": truth[name]["class"]}
            for name, v in sorted(per_moa.items())},
    }
    return summary


def neighbour_bench(bundle, data, test, test_y, args):
    from moa_predict.data.profiles import schema
    from moa_predict.reference.neighbours import similar_profiles
    from moa_predict.reference.ood import ood_flags, ood_mask

    index = bundle.reference
    treated = test[test[schema.CP_TYPE] == schema.TREATED]
    rng = np.random.default_rng(args.seed)
    singles = treated.iloc[rng.choice(len(treated), min(args.latency_queries, len(treated)), replace=False)]
    for i in range(5):  # warm-up
        index.search(singles.iloc[[i]], 10)
        index.ood_components(singles.iloc[[i]])
    search_ms, full_ms = [], []
    for i in range(len(singles)):
        row = singles.iloc[[i]]
        t0 = time.perf_counter()
        index.search(row, 10)
        index.ood_components(row)
        search_ms.append((time.perf_counter() - t0) * 1e3)
        t0 = time.perf_counter()
        similar_profiles(bundle, row, k=10)
        ood_flags(bundle, row)
        full_ms.append((time.perf_counter() - t0) * 1e3)
    batch = treated.iloc[: args.batch]
    t0 = time.perf_counter()
    index.search(batch, 10)
    index.ood_components(batch)
    batch_ms = (time.perf_counter() - t0) * 1e3 / len(batch)
    t0 = time.perf_counter()
    similar_profiles(bundle, batch, k=10)
    ood_flags(bundle, batch)
    batch_full_ms = (time.perf_counter() - t0) * 1e3 / len(batch)
    # do the neighbours of new-drug profiles share their MoAs?
    y = test_y.loc[treated.index, list(bundle.target_names)].to_numpy()
    has = y.sum(axis=1) > 0
    idx, _ = index.search(treated[has], 10)
    ref_y = index.label_matrix(np.unique(idx))
    lookup = {int(i): r for r, i in enumerate(np.unique(idx))}
    share = np.mean([[bool((y[has][q] * ref_y[lookup[int(i)]]).sum()) for i in idx[q]] for q in range(len(idx))])
    rand = rng.integers(0, len(index), (int(has.sum()), 10))
    rand_y = index.label_matrix(np.unique(rand))
    rl = {int(i): r for r, i in enumerate(np.unique(rand))}
    chance = np.mean([[bool((y[has][q] * rand_y[rl[int(i)]]).sum()) for i in rand[q]] for q in range(len(rand))])
    # OOD flag rates
    x = treated[list(index.feature_columns)].to_numpy(np.float32)
    n = min(1000, len(x))
    garbage = {
        "held-out treated (new drugs)": treated,
        "held-out controls": test[test[schema.CP_TYPE] == schema.CONTROL],
        "features shuffled within profile": np.array([r[rng.permutation(len(r))] for r in x[:n]]),
        "gaussian noise sd 1": rng.normal(0, 1, (n, x.shape[1])).astype(np.float32),
        "uniform noise [-10, 10]": rng.uniform(-10, 10, (n, x.shape[1])).astype(np.float32),
        "genes of one profile, cells of another": np.hstack([x[:n, :772], x[rng.permutation(n), 772:]]),
        "real profile x5 (clipped)": np.clip(x[:n] * 5, -10, 10),
    }
    ood = {k: round(float(ood_mask(index, v).mean()), 4) for k, v in garbage.items()}
    return {
        "references": len(index), "components": int(index.coords.shape[1]), "space": index.info,
        "single_profile_ms": {"median": round(float(np.median(search_ms)), 2),
                              "p95": round(float(np.percentile(search_ms, 95)), 2),
                              "max": round(float(np.max(search_ms)), 2), "queries": len(search_ms),
                              "what": "search k=10 + OOD distance, one profile"},
        "single_profile_with_json_ms": {"median": round(float(np.median(full_ms)), 2),
                                        "p95": round(float(np.percentile(full_ms, 95)), 2),
                                        "what": "the API answer: similar_profiles() (records, MoA enrichment) "
                                                "+ ood_flags()"},
        "batch_ms_per_profile": round(batch_ms, 3), "batch_with_json_ms_per_profile": round(batch_full_ms, 3),
        "batch_size": len(batch),
        "neighbour_moa_agreement_at_10": round(float(share), 4), "random_reference_agreement": round(float(chance), 4),
        "ood_threshold": round(float(index.ood_threshold), 4),
        "structure_threshold": round(float(index.structure_threshold), 4),
        "ood_flag_rate": ood,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="/tmp/realsim")
    parser.add_argument("--model", default="paper-nn")
    parser.add_argument("--param", action="append", type=_param, metavar="KEY=VALUE")
    parser.add_argument("--bundle", help="bundle cache directory (default runs/explain_bench/MODEL)")
    parser.add_argument("--retrain", action="store_true")
    parser.add_argument("--k", type=int, nargs="+", default=[10, 20, 50])
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--min-auc", type=float, default=0.9)
    parser.add_argument("--per-moa", type=int, default=10, help="profiles attributed per MoA at most")
    parser.add_argument("--latency-queries", type=int, default=300)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 on a shared 2-core machine)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "docs" / "explain" / "explain_benchmark.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    console = Console()

    from moa_predict.data.profiles.dataset import load_dataset, load_features
    from moa_predict.runtime.threads import limit_threads

    data_dir = Path(args.data)
    truth = json.loads((data_dir / "simulation_truth.json").read_text())["targets"]
    data = load_dataset(data_dir)
    test = load_features(data_dir / "test_features.csv")
    test_y = pd.read_csv(data_dir / "test_targets_scored.csv").set_index("sig_id")
    bundle, train_seconds = get_bundle(args, data, console)
    with limit_threads(1):
        overlap = attribution_overlap(bundle, test, test_y, truth, args, console)
    neigh = neighbour_bench(bundle, data, test, test_y, args)
    import os
    report = {
        "data": str(data_dir), "note": "features are SIMULATED (real labels); see simulation_truth.json",
        "command": "python bench/explain.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "cpu_cores": os.cpu_count(), "torch_threads": args.threads, "bundle_train_seconds": train_seconds,
        "attributions": overlap, "neighbours": neigh,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))

    table = Table(title=f"attributions ({overlap['model']}): top-K attributed g-/c- features vs planted signal")
    for col in ("K", "precision (attributions)", "precision (largest |z|)", "chance", "lift", "true features ↑"):
        table.add_column(col, justify="right")
    for k, v in overlap["precision_at_k"].items():
        table.add_row(k, f"{v['attributions']:.3f}", f"{v['largest_abs_z']:.3f}", f"{v['chance']:.3f}",
                      f"{v['lift_over_chance']:.1f}x", "-" if v["true_features_pushing_up"] is None
                      else f"{v['true_features_pushing_up']:.2f}")
    console.print(table)
    c = overlap["completeness"]
    console.print(f"{overlap['n_pairs']} (profile, MoA) pairs over {overlap['n_moas_attributed']} MoAs; "
                  "completeness |error| "
                  f"max {c['max_abs_error']:.2g}, median {c['median_abs_error']:.2g}; "
                  f"{overlap['seconds_per_pair'] * 1e3:.0f} ms per pair")
    t2 = Table(title=f"reference index: {neigh['references']:,} profiles, {neigh['components']} components")
    t2.add_column("what")
    t2.add_column("value", justify="right")
    s = neigh["single_profile_ms"]
    t2.add_row("single profile: search + OOD (median / p95)", f"{s['median']:.2f} / {s['p95']:.2f} ms")
    s = neigh["single_profile_with_json_ms"]
    t2.add_row("single profile: similar_profiles + ood_flags (median / p95)",
               f"{s['median']:.2f} / {s['p95']:.2f} ms")
    t2.add_row(f"batch of {neigh['batch_size']}: search + OOD", f"{neigh['batch_ms_per_profile']:.3f} ms/profile")
    t2.add_row(f"batch of {neigh['batch_size']}: similar_profiles + ood_flags",
               f"{neigh['batch_with_json_ms_per_profile']:.3f} ms/profile")
    t2.add_row("10 neighbours sharing a MoA (vs random)",
               f"{neigh['neighbour_moa_agreement_at_10']:.3f} ({neigh['random_reference_agreement']:.3f})")
    for k, v in neigh["ood_flag_rate"].items():
        t2.add_row(f"OOD flagged: {k}", f"{v:.3f}")
    console.print(t2)
    console.print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
