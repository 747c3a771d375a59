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
    ("mlp", {"hidden": [512, 512], "dropout": 0.5, "epochs": 35, "aux": False, "g_pca": 150, "c_pca": 20,
             **PCA_INPUTS, **TRAINING}),
    ("mlp", {"hidden": [256, 256], "dropout": 0.5, "epochs": 50, "aux": False, "g_pca": 150, "c_pca": 20, "seed": 2,
             **PCA_INPUTS, **TRAINING}),
    ("mlp", {"hidden": [256, 256], "dropout": 0.5, "epochs": 35, "aux": False, "g_pca": 250, "c_pca": 30,
             **PCA_INPUTS, **TRAINING}),
    ("mlp", {"hidden": [256, 256], "dropout": 0.5, "epochs": 35, "aux": False, "g_pca": 150, "c_pca": 20, "seed": 1,
             **PCA_INPUTS, **TRAINING}),
    ("logreg", {"weight_decay": 1e-5, "epochs": 25, "batch_size": 256, "max_lr": 1e-2}),
)
"""Most expensive first (the two worker processes take them in this order)."""
DEFAULT_WEIGHTS: tuple[float, ...] | None = (0.1413, 0.0772, 0.2096, 0.2926, 0.1808, 0.0985)
"""Member weights fit on all folds' OOF (models.blend.fit_blend_weights)."""
DEFAULT_CALIBRATION: tuple[float, ...] | None = (
    1.003, 0.007, 0.000, 0.716, 0.676, 0.084, 0.696, 0.553, 0.865, 0.677, 0.776, 0.502,
    1.025, 0.963, 0.444, 0.643, 1.500, 0.493, 0.346, 0.627, 0.038, 0.000, 0.844, 0.565,
    0.552, 0.403, 0.714, 0.400, 1.019, 0.735, 0.806, 1.235, 0.172, 0.977, 0.000, 0.171,
    1.243, 0.622, 1.500, 0.887, 0.408, 1.215, 0.497, 0.409, 0.539, 0.551, 0.710, 0.667,
    1.223, 0.811, 0.421, 1.500, 1.158, 0.862, 0.780, 0.159, 0.295, 0.542, 1.500, 0.798,
    0.596, 0.611, 0.705, 1.500, 0.959, 1.500, 1.349, 1.500, 0.172, 0.879, 1.287, 0.547,
    0.375, 1.232, 0.165, 0.984, 1.202, 1.150, 0.775, 0.625, 1.500, 0.849, 0.000, 1.500,
    1.038, 0.532, 0.353, 0.626, 1.256, 1.216, 0.602, 0.560, 0.319, 0.600, 0.597, 0.651,
    1.165, 0.593, 0.094, 0.625, 0.502, 1.500, 0.000, 1.482, 0.963, 0.645, 1.292, 1.434,
    0.508, 1.500, 1.325, 1.243, 0.000, 0.551, 1.033, 0.733, 1.165, 0.750, 1.370, 1.178,
    0.866, 0.841, 0.301, 0.507, 1.276, 0.988, 1.500, 1.500, 1.125, 0.000, 0.911, 0.735,
    1.500, 1.444, 0.957, 0.967, 1.179, 0.818, 0.611, 0.000, 0.331, 0.595, 1.259, 0.460,
    0.718, 0.788, 1.432, 0.381, 1.032, 1.067, 0.580, 0.585, 0.188, 1.396, 0.250, 0.670,
    0.567, 1.500, 0.025, 1.366, 0.954, 0.512, 0.903, 1.378, 1.312, 0.927, 1.452, 1.003,
    0.733, 1.500, 0.646, 1.161, 0.872, 0.538, 1.500, 1.226, 0.806, 0.711, 0.900, 0.581,
    0.361, 0.352, 0.847, 0.621, 1.399, 0.880, 0.000, 0.620, 0.784, 0.448, 1.500, 0.662,
    0.640, 0.782, 1.258, 0.206, 0.915, 0.428, 0.418, 1.500, 0.516, 0.843, 1.392, 0.692,
    1.226, 1.317,
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
