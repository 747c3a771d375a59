"""``moa train``: cross-validate a model and write a bundle, from a LISH-MoA directory or any layout's table."""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.markup import escape

from ..data.errors import DataError
from .common import add_cluster_args, command_line, console, member_labels, print_cv
from .layout import add_layout_args, layout_asked, layout_from_args


def _param(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--param wants KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def cmd_train(args: argparse.Namespace) -> None:
    from ..bundle import save_bundle
    from ..data.formats.io import write_text
    from ..models import DEFAULT_MODEL, make_model
    from ..training.train import train_bundle

    data = _training_data(args)
    if args.rows and args.rows < len(data.features):
        import numpy as np

        data = data.subset(np.sort(np.random.default_rng(args.seed).choice(len(data.features), args.rows, False)))
    name = args.model or DEFAULT_MODEL
    params = dict(args.param or [])
    try:
        model = make_model(name, **params)
        if "seed" in model.get_params(deep=False) and "seed" not in params:
            model.set_params(seed=args.seed)  # --seed reaches the model's own random draws, not only the folds
    except (KeyError, TypeError) as exc:
        raise DataError(str(exc).strip('"')) from None
    console.print(f"training [bold]{name}[/] on {data.source}: {len(data.features):,} rows, "
                  f"{len(data.target_names)} targets")
    with _training_cluster(args):
        bundle, result = train_bundle(model, data, n_splits=args.folds, seed=args.seed, cv=not args.no_cv,
                                      gene_only=not args.no_gene_only, command=command_line(),
                                      device=args.device or "cpu", shuffled=args.shuffled_control)
        if data.layout.label_sets:
            bundle.label_sets = _train_label_sets(model, data, args)
    path = save_bundle(bundle, args.out)
    if bundle.info.get("stack"):
        console.print(f"blend stack: {bundle.info['stack']}")
    if result is not None:
        report = bundle.info["cv"]
        write_text(json.dumps({"model": name, "command": command_line(), **report}, indent=1),
                   path / "cv_report.json")
        print_cv(report, f"{name}: {report['folds']}-fold CV", members=member_labels(model, data.layout))
    console.print(f"bundle written to {path}")


def _train_label_sets(model: Any, data: Any, args: argparse.Namespace) -> dict[str, Any]:
    """The layout's extra label sets ([label_sets.NAME]: protein targets), each trained as the MoA model is, on the
    same features; a label with too few compounds is listed, not trained."""
    from ..data.profiles.reader import load_profiles
    from ..training.train import train_label_sets

    sets = {}
    for name in data.layout.label_set_names:
        part = load_profiles(args.features, data.layout, label_set=name)
        few = part.notes.get("too_few_compounds", {})
        console.print(f"label set {escape(name)}: {part.notes.get('classes', 0)} labels on "
                      f"{part.notes.get('labelled_rows', 0):,} profiles; {len(few)} with too few compounds "
                      f"(< {data.layout.label_set(name).min_compounds}) listed, not trained", highlight=False)
        sets[name] = part
    out = train_label_sets(model, sets, moas=data, n_splits=args.folds, seed=args.seed, cv=not args.no_cv,
                           command=command_line(), device=args.device or "cpu", shuffled=args.shuffled_control)
    for name, part in out.items():
        cv = part.info.get("cv")
        if cv is not None:
            print_cv(cv, f"label set {name}: {cv['folds']}-fold CV")
    return out


def _training_data(args: argparse.Namespace) -> Any:
    """--data DIR (LISH-MoA), or --features FILE read through --layout / the layout flags: one reader, the table's
    layout saying how."""
    from ..data.profiles.reader import load_profiles

    if args.data:
        if layout_asked(args) or args.features:
            raise DataError("--data reads a LISH-MoA directory; for another layout use --features FILE with "
                            "--layout FILE.toml (or the layout flags), not both.")
        return load_profiles(args.data, layout_from_args(args))
    if not args.features or not layout_asked(args):
        raise DataError("say what to train on: --data DIR (LISH-MoA layout), or --features FILE with --layout "
                        "FILE.toml or layout flags ('moa layout infer FILE' writes a starting layout).")
    layout = layout_from_args(args)
    if layout.labels is None:
        raise DataError("the layout has no [labels]: say where the MoAs come from (a label column, or an annotation "
                        "table joined on the compound); see docs/layout.md.")
    data = load_profiles(args.features, layout)
    notes = data.notes
    console.print(f"read {escape(args.features)} through the {escape(layout.name)} layout: {len(data.features):,} "
                  f"profiles ({int(data.is_control.sum()):,} controls), {len(data.feature_columns):,} features in "
                  f"{len(layout.blocks)} block(s), {notes.get('classes', 0)} MoAs"
                  f"{' (single-label)' if layout.single_label else ''}; {notes.get('unlabelled_rows', 0):,} treated "
                  "profiles without an annotation are left out of training", highlight=False)
    if "normalization" in notes:
        console.print(f"normalisation: {escape(str(notes['normalization']))}", highlight=False)
    return data


def _training_cluster(args: argparse.Namespace) -> Any:
    """The blend members' fits sent to a Dask cluster (--scheduler / --dask-workers), else nothing changes."""
    from contextlib import nullcontext

    if not (args.scheduler or args.dask_workers):
        return nullcontext()
    from ..runtime.cluster import training_on_cluster

    return training_on_cluster(args.scheduler, args.dask_workers)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="cross-validate a model and write a bundle",
                       description="Cross-validate a model (folds grouped by compound), fit it on every training "
                                   "profile and write a bundle with its CV report, MoA-set calibration and "
                                   "reference index: from a LISH-MoA directory (--data) or from any profile table "
                                   "read through a layout (--features with --layout or the layout flags).")
    p.add_argument("--data", help="directory in the LISH-MoA layout (or --features with --layout, below)")
    p.add_argument("--model", help="model name (default: the best blend); see 'moa models'")
    p.add_argument("--out", required=True, help="bundle directory to write")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds, grouped by drug (default 5)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the folds, the --rows subsample and the networks (unless --param seed=... is "
                        "given; default 0)")
    p.add_argument("--no-cv", action="store_true", help="skip cross-validation, only fit on all rows")
    p.add_argument("--shuffled-control", choices=("auto", "refit", "permute"), default="auto",
                   help="the shuffled-label control the CV figures are shown beside: refit (the model "
                        "cross-validated again on labels permuted across compounds), permute (its out-of-fold "
                        "predictions scored against permuted labels; free), auto (default: refit for a layout's "
                        "screen of up to 5,000 treated profiles, else permute)")
    p.add_argument("--no-gene-only", action="store_true",
                   help="do not also train the gene-only model (it answers CMap/L1000 profiles, which have no "
                        "cell-viability block; training it roughly doubles the training time)")
    p.add_argument("--rows", type=int, help="train on a random subsample of this many rows")
    p.add_argument("--param", action="append", type=_param, metavar="KEY=VALUE", help="model hyper-parameter")
    p.add_argument("--device", help="torch device for neural models (cpu, cuda)")
    add_cluster_args(p, "the blend members' fits (each CV fold's and the final fit's) run on the cluster")
    add_layout_args(p)
    p.set_defaults(func=cmd_train)
