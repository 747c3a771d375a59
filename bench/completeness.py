"""Do the attributions add up? Completeness of integrated gradients on the calls a user sees.

For a bundle (the default blend), explain the top-3 MoAs of every treated profile of

1. the web app's example file (``web.services.model_service.example_csv``: 40 simulated profiles, the "try the example"
   upload), and
2. up to ``--rows`` held-out profiles (``test_features.csv`` of the data the bundle was trained on: new drugs),

through the public ``explain_predictions`` (what the page and the API call), and count the calls whose
attributions pass completeness: |Σ attributions − (p − p0)| ≤ max(0.002, 0.02·|p − p0|), the tolerance the
page checks (``explain.attributions.TOLERANCE_ABS`` / ``TOLERANCE_REL``). Also: how often dose or time ranks
first, and the latency of one profile's explanation (what the web page waits for per profile).

The script only uses ``explain_predictions``'s JSON, so the same command measures the code before a change
(``PYTHONPATH=<old checkout>/src``) and after it; each run is stored under its ``--label`` in one JSON file.

Example (the figures in docs/explain/completeness.json; features are SIMULATED):
    moa simulate --out /tmp/cs --rows 6000 --test-rows 1000 --seed 0
    moa train --data /tmp/cs --out /tmp/cs_bundle --no-cv
    PYTHONPATH=$PWD/src python bench/completeness.py --bundle /tmp/cs_bundle --data /tmp/cs --label after
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TOL_ABS, TOL_REL = 2e-3, 0.02  # the page's tolerance (explain.attributions), fixed here so runs compare


def _frames(args, bundle):
    from moa_predict.data.profiles.dataset import load_features
    from moa_predict.web.services.model_service import example_csv

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "example.csv"
        path.write_bytes(example_csv())
        example = load_features(path, feature_columns=bundle.feature_columns)
    held_out = load_features(Path(args.data) / "test_features.csv", feature_columns=bundle.feature_columns)
    held_out = held_out.iloc[:args.rows]
    return {"example file": example, f"held-out ({len(held_out):,} profiles)": held_out}


def measure(bundle, frame, args) -> dict:
    from moa_predict.explain.attributions import explain_predictions
    from moa_predict.runtime.threads import limit_threads

    with limit_threads(1):
        proba = bundle.predict_proba(frame)
        t0 = time.perf_counter()
        out = explain_predictions(bundle.model, frame, bundle.target_names, proba=proba, top_moas=3,
                                  n_steps=args.steps)
        seconds = time.perf_counter() - t0
    calls = [e for p in out["profiles"] for e in p["explanations"]]
    err = np.array([abs(e["completeness_error"]) for e in calls])
    gap = np.array([e["model_probability"] - e["baseline_probability"] for e in calls])
    prob = np.array([e["probability"] for e in calls])
    ok = err <= np.maximum(TOL_ABS, TOL_REL * np.abs(gap))
    confident = prob > 0.5
    first = [e["features"][0]["feature"] for e in calls if e["features"]]
    n_profiles = sum(bool(p["explanations"]) for p in out["profiles"])
    worst = [{"moa": e["moa"], "probability": e["probability"], "completeness_error": e["completeness_error"]}
             for e in sorted(calls, key=lambda e: -abs(e["completeness_error"]))[:3]]
    return {
        "calls": len(calls), "pass": int(ok.sum()), "pass_rate": round(float(ok.mean()), 4),
        "confident_calls": int(confident.sum()), "confident_pass": int(ok[confident].sum()),
        "max_abs_error": round(float(err.max()), 6), "median_abs_error": round(float(np.median(err)), 6),
        "p99_abs_error": round(float(np.percentile(err, 99)), 6),
        "dose_or_time_ranked_first": int(sum(f in ("cp_time", "cp_dose") for f in first)),
        "seconds": round(seconds, 2), "ms_per_profile": round(1e3 * seconds / max(n_profiles, 1), 1),
        "method": {k: out["method"].get(k) for k in ("baseline", "path", "n_steps", "max_steps")},
        "worst": worst,
    }


def latency(bundle, frame, args) -> dict:
    """One profile, top-3 MoAs, as the page asks for it (median and p95 over `--latency` profiles)."""
    from moa_predict.data.profiles import schema
    from moa_predict.explain.attributions import explain_predictions
    from moa_predict.runtime.threads import limit_threads

    treated = frame[frame[schema.CP_TYPE] == schema.TREATED].iloc[:args.latency]
    ms = []
    with limit_threads(1):
        for i in range(len(treated)):
            row = treated.iloc[[i]]
            t0 = time.perf_counter()
            explain_predictions(bundle.model, row, bundle.target_names, proba=bundle.predict_proba(row), top_moas=3,
                                n_steps=args.steps)
            ms.append(1e3 * (time.perf_counter() - t0))
    return {"profiles": len(ms), "median_ms": round(float(np.median(ms)), 1),
            "p95_ms": round(float(np.percentile(ms, 95)), 1), "max_ms": round(float(np.max(ms)), 1)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", default="/tmp/cs_bundle")
    parser.add_argument("--data", default="/tmp/cs", help="the data the bundle was trained on (its test_features.csv)")
    parser.add_argument("--rows", type=int, default=1000, help="held-out profiles")
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--latency", type=int, default=20, help="profiles timed one by one")
    parser.add_argument("--label", default="after", help="name of this run in the JSON (before / after ...)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "explain" / "completeness.json"))
    args = parser.parse_args(argv)

    import torch
    from rich.console import Console
    from rich.table import Table

    from moa_predict.data.formats.io import write_text
    from moa_predict.bundle import load_bundle

    torch.set_num_threads(1)
    console = Console()
    bundle = load_bundle(args.bundle)
    sets = _frames(args, bundle)
    stack = bundle.info.get("stack")
    run = {"bundle": str(args.bundle), "bundle_command": bundle.info.get("command"),
           "stack": stack if isinstance(stack, str) else "fit on out-of-fold predictions (calibration, safeguard)",
           "command": "python bench/completeness.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "code": os.environ.get("PYTHONPATH", ""), "cpu_cores": os.cpu_count(), "torch_threads": 1,
           "sets": {name: measure(bundle, frame, args) for name, frame in sets.items()},
           "single_profile_latency": latency(bundle, next(iter(sets.values())), args)}
    out = Path(args.out)
    report = json.loads(out.read_text()) if out.is_file() else {}
    report.update({"note": "features are SIMULATED (moa simulate); the bundle is the default blend trained on them",
                   "tolerance": f"|sum of attributions - (p - p0)| <= max({TOL_ABS}, {TOL_REL} * |p - p0|)",
                   "what": "top-3 MoAs of each treated profile, explained by explain_predictions (the page's call)"})
    report.setdefault("runs", {})[f"{args.label} / {Path(args.bundle).name}"] = run
    write_text(json.dumps(report, indent=1), out)

    table = Table(title="completeness of integrated gradients (SIMULATED features), tolerance "
                        f"max({TOL_ABS}, {TOL_REL}·|p − p0|)")
    for col in ("run", "set", "calls", "pass", "p > 0.5 pass", "max |err|", "dose/time first", "ms / profile"):
        table.add_column(col, justify="right")
    for label, r in report["runs"].items():
        for name, m in r["sets"].items():
            table.add_row(label, name, str(m["calls"]), f"{m['pass']} ({100 * m['pass_rate']:.1f} %)",
                          f"{m['confident_pass']} / {m['confident_calls']}", f"{m['max_abs_error']:.3g}",
                          str(m["dose_or_time_ranked_first"]), f"{m['ms_per_profile']:.0f}")
    console.print(table)
    lat = run["single_profile_latency"]
    console.print(f"one profile, top-3 MoAs: median {lat['median_ms']:.0f} ms, p95 {lat['p95_ms']:.0f} ms "
                  f"({lat['profiles']} profiles, 1 torch thread)")
    console.print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
