"""``moa benchmark NAME``: reproducible benchmark tables, printed and written as Markdown and JSON (one
sub-subcommand per benchmark: paper, models, real)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.markup import escape

from ..data.errors import DataError
from .common import command_line, console, out


def cmd_benchmark_paper(args: argparse.Namespace) -> None:
    from ..data.profiles.layout import Layout
    from ..data.profiles.reader import load_profiles
    from ..benchmarks.paper import run_paper_benchmark
    from ..benchmarks.paper_report import print_report, write_outputs

    data = load_profiles(args.data, Layout.lish_moa())
    console.print(f"paper benchmark{' (quick)' if args.quick else ''} on {data.source}: {len(data.features):,} rows")
    report = run_paper_benchmark(data, quick=args.quick, n_splits=args.folds, seed=args.seed,
                                 device=args.device or "cpu", command=command_line(),
                                 torch_threads=args.torch_threads or None)
    print_report(report, out)
    paths = write_outputs(report, args.out)
    console.print(f"wrote {', '.join(str(p) for p in paths)}")


def _set_torch_threads(args: argparse.Namespace) -> None:
    """--torch-threads N (0: the libraries' defaults): torch and BLAS (kNN distances, PCA) alike, so the two never
    oversubscribe the cores."""
    if args.torch_threads:
        from ..runtime.threads import set_threads

        set_threads(args.torch_threads)


def cmd_benchmark_models(args: argparse.Namespace) -> None:
    from ..data.profiles.layout import Layout
    from ..data.profiles.reader import load_profiles
    from ..benchmarks.models import run_model_benchmark
    from ..benchmarks.models_report import print_report, write_outputs

    _set_torch_threads(args)
    data = load_profiles(args.data, Layout.lish_moa())
    console.print(f"models benchmark{' (quick)' if args.quick else ''} on {data.source}: {len(data.features):,} rows "
                  "(features SIMULATED unless you point it at real files)")
    report = run_model_benchmark(data, quick=args.quick, n_splits=args.folds, seed=args.seed,
                                 device=args.device or "cpu", command=command_line(), cache_dir=args.cache,
                                 include_paper=not args.no_paper)
    print_report(report, out)
    paths = write_outputs(report, args.out)
    console.print(f"wrote {', '.join(str(p) for p in paths)}")


def cmd_benchmark_real(args: argparse.Namespace) -> None:
    from ..benchmarks.real import METHODS, run
    from ..benchmarks.real_report import print_report, write_outputs

    _set_torch_threads(args)
    methods = args.method or list(METHODS)
    console.print(f"BBBC021 benchmark (REAL data) on {escape(args.data)}: {len(methods)} method(s), NSC and NSCB")
    previous = []
    for path in args.keep_from or ():
        try:
            previous.append(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read an earlier report ({exc}).", source=path) from None
    report = run(args.data, methods, progress=not args.quiet, with_sensitivity=not args.no_sensitivity,
                 previous=previous, with_nscb=not args.nsc_only)
    report["command"] = command_line()
    for name in methods:
        report["methods"][name]["command"] = report["command"]
    print_report(report, out)
    paths = write_outputs(report, args.out)
    console.print(f"wrote {', '.join(str(p) for p in paths)}")


def _benchmark_args(b: argparse.ArgumentParser, out: str, *, quick: str, seed: str, device: str) -> None:
    """The options every `moa benchmark` shares: data, quick mode, output directory, folds, seed, device."""
    b.add_argument("--data", required=True, help="directory in the LISH-MoA layout")
    b.add_argument("--quick", action="store_true", help=quick)
    b.add_argument("--out", default=out, help=f"output directory (default {out})")
    b.add_argument("--folds", type=int, default=5, help="cross-validation folds, grouped by drug (default 5)")
    b.add_argument("--seed", type=int, default=0, help=seed)
    b.add_argument("--device", help=f"torch device for {device} (cpu, cuda)")


def add_parser(sub: argparse._SubParsersAction) -> None:
    # `moa benchmark NAME`: one sub-subcommand per benchmark; add more with bench_sub.add_parser(...)
    p = sub.add_parser("benchmark", help="reproducible benchmark tables (see 'moa benchmark -h')",
                       description="Reproducible benchmark tables, printed and written as Markdown and JSON: the "
                                   "paper's models (paper), every model side by side (models), real BBBC021 data "
                                   "(real).")
    bench_sub = p.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    b = bench_sub.add_parser("paper", help="the paper's four models and results tables, side by side",
                             description="BRkNN-a/-b and ML-kNN over k, the paper's net over epochs, and the best "
                                         "of each next to the published numbers; drug-grouped CV, treated rows.")
    _benchmark_args(b, "docs/paper", quick="fewer k values and epochs on a ~6,000-row subsample",
                    seed="seed of the folds and the models (default 0)", device="the net")
    b.add_argument("--torch-threads", type=int, default=1,
                   help="torch CPU threads for the net (default 1, fastest for this small net; 0: torch's default)")
    b.set_defaults(func=cmd_benchmark_paper)

    b = bench_sub.add_parser("models", help="all models side by side: prior, the paper's four, recipe, ours, blend",
                             description="CV log loss (drug-grouped folds, treated rows), fit time and prediction "
                                         "throughput of the prior, the paper's four models at their best published "
                                         "settings, the public-recipe MLP, each member of the default blend and the "
                                         "blend itself (weights nested: fit on 4 folds' OOF, scored on the 5th).")
    _benchmark_args(b, "docs/models", quick="a 6,000-row subsample, 3 folds, a third of the epochs",
                    seed="seed of the folds and the --quick subsample (default 0)", device="the networks")
    b.add_argument("--cache", metavar="DIR", help="reuse / store each model's out-of-fold predictions here")
    b.add_argument("--no-paper", action="store_true", help="leave out the paper's four models")
    b.add_argument("--torch-threads", type=int, default=1,
                   help="torch and BLAS threads in this process (default 1; the default blend fits its members in "
                        "2 worker processes of 1 thread each; 0: the libraries' defaults)")
    b.set_defaults(func=cmd_benchmark_models)

    b = bench_sub.add_parser("real", help="MoA calls on REAL data: BBBC021 by the field's NSC / NSCB protocol",
                             description="Each plate normalised to its DMSO wells, wells averaged per treatment, each "
                                         "of the 103 treatments classified without its own compound (NSC) and also "
                                         "without its batch (NSCB): the field's 1-NN baseline and moa-predict's "
                                         "models trained leave-one-compound-out through the moa train path.")
    b.add_argument("--data", required=True, help="the BBBC021 folder (per_well_mean.csv.gz, image.csv.gz, moa.csv)")
    b.add_argument("--out", default="docs/real", help="output directory (default docs/real)")
    b.add_argument("--method", action="append", help="only this method (repeat; default: all)")
    b.add_argument("--keep-from", action="append", metavar="REPORT.json",
                   help="keep the rows of an earlier bbbc021.json for the methods not run now (repeat; the first "
                        "report holding a method wins; with --no-sensitivity also its sensitivity grid); each row "
                        "keeps the command that measured it")
    b.add_argument("--nsc-only", action="store_true",
                   help="score NSC only (half the leave-out fits; for costly models such as the default blend)")
    b.add_argument("--no-sensitivity", action="store_true",
                   help="skip the grid of 32 neighbouring settings of the tuned layout and its split-half estimate")
    b.add_argument("--torch-threads", type=int, default=0, help="torch and BLAS threads (0: the libraries' default)")
    b.add_argument("--quiet", action="store_true", help="no progress bars")
    b.set_defaults(func=cmd_benchmark_real)
