"""The training job behind ``moa train``: cross-validate, fit on all data, freeze into a bundle."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import numpy as np
from sklearn.base import clone

from .. import __version__
from ..data.dataset import Dataset
from ..evaluation.crossval import CVResult, cross_validate
from ..explain.neighbours import ReferenceIndex
from ..models.base import MoAModel
from ..models.blend import BlendModel
from ..runtime.progress import elapsed
from .bundle import Bundle
from .stacking import cross_validate_blend

NO_CV_STACK = ("not fit: without cross-validation the blend keeps the default member weights, with no temperature "
               "or per-target safeguard (train with cross-validation to fit them on this data)")
CV_STACK = "fit on this data's out-of-fold predictions (weights, temperature, per-target safeguard; CV score nested)"


def train_bundle(model: MoAModel, data: Dataset, *, n_splits: int = 5, seed: int = 0, cv: bool = True,
                 progress: bool = True, command: str = "", reference: bool = True,
                 device: str = "cpu") -> tuple[Bundle, CVResult | None]:
    """Cross-validate `model` (unless cv=False), then fit it on every training row.

    A blend gets its stack fit on this data's cross-validation (``training.stacking``); without
    cross-validation it keeps its given weights (no temperature or per-target safeguard), and
    ``info["stack"]`` says which.

    With `reference`, the training profiles are also indexed once (explain.neighbours.ReferenceIndex: similar
    reference profiles, MoA enrichment, OOD calibration) and stored in the bundle."""
    is_blend = isinstance(model, BlendModel)
    result, stack = None, None
    if cv and is_blend:
        result, stack = cross_validate_blend(model, data, n_splits=n_splits, seed=seed, progress=progress,
                                             device=device)
    elif cv:
        result = cross_validate(model, data, n_splits=n_splits, seed=seed, progress=progress, device=device)
    final = clone(model)
    t0 = time.perf_counter()
    # float32 as in cross-validation, so the final fit sees exactly what the CV folds saw
    X, Y = data.features, data.targets.to_numpy(np.float32)
    Y_aux = None if data.nonscored is None else data.nonscored.to_numpy(np.float32)
    what = f"final fit ({len(final.member_specs())} members)" if is_blend else "final fit"
    with elapsed(what, enabled=progress):
        if is_blend:
            final.fit(X, Y, Y_aux, stack=stack, device=device)
        else:
            final.fit(X, Y, Y_aux, device=device)
    info = {
        "package_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "training_data": {"source": data.source, "fingerprint": data.fingerprint(), "rows": len(data.features),
                          "treated_rows": int((~data.is_control).sum())},
        "final_fit_seconds": round(time.perf_counter() - t0, 2),
        "cv": None if result is None else result.to_dict(),
    }
    if is_blend:
        info["stack"] = NO_CV_STACK if stack is None else CV_STACK
    index = None
    if reference:
        index = ReferenceIndex.build(data.features, data.targets, data.nonscored, data.drugs, seed=seed,
                                     feature_columns=data.feature_columns)
    return Bundle(final, data.target_names, data.feature_columns, info, reference=index), result
