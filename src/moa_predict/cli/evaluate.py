"""``moa evaluate``: a predictions file scored against true targets (the report is built by
``evaluation.report``; this module reads the options, prints and writes)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.table import Table

from ..data.errors import DataError
from .common import out, print_field


def cmd_evaluate(args: argparse.Namespace) -> None:
    from ..data.formats.io import write_text
    from ..evaluation.report import read_scored, score_predictions

    data = read_scored(args.targets, args.predictions, args.features)
    prior, prior_note = _evaluation_prior(args.bundle, data.names)
    report = score_predictions(data, prior, prior_note, retrieval=not args.no_retrieval)
    out.print(f"mean column-wise log loss: {report.score:.5f} on {report.rows}")
    out.print(f"prior log loss: {report.prior_score:.5f} (every profile given {report.prior_note})", highlight=False)
    ranking = report.ranking()
    if ranking:
        mean_auc, mean_ap, defined = ranking
        out.print(f"mean ROC AUC {mean_auc:.3f}, mean average precision {mean_ap:.3f} over the "
                  f"{defined} targets with a positive ({len(report.auc) - defined} without one: no AUC)")
    table = Table(title=f"{args.top} hardest targets")
    table.add_column("target", overflow="fold")  # a narrow console folds a long MoA name, never cuts it
    for col in ("log loss", "prior", "ROC AUC", "avg precision", "positives"):
        table.add_column(col, justify="right")
    for j in report.hardest(args.top):
        table.add_row(report.names[j], f"{report.per[j]:.5f}", f"{report.per_prior[j]:.5f}", _or_dash(report.auc[j]),
                      _or_dash(report.ap[j]), f"{int(report.positives[j]):,}")
    out.print(table)
    print_field(report.field, "the field's figures")
    if args.out:
        write_text(json.dumps(report.to_json(), indent=1), args.out)


def _or_dash(value: float | None) -> str:
    """A ranking score for the table; '—' where it is undefined (a target without a positive)."""
    return "—" if value is None else f"{value:.3f}"


def _evaluation_prior(bundle_path: str | None, names: list[str]) -> tuple[Any, str]:
    """The bundle's training prevalence for these targets, or (None, "") without a bundle."""
    if not bundle_path:
        return None, ""
    from ..bundle import load_bundle

    bundle = load_bundle(bundle_path)
    prevalence = bundle.training_prevalence()
    if prevalence is None:
        return None, ""
    missing = [n for n in names if n not in bundle.target_names]
    if missing:
        raise DataError(f"the targets file has {len(missing)} target(s) the bundle does not predict, such as "
                        f"{missing[0]!r}. Use the bundle the predictions were made with.", source=str(bundle_path))
    order = [bundle.target_names.index(n) for n in names]
    return prevalence[order], "each MoA's training frequency, from the bundle"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="score predictions against targets",
                       description="Mean column-wise log loss of a predictions file against true 0/1 targets, "
                                   "beside the prior's, with per-target ROC AUC and average precision.")
    p.add_argument("--predictions", required=True, help="predictions file written by 'moa predict' (CSV/Parquet)")
    p.add_argument("--targets", required=True, help="true 0/1 targets (train_targets_scored layout)")
    p.add_argument("--bundle", help="the bundle that made the predictions: the prior is then its training "
                                    "frequency (without it, the targets' own frequency: optimistic)")
    p.add_argument("--features", help="features file, to exclude control rows from the score (and, with a "
                                      "compound column such as drug_id, to permute labels and retrieve by compound)")
    p.add_argument("--top", type=int, default=10, help="how many hardest targets to list")
    p.add_argument("--no-retrieval", action="store_true", help="skip the retrieval mAP (copairs)")
    p.add_argument("--out", help="write the scores as JSON")
    p.set_defaults(func=cmd_evaluate)
