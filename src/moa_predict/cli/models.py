"""``moa models``: the model names 'moa train --model' and 'moa benchmark' accept."""

from __future__ import annotations

import argparse

from .common import out


def cmd_models(args: argparse.Namespace) -> None:
    from ..models import available_models

    out.print("\n".join(available_models()))


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the available models",
                       description="The model names 'moa train --model' and 'moa benchmark' accept.")
    p.set_defaults(func=cmd_models)
