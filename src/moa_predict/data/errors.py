"""The one error type for bad input, shown to users as a single readable message."""

from __future__ import annotations


class DataError(ValueError):
    """Input that does not follow the LISH-MoA layout.

    The message always says which file, row and column is wrong, what was expected
    and what to do, so the CLI and the web app can show it as it is.
    """

    def __init__(self, message: str, *, source: str | None = None, row: int | None = None,
                 column: str | None = None) -> None:
        """`row` is the 1-based data row (the header not counted); `column` the column name."""
        self.source = source
        self.row = row
        self.column = column
        prefix = f"{source}: " if source else ""
        super().__init__(prefix + message)

    def to_dict(self) -> dict[str, object]:
        """JSON form used by the API: ``row`` is the 1-based data row (header not counted), as in the
        message; ``line`` the line of a CSV file it is on (header = line 1)."""
        return {"error": str(self), "file": self.source, "row": self.row,
                "line": None if self.row is None else self.row + 1, "column": self.column}
