"""The ``moa`` command: the parser assembled from one module per subcommand, and the dispatch.

Each subcommand's module (``cli/train.py``, ``cli/predict.py``, ...) registers its own options (``add_parser``)
and handler; the library does the work. Bad input ends as one readable ``error:`` line and exit code 2, never a
traceback.
"""

from __future__ import annotations

import argparse
import sys

from rich.markup import escape

from .. import __version__
from ..data.errors import DataError
from . import benchmark, demo, evaluate, explain, models, predict, serve, simulate, train
from .benchmark import cmd_benchmark_models, cmd_benchmark_paper, cmd_benchmark_real
from .common import BUNDLE_HELP, console, out, print_cv, print_field
from .demo import cmd_demo
from .evaluate import cmd_evaluate
from .explain import cmd_explain
from .layout import add_layout_command
from .predict import cmd_predict
from .serve import cmd_serve
from .simulate import cmd_simulate
from .train import cmd_train

__all__ = ["BUNDLE_HELP", "build_parser", "cmd_benchmark_models", "cmd_benchmark_paper", "cmd_benchmark_real",
           "cmd_demo", "cmd_evaluate", "cmd_explain", "cmd_predict", "cmd_serve", "cmd_simulate", "cmd_train",
           "console", "main", "out", "print_cv", "print_field"]
"""The handlers stay reachable here (``from moa_predict.cli.main import cmd_predict``) as before the split."""


def build_parser() -> argparse.ArgumentParser:
    """The ``moa`` parser: the subcommands in the order ``moa -h`` lists them."""
    parser = argparse.ArgumentParser(prog="moa", description="Predict mechanisms of action from LISH-MoA profiles, "
                                                          "CMap signatures or any profile layout.")
    parser.add_argument("--version", action="version", version=f"moa-predict {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    simulate.add_parser(sub)
    train.add_parser(sub)
    add_layout_command(sub)
    for module in (predict, evaluate, demo, benchmark, serve, explain, models):
        module.add_parser(sub)
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
