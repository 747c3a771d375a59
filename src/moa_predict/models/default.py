"""The default model: which members the default blend holds, and its weights.

``moa train`` without ``--model`` trains ``DEFAULT_MODEL`` (models/__init__.py), the ``blend``
model, whose default hyper-parameters are the constants below. They were chosen on out-of-fold
predictions only (``moa benchmark models``: drug-grouped 5-fold CV, seed 0): the members for
accuracy per CPU-second, the weights by ``models.stack.fit_blend_weights`` on all five folds'
OOF (the benchmark scores the blend with weights fit on four folds and applied to the fifth).
"""

from __future__ import annotations

import json
from importlib import resources

WEIGHTS_FILE = "default_weights.json"


def _shipped_weights() -> tuple[float, ...]:
    text = resources.files("moa_predict.models").joinpath(WEIGHTS_FILE).read_text(encoding="utf-8")
    return tuple(float(w) for w in json.loads(text)["weights"])


TRAINING = {"batch_size": 256, "max_lr": 1e-2, "schedule": "onecycle", "label_smoothing": 0.001}
"""OneCycle Adam to 1e-2 as in the public recipe, with batch 256 (as accurate as 128 here, half the CPU time)."""
PCA_INPUTS = {"keep_raw": False, "variance_threshold": None}
"""Inputs = PCA components of the RankGauss'd g- and c- blocks (+ one-hot dose/time), no raw columns: on the
drug-grouped folds this beat RankGauss + PCA + variance threshold by ~3% and halves the first layer's cost."""

DEFAULT_MEMBERS: tuple[tuple[str, dict], ...] = (
    ("mlp", {"hidden": [256, 256], "dropout": 0.5, "epochs": 25, "aux": False, "g_pca": 150, "c_pca": 20, "seed": 7,
             "keep_raw": True, "variance_threshold": 0.8, **TRAINING}),
    ("resnet", {"width": 256, "n_blocks": 2, "epochs": 35, "aux": False, "g_pca": 250, "c_pca": 30,
                **PCA_INPUTS, **TRAINING}),
    ("mlp", {"hidden": [256, 256], "dropout": 0.5, "epochs": 50, "aux": False, "g_pca": 150, "c_pca": 20, "seed": 2,
             **PCA_INPUTS, **TRAINING}),
    ("mlp", {"hidden": [256, 256], "dropout": 0.5, "epochs": 35, "aux": False, "g_pca": 150, "c_pca": 20, "seed": 1,
             **PCA_INPUTS, **TRAINING}),
    ("logreg", {"weight_decay": 1e-5, "epochs": 25, "batch_size": 256, "max_lr": 1e-2}),
)
"""Most expensive first (the two worker processes take them in this order). The first MLP sees the raw
RankGauss'd columns (after a 0.8 variance threshold) beside the PCA components: the other members see PCA
components only, and this diversity is what the blend gains from. Dropped after the full-size benchmark: a
512-512 MLP (30 % of the prediction cost, no gain) and an MLP on PCA 250/30 (weight 0 next to the raw-column MLP)."""
GENE_ONLY_MEMBERS: tuple[tuple[str, dict], ...] = DEFAULT_MEMBERS[2:]
"""The gene-only model's members (``moa train`` fits it beside the default for CMap inputs): the two PCA-input
MLPs and the logistic regression of the default blend. Without the raw-column MLP and the ResNet it costs about
half the default's CPU time, so the whole default training stays within 15 minutes on 2 cores."""
DEFAULT_WEIGHTS: tuple[float, ...] | None = _shipped_weights()
"""Member weights fit on all folds' OOF (models.stack.fit_blend_weights), shipped as data in default_weights.json
(``python bench/models.py --ship-weights docs/models/models_table.json`` rewrites it). Only used when no stack is
fit (``moa train --no-cv``, or a blend fitted directly): ``moa train`` fits the weights, the temperature and the
per-target safeguard on the out-of-fold predictions of the data it trains on (training.stacking), so no
per-target decision learnt on one data set (such as the simulated one) is ever applied to another."""
DEFAULT_MIN_GAIN: float | None = 0.05
"""Safeguard threshold of the stack fit by ``moa train`` and the benchmark (models.stack.safeguard_factors)."""
