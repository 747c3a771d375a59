"""One call that explains an upload: predictions, attributions, similar references, OOD flags, compound calls.

``explain_upload`` backs ``moa explain`` and is the function for ``POST /api/explain``; everything it
returns is JSON-able (plain dicts, lists, str, int, float, bool, None). Each part degrades on its own:
a model without attributions (kNN, prior) still gets neighbours, OOD flags and compound calls, and says why
in ``attributions.message``; a bundle without a reference index says so in ``reference.message``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..data.profiles import schema
from ..data.errors import DataError
from .attributions import DEFAULT_STEPS, AttributionUnavailable, explain_predictions, global_attributions
from ..data.profiles.dataset import control_mask, find_compound_column
from ..data.profiles.gene_features import SUBSTITUTED_ATTR, substitution_notes
from ..data.profiles.gene_blocks import layout_genes
from ..data.profiles.layout import Layout
from .compounds import compound_calls, compound_calls_json
from ..reference.neighbours import reference_meta_columns
from ..reference.ood import OOD_MESSAGE, is_simulated, ood_scores


def _plain(value: Any) -> Any:
    """A meta cell as JSON: None for missing, Python numbers, else text."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    return value if isinstance(value, (int, float, bool)) else str(value)


def select_profiles(features: pd.DataFrame, sig_ids: Sequence[str] | None) -> pd.DataFrame:
    """The rows with these sig_ids, in the order given (DataError naming the unknown ones)."""
    if not sig_ids:
        return features
    wanted = [str(s).strip() for s in sig_ids]
    unknown = [s for s in wanted if s not in features.index]
    if unknown:
        raise DataError(f"sig_id(s) not in the features: {', '.join(unknown[:5])}"
                        f"{' ...' if len(unknown) > 5 else ''}. Use ids from the file's sig_id column.",
                        column=schema.SIG_ID)
    return features.loc[wanted]


def explain_upload(bundle: Any, features: pd.DataFrame, *, sig_ids: Sequence[str] | None = None,
                   moas: Sequence[str] | None = None, top_moas: int = 3, top_k: int = 10, neighbours: int = 10,
                   n_steps: int = DEFAULT_STEPS, attributions: bool = True, max_attributed: int | None = None,
                   compound_column: str | None = None, compound_top_k: int = 5,
                   global_data: Any = None, global_profiles: int = 32, progress: bool = False,
                   proba: np.ndarray | None = None) -> dict[str, Any]:
    """Explain validated `features` with `bundle` (see the module docstring for the parts). `proba`: the
    probabilities the shell's ``bundle.Predictor`` gave these `features` (row i of `features`), so an explanation
    explains the very answer the user saw; computed here when not given (a library call).

    Returns ``{"model", "simulated_training_data" (the simulator's marker kept in the bundle, or None),
    "n_profiles", "attributions": {available, message, method}, "reference":
    {available, message, info, ood_threshold}, "profiles": [per profile: sig_id, cp_type, cp_time and cp_dose (for
    another layout: ``meta``, {column: value} of its meta columns), compound, predictions (top MoAs, each with ``predictable``: False for the bundle's
    ``cv.not_predictable``, None when the bundle does not say), explanations, neighbours, enrichment, ood], "compounds": [...] | None,
    "global": {moa: ...} | None, "warnings": [...]}``. `max_attributed` caps how many treated profiles
    get attributions (the first ones; the web layer should set it, attributions cost ~0.1 s per profile
    and MoA); `global_data` (a training ``Dataset``) adds the per-MoA global view of the explained MoAs;
    `progress` shows a progress bar over the attributed (profile, MoA) pairs on stderr (the CLI)."""
    selected = select_profiles(features, sig_ids)
    if proba is not None:
        proba = np.asarray(proba)[features.index.get_indexer(selected.index)]
    features = selected
    model = bundle.model
    names = list(bundle.target_names)
    info = getattr(bundle, "info", None) or {}
    listed = (info.get("cv") or {}).get("not_predictable")
    not_predictable = None if listed is None else set(listed)
    if proba is None:
        proba = bundle.predict_proba(features)
    # times and doses the model was asked in place of the file's own (CMap signatures): said, never silent
    warnings: list[str] = substitution_notes(features.attrs.get(SUBSTITUTED_ATTR))
    layout = bundle_layout(bundle)
    if compound_column is None and layout.group in features.columns:
        compound_column = layout.group  # the layout's compound (group) column
    compound_col = find_compound_column(features, compound_column)
    # what describes a profile: LISH-MoA's dose and time (fixed columns), else the layout's own meta columns
    meta_cols = [] if layout.fixed_columns else [c for c in reference_meta_columns(layout) if c in features.columns]
    genes = layout_genes(layout, list(bundle.feature_columns))  # gene columns named by symbol

    # -- attributions -------------------------------------------------------------------------------------
    attr_part: dict[str, Any] = {"available": False, "message": None, "method": None}
    explained: dict[str, list[dict[str, Any]]] = {}
    if attributions:
        subset = features
        if max_attributed is not None:
            treated_pos = np.flatnonzero(~control_mask(features))
            if len(treated_pos) > max_attributed:
                subset = features.iloc[np.sort(treated_pos[:max_attributed])]
                warnings.append(f"attributions computed for the first {max_attributed} treated profiles only")
        try:
            sub_proba = proba[features.index.get_indexer(subset.index)]
            res = explain_predictions(model, subset, names, proba=sub_proba, moas=moas, top_moas=top_moas,
                                      top_k=top_k, n_steps=n_steps, progress=progress, genes=genes)
            attr_part = {"available": True, "message": None, "method": res["method"]}
            explained = {p["sig_id"]: p["explanations"] for p in res["profiles"]}
            if res["method"]["forward_consistency"] > 1e-3:
                warnings.append("the attribution path differs from the model's predictions by "
                                f"{res['method']['forward_consistency']:.4f}; attributions may be off")
        except AttributionUnavailable as exc:
            attr_part["message"] = str(exc)
    else:
        attr_part["message"] = "attributions not requested"

    # -- reference: neighbours, enrichment, OOD -----------------------------------------------------------
    index = getattr(bundle, "reference", None)
    ref_part: dict[str, Any] = {"available": index is not None, "message": None, "info": None, "ood_threshold": None}
    found: list[dict[str, Any]] = [{} for _ in range(len(features))]
    oods: list[dict[str, Any] | None] = [None] * len(features)
    if index is None:
        ref_part["message"] = ("this bundle has no reference index; retrain it with 'moa train' to get similar "
                               "reference profiles and out-of-distribution flags")
    else:
        ref_part["info"] = index.info
        ref_part["ood_threshold"] = round(float(index.ood_threshold), 4)
        if neighbours > 0:
            found = index.neighbours(features, k=neighbours)
        oods = ood_scores(index, features, is_simulated(bundle))
        n_flag = sum(o["flag"] for o in oods)
        if n_flag:
            warnings.append(f"{n_flag} of {len(features)} profile(s) are {OOD_MESSAGE}")

    # -- per profile ----------------------------------------------------------------------------------------
    profiles = []
    treated = ~control_mask(features)
    for i, sig in enumerate(features.index):
        row = features.iloc[i]
        order = np.argsort(-proba[i], kind="stable")[:top_moas] if treated[i] else []
        where = ({"cp_time": int(row[schema.CP_TIME]), "cp_dose": str(row[schema.CP_DOSE])} if layout.fixed_columns
                 else {"meta": {c: _plain(row[c]) for c in meta_cols}})
        profiles.append({
            "sig_id": str(sig),
            "cp_type": str(row[schema.CP_TYPE]), **where,
            "compound": None if compound_col is None or pd.isna(row[compound_col]) else str(row[compound_col]),
            "predictions": [{"moa": names[j], "probability": round(float(proba[i, j]), 6),
                             "predictable": None if not_predictable is None else names[j] not in not_predictable}
                            for j in order],
            "explanations": explained.get(str(sig), []),
            "neighbours": found[i].get("neighbours", []),
            "enrichment": found[i].get("enrichment", []),
            "ood": oods[i],
        })

    # -- compounds and the global view ----------------------------------------------------------------------
    compounds = None
    if compound_col is not None:
        compounds = compound_calls_json(compound_calls(features, proba, names, column=compound_col,
                                                       top_k=compound_top_k), top_k=compound_top_k)
    global_view = None
    if global_data is not None and attr_part["available"]:
        wanted = sorted({e["moa"] for p in profiles for e in p["explanations"]})
        global_view = global_attributions(model, global_data.features, global_data.targets, moas=wanted,
                                          n_profiles=global_profiles, top_k=top_k, genes=genes)
    return {"model": model.name, "simulated_training_data": (info.get("training_data") or {}).get("simulated"),
            "n_profiles": len(features), "n_targets": len(names),
            "attributions": attr_part, "reference": ref_part, "profiles": profiles,
            "compound_column": compound_col, "compounds": compounds, "global": global_view, "warnings": warnings}


def bundle_layout(bundle: Any) -> Layout:
    """The layout a bundle was trained on; a bundle saved without one is LISH-MoA's."""
    return getattr(bundle, "layout", None) or Layout.lish_moa()


def explain_profiles(bundle: Any, features: pd.DataFrame, **kwargs: Any) -> dict[str, Any]:
    """Attributions only (``explain_predictions`` on a bundle); raises ``AttributionUnavailable``."""
    kwargs.setdefault("genes", layout_genes(bundle_layout(bundle), list(bundle.feature_columns)))
    return explain_predictions(bundle.model, features, bundle.target_names, proba=bundle.predict_proba(features),
                               **kwargs)


def compound_report(bundle: Any, features: pd.DataFrame, *, column: str | None = None,
                    top_k: int = 5, n_moas: int = 10) -> list[dict[str, Any]]:
    """Compound-level calls of an upload (``[]`` when it has no compound column)."""
    layout = bundle_layout(bundle)
    if column is None and layout.group in features.columns:
        column = layout.group
    calls = compound_calls(features, bundle.predict_proba(features), bundle.target_names, column=column,
                           top_k=top_k, n_moas=n_moas)
    return compound_calls_json(calls, top_k=top_k)
