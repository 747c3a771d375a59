"""Benchmark of the trust layer: calibration, MoA sets with a recall guarantee, compound pooling.

On the real-label simulated set (``moa simulate --labels-from /work/shared/lish-moa --out /tmp/final_sim
--seed 0``: real sig_ids, drugs and labels, SIMULATED features), with compound-grouped 5-fold CV:

1. Out-of-fold predictions of a registered model (default ``logreg``: cheap but real; cached as .npz).
2. ``trust.model.fit_trust`` on them, exactly as ``moa train`` does: the held-out recall of the MoA sets at
   80/90/95 % (λ calibrated on 4 folds' compounds, measured on the 5th's), pooled and per profile, mean set size,
   the plain top-k list reaching the same recall; ECE before/after the nested recalibration; compound pooling's
   log loss gain.
3. A reliability plot (PNG) and JSON under docs/trust/, and a Markdown table for the README.

Example:  nice -n 10 python bench/trust.py --data /tmp/final_sim --model logreg
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

from moa_predict.data.profiles.dataset import load_dataset  # noqa: E402
from moa_predict.data.formats.io import atomic_path, write_text  # noqa: E402
from moa_predict.training.crossval import CVResult, cross_validate  # noqa: E402
from moa_predict.trust.model import fit_trust  # noqa: E402
from moa_predict.models.registry import make_model  # noqa: E402

SIMULATED = "SIMULATED features (real LISH-MoA sig_ids, drugs and labels; features from moa simulate)"


def out_of_fold(data, model: str, folds: int, seed: int, cache: Path) -> tuple[CVResult | None, np.ndarray,
                                                                                  np.ndarray, float]:
    if cache.exists():
        z = np.load(cache)
        return None, z["oof"], z["fold"], float(z["score"])
    result = cross_validate(make_model(model), data, n_splits=folds, seed=seed)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(cache, oof=result.oof, fold=result.fold, score=result.score)
    return result, result.oof, result.fold, result.score


def plot(report: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.4))
    for ax, key, name in zip(axes, ("top1", "pairs"), ("each profile's top MoA", "all (profile, MoA) pairs")):
        for when, style in (("before", "o-"), ("after", "s--")):
            bins = report[when][key]["bins"]
            ax.plot([b["mean_predicted"] for b in bins], [b["observed"] for b in bins], style,
                    label=f"{when} recalibration (ECE {report[when][key]['ece']:.5f})")
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8)
        ax.set_xlabel("predicted probability")
        ax.set_ylabel("observed frequency")
        ax.set_title(name)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=8.5)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def table(summary: dict, model: str, nested: dict) -> str:
    lines = [f"Held-out compounds, {model} out-of-fold predictions, 5-fold compound-grouped CV; {SIMULATED}.", "",
             "| level | pooled recall | per-profile recall | mean set size | empty sets | top-k for same recall |",
             "|---|---|---|---|---|---|"]
    for m in summary["sets"]:
        lines.append(f"| {100 * m['level']:.0f} % | {100 * m['pooled_recall']:.1f} % | "
                     f"{100 * m['per_profile_recall']:.1f} % | {m['mean_set_size']:.2f} | "
                     f"{100 * m['empty_share']:.1f} % | k = {m['top_k_same_recall']['k']} |")
    e = summary["ece"]
    m = nested["methods"]
    lines += ["", f"ECE (top-1 call, held-out compounds, recalibration nested): {e['top1_before']:.4f} before, "
                  f"{e['top1_after']:.4f} after ({e['recalibration']}); all pairs: {e['pairs_before']:.5f} / "
                  f"{e['pairs_after']:.5f}. CV log loss {m['identity']['log_loss']:.5f} before, "
                  f"{m[nested['chosen']]['log_loss']:.5f} after."]
    g = summary.get("compound_pooling")
    if isinstance(g, str):
        lines.append(f"Compound pooling: {g}.")
    elif g:
        lines.append(f"Compound pooling ({g['compounds_with_2_or_more_profiles']:,} held-out compounds): log loss "
                     f"{g['log_loss_per_profile']:.5f} per profile → {g['log_loss_pooled_calibrated']:.5f} pooled "
                     f"(mean logit {g['log_loss_mean_logit']:.5f} before the compound map).")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="/tmp/final_sim")
    ap.add_argument("--model", default="logreg")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "docs" / "trust"))
    ap.add_argument("--cache", default="/tmp/trust_oof")
    args = ap.parse_args(argv)
    out = Path(args.out)
    data = load_dataset(args.data)
    t0 = time.perf_counter()
    _, oof, fold, score = out_of_fold(data, args.model, args.folds, args.seed,
                                      Path(args.cache) / f"{args.model}_f{args.folds}_s{args.seed}.npz")
    cv_seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    trust = fit_trust(CVResult(oof=oof, fold=fold, score=score, per_target=None, fold_scores=[], rows="",
                               grouped=True, n_splits=args.folds, seed=args.seed, fit_seconds=0.0,
                               predict_seconds=0.0, n_predicted=0), data)
    fit_seconds = time.perf_counter() - t1
    summary = trust.summary()
    for s in summary["sets"]:  # the top-k comparison is kept with the measured figures
        s["top_k_same_recall"] = trust.measured_at(s["level"])["top_k_same_recall"]
    report = {"data": SIMULATED, "source": str(args.data), "model": args.model, "cv_log_loss": score,
              "folds": args.folds, "seed": args.seed, "cv_seconds": round(cv_seconds, 1),
              "fit_trust_seconds": round(fit_seconds, 1), "command": "python bench/trust.py " + " ".join(
                  sys.argv[1:] if argv is None else argv),
              "summary": summary, "trust": trust.to_dict()}
    out.mkdir(parents=True, exist_ok=True)
    write_text(json.dumps(report, indent=1), out / "trust_benchmark.json")
    plot(trust.calibration, out / "reliability.png",
         f"Reliability on held-out compounds ({args.model} OOF, compound-grouped CV; recalibration nested)"
         f"\n{SIMULATED}")
    text = table(summary, args.model, trust.calibration["nested"])
    write_text(text + "\n", out / "trust_table.md")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
