"""Write src/moa_predict/data/moa_targets.json: each Drug Repurposing Hub MoA with the union of its compounds'
targets (the `target` column), the mapping MoA families are built from at training time.

Source: the Drug Repurposing Hub drug table (Corsello et al. 2017, Nat Med 23:405; CC BY 4.0), file
repurposing_drugs_20200324.txt.  Example:  python bench/make_moa_targets.py --hub ../shared/real/repurposing_hub
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hub", default="/work/shared/real/repurposing_hub")
    ap.add_argument("--out", default=str(ROOT / "src" / "moa_predict" / "data" / "moa_targets.json"))
    args = ap.parse_args(argv)
    hub = pd.read_csv(Path(args.hub) / "repurposing_drugs_20200324.txt", sep="\t", comment="!")
    targets: dict[str, set[str]] = {}
    for moas, genes in zip(hub["moa"].fillna(""), hub["target"].fillna("")):
        genes_set = {g.strip() for g in str(genes).split("|") if g.strip()}
        for moa in str(moas).split("|"):
            if moa.strip() and genes_set:
                targets.setdefault(moa.strip(), set()).update(genes_set)
    out = {"source": "Drug Repurposing Hub, drug table repurposing_drugs_20200324.txt (Corsello SM et al., Nature "
                     "Medicine 2017;23:405-408, doi:10.1038/nm.4306; https://www.broadinstitute.org/repurposing; "
                     "CC BY 4.0)",
           "what": "each MoA with the union of the targets of the Hub compounds annotated with it",
           "moa_targets": {m: sorted(t) for m, t in sorted(targets.items())}}
    Path(args.out).write_text(json.dumps(out, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"{len(targets)} MoAs, {sum(len(t) for t in targets.values())} MoA-target pairs -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
