"""moa-predict: predict compounds' mechanisms of action from L1000 / cell-viability profiles."""

__version__ = "0.1.0"

# The notebook API (``moa_predict.api``), imported on first use: ``import moa_predict`` stays light for the CLI.
__all__ = ["load", "normalize", "Model", "DataError"]


def __getattr__(name: str):
    if name in ("load", "normalize", "Model"):
        from . import api

        return getattr(api, name)
    if name == "DataError":
        from .data.errors import DataError

        return DataError
    raise AttributeError(f"module 'moa_predict' has no attribute {name!r}")
