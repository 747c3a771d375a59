"""What a profiles frame carries in ``DataFrame.attrs`` (its layout spec, the gene-mapping report), shared by
reference.

pandas deep-copies ``attrs`` into every frame derived from another (a row slice, a column selection): a layout
spec naming 978 genes and a mapping report listing them were copied tens of thousands of times per streamed
chunk, a fifth of the L1000 reference's prediction time. These values are written once when a file is read and
only read afterwards, so derived frames may share them.
"""

from __future__ import annotations

from typing import Any


class Shared(dict):
    """A dict that ``copy.deepcopy`` returns as it is: read-only by convention once stored in ``attrs``."""

    def __deepcopy__(self, memo: dict[int, Any]) -> "Shared":
        return self
