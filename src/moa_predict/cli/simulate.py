"""``moa simulate``: a SIMULATED data set in the LISH-MoA layout, or a Cell Painting screen with its layout."""

from __future__ import annotations

import argparse

from ..data.errors import DataError
from .common import console, out


def cmd_simulate(args: argparse.Namespace) -> None:
    from ..simulate import compare_statistics, simulate, write_simulated

    if args.layout_kind == "cellpainting":
        return cmd_simulate_cellpainting(args)
    if (args.hold_out_drugs or args.held_out_only) and not args.labels_from:
        raise DataError("--hold-out-drugs and --held-out-only split the real drugs: give --labels-from DIR too.")
    if args.held_out_only and not args.hold_out_drugs:
        raise DataError("--held-out-only needs --hold-out-drugs SHARE (e.g. 0.2): the share of drugs held out.")
    if not 0.0 <= args.hold_out_drugs < 1.0:
        raise DataError(f"--hold-out-drugs must be a share between 0 and 1 (e.g. 0.2), got {args.hold_out_drugs:g}.")
    data = simulate(n_train=args.rows, n_test=args.test_rows, seed=args.seed, labels_from=args.labels_from,
                    world_seed=args.world_seed, hold_out_drugs=args.hold_out_drugs, held_out_only=args.held_out_only)
    if args.out:
        paths = write_simulated(data, args.out)
        console.print(f"wrote {len(paths)} files to {args.out} ({len(data.train_features):,} train rows, "
                      f"{len(data.test_features):,} test rows, seed {args.seed}); features are SIMULATED")
    if args.check:
        import pandas as pd

        stats = compare_statistics(pd.concat([data.train_features, data.test_features]))
        out.print(stats.to_string())


def cmd_simulate_cellpainting(args: argparse.Namespace) -> None:
    """``moa simulate --layout-kind cellpainting``: a CellProfiler-style table with its layout.toml."""
    from ..simulate import simulate_profiles

    if not args.out:
        raise DataError("--layout-kind cellpainting needs --out DIR (the folder for profiles.csv.gz and layout.toml).")
    if args.labels_from or args.check:
        raise DataError("--labels-from and --check are for the LISH-MoA layout, not --layout-kind cellpainting.")
    path = simulate_profiles(args.out, label_mode=args.label_mode, seed=args.seed)
    console.print(f"wrote SIMULATED Cell Painting profiles to {path} (profiles.csv.gz, layout.toml"
                  f"{', annotation.csv' if args.label_mode == 'annotation' else ''}; labels: {args.label_mode}, "
                  f"seed {args.seed}); read them with the layout {path / 'layout.toml'}", highlight=False)


def _simulate_layout_args(p: argparse.ArgumentParser) -> None:
    """`moa simulate`'s options for a table in another layout than LISH-MoA."""
    p.add_argument("--layout-kind", choices=("lish-moa", "cellpainting"), default="lish-moa",
                   help="lish-moa (default): the LISH-MoA files; cellpainting: a CellProfiler-style per-well table "
                        "(profiles.csv.gz) with its layout.toml")
    p.add_argument("--label-mode", choices=("single", "multi", "annotation"), default="single",
                   help="cellpainting labels: one MoA per compound (default), some with two joined by '|', or an "
                        "annotation.csv beside the table")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="write a simulated data set (LISH-MoA layout, or a Cell Painting screen)",
                       description="Write SIMULATED features (the real ones are not available here) in the exact "
                                   "LISH-MoA layout, fully synthetic or conditioned on real label files.")
    p.add_argument("--out", help="output directory")
    p.add_argument("--rows", type=int, default=23814, help="train rows in synthetic mode (default 23814)")
    p.add_argument("--test-rows", type=int, default=3982, help="test rows in synthetic mode (default 3982)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the simulation (default 0)")
    p.add_argument("--labels-from", metavar="DIR",
                   help="directory with the real label files: keep their sig_ids, drugs and labels")
    p.add_argument("--check", action="store_true", help="print feature statistics next to the real data's")
    p.add_argument("--world-seed", type=int, default=None,
                   help="seed of the simulated biology (MoA signatures, cell lines; default: --seed): the same world "
                        "seed with another --seed is an independent screen of the same biology")
    p.add_argument("--hold-out-drugs", type=float, default=0.0, metavar="SHARE",
                   help="with --labels-from: leave this share of the drugs (drawn with the world seed) out")
    p.add_argument("--held-out-only", action="store_true",
                   help="with --hold-out-drugs: write only the held-out drugs (a drug-disjoint check set)")
    _simulate_layout_args(p)
    p.set_defaults(func=cmd_simulate)
