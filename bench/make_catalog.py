"""Build the package data file ``moa_catalog.json`` from the real LISH-MoA label files.

The simulator needs the real target names (in file order), how often each is positive, how labels
co-occur within drugs and how many profiles drugs have, but the label files themselves (30 MB) are
too large to ship.  This script distils them into a small JSON file (< 100 KB).

Usage: python bench/make_catalog.py [LISH_MOA_DIR] [OUT_JSON]
(defaults: ../shared/lish-moa relative to the repository, src/moa_predict/data/moa_catalog.json)
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from moa_predict.data.profiles import schema  # noqa: E402

BIG_DRUG_MIN_PROFILES = 20
"""Drugs with at least this many profiles are the few heavily replicated reference compounds."""


def build_catalog(src: Path) -> dict:
    scored = pd.read_csv(src / f"{schema.TARGETS_SCORED}.csv")
    nonscored = pd.read_csv(src / f"{schema.TARGETS_NONSCORED}.csv")
    drugs = pd.read_csv(src / f"{schema.DRUGS}.csv")
    if not (scored[schema.SIG_ID].equals(drugs[schema.SIG_ID]) and scored[schema.SIG_ID].equals(nonscored[schema.SIG_ID])):
        raise ValueError("label files are not row-aligned on sig_id")
    control = (drugs[schema.DRUG_ID] == schema.CONTROL_DRUG_ID).to_numpy()
    s = scored.drop(columns=schema.SIG_ID).to_numpy()[~control]
    ns = nonscored.drop(columns=schema.SIG_ID).to_numpy()[~control]
    drug_ids = drugs[schema.DRUG_ID].to_numpy()[~control]

    # One label set per drug (labels are constant within a drug); remember each drug's size.
    first = pd.Series(np.arange(len(drug_ids))).groupby(drug_ids).first()
    sizes = pd.Series(drug_ids).value_counts()
    big, pool = [], defaultdict(Counter)
    for drug, row in first.items():
        key = (tuple(int(i) for i in np.flatnonzero(s[row])), tuple(int(i) for i in np.flatnonzero(ns[row])))
        size = int(sizes[drug])
        if size >= BIG_DRUG_MIN_PROFILES:
            big.append({"profiles": size, "scored": list(key[0]), "nonscored": list(key[1])})
        else:
            pool[key][size] += 1
    big.sort(key=lambda b: -b["profiles"])
    label_sets = [
        {"scored": list(k[0]), "nonscored": list(k[1]), "drug_sizes": {str(n): c for n, c in sorted(v.items())}}
        for k, v in sorted(pool.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))
    ]
    small_sizes = Counter()
    for v in pool.values():
        small_sizes.update(v)

    return {
        "description": (
            "Facts distilled from the real LISH-MoA label files (train_targets_scored/nonscored, train_drug), "
            "treated rows only unless said. Built by bench/make_catalog.py."
        ),
        "n_rows": int(len(drugs)),
        "n_test_rows": int(len(pd.read_csv(src / f"{schema.SAMPLE_SUBMISSION}.csv", usecols=[schema.SIG_ID]))),
        "n_control_rows": int(control.sum()),
        "control_fraction": round(float(control.mean()), 6),
        "n_drugs": int(len(sizes)),
        "scored_targets": list(scored.columns[1:]),
        "scored_positives": [int(x) for x in s.sum(axis=0)],
        "nonscored_targets": list(nonscored.columns[1:]),
        "nonscored_positives": [int(x) for x in ns.sum(axis=0)],
        "scored_cardinality": {str(k): int(v) for k, v in sorted(Counter(s.sum(axis=1).tolist()).items())},
        "nonscored_cardinality": {str(k): int(v) for k, v in sorted(Counter(ns.sum(axis=1).tolist()).items())},
        "drug_size_distribution": {str(k): int(v) for k, v in sorted(Counter(sizes.tolist()).items())},
        "big_drug_min_profiles": BIG_DRUG_MIN_PROFILES,
        "small_drug_sizes": {str(k): int(v) for k, v in sorted(small_sizes.items())},
        "big_drugs": big,
        "label_sets": label_sets,
    }


def main(argv: list[str]) -> None:
    src = Path(argv[1]) if len(argv) > 1 else REPO.parent / "shared" / "lish-moa"
    src = Path(os.environ.get("MOA_SHARED_DATA", src)) if len(argv) <= 1 else src
    out = Path(argv[2]) if len(argv) > 2 else REPO / "src" / "moa_predict" / "data" / "moa_catalog.json"
    catalog = build_catalog(src)
    text = json.dumps(catalog, separators=(",", ":"))
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(text + "\n", encoding="utf-8")
    os.replace(tmp, out)
    print(f"wrote {out} ({len(text) / 1024:.1f} KB, {len(catalog['label_sets'])} label sets, "
          f"{len(catalog['big_drugs'])} big drugs)")


if __name__ == "__main__":
    main(sys.argv)
