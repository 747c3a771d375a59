"""The default model: which members the default blend holds, and its weights.

``moa train`` without ``--model`` trains ``DEFAULT_MODEL`` (models/__init__.py), the ``blend``
model, whose default hyper-parameters are the constants below. They were chosen on out-of-fold
predictions only (``moa benchmark models``: drug-grouped 5-fold CV, seed 0): the members for
accuracy per CPU-second, the weights by ``models.blend.fit_blend_weights`` on all five folds'
OOF (the benchmark scores the blend with weights fit on four folds and applied to the fifth).
"""

from __future__ import annotations

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
DEFAULT_WEIGHTS: tuple[float, ...] | None = (0.2361, 0.0785, 0.3847, 0.2207, 0.0800)
"""Member weights fit on all folds' OOF (models.blend.fit_blend_weights); from docs/models/models_table.json, data 0dc36cabaaa3e3be."""
DEFAULT_CALIBRATION: tuple[float, ...] | None = (
    0.000, 0.000, 0.000, 1.079, 0.324, 0.324, 0.000, 0.324, 0.000, 0.324, 1.079, 1.079,
    1.079, 1.079, 0.000, 0.000, 1.079, 0.324, 0.324, 1.079, 0.000, 0.324, 1.079, 0.000,
    0.000, 0.000, 0.000, 0.000, 0.324, 0.000, 1.079, 0.000, 0.000, 1.079, 1.079, 0.000,
    1.079, 0.000, 1.079, 1.079, 0.000, 1.079, 0.000, 0.324, 0.324, 0.324, 0.000, 1.079,
    1.079, 0.324, 0.000, 1.079, 1.079, 1.079, 0.324, 0.000, 0.000, 0.000, 1.079, 1.079,
    0.000, 0.324, 0.000, 1.079, 0.000, 1.079, 0.000, 1.079, 0.000, 1.079, 1.079, 0.324,
    0.324, 1.079, 0.000, 1.079, 1.079, 1.079, 0.324, 1.079, 1.079, 1.079, 1.079, 1.079,
    0.000, 0.000, 0.000, 0.000, 1.079, 1.079, 1.079, 0.000, 0.000, 0.324, 0.324, 1.079,
    1.079, 0.000, 0.324, 1.079, 0.000, 1.079, 1.079, 1.079, 0.000, 0.324, 0.000, 1.079,
    0.324, 1.079, 1.079, 1.079, 1.079, 0.000, 1.079, 0.000, 1.079, 0.000, 1.079, 1.079,
    1.079, 1.079, 0.000, 0.000, 0.324, 1.079, 1.079, 1.079, 1.079, 0.000, 0.000, 0.324,
    1.079, 1.079, 0.000, 0.000, 1.079, 1.079, 0.000, 0.000, 1.079, 1.079, 1.079, 0.000,
    0.324, 0.000, 1.079, 0.000, 1.079, 1.079, 0.000, 0.324, 0.000, 1.079, 1.079, 0.000,
    0.324, 1.079, 0.000, 1.079, 0.000, 0.000, 0.324, 1.079, 1.079, 1.079, 1.079, 1.079,
    0.000, 1.079, 0.000, 1.079, 1.079, 1.079, 1.079, 1.079, 0.324, 1.079, 0.000, 0.000,
    0.000, 1.079, 0.324, 0.000, 1.079, 1.079, 1.079, 0.000, 1.079, 0.000, 1.079, 0.000,
    0.000, 0.000, 1.079, 0.000, 1.079, 0.000, 0.000, 1.079, 1.079, 1.079, 1.079, 0.000,
    1.079, 1.079,
)
"""Per-target calibration factors (models.blend.calibrate), one per scored target in file order."""
DEFAULT_PRIOR_TARGETS: tuple[int, ...] = (
    0, 1, 2, 6, 8, 14, 15, 20, 23, 24, 25, 26, 27, 29, 31, 32, 35, 37, 40, 42,
    46, 50, 55, 56, 57, 60, 62, 64, 66, 68, 74, 84, 85, 86, 87, 91, 92, 97, 100, 104,
    106, 113, 115, 117, 122, 123, 129, 130, 134, 135, 138, 139, 143, 145, 147, 150, 152, 155, 158, 160,
    161, 168, 170, 178, 179, 180, 183, 187, 189, 191, 192, 193, 195, 197, 198, 203,
)
"""Targets predicted by their prevalence (the per-target safeguard; indices in file order)."""
DEFAULT_MIN_GAIN: float | None = 0.05
"""Safeguard threshold used by the benchmark and for the shipped stack (models.blend.safeguard_factors)."""
