"""The layout options of ``moa train`` / ``moa layout infer``: a TOML file, flags, or both (flags win)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from ..data.errors import DataError
from ..data.profiles.layout import NORMALIZATIONS, Block, Controls, Labels, Layout, dump_layout, load_layout

console = Console(stderr=True, soft_wrap=True, highlight=False)


def _pair(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    k, v = text.split("=", 1)
    return k.strip(), v.strip()


def add_layout_args(p: argparse.ArgumentParser) -> None:
    """Flags that describe (or override parts of) a layout; docs/layout.md has the TOML form."""
    g = p.add_argument_group("any layout (instead of --data): a profile table, its layout as TOML and/or flags")
    g.add_argument("--features", metavar="FILE",
                   help="profile table in any layout (CSV/Parquet/GCT/GCTX/h5ad) to train on, read through --layout "
                        "or the layout flags below")
    g.add_argument("--layout", metavar="FILE.toml", help="layout file (write one with 'moa layout infer FILE')")
    g.add_argument("--id", action="append", metavar="COLUMN", help="profile id column (repeat to join several)")
    g.add_argument("--group", metavar="COLUMN", help="compound column: folds are grouped by it")
    g.add_argument("--treatment", action="append", metavar="COLUMN",
                   help="columns defining a treatment (compound, concentration; repeat)")
    g.add_argument("--plate", metavar="COLUMN", help="plate column (plate normalisation)")
    g.add_argument("--batch", metavar="COLUMN", help="batch column")
    g.add_argument("--controls", type=_pair, metavar="COLUMN=VALUE[,VALUE]",
                   help="control rows, e.g. Metadata_pert_type=control")
    g.add_argument("--block", action="append", type=_pair, metavar="NAME=PREFIX",
                   help="feature block by column prefix (repeat; replaces the layout's blocks)")
    g.add_argument("--label-column", metavar="COLUMN", help="MoA label column of the table")
    g.add_argument("--label-separator", metavar="SEP", help="several MoAs per row joined by SEP (e.g. '|')")
    g.add_argument("--annotation", metavar="FILE", help="annotation table with the MoAs, joined on --annotation-on")
    g.add_argument("--annotation-on", action="append", type=_pair, metavar="COLUMN=ANNOTATION_COLUMN",
                   help="join key (repeat for several, e.g. compound and concentration)")
    g.add_argument("--annotation-moa", metavar="COLUMN", help="MoA column of the annotation table (default moa)")
    g.add_argument("--normalize", choices=NORMALIZATIONS,
                   help="per-plate normalisation to control wells: none, z (mean/sd), robust_z (median/MAD), "
                        "robust_z_pooled (plate median, MAD pooled over every plate's controls); docs/layout.md")


def layout_asked(args: argparse.Namespace) -> bool:
    """Whether the command line names a layout: --layout or any of the layout flags."""
    return bool(args.layout) or any(getattr(args, k, None) for k in (
        "id", "group", "treatment", "plate", "batch", "controls", "block", "label_column", "annotation", "normalize"))


def layout_from_args(args: argparse.Namespace) -> Layout:
    """The layout from --layout and the flags (flags override the file's entries); the shipped LISH-MoA layout
    without either (``layout_asked``)."""
    if not layout_asked(args):
        return Layout.lish_moa()
    layout = load_layout(args.layout) if args.layout else Layout(blocks=())
    changes: dict = {}
    for key in ("group", "plate", "batch", "normalize"):
        if getattr(args, key, None):
            changes[key] = getattr(args, key)
    if args.id:
        changes["id"] = tuple(args.id)
    if args.treatment:
        changes["treatment"] = tuple(args.treatment)
    if args.controls:
        changes["controls"] = Controls(args.controls[0], tuple(v.strip() for v in args.controls[1].split(",")))
    if args.block:
        changes["blocks"] = tuple(Block(name, prefix=prefix) for name, prefix in args.block)
    if args.label_column:
        changes["labels"] = Labels("column", column=args.label_column, separator=args.label_separator or "")
    if args.annotation:
        if not args.annotation_on:
            raise DataError("--annotation needs --annotation-on COLUMN=ANNOTATION_COLUMN (the join key).")
        changes["labels"] = Labels("annotation", file=str(Path(args.annotation).resolve()),
                                   on=tuple(args.annotation_on), column=args.annotation_moa or "moa",
                                   separator=args.label_separator or "")
    layout = dataclasses.replace(layout, **changes)
    layout.check(args.layout or "layout flags")
    return layout


def cmd_layout_infer(args: argparse.Namespace) -> None:
    from ..data.formats.io import write_text
    from ..data.profiles.layout_infer import infer_layout

    layout, reasons = infer_layout(args.file, metadata=args.metadata or (), annotation=args.annotation,
                                   relative_to=Path(args.out).resolve().parent if args.out else None)
    extra = "".join(f" --metadata {Path(m).name}" for m in args.metadata or ()) + (
        f" --annotation {Path(args.annotation).name}" if args.annotation else "")
    comment = "\n".join([f"Layout inferred by 'moa layout infer {Path(args.file).name}{extra}'. Review every entry:",
                         *(f"- {r}" for r in reasons), "Reference: docs/layout.md"])
    text = dump_layout(layout, comment)
    if args.out:
        write_text(text, args.out)
        console.print(f"wrote {escape(args.out)}")
    else:
        print(text)
    console.print("[bold]why:[/]")
    for r in reasons:
        console.print(f"  - {escape(r)}")
    if args.out:
        console.print(f"next: moa train --features {escape(args.file)} --layout {escape(args.out)} --out BUNDLE")


def add_layout_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("layout", help="describe a profile table's layout (see docs/layout.md)",
                       description="A layout says how to read a profile table that is not in the LISH-MoA layout "
                                   "(meta and feature columns, controls, plates, compound, labels); 'moa layout "
                                   "infer' proposes one.")
    lsub = p.add_subparsers(dest="layout_command", required=True, metavar="ACTION")
    q = lsub.add_parser("infer", help="write a starting layout TOML for a table and explain each guess",
                        description="Read a profile table (CSV/Parquet/GCT/GCTX/h5ad) and propose its layout: "
                                    "meta and feature columns, feature blocks, controls, plate, compound, labels, "
                                    "joins of --metadata / --annotation tables, and for CellProfiler tables the "
                                    "field's practice (pycytominer's blocklist, control scaling, whitening, batch "
                                    "alignment); each choice is explained.")
    q.add_argument("file", help="profile table")
    q.add_argument("--metadata", action="append", metavar="FILE",
                   help="a table joined on plate + well (e.g. CellProfiler's image table with compound and "
                        "concentration); repeat for several")
    q.add_argument("--annotation", metavar="FILE",
                   help="a table mapping compound (and concentration) to MoA, joined on the compound")
    q.add_argument("--out", metavar="FILE.toml", help="write the layout here (default: print it)")
    q.set_defaults(func=cmd_layout_infer)
