"""The training job behind ``moa train``: cross-validate, fit on all data, freeze into a bundle."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import numpy as np
from sklearn.base import clone

from .. import __version__
from .bundle import Bundle
from ..data.dataset import Dataset
from ..evaluation.crossval import CVResult, cross_validate
from ..models.base import MoAModel


NO_CV_STACK = ("not fit: without cross-validation the blend keeps the default member weights, with no temperature "
               "or per-target safeguard (train with cross-validation to fit them on this data)")


def train_bundle(model: MoAModel, data: Dataset, *, n_splits: int = 5, seed: int = 0, cv: bool = True,
                 progress: bool = True, command: str = "", reference: bool = True,
                 device: str = "cpu") -> tuple[Bundle, CVResult | None]:
    """Cross-validate `model` (unless cv=False), then fit it on every training row.

    A blend that fits its stack on out-of-fold predictions (``stack_from_cv``) gets the stack fit on this data's
    cross-validation; without cross-validation it keeps the stack it was given (default member weights, no
    temperature or per-target safeguard), and ``info["stack"]`` says so.

    With `reference`, the training profiles are also indexed once (explain.neighbours.ReferenceIndex: similar
    reference profiles, MoA enrichment, OOD calibration) and stored in the bundle."""
    result = (cross_validate(model, data, n_splits=n_splits, seed=seed, progress=progress, device=device)
              if cv else None)
    final = clone(model)
    stack = None if result is None else result.extra.get("stack")
    stack_note = NO_CV_STACK if getattr(model, "stack_from_cv", False) else None
    if stack is not None:
        final.set_params(weights=stack["weights"], calibration=stack["calibration"],
                         prior_targets=stack["prior_targets"])
        stack_note = ("fit on this data's out-of-fold predictions (weights, temperature, per-target safeguard; "
                      "CV score nested)")
    t0 = time.perf_counter()
    # float32 as in cross_validate, so the final fit sees exactly what the CV folds saw
    Y_aux = None if data.nonscored is None else data.nonscored.to_numpy(np.float32)
    final.fit(data.features, data.targets.to_numpy(np.float32), Y_aux, device=device)
    info = {
        "package_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "training_data": {"source": data.source, "fingerprint": data.fingerprint(), "rows": len(data.features),
                          "treated_rows": int((~data.is_control).sum())},
        "final_fit_seconds": round(time.perf_counter() - t0, 2),
        "cv": None if result is None else result.to_dict(),
    }
    if stack_note:
        info["stack"] = stack_note
    index = None
    if reference:
        from ..explain.neighbours import ReferenceIndex

        index = ReferenceIndex.build(data.features, data.targets, data.nonscored, data.drugs, seed=seed,
                                     feature_columns=data.feature_columns)
    return Bundle(final, data.target_names, data.feature_columns, info, reference=index), result
