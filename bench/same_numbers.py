"""Every model's CV score and predictions on one fixed small SIMULATED set, through the CLI.

Run before and after a change to the code's structure to show that the numbers did not move:

    python bench/same_numbers.py --out /tmp/before          # on the old code
    python bench/same_numbers.py --out /tmp/after --compare /tmp/before

It simulates 600 training + 100 test profiles (seed 0), trains every registered model with small
settings (3 drug-grouped folds, seed 0) through ``moa train``, predicts the test file through
``moa predict``, and writes ``same_numbers.json`` (scores) and ``same_numbers.npz`` (per-target CV
losses and test predictions) under --out. With --compare it prints the largest differences and
exits 1 when any exceeds --tolerance. Only the CLI is used, so the script survives any internal change.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

MODELS: dict[str, list[str]] = {
    "prior": [],
    "brknn-a": ["k=5"],
    "brknn-b": ["k=50"],
    "ml-knn": ["k=10"],
    "paper-nn": ["epochs=5"],
    "mlp": ["epochs=10", "hidden=[64,64]"],
    "recipe-mlp": ["epochs=10", "hidden=128", "g_pca=50", "c_pca=10"],
    "resnet": ["epochs=10", "width=64"],
    "cnn1d": ["epochs=10"],
    "logreg": ["epochs=20"],
    "blend": [],  # the default blend, default members, stack fit on its own OOF
}


def moa(*args: str) -> None:
    cmd = [sys.executable, "-m", "moa_predict.cli", *args]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{done.stderr[-3000:]}")


def run(out: Path, models: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    if not (data / "train_features.csv").is_file():
        moa("simulate", "--out", str(data), "--rows", "600", "--test-rows", "100", "--seed", "0")
    scores: dict[str, dict] = {}
    arrays: dict[str, np.ndarray] = {}
    if (out / "same_numbers.json").is_file():  # a rerun of some models keeps the others' figures
        scores = json.loads((out / "same_numbers.json").read_text())
        arrays = dict(np.load(out / "same_numbers.npz"))
    for name in models:
        t0 = time.perf_counter()
        bundle = out / f"bundle-{name}"
        params = [a for p in MODELS[name] for a in ("--param", p)]
        moa("train", "--data", str(data), "--model", name, "--folds", "3", "--seed", "0", "--out", str(bundle),
            *params)
        pred = out / f"pred-{name}.csv"
        moa("predict", "--bundle", str(bundle), "--features", str(data / "test_features.csv"), "--out", str(pred))
        report = json.loads((bundle / "cv_report.json").read_text())
        per_target = report["per_target"]
        arrays[f"{name}/per_target"] = np.array(list(per_target.values()), dtype=np.float64)
        arrays[f"{name}/test"] = pd.read_csv(pred).drop(columns="sig_id").to_numpy(np.float64)
        scores[name] = {"cv": report["score"], "fold_scores": report["fold_scores"],
                        "seconds": round(time.perf_counter() - t0, 1)}
        print(f"{name:12s} cv {report['score']:.8f}  ({scores[name]['seconds']} s)", flush=True)
    (out / "same_numbers.json").write_text(json.dumps(scores, indent=1))
    np.savez(out / "same_numbers.npz", **arrays)


def compare(new: Path, old: Path, tolerance: float) -> int:
    a, b = np.load(new / "same_numbers.npz"), np.load(old / "same_numbers.npz")
    sa, sb = json.loads((new / "same_numbers.json").read_text()), json.loads((old / "same_numbers.json").read_text())
    worst = 0.0
    print(f"{'model':12s} {'cv now':>12s} {'cv before':>12s} {'max |d| per-target':>20s} {'max |d| test pred':>18s}")
    for name in sa:
        if name not in sb:
            continue
        dt = float(np.abs(a[f"{name}/per_target"] - b[f"{name}/per_target"]).max())
        dp = float(np.abs(a[f"{name}/test"] - b[f"{name}/test"]).max())
        worst = max(worst, dt, dp, abs(sa[name]["cv"] - sb[name]["cv"]))
        print(f"{name:12s} {sa[name]['cv']:12.8f} {sb[name]['cv']:12.8f} {dt:20.3g} {dp:18.3g}")
    print(f"largest difference {worst:.3g} (tolerance {tolerance:g})")
    return 0 if worst <= tolerance else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--models", nargs="*", default=list(MODELS))
    ap.add_argument("--compare", type=Path, help="a previous --out to compare with")
    ap.add_argument("--tolerance", type=float, default=1e-6)
    args = ap.parse_args()
    run(args.out, args.models)
    return compare(args.out, args.compare, args.tolerance) if args.compare else 0


if __name__ == "__main__":
    sys.exit(main())
