"""The one error type for bad input, shown to users as a single readable message."""

from __future__ import annotations


class DataError(ValueError):
    """Input that does not follow the LISH-MoA layout.

    The message always says which file, row and column is wrong, what was expected
    and what to do, so the CLI and the web app can show it as it is.
    """

    def __init__(self, message: str, *, source: str | None = None, row: int | None = None,
                 column: str | None = None) -> None:
        self.source = source
        self.row = row
        self.column = column
        prefix = f"{source}: " if source else ""
        super().__init__(prefix + message)

    def to_dict(self) -> dict[str, object]:
        """JSON form used by the API (row is the 1-based line number in the file, header = line 1)."""
        return {"error": str(self), "file": self.source, "line": self.row, "column": self.column}
