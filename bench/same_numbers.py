"""Every model's CV score and predictions on one fixed small SIMULATED set, through the CLI.

Run before and after a change to the code's structure to show that the numbers did not move:

    python bench/same_numbers.py --out /tmp/before          # on the old code
    python bench/same_numbers.py --out /tmp/after --compare /tmp/before

It simulates 600 training + 100 test profiles (seed 0), trains every registered model with small
settings (3 drug-grouped folds, seed 0) through ``moa train``, predicts the test file through
``moa predict``, and writes ``same_numbers.json`` (scores) and ``same_numbers.npz`` (per-target CV
losses and test predictions) under --out. With --compare it prints the largest differences and
exits 1 when any exceeds --tolerance. Only the CLI is used, so the script survives any internal change.

Beyond the LISH-MoA models it covers the other kinds of table (``--cases``): ``cellpainting-knn`` (a SIMULATED Cell
Painting screen from ``moa simulate --layout-kind cellpainting``, trained with ``knn`` through its layout),
``bbbc021-knn`` (the real BBBC021 wells with the shipped ``bbbc021`` layout, only when ../shared/real/bbbc021 exists)
and ``l1000-reference`` (the shipped real L1000 bundle on its shipped level-5 examples, and the examples pooled per
compound). Each case compares every number its outputs hold (probabilities, the 'ood' column, MoA sets, calls with
their estimated precision); their text columns (ids, sets, calls) are compared through a digest.
"""

from __future__ import annotations

import argparse
import hashlib
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


ROOT = Path(__file__).resolve().parents[1]
BBBC021 = ROOT.parent / "shared" / "real" / "bbbc021"  # --bbbc021 points elsewhere (e.g. from a git worktree)
EXAMPLES = ROOT / "src" / "moa_predict" / "data" / "builtin" / "examples" / "l1000_level5_examples.csv"
CASES = ["cellpainting-knn", "bbbc021-knn", "l1000-reference"]


def moa(*args: str) -> None:
    cmd = [sys.executable, "-m", "moa_predict.cli", *args]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{done.stderr[-3000:]}")


def run(out: Path, models: list[str], cases: list[str], bbbc021: Path = BBBC021) -> None:
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
    for name in cases:
        done = run_case(out, name, bbbc021)
        if done is not None:
            scores[name] = done[0]
            arrays.update(done[1])
    (out / "same_numbers.json").write_text(json.dumps(scores, indent=1))
    np.savez(out / "same_numbers.npz", **arrays)


def outputs(files: list[Path]) -> tuple[np.ndarray, str]:
    """Every number of the prediction files side by side (float64) and a digest of their text columns."""
    numbers, digest = [], hashlib.sha256()
    for f in files:
        frame = pd.read_csv(f)
        numeric = frame.select_dtypes(include=["number", "bool"])
        numbers.append(numeric.to_numpy(np.float64).ravel())
        text = frame.drop(columns=numeric.columns)
        digest.update(f.name.encode() + b"|" + "|".join(map(str, frame.columns)).encode())
        digest.update(pd.util.hash_pandas_object(text.astype(str), index=False).to_numpy().tobytes())
    return np.concatenate(numbers), digest.hexdigest()[:16]


def predict_all(out: Path, name: str, bundle: str, features: Path, level: str = "profile") -> list[Path]:
    """One case's predictions with every extra output: kept columns + ood, MoA sets, confident calls."""
    files = [out / f"pred-{name}-{level}.csv", out / f"sets-{name}-{level}.csv", out / f"calls-{name}-{level}.csv"]
    extra = ["--sets-out", str(files[1])] if level == "profile" else []
    moa("predict", "--bundle", bundle, "--features", str(features), "--out", str(files[0]), "--keep-columns",
        "--level", level, "--calls-out", str(files[2]), "--quiet", *extra)
    return [f for f in files if f.is_file()]


def run_case(out: Path, name: str, bbbc021: Path = BBBC021) -> tuple[dict, dict[str, np.ndarray]] | None:
    """Train (where the case trains) and predict one non-LISH-MoA case; None when its data is absent."""
    t0, report, files = time.perf_counter(), None, []
    if name == "l1000-reference":
        files += predict_all(out, name, "l1000-reference", EXAMPLES)
        files += predict_all(out, name, "l1000-reference", EXAMPLES, level="compound")
    else:
        if name == "cellpainting-knn":
            data = out / "data-cellpainting"
            if not (data / "profiles.csv.gz").is_file():
                moa("simulate", "--layout-kind", "cellpainting", "--out", str(data), "--seed", "0")
            table, layout = data / "profiles.csv.gz", data / "layout.toml"
        else:
            if not (bbbc021 / "per_well_mean.csv.gz").is_file():
                print(f"{name:12s} skipped: {bbbc021} is absent", flush=True)
                return None
            shipped = ROOT / "src" / "moa_predict" / "benchmarks" / "layouts" / "bbbc021.toml"
            table, layout = bbbc021 / "per_well_mean.csv.gz", out / "bbbc021.toml"
            layout.write_text(shipped.read_text(encoding="utf-8").replace('file = "', f'file = "{bbbc021}/'),
                              encoding="utf-8")
        bundle = out / f"bundle-{name}"
        moa("train", "--features", str(table), "--layout", str(layout), "--model", "knn", "--folds", "3",
            "--seed", "0", "--out", str(bundle))
        report = json.loads((bundle / "cv_report.json").read_text())
        files += predict_all(out, name, str(bundle), table)
        files += predict_all(out, name, str(bundle), table, level="treatment")
    numbers, digest = outputs(files)
    arrays = {f"{name}/test": numbers}
    score = {"cv": float("nan"), "fold_scores": [], "text": digest, "seconds": round(time.perf_counter() - t0, 1)}
    if report is not None:
        arrays[f"{name}/per_target"] = np.array(list(report["per_target"].values()), dtype=np.float64)
        score.update(cv=report["score"], fold_scores=report["fold_scores"])
    print(f"{name:16s} cv {score['cv']:.8f}  {len(numbers)} numbers  ({score['seconds']} s)", flush=True)
    return score, arrays


def compare(new: Path, old: Path, tolerance: float) -> int:
    a, b = np.load(new / "same_numbers.npz"), np.load(old / "same_numbers.npz")
    sa, sb = json.loads((new / "same_numbers.json").read_text()), json.loads((old / "same_numbers.json").read_text())
    worst = 0.0
    text_differs: list[str] = []
    print(f"{'model':16s} {'cv now':>12s} {'cv before':>12s} {'max |d| per-target':>20s} {'max |d| test pred':>18s}"
          f" {'text':>5s}")
    for name in sa:
        if name not in sb:
            continue
        key = f"{name}/per_target"
        dt = float(np.abs(a[key] - b[key]).max()) if key in a.files and key in b.files else 0.0
        if a[f"{name}/test"].shape != b[f"{name}/test"].shape:
            print(f"{name:16s} outputs differ in shape: {a[f'{name}/test'].shape} vs {b[f'{name}/test'].shape}")
            worst = float("inf")
            continue
        dp = float(np.nanmax(np.abs(a[f"{name}/test"] - b[f"{name}/test"]), initial=0.0))
        if not np.array_equal(np.isnan(a[f"{name}/test"]), np.isnan(b[f"{name}/test"])):
            dp = float("inf")
        cv_now, cv_before = sa[name]["cv"], sb[name]["cv"]
        dcv = 0.0 if np.isnan(cv_now) and np.isnan(cv_before) else abs(cv_now - cv_before)
        worst = max(worst, dt, dp, dcv)
        same_text = sa[name].get("text") == sb[name].get("text")
        if not same_text:
            text_differs.append(name)
        text = "same" if same_text else "DIFF"
        print(f"{name:16s} {cv_now:12.8f} {cv_before:12.8f} {dt:20.3g} {dp:18.3g} {text:>5s}")
    print(f"largest difference {worst:.3g} (tolerance {tolerance:g}); text columns differ: {text_differs or 'none'}")
    return 0 if worst <= tolerance and not text_differs else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--models", nargs="*", default=list(MODELS))
    ap.add_argument("--cases", nargs="*", default=CASES, help="the non-LISH-MoA tables: " + ", ".join(CASES))
    ap.add_argument("--bbbc021", type=Path, default=BBBC021, help="the real BBBC021 files (default ../shared/...)")
    ap.add_argument("--compare", type=Path, help="a previous --out to compare with")
    ap.add_argument("--tolerance", type=float, default=1e-6)
    args = ap.parse_args()
    run(args.out, args.models, args.cases, args.bbbc021)
    return compare(args.out, args.compare, args.tolerance) if args.compare else 0


if __name__ == "__main__":
    sys.exit(main())
