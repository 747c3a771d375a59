"""Writing a simulated data set in the LISH-MoA layout.

Through the project's atomic writers (``data.formats.io``): readers never see a half-written file, and files get the
same permissions as every other output (the umask's, not a temporary file's private 0600).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..data.profiles import schema
from ..data.formats.io import write_table, write_text
from .generate import SimulatedData


def write_simulated(data: SimulatedData, out_dir: str | Path) -> list[Path]:
    """Write the data set as the LISH-MoA CSVs (+ test_targets_scored.csv, simulation_truth.json)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tables = [
        (f"{schema.TRAIN_FEATURES}.csv", data.train_features, "%.4g"),
        (f"{schema.TARGETS_SCORED}.csv", data.targets_scored, None),
        (f"{schema.TARGETS_NONSCORED}.csv", data.targets_nonscored, None),
        (f"{schema.DRUGS}.csv", data.drugs, None),
        (f"{schema.TEST_FEATURES}.csv", data.test_features, "%.4g"),
        (f"{schema.SAMPLE_SUBMISSION}.csv", data.sample_submission, None),
        ("test_targets_scored.csv", data.test_targets_scored, None),
    ]
    paths = [write_table(frame, out / name, float_format=fmt) for name, frame, fmt in tables]
    paths.append(write_text(json.dumps(data.truth, indent=1), out / "simulation_truth.json"))
    paths.append(write_text(json.dumps(simulated_marker(data.truth), indent=1), out / schema.SIMULATED_MARKER))
    return paths


def simulated_marker(truth: dict) -> dict:
    """What ``load_dataset`` keeps and every bundle trained on this directory shows: the features are simulated."""
    mode = truth.get("mode", "synthetic")
    labels = ("real LISH-MoA sig_ids, drugs and labels" if mode != "synthetic" else "synthetic labels")
    marker = {"simulated": True, "mode": mode, "seed": truth.get("seed"),
              "note": f"features SIMULATED by moa-predict's simulator ({labels}); not measured data"}
    for key in ("world_seed", "drugs"):
        if key in truth:
            marker[key] = truth[key]
    return marker
