"""What several subcommands share: the consoles, the bundle option's help, the CV and field tables, the cluster
options. Each subcommand's own module (``cli/train.py``, ``cli/predict.py``, ...) builds on these."""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from ..data.builtin import L1000_REFERENCE

BUNDLE_HELP = (f"a bundle directory written by 'moa train' or 'moa demo', or a built-in model by name (default "
               f"{L1000_REFERENCE!r}: real L1000 signatures of 663 annotated drugs, for gene-expression inputs)")

# soft_wrap: a long message (a path) is never broken mid-path at the terminal width; tables still fit it
console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


def command_line() -> str:
    """The command as typed, kept in reports so each number says how it was measured."""
    return "moa " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def print_cv(report: dict[str, Any], title: str, top: int = 8, members: list[str] | None = None) -> None:
    """The CV table: overall score, folds, each blend member's own score (named by `members`), the hardest
    targets."""
    table = Table(title=title)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("CV log loss", f"{report['score']:.5f}")
    table.add_row("rows", report["rows"])
    table.add_row("folds", f"{report['folds']} ({'grouped by drug' if report['grouped_by_drug'] else 'by rows'}, "
                           f"seed {report['seed']})")
    table.add_row("per fold", "  ".join(f"{s:.5f}" for s in report["fold_scores"]))
    table.add_row("fit time (all folds)", f"{report['fit_seconds']:.1f} s")
    stack = report.get("stack")
    if stack:
        names = members or [f"member {i + 1}" for i in range(len(stack["member_scores"]))]
        for i, (label, score) in enumerate(zip(names, stack["member_scores"])):
            table.add_row("members alone" if i == 0 else "", f"{label}: {score:.5f}")
        table.add_row("stack (all folds)", f"weights {' '.join(f'{w:.3f}' for w in stack['weights'])}; temperature "
                                           f"{stack['temperature'] or 1.0:.3f}; {len(stack['prior_targets'])} "
                                           "targets predicted by their prevalence (safeguard)")
    trust = report.get("trust")
    if trust:
        _trust_rows(table, trust)
    per = sorted(report["per_target"].items(), key=lambda kv: -kv[1])
    table.add_row("hardest targets", ", ".join(f"{k} {v:.4f}" for k, v in per[:top]))
    skill = report.get("per_target_skill")
    if skill:
        from ..evaluation.skill import PREDICTABLE, TOO_FEW

        judged = [s.get("judgement") for s in skill.values()]
        table.add_row("MoAs", f"{judged.count(PREDICTABLE)} predictable, {judged.count(TOO_FEW)} too few compounds "
                              f"to judge, {len(judged) - judged.count(PREDICTABLE) - judged.count(TOO_FEW)} not "
                              "predictable (of " f"{len(judged)})")
    out.print(table)
    if report.get("field"):
        print_field(report["field"], "the field's figures on held-out compounds")


def _trust_rows(table: Table, trust: dict[str, Any]) -> None:
    """The CV table's trust rows: calibration, MoA sets, confident calls, compound pooling."""
    e = trust["ece"]
    table.add_row("calibration (ECE, top call)", f"{e['top1_before']:.4f} → {e['top1_after']:.4f} "
                                                 f"({e['recalibration']}, nested)")
    for s in trust["sets"]:
        q = s.get("set_size_quantiles") or {}
        table.add_row(f"MoA sets at {100 * s['level']:.0f} %",
                      f"recall {100 * s['pooled_recall']:.1f} % on held-out compounds, "
                      f"mean size {s['mean_set_size']:.2f}"
                      + (f", median {q['median']:.0f} (10-90 %: {q['p10']:.0f}-{q['p90']:.0f})" if q else ""))
    for unit, rows in ((u, (trust.get("calls") or {}).get(u)) for u in ("profile", "treatment", "compound")):
        for m in rows or []:
            prec = "no calls" if m["precision"] is None else f"precision {100 * m['precision']:.1f} %"
            table.add_row(f"calls at P = {m['level']:.1f} ({unit}s)",
                          f"{prec}, {100 * m['coverage_profiles']:.1f} % of {unit}s called"
                          + (f", {100 * m['coverage_compounds']:.1f} % of compounds" if unit == "profile"
                             and m.get("coverage_compounds") is not None else "")
                          + (f" ({m['family_calls']:,} family calls)" if m.get("family_calls") else ""))
    pooling = trust.get("compound_pooling")
    if isinstance(pooling, str):
        table.add_row("compound pooling", pooling)
    elif pooling:
        table.add_row("compound pooling", f"log loss {pooling['log_loss_per_profile']:.5f} per profile → "
                                          f"{pooling['log_loss_pooled_calibrated']:.5f} pooled "
                                          f"({pooling['compounds_with_2_or_more_profiles']:,} compounds)")


def print_field(field: dict[str, Any], title: str) -> None:
    """The field's figures (top-k, PR-AUC, ROC-AUC, retrieval mAP, log loss) beside the prior and the control."""
    from ..evaluation.field_metrics import figure_rows

    table = Table(title=title)
    for col in ("figure", "model", "prior", "shuffled labels"):
        table.add_column(col, justify="left" if col == "figure" else "right")
    for name, values in figure_rows(field):
        table.add_row(name, *values)
    out.print(table)
    notes = field.get("notes") or {}
    inputs = (field.get("retrieval") or {}).get("input_profiles") or {}
    lines = [f"{field['rows']:,} profiles ({field['labelled_rows']:,} with a MoA: top-k is over these), "
             f"{field['compounds']:,} compounds"]
    if field.get("judged_moas") is not None:
        lines.append(f"the second macro ROC-AUC is over the {field['judged_moas']} MoAs whose held-out compounds "
                     "each had at least 2 others of the MoA in training")
    if notes.get("shuffled"):
        lines.append(f"shuffled labels: {notes['shuffled']}")
    if inputs.get("map") is not None:
        lines.append(f"retrieval by the input profiles themselves (no model): mAP {inputs['map']:.3f}, "
                     f"{100 * inputs['map_significant']:.0f} % of {inputs['moas']} MoAs retrieved")
    model_r = (field.get("retrieval") or {}).get("model") or {}
    if model_r.get("sampled"):
        lines.append(f"retrieval scored on a seeded sample of {model_r['compounds']:,} labelled compounds")
    for line in lines:
        out.print(line, highlight=False)


def member_labels(model: Any, layout: Any = None) -> list[str] | None:
    """A blend's members for the CV table, described in the words of the data's layout (default LISH-MoA's): its
    blocks' PCA, or, for fixed columns, the members' own g-/c- PCA sizes."""
    labels = getattr(model, "member_labels", None)
    if not labels:
        return None
    from ..data.profiles.layout import Layout

    layout = layout or Layout.lish_moa()
    return labels(None if layout.fixed_columns else {b.name: int(b.pca) for b in layout.blocks})


def add_cluster_args(p: argparse.ArgumentParser, what: str) -> None:
    """--scheduler / --dask-workers: `what` says what the cluster runs for this subcommand."""
    group = p.add_mutually_exclusive_group()
    group.add_argument("--scheduler", metavar="ADDRESS",
                       help=f"Dask scheduler of an existing cluster (tcp://HOST:8786): {what}. Needs "
                            "pip install 'moa-predict[dask]'")
    group.add_argument("--dask-workers", type=int, metavar="N",
                       help="the same on a local Dask cluster of N worker processes")
