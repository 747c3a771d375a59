"""How ``moa layout infer``'s normalisation rules (``data.profiles.practice``) were chosen: on SIMULATED Cell
Painting screens (``moa simulate --layout-kind cellpainting``), never on BBBC021.

For screens with 4 to 32 control wells per plate (8 plates of 96 wells, 4 batches, 24 compounds of 6 MoAs, 5 seeds)
it reads the wells with each candidate normalisation and scores the field's protocol: treatment means (compound x
dose), each treatment given the MoA of its most similar other-compound treatment (cosine; "NSC"). Prints a table and
writes JSON:

    python bench/layout_defaults.py --out docs/real/layout_defaults.json

All numbers are on SIMULATED profiles.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from moa_predict.data.errors import DataError
from moa_predict.data.profiles.layout import load_layout
from moa_predict.data.profiles.reader import load_profiles, treatment_means
from moa_predict.simulate.layout import simulate_profiles

CONTROLS = (4, 6, 8, 16, 32)
SEEDS = (0, 1, 2, 3, 4)
PLATES = 8


def nsc_accuracy(data) -> float:
    """1-NN (cosine) between treatment means, never the same compound: accuracy over treatments."""
    t = treatment_means(data)
    x = t.features[t.feature_columns].to_numpy(np.float64, copy=True)
    x /= np.linalg.norm(x, axis=1, keepdims=True) + 1e-12
    moa = t.targets.to_numpy().argmax(axis=1)
    compound = t.drugs.to_numpy()
    sim = x @ x.T
    sim[compound[:, None] == compound[None, :]] = -np.inf
    return float((moa[sim.argmax(axis=1)] == moa).mean())


def candidates(n_controls: int, n_features: int) -> dict[str, dict]:
    """Normalisations compared (layout settings)."""
    k3 = min(n_features, n_controls // 3)
    return {"robust_z (per-plate MAD)": {"normalize": "robust_z"},
            "robust_z_pooled": {"normalize": "robust_z_pooled"},
            "pooled + TVN, controls/3 directions": {"normalize": "robust_z_pooled", "whiten": k3},
            "pooled + TVN, all directions": {"normalize": "robust_z_pooled",
                                             "whiten": min(n_features, n_controls - 1)},
            "pooled + TVN controls/3 + CORAL 1": {"normalize": "robust_z_pooled", "whiten": k3,
                                                  "align_batches": 1.0},
            "pooled + TVN all + CORAL 1": {"normalize": "robust_z_pooled", "whiten": min(n_features, n_controls - 1),
                                           "align_batches": 1.0}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="docs/real/layout_defaults.json")
    args = ap.parse_args()
    rows = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for c in CONTROLS:
            for seed in SEEDS:
                d = simulate_profiles(Path(tmp) / f"c{c}s{seed}", plates=PLATES, controls_per_plate=c, seed=seed)
                layout = load_layout(d / "layout.toml")
                n_ctl = c * PLATES
                for name, change in candidates(n_ctl, 100).items():
                    try:
                        data = load_profiles(d / "profiles.csv.gz", dataclasses.replace(layout, **change))
                        acc = nsc_accuracy(data)
                    except DataError:  # a setting this screen cannot take (CORAL on a batch with too few controls)
                        acc = float("nan")
                    rows.append({"controls_per_plate": c, "seed": seed, "method": name, "nsc": acc})
    methods = list(dict.fromkeys(r["method"] for r in rows))
    table = {m: {c: float(np.nanmean([r["nsc"] for r in rows if r["method"] == m and r["controls_per_plate"] == c]))
                 for c in CONTROLS} for m in methods}
    print(f"SIMULATED Cell Painting screens, {PLATES} plates x 96 wells, 5 seeds: mean NSC accuracy (1-NN cosine)")
    print("method".ljust(44) + "".join(f"{c:>8} ctl" for c in CONTROLS))
    for m, v in table.items():
        print(m.ljust(44) + "".join(f"{v[c]:>12.3f}" for c in CONTROLS))
    out = {"simulated": True, "plates": PLATES, "seeds": list(SEEDS), "controls_per_plate": list(CONTROLS),
           "mean_nsc": table, "rows": rows, "seconds": round(time.perf_counter() - t0, 1),
           "command": "python bench/layout_defaults.py"}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1), encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
