"""``moa predict``: a features file predicted in chunks (or on a Dask cluster, or per treatment / compound), with
MoA sets and confident calls written beside it on request."""

from __future__ import annotations

import argparse
from typing import Any

from rich.markup import escape

from ..data.builtin import L1000_REFERENCE
from ..data.errors import DataError
from .common import BUNDLE_HELP, add_cluster_args, console


def cmd_predict(args: argparse.Namespace) -> None:
    from ..data.profiles.gene_features import mapping_note, substitution_notes

    if args.set_level is not None and not args.sets_out:
        raise DataError("--set-level needs --sets-out FILE.csv (where the MoA sets are written).")
    if args.call_precision is not None and not (args.calls_out or args.target_calls_out):
        raise DataError("--call-precision needs --calls-out FILE.csv (where the calls are written).")
    if (args.targets_out or args.target_calls_out) and args.level != "profile":
        raise DataError("--targets-out / --target-calls-out are per profile: use them with --level profile.")
    if args.level != "profile":
        return _predict_level(args)
    from ..bundle import load_bundle

    bundle = load_bundle(args.bundle)
    tables = {"sets_out": args.sets_out, "set_level": args.set_level, "calls_out": args.calls_out,
              "call_precision": args.call_precision, "targets_out": args.targets_out,
              "target_calls_out": args.target_calls_out}
    if args.scheduler or args.dask_workers:
        from ..inference.distributed import predict_file_distributed
        from ..runtime.cluster import dask_client, local_threads

        with dask_client(args.scheduler, args.dask_workers) as client:
            summary = predict_file_distributed(
                client, args.bundle, args.features, args.out, chunk_rows=args.chunk_rows,
                partition_rows=args.partition_rows, keep_columns=args.keep_columns, progress=not args.quiet,
                threads=None if args.scheduler else local_threads(args.dask_workers), ood=not args.no_ood, **tables)
    else:
        from ..inference.stream import predict_file

        summary = predict_file(bundle, args.features, args.out, chunk_rows=args.chunk_rows,
                               keep_columns=args.keep_columns, progress=not args.quiet, ood=not args.no_ood,
                               **tables)
    marker = bundle.simulated_marker
    if marker:
        console.print(f"[yellow]note:[/] this model was trained on SIMULATED profiles: "
                      f"{escape(str(marker.get('note', 'features from moa simulate')))}", highlight=False)
    if (genes := mapping_note(summary.mapping)) is not None:
        console.print(escape(genes), highlight=False)
    for note in substitution_notes(summary.substituted):
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
    console.print(f"answered by the {' and the '.join(sorted(summary.answered_by)) or 'model'}")
    if summary.ood is not None:
        why = "; ".join(f"{n:,}: {w}" for w, n in sorted(summary.ood_reasons.items(), key=lambda kv: -kv[1]))
        console.print(f"out of distribution: {summary.ood:,} of {summary.rows:,} profiles"
                      + (f" ({escape(why)}): their predictions are extrapolations" if summary.ood else "")
                      + ("" if args.keep_columns or args.sets_out else
                         " (--keep-columns or --sets-out write the 'ood' column)"), highlight=False)
    console.print(f"wrote {summary.rows:,} predictions ({summary.controls:,} control rows predicted 0) to "
                  f"{args.out} in {summary.seconds:.1f} s")
    if args.sets_out:
        x = summary.extra
        why = "; ".join(f"{n:,} {w}" for w, n in x["abstentions"].items())
        simulated = bundle.simulated
        console.print(f"wrote MoA sets at the {100 * x['set_level']:.0f} % level to {args.sets_out}: "
                      f"{x['with_set']:,} profiles with a set{'; ' + why if why else ''}. "
                      f"{bundle.trust.sentence(x['set_level'], simulated)}", highlight=False)
    if args.calls_out:
        x = summary.extra["calls"]
        _print_calls(bundle, x["precision"], x["made"], x["reasons"], args.calls_out, "profile")
    if args.targets_out:
        part = bundle.label_set()
        console.print(f"wrote {len(part.target_names):,} target probabilities per profile "
                      f"({part.info.get('label_set', 'targets')}) to {escape(args.targets_out)}", highlight=False)
    if args.target_calls_out:
        x = summary.extra["target_calls"]
        _print_calls(bundle.label_set(), x["precision"], x["made"], x["reasons"], args.target_calls_out, "profile")


def _predict_level(args: argparse.Namespace) -> None:
    """--level treatment / compound: each treatment's (or compound's) wells averaged, then called."""
    from ..data.formats.io import write_table
    from ..inference.levels import predict_level
    from ..bundle import load_bundle

    if args.sets_out:
        raise DataError("--sets-out is per profile; use it with --level profile.")
    bundle = load_bundle(args.bundle)
    precision = None if not args.calls_out else _call_precision(args)
    frame, calls = predict_level(bundle, args.features, args.level, call_precision=precision)
    write_table(frame, args.out)
    console.print(f"wrote {len(frame):,} {args.level}-level predictions (wells averaged per {args.level}) to "
                  f"{escape(args.out)}", highlight=False)
    if calls is not None:
        write_table(calls, args.calls_out)
        _print_calls(bundle, precision, int((calls["reason"] == "").sum()),
                     calls.loc[calls["reason"] != "", "reason"].value_counts().to_dict(), args.calls_out,
                     args.level)


def _call_precision(args: argparse.Namespace) -> float:
    from ..trust.calls import DEFAULT_PRECISION

    return DEFAULT_PRECISION if args.call_precision is None else args.call_precision


def _print_calls(bundle: Any, precision: float, made: int, reasons: dict, path: str, unit: str) -> None:
    """What --calls-out wrote, with the precision MEASURED for such calls on held-out compounds."""
    m = bundle.trust.call_model.measured_at(precision, unit)
    why = "; ".join(f"{n:,} {w}" for w, n in reasons.items())
    simulated = " (measured on SIMULATED profiles)" if bundle.simulated else ""
    measured = ("no threshold reached this precision on the calibration compounds, so no calls are made"
                if m.get("precision") is None and not m.get("calls") else
                f"on held-out compounds such calls were right {100 * (m.get('precision') or 0):.0f} % of the time, "
                f"for {100 * (m.get('coverage_profiles') or 0):.0f} % of {unit}s{simulated}")
    console.print(f"wrote calls at precision {precision:g} to {escape(path)}: {made:,} {unit}s called"
                  f"{'; ' + why if why else ''}. {measured}.", highlight=False)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="predict MoA probabilities for a features file",
                       description="Predict every profile of a file with a bundle, streamed in chunks: one row of "
                                   "MoA probabilities per profile (the sample_submission layout), with the number "
                                   "of profiles out of distribution, the genes matched for CMap files and any time "
                                   "or dose the model was asked in place of the file's own.")
    p.add_argument("--bundle", default=L1000_REFERENCE, help=BUNDLE_HELP)
    p.add_argument("--features", required=True,
                   help="profiles: CSV/Parquet in the bundle's layout (test_features for LISH-MoA bundles, the "
                        "training table's layout for bundles trained with --layout), or CMap files (GCTX, GCT, "
                        "h5ad, tables with genes named by Entrez id or symbol)")
    p.add_argument("--out", required=True, help="CSV (sample_submission layout) or .parquet")
    p.add_argument("--keep-columns", action="store_true",
                   help="append the input's extra columns (e.g. compound), then 'ood' (out of distribution: true / "
                        "false) and 'ood_reason'")
    p.add_argument("--no-ood", action="store_true",
                   help="skip the out-of-distribution check (one matrix product with the reference profiles per "
                        "chunk: worth skipping only for files of millions of profiles)")
    p.add_argument("--level", choices=("profile", "treatment", "compound"), default="profile",
                   help="profile: one call per row (default); treatment / compound: the wells of each treatment "
                        "(the layout's treatment columns) or compound averaged, then called (bundles of a custom "
                        "layout)")
    p.add_argument("--chunk-rows", type=int, default=5_000,
                   help="profiles read and predicted at a time (default 5,000; memory stays flat whatever the file "
                        "size)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--sets-out", metavar="FILE", help="also write each profile's MoA set (CSV/Parquet: sig_id, "
                                                      "moa_set with MoAs joined by '|', abstention, ood, ood_reason)")
    p.add_argument("--set-level", type=float, metavar="LEVEL",
                   help="share of true MoAs the sets should contain on new compounds, 0.5-0.99 (default 0.9)")
    p.add_argument("--calls-out", metavar="FILE",
                   help="also write each profile's (or --level unit's) confident call (CSV/Parquet: id, call, kind, "
                        "estimated_precision, reason)")
    p.add_argument("--targets-out", metavar="FILE",
                   help="also write each profile's protein-target probabilities (the bundle's target model: one "
                        "column per target, same ids as --out; CSV/Parquet)")
    p.add_argument("--target-calls-out", metavar="FILE",
                   help="also write each profile's confident target call with its measured precision "
                        "(--call-precision; columns as --calls-out)")
    p.add_argument("--call-precision", type=float, metavar="P",
                   help="share of calls that should be right on new compounds: 0.5, 0.55, ..., 0.95 (default 0.8)")
    add_cluster_args(p, "the file is cut into partitions scored on the workers (they must see the files at the "
                        "same paths)")
    p.add_argument("--partition-rows", type=int, default=40_000,
                   help="profiles per cluster partition (default 40,000; a multiple of --chunk-rows)")
    p.set_defaults(func=cmd_predict)
