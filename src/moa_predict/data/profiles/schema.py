"""The LISH-MoA file layout: column names, allowed values and file names.

Everything that knows what a valid file looks like reads it from here, so the
reader, the simulator, the web app and the tests cannot drift apart.
"""

from __future__ import annotations

import re

SIG_ID = "sig_id"
CP_TYPE = "cp_type"
CP_TIME = "cp_time"
CP_DOSE = "cp_dose"
DRUG_ID = "drug_id"
META_COLUMNS: tuple[str, ...] = (SIG_ID, CP_TYPE, CP_TIME, CP_DOSE)

TREATED = "trt_cp"
CONTROL = "ctl_vehicle"
CP_TYPES: tuple[str, ...] = (TREATED, CONTROL)
CP_TIMES: tuple[int, ...] = (24, 48, 72)
CP_DOSES: tuple[str, ...] = ("D1", "D2")
CONTROL_DRUG_ID = "cacb2b860"

N_GENES = 772
N_CELLS = 100
GENE_COLUMNS: tuple[str, ...] = tuple(f"g-{i}" for i in range(N_GENES))
CELL_COLUMNS: tuple[str, ...] = tuple(f"c-{i}" for i in range(N_CELLS))
FEATURE_COLUMNS: tuple[str, ...] = GENE_COLUMNS + CELL_COLUMNS
FEATURE_LIKE = re.compile(r"^\s*[gGcC]\s*[-_]\s*\d+\s*$")
"""Matches names that look like a g-/c- feature (used to reject misspelt or unknown feature columns)."""

TRAIN_FEATURES = "train_features"
TEST_FEATURES = "test_features"
TARGETS_SCORED = "train_targets_scored"
TARGETS_NONSCORED = "train_targets_nonscored"
DRUGS = "train_drug"
SAMPLE_SUBMISSION = "sample_submission"
TABLE_SUFFIXES: tuple[str, ...] = (".csv", ".parquet")

CLIP_LOW, CLIP_HIGH = -10.0, 10.0
"""The real features are clipped to this range."""

SIMULATED_MARKER = "SIMULATED.json"
"""Written by ``moa simulate`` into its output directory; real data directories have none."""
