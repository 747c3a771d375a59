"""Renderers shared by the benchmarks: tables (terminal and Markdown), JSON, bar and line figures.

Every function takes plain rows and series, not a benchmark's report, so each benchmark only decides WHAT
to show and every output is written the same way (atomically, with the usual file mode: ``data.formats.io``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..data.formats.io import atomic_path, write_text

Row = Sequence[str]


def _aligns(n: int, align: Sequence[str] | None) -> list[str]:
    """Per column "left" or "right"; default: the first column left (names), the others right (numbers)."""
    return list(align) if align is not None else ["left"] + ["right"] * (n - 1)


def markdown_table(header: Row, rows: Sequence[Row], align: Sequence[str] | None = None) -> list[str]:
    """A Markdown table as lines (header, alignment row, one line per row)."""
    marks = ["---:" if a == "right" else "---" for a in _aligns(len(header), align)]
    return (["| " + " | ".join(header) + " |", "| " + " | ".join(marks) + " |"]
            + ["| " + " | ".join(r) + " |" for r in rows])


def rich_table(title: str, header: Row, rows: Sequence[Row], align: Sequence[str] | None = None) -> Any:
    """The same table for the terminal (a ``rich.table.Table``)."""
    from rich.table import Table

    table = Table(title=title)
    for h, a in zip(header, _aligns(len(header), align)):
        table.add_column(h, justify=a)
    for r in rows:
        table.add_row(*r)
    return table


def write_json(obj: Any, path: str | os.PathLike, **dumps: Any) -> Path:
    """``obj`` as indented JSON (``json.dumps`` keywords passed on, e.g. ``default=float``)."""
    return write_text(json.dumps(obj, indent=1, **dumps), path)


def pyplot() -> Any:
    """matplotlib.pyplot on the file-only backend (benchmarks run on machines without a display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig: Any, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Write a matplotlib figure as PNG atomically and free it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    pyplot().close(fig)
    return Path(path)


Series = Mapping[str, Sequence[float | None]]
"""Bar or line series by legend label; None: no value at that position."""


def grouped_bars_png(names: Sequence[str], series: Series, path: str | os.PathLike, *, title: str, ylabel: str,
                     log: bool = True, figsize: tuple[float, float] = (9, 4.8), dpi: int = 120,
                     value_format: str = "{:.4f}") -> Path:
    """One group of bars per name, one bar per series (missing values left out), each labelled with its value."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=figsize)
    width = 0.8 / len(series)
    for i, (label, values) in enumerate(series.items()):
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(names))]
        pts = [(x, v) for x, v in zip(xs, values) if v is not None]
        bars = ax.bar([p[0] for p in pts], [p[1] for p in pts], width, label=label)
        ax.bar_label(bars, labels=[value_format.format(p[1]) for p in pts], fontsize=7, rotation=90, padding=2)
    ax.set_xticks(range(len(names)), names)
    if log:
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left")
    if log:
        ax.set_ylim(top=ax.get_ylim()[1] * 3)  # room for the rotated value labels
    fig.tight_layout()
    return save_png(fig, path, dpi)


def grouped_bars_html(names: Sequence[str], series: Series, path: str | os.PathLike, *, title: str,
                      ylabel: str, log: bool = True, value_format: str = "{:.5f}") -> Path:
    """The interactive (plotly, self-contained HTML) version of :func:`grouped_bars_png`."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for label, values in series.items():
        fig.add_bar(name=label, x=list(names), y=list(values),
                    text=[None if v is None else value_format.format(v) for v in values], textposition="outside")
    fig.update_layout(barmode="group", yaxis_type="log" if log else None, template="plotly_white", title=title,
                      yaxis_title=ylabel)
    return write_text(fig.to_html(include_plotlyjs=True, full_html=True), path)


def log_k_axis(ax: Any, xs: Sequence[int], ticks: Sequence[int] = (3, 10, 30, 100, 500, 2000)) -> None:
    """A log x axis labelled with plain integers (neighbour counts): the listed ticks among `xs`."""
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks([x for x in xs if x in ticks] or list(xs))
    ax.set_xticklabels([str(t) for t in ax.get_xticks()])
