"""The training job behind ``moa train``: cross-validate, fit on all data, freeze into a bundle."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from .. import __version__
from ..data.profiles.dataset import Dataset
from ..data.errors import DataError
from ..data.profiles.reader import metadata_lookups, training_rows
from ..evaluation.metrics import single_label_scores
from .crossval import CVResult, cross_validate
from ..evaluation.skill import TOO_FEW, per_target_skill
from ..trust.model import fit_trust
from ..reference.neighbours import ReferenceIndex, reference_meta_columns
from ..models.base import MoAModel
from ..models.blend import BlendModel
from ..models.default import GENE_ONLY_MEMBERS
from ..runtime.progress import elapsed
from ..bundle import Bundle
from .controls import cv_field_report
from .stacking import cross_validate_blend

NO_CV_STACK = ("not fit: without cross-validation the blend keeps the default member weights, with no temperature "
               "or per-target safeguard (train with cross-validation to fit them on this data)")
CV_STACK = "fit on this data's out-of-fold predictions (weights, temperature, per-target safeguard; CV score nested)"


def gene_only_model(model: MoAModel) -> MoAModel:
    """The model trained on the gene block alone: the default blend's lighter gene-only recipe
    (``models.default.GENE_ONLY_MEMBERS``), else the same model."""
    if isinstance(model, BlendModel) and model.member_specs() == BlendModel().member_specs():
        return clone(model).set_params(members=[list(m) for m in GENE_ONLY_MEMBERS], weights=None)
    return clone(model)


def train_bundle(model: MoAModel, data: Dataset, *, n_splits: int = 5, seed: int = 0, cv: bool = True,
                 progress: bool = True, command: str = "", reference: bool = True, device: str = "cpu",
                 gene_only: bool = True, shuffled: str = "auto",
                 retrieval: bool = True) -> tuple[Bundle, CVResult | None]:
    """Cross-validate `model` (unless cv=False), then fit it on every training row.

    A blend gets its stack fit on this data's cross-validation (``training.stacking``); without
    cross-validation it keeps its given weights (no temperature or per-target safeguard), and
    ``info["stack"]`` says which.

    With `reference`, the training profiles are also indexed once (reference.neighbours.ReferenceIndex: similar
    reference profiles, MoA enrichment, OOD calibration) and stored in the bundle.

    With `gene_only` (and data that has a c- block, and a model that can be fit on a subset of the features),
    the same model is also trained, cross-validated on the same folds, on the gene block alone: the bundle's
    ``gene_only`` companion answers profiles that have no cell-viability block (CMap / L1000 signatures).

    With cross-validation, the trust layer (calibration, MoA sets, compound pooling: ``trust.model``) is
    fit on the out-of-fold predictions, and the field's figures (top-k accuracy, micro PR-AUC, macro ROC-AUC,
    retrieval mAP, log loss) are reported beside the prior's and a shuffled-label control's (`shuffled`: auto,
    refit or permute; ``training.controls``; `retrieval`: with the copairs mAP); the per-MoA skill judges each
    MoA against both."""
    layout_notes = None
    if model.needs_full_layout and not data.layout.fixed_columns:
        raise DataError(f"model {model.name!r} only works on the LISH-MoA layout (its inputs are the paper's fixed "
                        "875 columns); for other layouts use knn, logreg, mlp, resnet or the blend (see 'moa "
                        "models').")
    if not data.layout.unlabelled_are_negatives:
        # rows whose compound has no annotation are predicted later, never trained on; the report counts them
        layout_notes = dict(data.notes)
        data = data.subset(training_rows(data))
    companion = None
    # a fixed-column (LISH-MoA) bundle also answers CMap gene tables: with a companion fit on the gene block alone
    if (gene_only and data.layout.fixed_columns and not model.needs_full_layout
            and any(c.startswith("c-") for c in data.feature_columns)):
        companion, _ = train_bundle(gene_only_model(model), data.genes_only(), n_splits=n_splits, seed=seed, cv=cv,
                                    progress=progress, command=command, reference=reference, device=device,
                                    gene_only=False, shuffled="permute", retrieval=False)
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
            final.fit(X, Y, Y_aux, stack=stack, device=device, inputs=data.inputs)
        else:
            final.fit(X, Y, Y_aux, device=device, inputs=data.inputs)
    info = {
        "package_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "training_data": {"source": data.source, "fingerprint": data.fingerprint(), "rows": len(data.features),
                          "treated_rows": int((~data.is_control).sum()), "simulated": data.simulated,
                          **({"notes": layout_notes} if layout_notes is not None else {})},
        "final_fit_seconds": round(time.perf_counter() - t0, 2),
        "cv": None if result is None else result.to_dict(),
    }
    if not data.layout.fixed_columns:  # the package's own layout is not stored: a bundle without one loads with it
        info["layout"] = data.layout.to_dict()
        if data.layout.metadata:  # the joins travel with the bundle: a raw file in the training form predicts as is
            info["layout_metadata"] = [{"columns": [str(c) for c in t.columns], "data": t.astype(object).where(
                t.notna(), None).to_numpy().tolist()} for t in metadata_lookups(data.layout)]
    if result is not None and data.single_label:
        info["cv"]["single_label"] = single_label_scores(data.targets.to_numpy(), result.oof, result.fold >= 0)
    if result is not None:
        field, control = cv_field_report(model, data, result, mode=shuffled, seed=seed, progress=progress,
                                         device=device, retrieval=retrieval)
        info["cv"]["prior_score"] = field["figures"]["log_loss"]["prior"]
        info["cv"]["field"] = field
        treated_fold = np.where(data.is_control, -1, result.fold)
        skill = per_target_skill(data.targets.to_numpy(np.float64), result.oof, treated_fold, data.target_names,
                                 None if data.drugs is None else data.drugs.to_numpy(),
                                 stack.prior_targets_ if stack is not None else (), shuffled=control)
        info["cv"]["per_target_skill"] = skill
        info["cv"]["not_predictable"] = [name for name, s in skill.items() if not s["predictable"]]
        info["cv"]["too_few_to_judge"] = [name for name, s in skill.items() if s["judgement"] == TOO_FEW]
    if is_blend:
        info["stack"] = NO_CV_STACK if stack is None else CV_STACK
    trust = None
    if result is not None and data.targets is not None:
        trust = fit_trust(result, data)
        info["cv"]["trust"] = trust.summary()  # in cv_report.json and the printed CV table
    index = None
    if reference:
        index = ReferenceIndex.build(data.features, data.targets, data.nonscored, data.drugs, seed=seed,
                                     feature_columns=data.feature_columns, layout=data.layout,
                                     meta_columns=reference_meta_columns(data.layout),
                                     noisy_queries=data.layout.profile_scale != "none")
    if companion is not None:
        info["gene_only"] = {"cv": None if companion.info["cv"] is None else
                             {k: companion.info["cv"][k] for k in ("score", "rows", "folds", "grouped_by_drug", "seed")},
                             "features": f"{len(companion.feature_columns)} gene columns (no cell-viability block)",
                             "final_fit_seconds": companion.info["final_fit_seconds"]}
    return Bundle(final, data.target_names, data.feature_columns, info, reference=index, trust=trust,
                  normalizer=data.normalizer, gene_only=companion), result


def label_links(moas: Dataset, labels: Dataset) -> dict[str, dict[str, Any]]:
    """Which labels of another set go with each MoA in the training annotations: for each MoA, the number of its
    compounds that have such labels (``compounds``) and each label (a protein target) with the number of compounds
    carrying both (``labels``). How a MoA call and target calls are checked against each other
    (``evaluation.consistency``). Compounds are matched by the compound column, else by profile id."""
    def per_compound(data: Dataset) -> pd.DataFrame:
        keys = data.drugs.astype(str).to_numpy() if data.drugs is not None else data.features.index.to_numpy()
        return data.targets.groupby(keys).max()

    a, b = per_compound(moas), per_compound(labels)
    both = a.index.intersection(b.index)
    A, B = a.loc[both].to_numpy(np.int64), b.loc[both].to_numpy(np.int64)
    counts = A.T @ B
    names = list(b.columns)
    n = A.T @ (B.sum(axis=1) > 0)
    return {moa: {"compounds": int(n[i]), "labels": {names[j]: int(counts[i, j]) for j in np.flatnonzero(counts[i])}}
            for i, moa in enumerate(a.columns) if counts[i].any()}


def train_label_sets(model: MoAModel, sets: dict[str, Dataset], moas: Dataset | None = None,
                     **kwargs) -> dict[str, Bundle]:
    """A model per extra label set of the layout (``[label_sets.NAME]``: the protein targets), each trained and
    cross-validated as ``train_bundle`` trains the MoA model, with the same features and folds grouped by compound
    (no gene-only companion). With `moas` (the MoA training data), each bundle also keeps the MoA -> label links of
    the training annotations (``info["links"]``) for the consistency check."""
    out = {}
    for name, data in sets.items():
        bundle, _ = train_bundle(clone(model), data, gene_only=False, **kwargs)
        bundle.info["label_set"] = name
        if moas is not None:
            bundle.info["links"] = label_links(moas.subset(training_rows(moas)), data.subset(training_rows(data)))
        out[name] = bundle
    return out
