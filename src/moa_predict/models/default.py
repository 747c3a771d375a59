"""The default model: which members the default blend holds, and its weights.

``moa train`` without ``--model`` trains ``DEFAULT_MODEL`` (models/__init__.py), the ``blend``
model, whose default hyper-parameters are the constants below. They were chosen on out-of-fold
predictions only (``moa benchmark models``: drug-grouped 5-fold CV, seed 0): the members for
accuracy per CPU-second, the weights by ``models.blend.fit_blend_weights`` on all five folds'
OOF (the benchmark scores the blend with weights fit on four folds and applied to the fifth).
"""

from __future__ import annotations

RECIPE_TRAINING = {"batch_size": 256, "max_lr": 1e-2, "schedule": "onecycle", "label_smoothing": 0.001}

DEFAULT_MEMBERS: tuple[tuple[str, dict], ...] = (
    ("mlp", {"hidden": [256, 256], "dropout": 0.5, "epochs": 35, "aux": False, "n_seeds": 2, **RECIPE_TRAINING}),
    ("cnn1d", {"channels": 32, "conv_channels": 64, "epochs": 25, "aux": True, "n_seeds": 1, **RECIPE_TRAINING}),
    ("resnet", {"width": 256, "n_blocks": 2, "epochs": 35, "aux": False, "n_seeds": 1, **RECIPE_TRAINING}),
    ("logreg", {"weight_decay": 1e-5, "epochs": 25, "batch_size": 256, "max_lr": 1e-2}),
)
DEFAULT_WEIGHTS: tuple[float, ...] | None = None
"""None: equal weights (until fit on OOF)."""
DEFAULT_CALIBRATION: tuple[float, ...] | None = None
"""Per-target calibration factors (models.blend.calibrate); None: none."""
DEFAULT_PRIOR_TARGETS: tuple[int, ...] = ()
"""Targets predicted by their prevalence (the per-target safeguard); empty when none is needed."""
DEFAULT_MIN_GAIN: float | None = 0.05
"""Safeguard threshold used by the benchmark and for DEFAULT_PRIOR_TARGETS (models.blend.choose_prior_targets)."""
