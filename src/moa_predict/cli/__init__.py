"""The `moa` command: subcommands that parse arguments and call the library (``main.build_parser``)."""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
