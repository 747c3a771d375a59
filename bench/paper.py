"""The paper's results tables (BRkNN-a/-b, ML-kNN over k; its net over epochs; best of each vs published).

Same as ``moa benchmark paper``; writes docs/paper/paper_tables.{json,md}, paper_summary.{png,html},
paper_grids.png.

Usage: python bench/paper.py --data /tmp/realsim [--quick] [--out docs/paper] [--seed 0]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from moa_predict.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.argv[1:] = ["benchmark", "paper", *sys.argv[1:]]  # so the report records the equivalent moa command
    sys.exit(main())
