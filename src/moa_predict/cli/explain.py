"""``moa explain``: per profile the top MoAs with their attributions, similar reference profiles and an OOD flag;
per compound one ranked MoA list. Writes JSON."""

from __future__ import annotations

import argparse
import json

from rich.markup import escape

from ..data.builtin import L1000_REFERENCE
from ..data.errors import DataError
from .common import BUNDLE_HELP, console


def cmd_explain(args: argparse.Namespace) -> None:
    from ..data.profiles.dataset import load_dataset
    from ..data.formats.io import write_text
    from ..explain.report import explain_upload, select_profiles
    from ..bundle import Predictor, load_bundle

    bundle = load_bundle(args.bundle)
    features = bundle.read_profiles(args.features, ids=args.sig_id)  # a selection: only these profiles are kept
    bundle = bundle.for_features(features)  # CMap files: the gene-only model
    if args.label_set:  # the target model's calls explained in genes, as the MoA model's are
        bundle = bundle.label_set(args.label_set)
    global_data = None
    if args.global_data:
        if not bundle.layout.is_lish_moa:
            raise DataError("--global-data reads a LISH-MoA data directory; this bundle was trained on the "
                            f"{bundle.layout.name!r} layout (its training table is not read back here).")
        global_data = load_dataset(args.global_data)
    features = select_profiles(features, args.sig_id)
    proba = Predictor(bundle, ood=False).predict(features).proba  # the answer moa predict gives, explained
    report = explain_upload(bundle, features, moas=args.moa, top_moas=args.top_moas, proba=proba,
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


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain", help="explain predictions: attributions, similar reference profiles, OOD, compounds",
                       description="Per profile: the top MoAs with the features pushing each up or down (integrated "
                                   "gradients, neural models), the most similar training profiles with their drugs "
                                   "and MoAs, an out-of-distribution flag; per compound (drug_id / compound / "
                                   "compound_id column, or CMap's pert_iname / pert_id): one ranked MoA list. Writes "
                                   "JSON.")
    p.add_argument("--bundle", default=L1000_REFERENCE, help=BUNDLE_HELP)
    p.add_argument("--label-set", metavar="NAME",
                   help="explain the bundle's model of this label set instead of the MoAs (e.g. target: which genes "
                        "push each protein-target call)")
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
