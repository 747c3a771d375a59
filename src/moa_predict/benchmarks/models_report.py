"""How ``moa benchmark models`` shows its report: the terminal table, the Markdown page and the JSON file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..data.formats.io import write_text
from .models import MIN_POSITIVES
from .render import markdown_table, rich_table, write_json

COLUMNS = ("model", "CV log loss", "fit time (all folds)", "predict profiles/s", "targets worse than prior")


def print_report(report: dict[str, Any], console) -> None:
    rows = [(r["label"], f"{r['score']:.5f}", f"{r['fit_seconds']:.0f} s", f"{r['predict_rows_per_second']:,.0f}",
             str(r["targets_worse_than_prior"])) for r in report["rows"]]
    console.print(rich_table(f"Models on {report['data']['source']} (features SIMULATED), "
                             f"{report['cv']['folds']}-fold drug-grouped CV, seed {report['cv']['seed']}",
                             COLUMNS, rows))
    for k, v in report["ratios"].items():
        console.print(f"{k}: {v}")


def to_markdown(report: dict[str, Any]) -> str:
    d, c, m = report["data"], report["cv"], report["machine"]
    lines = [
        "# Models benchmark: prior, the paper's four models, the public recipe, ours and the default blend",
        "",
        f"Command: `{report['command']}`" if report["command"] else "",
        "",
        f"Data: `{d['source']}`, fingerprint `{d['fingerprint']}`, {d['rows']:,} rows"
        f"{' (quick subsample)' if d['quick_subsample'] else ''}. **Features are SIMULATED** (the real ones cannot "
        "be obtained here): compare models side by side, not with published leaderboard numbers.",
        f"Scored: {d['rows_scored']}; {c['folds']} folds ({'grouped by drug' if c['grouped_by_drug'] else 'by rows'}), "
        f"seed {c['seed']}. Metric: {c['metric']}.",
        f"Machine: {m['platform']}, {m['cpus']} CPUs, device {m['device']}; load average at start "
        f"{m['load_average_at_start']}, at end {m['load_average_at_end']} (the machine is shared: wall times include "
        "waiting for other jobs; CPU seconds are this process's own). Total wall time "
        f"{report['wall_seconds']:.0f} s.",
        "",
    ]
    header = ("model", "CV log loss", "per fold", "fit time, all folds (wall)", "fit CPU-seconds",
              "predict profiles/s", f"targets (>= {MIN_POSITIVES} positives) worse than prior")
    cached = " \\*"  # Markdown: a literal asterisk after the label
    rows = [(r["label"] + (cached if r.get("timings_from_cache") else ""), f"{r['score']:.5f}",
             " ".join(f"{s:.5f}" for s in r["fold_scores"]), f"{r['fit_seconds']:.0f} s",
             "—" if r["fit_cpu_seconds"] is None else f"{r['fit_cpu_seconds']:.0f}",
             f"{r['predict_rows_per_second']:,.0f}", str(r["targets_worse_than_prior"])) for r in report["rows"]]
    lines += markdown_table(header, rows, ["left", "right", "left", "right", "right", "right", "right"])
    lines.append("")
    if any(r.get("timings_from_cache") for r in report["rows"]):
        lines += ["\\* out-of-fold predictions, fit times and throughput stored by an earlier run of this command "
                  "(`--cache`: same code version, data, folds and parameters); the total wall time above is this "
                  "run's.", ""]
    if report["ratios"]:
        lines.append("Ratios: " + "; ".join(f"{k} = {v}" for k, v in report["ratios"].items()) + ".")
        lines.append("")
    b = report.get("blend")
    if b:
        lines += [
            "Blend (honest, nested): the member weights, the temperature and the per-target safeguard are fit on "
            "the other folds' out-of-fold predictions and applied to each fold in turn.",
            "",
        ]
        lines += markdown_table(("stacking step", "nested CV log loss", "targets worse than the prior"),
                                [(name, f"{v['score']:.5f}", str(v["targets_worse_than_prior"]))
                                 for name, v in b["variants"].items()])
        worse = report["rows"][-1].get("worse_targets") or {}
        if worse:
            lines += ["", "Targets (>= 10 positives) where the default model's nested OOF log loss is above the "
                      "prior's: " + ", ".join(f"{k} ({v:+.1%})" for k, v in worse.items()) + "."]
        st = b["stack_all_folds"]
        lines += [
            "",
            f"Equal weights, no fitting: {b['equal_weight_score']:.5f}. The default member weights alone (what a "
            f"blend trained without cross-validation uses; fit earlier on OOF predictions like these, so not an "
            f"honest score): {b['default_weights_on_these_oof_not_nested']:.5f}. Temperature fit on all folds: "
            f"{st.get('temperature') or 1.0:.3f}. Safeguard (models.stack.safeguard_factors): a target whose "
            f"blend improves its OOF log loss on the prior's by less than {b['min_gain']:.0%} is predicted by the "
            f"prior when its positives come from at most 10 drugs, else shrunk towards the prior (factor 0.3).",
            f"Weights fit on all folds: {', '.join(f'{w:.3f}' for w in st['weights'])}; the default weights "
            f"(used without cross-validation): "
            f"{', '.join(f'{w:.3f}' for w in (b['default_weights'] or [])) or 'equal weights'}. Safeguarded "
            f"targets on all folds: {len(st['prior_targets'])}. `moa train` fits this stack on the out-of-fold "
            f"predictions of the data it trains on.",
            "",
        ]
    return "\n".join(lines)


def write_outputs(report: dict[str, Any], out_dir: str | os.PathLike) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "models_table.json", out / "models_table.md"]
    write_json(report, paths[0], default=float)
    write_text(to_markdown(report), paths[1])
    return paths
