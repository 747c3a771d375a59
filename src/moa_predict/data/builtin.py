"""Models and examples that ship inside the package, by name, so a fresh install answers real data offline.

``l1000-reference`` is a bundle trained on real L1000 consensus signatures of 663 drugs annotated by the Drug
Repurposing Hub (``docs/real/l1000_reference.md`` says how, and ``bench/l1000_reference.py`` rebuilds it).
A name is taken wherever a bundle directory is: ``--bundle l1000-reference``.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import DataError

BUILTIN_DIR = Path(__file__).resolve().parent / "builtin"
L1000_REFERENCE = "l1000-reference"
BUILTIN_BUNDLES: dict[str, str] = {L1000_REFERENCE: "l1000-reference"}
"""Name → directory under ``BUILTIN_DIR``."""
L1000_LAYOUT = BUILTIN_DIR / "l1000_reference.toml"
"""The layout the reference was trained with (the consensus table's columns, per-profile scaling)."""
L1000_EXAMPLES = BUILTIN_DIR / "examples" / "l1000_level5_examples.csv"
"""A few real level-5 signatures (LINCS, CC BY 4.0): the example upload for the reference."""


EXAMPLES: dict[str, tuple[Path, str]] = {
    "l1000-reference": (L1000_EXAMPLES, "12 real L1000 level-5 signatures of vemurafenib, atorvastatin and venlafaxine "
                                        "in several cell lines (LINCS, CC BY 4.0): drugs the reference never saw"),
}
"""A layout's name → its shipped example upload and a line saying what it holds."""


def example_for(layout_name: str | None) -> tuple[Path, str] | None:
    """The shipped example upload of a built-in layout (None: no example ships for it)."""
    found = EXAMPLES.get(str(layout_name))
    return found if found and found[0].is_file() else None


def builtin_names() -> list[str]:
    return sorted(BUILTIN_BUNDLES)


def resolve_bundle(path_or_name: str | os.PathLike) -> Path:
    """The directory of a bundle given by path or by built-in name. A directory that exists wins over a name."""
    path = Path(path_or_name)
    if path.exists():
        return path
    name = str(path_or_name)
    if name in BUILTIN_BUNDLES:
        found = BUILTIN_DIR / BUILTIN_BUNDLES[name]
        if not found.is_dir():  # (its files are checked by bundle.load_bundle)
            raise DataError(f"the built-in model {name!r} is missing from this installation ({found}); reinstall "
                            "moa-predict, or rebuild it with 'python bench/l1000_reference.py --ship'.",
                            source=name)
        return found
    return path
