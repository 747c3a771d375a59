"""The ``moa`` command: thin subcommands over library calls.

Bad input ends as one readable ``error:`` line and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .. import __version__
from ..data.builtin import L1000_REFERENCE
from ..data.errors import DataError
from .layout import add_layout_args, add_layout_command

BUNDLE_HELP = (f"a bundle directory written by 'moa train' or 'moa demo', or a built-in model by name (default "
               f"{L1000_REFERENCE!r}: real L1000 signatures of 663 annotated drugs, for gene-expression inputs)")

# soft_wrap: a long message (a path) is never broken mid-path at the terminal width; tables still fit it
console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


def _param(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--param wants KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _command_line() -> str:
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


def _member_labels(model: Any, layout: Any = None) -> list[str] | None:
    """A blend's members for the CV table, described in the words of the data's layout (its blocks' PCA)."""
    labels = getattr(model, "member_labels", None)
    if not labels:
        return None
    return labels({b.name: int(b.pca) for b in layout.blocks} if layout is not None else None)


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


def cmd_train(args: argparse.Namespace) -> None:
    from ..training.bundle import save_bundle
    from ..data.io import write_text
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
    if "seed" not in params and "seed" in model.get_params(deep=False):
        model.set_params(seed=args.seed)  # --seed seeds the networks too, not only the folds
    console.print(f"training [bold]{name}[/] on {data.source}: {len(data.features):,} rows, "
                  f"{len(data.target_names)} targets")
    with _training_cluster(args):
        bundle, result = train_bundle(model, data, n_splits=args.folds, seed=args.seed, cv=not args.no_cv,
                                      gene_only=not args.no_gene_only, command=_command_line(),
                                      device=args.device or "cpu", shuffled=args.shuffled_control)
    path = save_bundle(bundle, args.out)
    if bundle.info.get("stack"):
        console.print(f"blend stack: {bundle.info['stack']}")
    if result is not None:
        report = bundle.info["cv"]
        write_text(json.dumps({"model": name, "command": _command_line(), **report}, indent=1),
                   path / "cv_report.json")
        print_cv(report, f"{name}: {report['folds']}-fold CV", members=_member_labels(model, data.layout))
    console.print(f"bundle written to {path}")


def _training_data(args: argparse.Namespace) -> Any:
    """--data DIR (LISH-MoA), or --features FILE read through --layout / the layout flags."""
    from ..data.dataset import load_dataset
    from ..data.profiles import load_profiles
    from .layout import layout_from_args

    layout = layout_from_args(args)
    if args.data:
        if layout is not None or args.features:
            raise DataError("--data reads a LISH-MoA directory; for another layout use --features FILE with "
                            "--layout FILE.toml (or the layout flags), not both.")
        return load_dataset(args.data)
    if not args.features or layout is None:
        raise DataError("say what to train on: --data DIR (LISH-MoA layout), or --features FILE with --layout "
                        "FILE.toml or layout flags ('moa layout infer FILE' writes a starting layout).")
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


def cmd_predict(args: argparse.Namespace) -> None:
    from ..data.gene_features import mapping_note, substitution_notes

    if args.set_level is not None and not args.sets_out:
        raise DataError("--set-level needs --sets-out FILE.csv (where the MoA sets are written).")
    if args.call_precision is not None and not args.calls_out:
        raise DataError("--call-precision needs --calls-out FILE.csv (where the calls are written).")
    if args.scheduler or args.dask_workers:
        if args.calls_out:
            raise DataError("--calls-out is not available with --scheduler / --dask-workers yet: predict the calls "
                            "locally (without the cluster options).")
        if args.sets_out:
            raise DataError("--sets-out is not available with --scheduler / --dask-workers yet: predict the sets "
                            "locally (without the cluster options).")
        from ..inference.distributed import predict_file_distributed
        from ..runtime.cluster import dask_client, local_threads

        with dask_client(args.scheduler, args.dask_workers) as client:
            summary = predict_file_distributed(
                client, args.bundle, args.features, args.out, chunk_rows=args.chunk_rows,
                partition_rows=args.partition_rows, keep_columns=args.keep_columns, progress=not args.quiet,
                threads=None if args.scheduler else local_threads(args.dask_workers), ood=not args.no_ood)
    elif args.level != "profile":
        from ..data.io import write_table
        from ..inference.levels import predict_level
        from ..training.bundle import load_bundle

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
        return
    else:
        from ..inference.stream import predict_file
        from ..training.bundle import load_bundle

        bundle = load_bundle(args.bundle)
        summary = predict_file(bundle, args.features, args.out, chunk_rows=args.chunk_rows,
                               keep_columns=args.keep_columns, progress=not args.quiet, sets_out=args.sets_out,
                               set_level=args.set_level, calls_out=args.calls_out,
                               call_precision=None if not args.calls_out else _call_precision(args),
                               ood=not args.no_ood)
    marker = _simulated_marker(args.bundle)
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
        simulated = bool(((bundle.info.get("training_data") or {}).get("simulated")))
        console.print(f"wrote MoA sets at the {100 * x['set_level']:.0f} % level to {args.sets_out}: "
                      f"{x['with_set']:,} profiles with a set{'; ' + why if why else ''}. "
                      f"{bundle.trust.sentence(x['set_level'], simulated)}", highlight=False)
    if args.calls_out:
        x = summary.extra["calls"]
        _print_calls(bundle, x["precision"], x["made"], x["reasons"], args.calls_out, "profile")


def _call_precision(args: argparse.Namespace) -> float:
    from ..evaluation.calls import DEFAULT_PRECISION

    return DEFAULT_PRECISION if args.call_precision is None else args.call_precision


def _print_calls(bundle: Any, precision: float, made: int, reasons: dict, path: str, unit: str) -> None:
    """What --calls-out wrote, with the precision MEASURED for such calls on held-out compounds."""
    m = bundle.trust.call_model.measured_at(precision, unit)
    why = "; ".join(f"{n:,} {w}" for w, n in reasons.items())
    simulated = " (measured on SIMULATED profiles)" if (bundle.info.get("training_data") or {}).get("simulated") else ""
    measured = ("no threshold reached this precision on the calibration compounds, so no calls are made"
                if m.get("precision") is None and not m.get("calls") else
                f"on held-out compounds such calls were right {100 * (m.get('precision') or 0):.0f} % of the time, "
                f"for {100 * (m.get('coverage_profiles') or 0):.0f} % of {unit}s{simulated}")
    console.print(f"wrote calls at precision {precision:g} to {escape(path)}: {made:,} {unit}s called"
                  f"{'; ' + why if why else ''}. {measured}.", highlight=False)


def _simulated_marker(bundle_path: str) -> dict | None:
    """The simulator's marker a bundle keeps (``training_data.simulated``), read from its bundle.json."""
    from ..data.builtin import resolve_bundle

    try:
        meta = json.loads((resolve_bundle(bundle_path) / "bundle.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    marker = (meta.get("training_data") or {}).get("simulated")
    return marker if isinstance(marker, dict) else ({"note": "simulated"} if marker else None)


def cmd_evaluate(args: argparse.Namespace) -> None:
    import numpy as np

    from ..data.dataset import find_compound_column, load_features, load_predictions, load_targets
    from ..data.validate import align_to
    from ..evaluation.field_metrics import Scored, field_report, permute_by_compound
    from ..evaluation.metrics import columnwise_log_loss, columnwise_ranking, smoothed_prevalence
    from ..data.io import write_text

    targets = load_targets(args.targets)
    preds = load_predictions(args.predictions, columns=list(targets.columns))
    preds = align_to(targets.index, preds, Path(args.predictions).name, Path(args.targets).name)
    rows = f"all {len(targets):,} rows (no --features given, so controls could not be excluded)"
    keep = groups = None
    if args.features:
        feats = load_features(args.features)
        is_ctl = align_to(targets.index, feats["cp_type"], Path(args.features).name,
                          Path(args.targets).name) == "ctl_vehicle"
        keep = ~is_ctl.to_numpy()
        rows = f"{int(keep.sum()):,} treated rows ({int((~keep).sum()):,} controls excluded)"
        compound = find_compound_column(feats)
        if compound is not None:
            groups = align_to(targets.index, feats[compound], Path(args.features).name,
                              Path(args.targets).name).astype(str).to_numpy()
    y, p = targets.to_numpy(), preds.to_numpy()
    if keep is not None:
        y, p = y[keep], p[keep]
        groups = None if groups is None else groups[keep]
    prior, prior_note = _evaluation_prior(args.bundle, list(targets.columns))
    if prior is None:
        prior = smoothed_prevalence(y)
        prior_note = ("each MoA's frequency in these targets; optimistic: a real prior knows only the training "
                      "data, give --bundle for its training frequency")
    per = columnwise_log_loss(y, p)
    per_prior = columnwise_log_loss(y, np.broadcast_to(prior, y.shape))
    auc, ap = columnwise_ranking(y, p)
    defined = [a for a in auc if a is not None]
    out.print(f"mean column-wise log loss: {per.mean():.5f} on {rows}")
    out.print(f"prior log loss: {per_prior.mean():.5f} (every profile given {prior_note})", highlight=False)
    if defined:
        mean_ap = float(np.mean([a for a in ap if a is not None]))
        out.print(f"mean ROC AUC {np.mean(defined):.3f}, mean average precision {mean_ap:.3f} over the "
                  f"{len(defined)} targets with a positive ({len(auc) - len(defined)} without one: no AUC)")
    worst = sorted(range(len(per)), key=lambda j: -per[j])[: args.top]
    table = Table(title=f"{args.top} hardest targets")
    table.add_column("target", overflow="fold")  # a narrow console folds a long MoA name, never cuts it
    for col in ("log loss", "prior", "ROC AUC", "avg precision", "positives"):
        table.add_column(col, justify="right")
    for j in worst:
        table.add_row(targets.columns[j], f"{per[j]:.5f}", f"{per_prior[j]:.5f}", _or_dash(auc[j]), _or_dash(ap[j]),
                      f"{int(y[:, j].sum()):,}")
    out.print(table)
    y_perm = permute_by_compound(y, groups, seed=0)
    field = field_report(y, {"model": Scored(y, p), "prior": Scored(y, np.broadcast_to(prior, y.shape)),
                             "shuffled": Scored(y_perm, p)}, groups=groups, target_names=list(targets.columns),
                         retrieval=not args.no_retrieval,
                         notes={"prior": f"every profile given {prior_note}",
                                "shuffled": "these predictions scored against the labels permuted across "
                                            + ("compounds" if groups is not None else "profiles (no compound "
                                               "column in --features)"),
                                "shuffled_mode": "permute",
                                "level": "profiles; retrieval on " + ("compounds, their profiles' predictions "
                                         "averaged" if groups is not None else "profiles")})
    print_field(field, "the field's figures")
    if args.out:
        names = list(targets.columns)
        report = {"score": float(per.mean()), "prior_score": float(per_prior.mean()), "prior": prior_note,
                  "rows": rows, "per_target": dict(zip(names, map(float, per))),
                  "per_target_prior": dict(zip(names, map(float, per_prior))),
                  "per_target_auc": dict(zip(names, auc)), "per_target_ap": dict(zip(names, ap)),
                  "field": field}
        write_text(json.dumps(report, indent=1), args.out)


def _or_dash(value: float | None) -> str:
    """A ranking score for the table; '—' where it is undefined (a target without a positive)."""
    return "—" if value is None else f"{value:.3f}"


def _evaluation_prior(bundle_path: str | None, names: list[str]) -> tuple[Any, str]:
    """The bundle's training prevalence for these targets, or (None, "") without a bundle."""
    if not bundle_path:
        return None, ""
    from ..training.bundle import load_bundle

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


def cmd_demo(args: argparse.Namespace) -> None:
    from .demo import run_demo

    if not args.no_serve:
        from ..web.server import check_port

        check_port(args.host, args.port)  # before minutes of training, not after
    result = run_demo(args.workdir, rows=args.rows, test_rows=args.test_rows, seed=args.seed, model=args.model,
                      cv=args.cv, log=lambda m: console.print(m, highlight=False))
    if result.cv:
        print_cv(result.cv, f"default model on SIMULATED data: {result.cv['folds']}-fold CV",
                 members=_member_labels(result.bundle.model))
    else:
        console.print(f"not cross-validated (the demo serves as soon as the model is fit). For the 5-fold "
                      f"drug-grouped CV: moa demo --cv --workdir {args.workdir}", highlight=False)
    if result.test_score is not None:
        out.print(f"log loss on the simulated test profiles (treated rows): {result.test_score:.5f}")
    if not args.no_serve:
        from ..web.server import serve

        serve([L1000_REFERENCE, result.bundle_dir], host=args.host, port=args.port)


def cmd_benchmark_paper(args: argparse.Namespace) -> None:
    from ..data.dataset import load_dataset
    from ..benchmarks.paper import run_paper_benchmark
    from ..benchmarks.paper_report import print_report, write_outputs

    data = load_dataset(args.data)
    console.print(f"paper benchmark{' (quick)' if args.quick else ''} on {data.source}: {len(data.features):,} rows")
    report = run_paper_benchmark(data, quick=args.quick, n_splits=args.folds, seed=args.seed,
                                 device=args.device or "cpu", command=_command_line(),
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
    from ..data.dataset import load_dataset
    from ..benchmarks.models import run_model_benchmark
    from ..benchmarks.models_report import print_report, write_outputs

    _set_torch_threads(args)
    data = load_dataset(args.data)
    console.print(f"models benchmark{' (quick)' if args.quick else ''} on {data.source}: {len(data.features):,} rows "
                  "(features SIMULATED unless you point it at real files)")
    report = run_model_benchmark(data, quick=args.quick, n_splits=args.folds, seed=args.seed,
                                 device=args.device or "cpu", command=_command_line(), cache_dir=args.cache,
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
    report["command"] = _command_line()
    for name in methods:
        report["methods"][name]["command"] = report["command"]
    print_report(report, out)
    paths = write_outputs(report, args.out)
    console.print(f"wrote {', '.join(str(p) for p in paths)}")


def cmd_serve(args: argparse.Namespace) -> None:
    from ..web.server import serve

    if args.max_upload_mb <= 0:
        raise DataError("--max-upload-mb must be a positive number of megabytes.")
    for flag in ("max_age_days", "max_store_mb", "job_threshold_mb"):
        if getattr(args, flag) is not None and getattr(args, flag) <= 0:
            raise DataError(f"--{flag.replace('_', '-')} must be a positive number.")
    serve(args.bundle or [L1000_REFERENCE], host=args.host, port=args.port, max_upload_mb=args.max_upload_mb,
          data_dir=args.data_dir,
          token=args.token, max_age_days=args.max_age_days, max_store_mb=args.max_store_mb,
          job_threshold_mb=args.job_threshold_mb)


def cmd_explain(args: argparse.Namespace) -> None:
    from ..data.chunks import select_features
    from ..data.dataset import load_dataset, load_features
    from ..data.io import write_text
    from ..explain.report import explain_upload
    from ..training.bundle import load_bundle

    bundle = load_bundle(args.bundle)
    if bundle.layout is not None:  # a lab's own layout: read through it (plate normalisation needs whole plates)
        features = bundle.read_profiles(args.features)
    elif args.sig_id:  # a selection: the file is read in chunks and only these profiles are kept
        features = select_features(args.features, args.sig_id, feature_columns=bundle.feature_columns)
    else:
        features = load_features(args.features, feature_columns=bundle.feature_columns,
                                 allow_gene_only=bundle.gene_only is not None)
    bundle = bundle.for_features(features)  # CMap files: the gene-only model
    global_data = None
    if args.global_data:
        if bundle.layout is not None:
            raise DataError("--global-data reads a LISH-MoA data directory; this bundle was trained on the "
                            f"{bundle.layout.name!r} layout (its training table is not read back here).")
        global_data = load_dataset(args.global_data)
    report = explain_upload(bundle, features, sig_ids=args.sig_id, moas=args.moa, top_moas=args.top_moas,
                            top_k=args.top, neighbours=args.neighbours, n_steps=args.steps,
                            attributions=not args.no_attributions, compound_column=args.compound_column,
                            global_data=global_data, progress=not args.quiet)
    write_text(json.dumps(report, indent=1), args.out)
    attr = report["attributions"]
    if attr["available"]:
        n = sum(len(p["explanations"]) for p in report["profiles"])
        console.print(f"attributions: {n:,} (profile, MoA) pairs by integrated gradients; largest completeness "
                      f"error {attr['method']['max_completeness_error']:.2g}")
    elif attr["message"]:
        console.print(f"[yellow]no attributions:[/] {escape(attr['message'])}", highlight=False)
    if report["reference"]["available"]:
        n_ood = sum(bool(p["ood"] and p["ood"]["flag"]) for p in report["profiles"])
        console.print(f"similar reference profiles: {args.neighbours} per profile; out-of-distribution: "
                      f"{n_ood} of {report['n_profiles']:,} profile(s) flagged")
    else:
        console.print(f"[yellow]no reference index:[/] {escape(report['reference']['message'])}", highlight=False)
    if report["compounds"] is not None:
        console.print(f"compound calls: {len(report['compounds']):,} compound(s) from column "
                      f"{report['compound_column']!r}")
    console.print(f"wrote {args.out}")


def _cluster_args(p: argparse.ArgumentParser, what: str) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--scheduler", metavar="ADDRESS",
                       help=f"Dask scheduler of an existing cluster (tcp://HOST:8786): {what}. Needs "
                            "pip install 'moa-predict[dask]'")
    group.add_argument("--dask-workers", type=int, metavar="N",
                       help="the same on a local Dask cluster of N worker processes")


def _benchmark_args(b: argparse.ArgumentParser, out: str, *, quick: str, seed: str, device: str) -> None:
    """The options every `moa benchmark` shares: data, quick mode, output directory, folds, seed, device."""
    b.add_argument("--data", required=True, help="directory in the LISH-MoA layout")
    b.add_argument("--quick", action="store_true", help=quick)
    b.add_argument("--out", default=out, help=f"output directory (default {out})")
    b.add_argument("--folds", type=int, default=5, help="cross-validation folds, grouped by drug (default 5)")
    b.add_argument("--seed", type=int, default=0, help=seed)
    b.add_argument("--device", help=f"torch device for {device} (cpu, cuda)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="moa", description="Predict mechanisms of action from LISH-MoA profiles, "
                                                          "CMap signatures or any profile layout.")
    parser.add_argument("--version", action="version", version=f"moa-predict {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
    _cluster_args(p, "the blend members' fits (each CV fold's and the final fit's) run on the cluster")
    add_layout_args(p)
    p.set_defaults(func=cmd_train)
    add_layout_command(sub)

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
    p.add_argument("--call-precision", type=float, metavar="P",
                   help="share of calls that should be right on new compounds: 0.5, 0.55, ..., 0.95 (default 0.8)")
    _cluster_args(p, "the file is cut into partitions scored on the workers (they must see the files at the "
                     "same paths)")
    p.add_argument("--partition-rows", type=int, default=40_000,
                   help="profiles per cluster partition (default 40,000; a multiple of --chunk-rows)")
    p.set_defaults(func=cmd_predict)

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

    p = sub.add_parser("demo", help="simulate a data set, train the default model, predict it and serve the web app",
                       description="What 'make demo' runs: simulate a data set (SIMULATED features in the LISH-MoA "
                                   "layout), fit the default model on it, predict the test profiles into "
                                   "WORKDIR/predictions.csv and serve the web app. Without --cv the model is not "
                                   "cross-validated (about 3.4 minutes to the web page on 2 cores); --cv adds the "
                                   "5-fold drug-grouped CV and fits the blend's stack on it (about 9 minutes more "
                                   "on 2 cores). A second run reuses the data and the model.")
    p.add_argument("--workdir", default="runs/demo", help="where data, bundle and predictions go")
    p.add_argument("--rows", type=int, default=23814, help="simulated training rows")
    p.add_argument("--test-rows", type=int, default=3982, help="simulated test rows")
    p.add_argument("--seed", type=int, default=0, help="seed of the simulation, folds and networks (default 0)")
    p.add_argument("--model", help="model to train (default: the default model)")
    p.add_argument("--cv", action="store_true",
                   help="cross-validate first (5 drug-grouped folds; fits the blend's stack; much slower)")
    p.add_argument("--no-serve", action="store_true", help="stop after writing predictions")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port of the web app (default 8000)")
    p.set_defaults(func=cmd_demo)

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

    p = sub.add_parser("serve", help="run the web app and JSON API for a model bundle",
                       description="Serve the upload pages and the JSON API (/api/predict, /api/model, /api/health; "
                                   "reference at /docs) with uvicorn; the bundle is loaded once. Ctrl+C stops it.")
    p.add_argument("--bundle", action="append",
                   help="bundle directory written by 'moa train', or a built-in model by name; repeat it to serve "
                        "several models (the first is the default; the upload page and the API's 'model' field "
                        f"choose another). Default: the built-in {L1000_REFERENCE!r} (real L1000 signatures)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    p.add_argument("--max-upload-mb", type=float, default=200, help="largest accepted upload (default 200 MB)")
    p.add_argument("--data-dir", default=None,
                   help="where results and jobs are kept (SQLite + one file per result; default: the user's data "
                        "directory, e.g. ~/.local/share/moa-predict)")
    p.add_argument("--max-age-days", type=float, default=None, help="results expire after this (default 30 days)")
    p.add_argument("--max-store-mb", type=float, default=None,
                   help="stored results' total size in MB; the oldest expire beyond it (default 2048)")
    p.add_argument("--job-threshold-mb", type=float, default=None,
                   help="files larger than this are predicted in the background with a progress page (default 50)")
    p.add_argument("--token", default=None,
                   help="access token every page and API call needs (default: $MOA_TOKEN, else none; use one "
                        "whenever --host is not 127.0.0.1)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("explain", help="explain predictions: attributions, similar reference profiles, OOD, compounds",
                       description="Per profile: the top MoAs with the features pushing each up or down (integrated "
                                   "gradients, neural models), the most similar training profiles with their drugs "
                                   "and MoAs, an out-of-distribution flag; per compound (drug_id / compound / "
                                   "compound_id column, or CMap's pert_iname / pert_id): one ranked MoA list. Writes "
                                   "JSON.")
    p.add_argument("--bundle", default=L1000_REFERENCE, help=BUNDLE_HELP)
    p.add_argument("--features", required=True,
                   help="CSV or Parquet in the bundle's layout (test_features for LISH-MoA bundles, the training "
                        "table's layout for bundles trained with --layout), or a CMap file (GCTX, GCT, h5ad, "
                        "gene-named table)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument("--sig-id", action="append", metavar="ID", help="explain only this profile (repeatable)")
    p.add_argument("--moa", action="append", metavar="NAME", help="explain this MoA (repeatable; default: the top "
                                                                   "--top-moas MoAs of each profile)")
    p.add_argument("--top", type=int, default=10, metavar="K", help="features listed per profile and MoA (10)")
    p.add_argument("--top-moas", type=int, default=3, help="MoAs explained per profile when --moa is not given (3)")
    p.add_argument("--neighbours", type=int, default=10, help="similar reference profiles per profile (10; 0: none)")
    p.add_argument("--steps", type=int, default=64, help="integrated-gradients steps (64)")
    p.add_argument("--compound-column", help="column naming the compound (default: drug_id, compound, compound_id or "
                                             "CMap's pert_iname / pert_id, first present)")
    p.add_argument("--global-data", metavar="DIR", help="training data directory: add each explained MoA's "
                                                         "global view (features that matter across its profiles)")
    p.add_argument("--no-attributions", action="store_true", help="skip attributions (neighbours, OOD, compounds only)")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("models", help="list the available models",
                       description="The model names 'moa train --model' and 'moa benchmark' accept.")
    p.set_defaults(func=lambda a: out.print("\n".join(__import__("moa_predict.models", fromlist=["x"])
                                                      .available_models())))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except DataError as exc:
        # soft_wrap: one line however long (rich would otherwise wrap at the terminal width)
        console.print("[bold red]error:[/] " + escape(str(exc)), highlight=False, soft_wrap=True)
        return 2
    except OSError as exc:  # the machine, not the input: unwritable output, disk full
        console.print("[bold red]error:[/] " + escape(str(exc)), highlight=False, soft_wrap=True)
        return 1
    except KeyboardInterrupt:
        console.print("interrupted; no partial output was written")
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
