"""Calibration of the models' probabilities on a multi-label layout, compound-grouped CV (issue 27, item 1).

On the real L1000 consensus table (one REAL consensus signature per compound, Drug Repurposing Hub MoAs):

    moa layout infer ../shared/real/l1000_consensus/consensus_signatures.csv.gz --out runs/consensus.toml
    python bench/knn_calibration.py --features ../shared/real/l1000_consensus/consensus_signatures.csv.gz \
        --layout runs/consensus.toml --models knn logreg prior --out docs/knn/consensus_calibration.json

For each model: out-of-fold predictions of `moa train`'s cross-validation (folds grouped by compound, seed 0),
then the mean column-wise log loss, the expected calibration error of the top call (its probability against
whether it is a true MoA), the top-1 accuracy (the top call is a true MoA), the mean top-call probability, and
the share of compounds whose top call is the most frequent training MoA (a vote that favours frequent classes
puts it first far more often than it is right). Prints a Markdown table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from moa_predict.data.formats.io import jsonable, write_text  # noqa: E402
from moa_predict.data.profiles.layout import load_layout  # noqa: E402
from moa_predict.data.profiles.reader import load_profiles, training_rows  # noqa: E402
from moa_predict.trust.calibration import calibration_report, top1_outcomes  # noqa: E402
from moa_predict.models.registry import make_model  # noqa: E402
from moa_predict.training.crossval import cross_validate  # noqa: E402


def scores(Y: np.ndarray, P: np.ndarray, names: list[str]) -> dict[str, float]:
    """Log loss, top-call ECE, top-1 accuracy, mean top probability, share of top calls on the most frequent MoA."""
    report = calibration_report(Y, P, names)
    correct, conf = top1_outcomes(Y, P)
    frequent = int(np.argmax(Y.sum(axis=0)))
    return {"log_loss": report["log_loss"], "ece_top1": report["top1"]["ece"], "top1_accuracy": float(correct.mean()),
            "mean_top1_probability": float(conf.mean()),
            "top1_is_most_frequent_moa": float((P.argmax(axis=1) == frequent).mean()),
            "most_frequent_moa": names[frequent], "most_frequent_moa_share": float(Y[:, frequent].mean())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--features", required=True)
    ap.add_argument("--layout", required=True)
    ap.add_argument("--models", nargs="+", default=["knn", "logreg", "prior"])
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="JSON output")
    args = ap.parse_args(argv)
    data = load_profiles(args.features, load_layout(args.layout))
    data = data.subset(training_rows(data))
    treated = ~data.is_control
    Y = data.targets.to_numpy(np.float64)[treated]
    rows = {}
    for name in args.models:
        t0 = time.perf_counter()
        result = cross_validate(make_model(name), data, n_splits=args.folds, seed=args.seed, progress=False)
        rows[name] = {**scores(Y, np.asarray(result.oof, np.float64)[treated], list(data.target_names)),
                      "grouped_by_compound": bool(result.grouped), "seconds": round(time.perf_counter() - t0, 1)}
    lines = [f"{data.source}: {int(treated.sum()):,} labelled profiles, {Y.shape[1]} MoAs, {args.folds}-fold CV "
             f"grouped by compound (seed {args.seed})", "",
             "| model | log loss | ECE (top call) | top-1 accuracy | mean top-call p | top call = most frequent MoA |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, r in rows.items():
        lines.append(f"| `{name}` | {r['log_loss']:.5f} | {r['ece_top1']:.4f} | {r['top1_accuracy']:.3f} | "
                     f"{r['mean_top1_probability']:.3f} | {100 * r['top1_is_most_frequent_moa']:.1f} % |")
    first = next(iter(rows.values()))
    lines.append(f"\nmost frequent MoA: {first['most_frequent_moa']} ({100 * first['most_frequent_moa_share']:.1f} % "
                 "of the labelled profiles)")
    print("\n".join(lines))
    if args.out:
        write_text(json.dumps(jsonable({"features": args.features, "layout": args.layout, "folds": args.folds,
                                        "seed": args.seed, "models": rows, "command": " ".join(sys.argv)}),
                              indent=1), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
