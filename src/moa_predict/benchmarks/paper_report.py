"""What ``moa benchmark paper`` shows: its report (``paper.run_paper_benchmark``) as terminal tables,
paper_tables.json/.md, the summary bars (PNG and HTML) and the grid curves (PNG).

Only the choice of tables, series and wording lives here; drawing and writing are the shared renderers
(``benchmarks.render``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..data.formats.io import write_text
from .paper import LABELS, PAPER_PUBLISHED, PAPER_STYLE
from .render import (grouped_bars_html, grouped_bars_png, log_k_axis, markdown_table, pyplot, rich_table,
                     save_png, write_json)

OUTPUT_NAMES = {"labels": "labels", "frequencies": "frequencies", "probabilities": "probabilities",
                "labels_skmultilearn": "labels, scikit-multilearn rule (no fallback)"}
TITLES = {"brknn-a": "BRkNN-a over k", "brknn-b": "BRkNN-b over k", "ml-knn": "ML-kNN over k",
          "paper-nn": "The paper's net over epochs",
          "summary": "Best of each model (the paper's Table 9 / 11 analogue)"}
SUMMARY_TITLE = "The paper's models: best of each (CV on simulated features vs published)"
_OUTPUTS = ("labels", "frequencies", "probabilities", "labels_skmultilearn")


def _fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.5f}"


def table_rows(report: dict[str, Any]) -> dict[str, tuple[list[str], list[list[str]]]]:
    """Every table as (header, rows of strings): shared by the terminal and the Markdown output."""
    out = {}
    for model, rows in report["tables"].items():
        param = PAPER_PUBLISHED[model]["param"]
        outputs = [o for o in _OUTPUTS if o in rows[0]]
        header = [param] + [f"ours: {OUTPUT_NAMES[o]}" + (" (paper-style)" if o == PAPER_STYLE[model] else "")
                            for o in outputs]
        header.append("paper (published)")
        out[model] = (header, [[str(r[param])] + [_fmt(r[o]) for o in outputs] + [_fmt(r["paper"])] for r in rows])
    header = ["model", "ours, scored as the paper did", "ours, probability output", "paper (published)",
              "ours at the paper's setting"]
    rows = []
    for s in report["summary"]:
        if s["model"] == "prior":
            rows.append([s["label"], _fmt(s["paper_style"]), _fmt(s["probabilities"]),
                         f"real-data CV ≈ {s['reference_real_cv']}", "—"])
            continue
        p = s["param"]
        rows.append([s["label"], f"{_fmt(s['paper_style'])} ({p}={s['paper_style_at']})",
                     f"{_fmt(s['probabilities'])} ({p}={s['probabilities_at']})",
                     f"{_fmt(s['paper'])} ({p}={s['paper_at']})", _fmt(s["at_paper_setting"])])
    out["summary"] = (header, rows)
    return out


def print_report(report: dict[str, Any], console) -> None:
    for name, (header, rows) in table_rows(report).items():
        console.print(rich_table(TITLES[name], header, rows))
    console.print(f"{report['rows_scored']}; {report['folds']} folds "
                  f"({'grouped by drug' if report['grouped_by_drug'] else 'by rows'}), seed {report['seed']}; "
                  f"wall time {report['wall_seconds']:.0f} s")


def markdown(report: dict[str, Any]) -> str:
    d = report["data"]
    lines = [f"# {report['title']}", "",
             f"Command: `{report['command']}`", "",
             f"Data: `{d['source']}`, fingerprint `{d['fingerprint']}`, {d['rows']:,} rows"
             + (f"; subsample of {d['subsample_rows']:,} rows (fingerprint `{d['subsample_fingerprint']}`)"
                if d["subsample_rows"] else "") + ".",
             f"Scored: {report['rows_scored']}; {report['folds']} folds "
             f"({'grouped by drug' if report['grouped_by_drug'] else 'by rows'}), seed {report['seed']}. "
             f"Metric: {report['metric']}.",
             f"Wall time: {report['wall_seconds']:.0f} s ({report['machine']['platform']}, device {report['device']}); "
             f"moa-predict {report['package_version']}.", ""]
    lines += [f"- {n}" for n in report["notes"]] + [""]
    for name, (header, rows) in table_rows(report).items():
        lines += [f"## {TITLES[name]}", ""] + markdown_table(header, rows) + [""]
    for s in report["summary"]:
        if s.get("labels_skmultilearn") is not None:
            lines += [f"{s['label']} with scikit-multilearn's rule (rint, no empty-set fallback): best "
                      f"{_fmt(s['labels_skmultilearn'])} (k={s['labels_skmultilearn_at']}), "
                      f"{_fmt(s['labels_skmultilearn_at_paper'])} at the paper's k={s['paper_at']}.", ""]
    timings = [[k, ", ".join(f"{x:.1f}" for x in v["per_fold"]), f"{v['total']:.1f}"]
               for k, v in report["timings_seconds"].items()]
    lines += ["## Timings (seconds)", ""] + markdown_table(["step", "per fold", "total"], timings,
                                                           align=["left", "left", "right"])
    lines += ["", "![summary](paper_summary.png)", "", "![grids](paper_grids.png)", "",
              "Interactive chart: [paper_summary.html](paper_summary.html).", ""]
    return "\n".join(lines)


def _summary_series(report: dict[str, Any]) -> tuple[list[str], dict[str, list[float | None]]]:
    names = [s["label"] for s in report["summary"]]
    series = {
        "ours, scored as the paper did": [s["paper_style"] for s in report["summary"]],
        "ours, probability output": [None if s["model"] in ("prior", "paper-nn") else s["probabilities"]
                                     for s in report["summary"]],
        "published, real data (paper; prior: real-data CV)": [s["reference_real_cv"] if s["model"] == "prior"
                                                              else s["paper"] for s in report["summary"]],
    }
    return names, series


def summary_png(report: dict[str, Any], path: Path) -> Path:
    names, series = _summary_series(report)
    return grouped_bars_png(names, series, path, title=SUMMARY_TITLE,
                            ylabel="mean column-wise log loss (log scale; lower is better)")


def summary_html(report: dict[str, Any], path: Path) -> Path:
    names, series = _summary_series(report)
    return grouped_bars_html(names, series, path, title=SUMMARY_TITLE,
                             ylabel="mean column-wise log loss (log scale)")


def grids_png(report: dict[str, Any], path: Path) -> Path:
    """One panel per model: log loss over its grid, each output a curve, the published result a star."""
    fig, axes = pyplot().subplots(1, 4, figsize=(16, 3.8))
    for ax, (model, rows) in zip(axes, report["tables"].items()):
        param = PAPER_PUBLISHED[model]["param"]
        xs = [r[param] for r in rows]
        for o in _OUTPUTS:
            if o in rows[0]:
                ax.plot(xs, [r[o] for r in rows], marker="o", label=OUTPUT_NAMES[o])
        pub = PAPER_PUBLISHED[model]
        ax.scatter([pub["value"]], [pub["score"]], marker="*", s=120, color="k", label="paper (published)", zorder=3)
        if param == "k":
            log_k_axis(ax, xs)
        ax.set_yscale("log")
        ax.set_xlabel(param)
        ax.set_title(LABELS[model])
        ax.legend(fontsize=7)
    axes[0].set_ylabel("log loss")
    fig.tight_layout()
    return save_png(fig, path, dpi=110)


def write_outputs(report: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """paper_tables.json, paper_tables.md, paper_summary.png/.html and paper_grids.png, each written atomically."""
    out = Path(out_dir)
    return [write_json(report, out / "paper_tables.json"),
            write_text(markdown(report), out / "paper_tables.md"),
            summary_png(report, out / "paper_summary.png"),
            summary_html(report, out / "paper_summary.html"),
            grids_png(report, out / "paper_grids.png")]
