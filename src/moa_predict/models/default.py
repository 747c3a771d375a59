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
    ("resnet", {"width": 256, "n_blocks": 2, "epochs": 35, "aux": False, "g_pca": 250, "c_pca": 30,
                **PCA_INPUTS, **TRAINING}),
    ("mlp", {"hidden": [256, 256], "dropout": 0.5, "epochs": 50, "aux": False, "g_pca": 150, "c_pca": 20, "seed": 2,
             **PCA_INPUTS, **TRAINING}),
    ("mlp", {"hidden": [256, 256], "dropout": 0.5, "epochs": 35, "aux": False, "g_pca": 250, "c_pca": 30,
             **PCA_INPUTS, **TRAINING}),
    ("mlp", {"hidden": [256, 256], "dropout": 0.5, "epochs": 35, "aux": False, "g_pca": 150, "c_pca": 20, "seed": 1,
             **PCA_INPUTS, **TRAINING}),
    ("logreg", {"weight_decay": 1e-5, "epochs": 25, "batch_size": 256, "max_lr": 1e-2}),
)
"""Most expensive first (the two worker processes take them in this order). A 512-512 MLP (PCA 150/20) was
dropped: 30 % of the prediction cost for a nested-CV gain of 0.00001."""
DEFAULT_WEIGHTS: tuple[float, ...] | None = (0.1513, 0.2484, 0.2954, 0.2030, 0.1018)
"""Member weights fit on all folds' OOF (models.blend.fit_blend_weights)."""
DEFAULT_CALIBRATION: tuple[float, ...] | None = (
    1.020, 0.009, 0.000, 0.728, 0.679, 0.103, 0.714, 0.554, 0.866, 0.685, 0.777, 0.544,
    1.026, 0.987, 0.452, 0.643, 1.500, 0.534, 0.365, 0.669, 0.065, 0.000, 0.850, 0.524,
    0.576, 0.398, 0.717, 0.424, 1.022, 0.753, 0.837, 1.240, 0.186, 0.975, 0.000, 0.202,
    1.244, 0.617, 1.500, 0.893, 0.430, 1.224, 0.515, 0.428, 0.566, 0.561, 0.713, 0.712,
    1.239, 0.848, 0.444, 1.500, 1.176, 0.864, 0.785, 0.174, 0.292, 0.552, 1.500, 0.805,
    0.601, 0.619, 0.713, 1.500, 0.981, 1.500, 1.347, 1.500, 0.208, 0.882, 1.284, 0.548,
    0.390, 1.241, 0.182, 0.980, 1.204, 1.155, 0.789, 0.623, 1.500, 0.857, 0.000, 1.500,
    1.059, 0.537, 0.367, 0.620, 1.248, 1.215, 0.616, 0.573, 0.330, 0.616, 0.597, 0.643,
    1.171, 0.591, 0.101, 0.628, 0.506, 1.500, 0.000, 1.486, 0.976, 0.652, 1.309, 1.442,
    0.502, 1.500, 1.326, 1.255, 0.000, 0.556, 1.033, 0.731, 1.153, 0.770, 1.382, 1.181,
    0.871, 0.848, 0.334, 0.498, 1.282, 0.993, 1.500, 1.500, 1.128, 0.032, 0.893, 0.745,
    1.500, 1.444, 0.979, 0.965, 1.176, 0.820, 0.613, 0.000, 0.338, 0.600, 1.254, 0.467,
    0.730, 0.791, 1.452, 0.390, 1.049, 1.073, 0.590, 0.590, 0.204, 1.391, 0.274, 0.675,
    0.548, 1.500, 0.017, 1.372, 0.948, 0.501, 0.921, 1.367, 1.325, 0.930, 1.455, 0.991,
    0.744, 1.500, 0.655, 1.180, 0.876, 0.543, 1.500, 1.234, 0.818, 0.712, 0.905, 0.581,
    0.365, 0.376, 0.848, 0.630, 1.398, 0.883, 0.000, 0.645, 0.799, 0.435, 1.500, 0.663,
    0.648, 0.788, 1.262, 0.219, 0.917, 0.424, 0.428, 1.500, 0.517, 0.851, 1.388, 0.690,
    1.215, 1.320,
)
"""Per-target calibration factors (models.blend.calibrate), one per scored target in file order."""
DEFAULT_PRIOR_TARGETS: tuple[int, ...] = (
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 17, 18, 19, 20, 21,
    23, 24, 25, 26, 27, 28, 29, 30, 32, 35, 37, 40, 42, 43, 44, 45, 46, 47, 49, 50,
    54, 55, 56, 57, 60, 61, 62, 64, 68, 71, 72, 73, 74, 78, 79, 84, 85, 86, 87, 90,
    91, 92, 93, 94, 95, 97, 98, 99, 100, 102, 104, 105, 108, 112, 113, 115, 117, 122, 123, 129,
    130, 131, 134, 135, 138, 139, 140, 141, 143, 144, 145, 147, 148, 150, 151, 152, 154, 155, 156, 158,
    160, 161, 162, 167, 168, 170, 171, 173, 176, 177, 178, 179, 180, 181, 182, 183, 186, 187, 188, 189,
    191, 192, 193, 195, 197, 198, 200, 203,
)
"""Targets predicted by their prevalence (the per-target safeguard; indices in file order)."""
DEFAULT_MIN_GAIN: float | None = 0.05
"""Safeguard threshold used by the benchmark and for DEFAULT_PRIOR_TARGETS (models.blend.choose_prior_targets)."""
