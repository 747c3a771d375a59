"""How ``moa benchmark real`` shows its report: the terminal table, ``docs/real/README.md`` and
``docs/real/bbbc021.json`` (``{"methods": {NAME: {"nsc_accuracy": ..., "nscb_accuracy": ...}}}``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..data.io import write_text
from .render import markdown_table, rich_table, write_json

COLUMNS = ("method", "NSC accuracy", "NSCB accuracy", "seconds")
GOAL = {"nsc_accuracy": 0.90, "nscb_accuracy": 0.80}


def _rows(report: dict[str, Any]) -> list[tuple[str, ...]]:
    rows = [(name, f"{m['nsc_accuracy']:.3f}", f"{m['nscb_accuracy']:.3f}", f"{m['seconds']:.0f}")
            for name, m in report["methods"].items()]
    for name, m in report["published"].items():
        nscb = "—" if m["nscb_accuracy"] is None else f"{m['nscb_accuracy']:.2f}"
        rows.append((f"{name} (published; {m['note']})", f"{m['nsc_accuracy']:.2f}", nscb, "—"))
    return rows


def print_report(report: dict[str, Any], console: Any) -> None:
    d = report["data"]
    console.print(rich_table(f"BBBC021 (REAL data): {d['treatments']} treatments, {d['compounds']} compounds, "
                             f"{d['moas']} MoAs, per-well means", COLUMNS, _rows(report)))


def to_markdown(report: dict[str, Any]) -> str:
    d = report["data"]
    n_nscb = {m["nscb_treatments"] for m in report["methods"].values()}
    lines = [
        "# Real data: BBBC021 MoA classification (NSC / NSCB)",
        "",
        f"Command: `{report['command']}`" if report.get("command") else "",
        "",
        f"**Real measured data**: BBBC021 (Caie et al. 2010, Mol Cancer Ther 9:1913; Ljosa et al. 2013, J Biomol "
        f"Screen 18:1321), MCF-7 cells, per-well means of CellProfiler features ({d['wells']} wells, {d['dmso_wells']} "
        f"DMSO; {d['features']} features after the usual blocklist of object locations and numbers), {d['batches']} "
        "weekly batches. Files from cytomining/cytominergallery; read through the shipped layout "
        "`moa_predict/benchmarks/layouts/bbbc021.toml`.",
        "",
        f"Normalisation: {d['normalisation']}.",
        "",
        f"Protocol: {report['protocol']} ({', '.join(map(str, sorted(n_nscb)))} treatments for NSCB: MoAs whose "
        "compounds all share their batches cannot be answered and are left out, as in the literature).",
        "",
        *markdown_table(COLUMNS, _rows(report), ("l", "r", "r", "r")),
        "",
        f"Goal of the project: NSC ≥ {GOAL['nsc_accuracy']:.2f} and NSCB ≥ {GOAL['nscb_accuracy']:.2f} from per-well "
        "means. Published per-cell methods use single-cell features or the images, not per-well means: they are "
        "context, not a like-for-like comparison.",
        "",
        "Method settings are fixed before the evaluation (no setting is chosen on held-out compounds); descriptions:",
        "",
        *(f"- **{name}**: {m['description']}" for name, m in report["methods"].items()),
        "",
    ]
    return "\n".join(lines)


def write_outputs(report: dict[str, Any], out_dir: str | os.PathLike) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return [write_json(report, out / "bbbc021.json"), write_text(to_markdown(report), out / "README.md")]
