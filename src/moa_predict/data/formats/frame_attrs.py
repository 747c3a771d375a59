"""What a profiles frame carries in ``DataFrame.attrs`` (the gene-mapping report of a CMap file or a layout's gene
block; never its layout, which the ``Dataset`` carries), shared by reference.

pandas deep-copies ``attrs`` into every frame derived from another (a row slice, a column selection): a mapping
report listing 978 genes was copied tens of thousands of times per streamed chunk (with the layout spec frames
carried then, a fifth of the L1000 reference's prediction time). These values are written once when a file is read and
only read afterwards, so derived frames may share them.
"""

from __future__ import annotations

from typing import Any


class Shared(dict):
    """A dict that ``copy.deepcopy`` returns as it is: read-only by convention once stored in ``attrs``."""

    def __deepcopy__(self, memo: dict[int, Any]) -> "Shared":
        return self
