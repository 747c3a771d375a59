"""The results page's context: the view model of the page asked for, with the explanations and the panels of
the profiles it shows (computed for those profiles only)."""

from __future__ import annotations

from typing import Any

from .panels import Panels
from ..services.model_service import ModelService, input_notes
from ..core.store import REJECTION_POLICY, Prediction
from .views import ResultsQuery, is_missing, results_view


def results_page(service: ModelService, pred: Prediction, query: ResultsQuery, base: str, panels: Panels,
                 explanations: bool, set_level: float | None = None) -> dict[str, Any]:
    """Everything ``results.html`` needs (`base`: the result's address; `explanations`: OOD flags, similar
    profiles and attribution notes on or off; `set_level`: the MoA sets' level, default the bundle's)."""
    explainer = service.explainer_for(pred.features)
    ood = explainer.ood_mask(pred) if explanations else None
    compound_column, calls = explainer.compounds(pred)
    compounds = pred.features[compound_column] if compound_column is not None else None
    view = results_view(pred, service.targets, query, service.predictable, base, ood=ood, compounds=compounds,
                        confident=service.settings.confident)
    rows = [prof["pos"] for prof in view["profiles"]]
    reference = explainer.reference_rows(pred, rows) if explanations else {}
    panel_data = [(panel, panel.data(service, pred, rows)) for panel in panels.profile]
    sets = service.sets(pred, set_level)
    confident = service.calls(pred)
    for prof in view["profiles"]:
        if confident["available"]:
            prof["call"] = confident["rows"][prof["pos"]]
        if sets["available"]:
            prof["moa_set"] = [service.targets[j] for j in sets["moa_sets"][prof["pos"]]]
            prof["abstention"] = sets["abstentions"][prof["pos"]]
        prof["ood"] = reference.get(prof["pos"], {}).get("ood")
        prof["compound"] = None
        if compound_column is not None and not is_missing(compounds.iat[prof["pos"]]):
            prof["compound"] = str(compounds.iat[prof["pos"]]).strip() or None
        prof["panels"] = [{"name": panel.name, "title": panel.title, "template": panel.template,
                           "data": data[prof["pos"]]}
                          for panel, data in panel_data if data.get(prof["pos"]) is not None]
    page_panels = []
    for panel in panels.page:
        data = panel.build(service, pred, view)
        if data is not None:
            page_panels.append({"name": panel.name, "title": panel.title, "template": panel.template, "data": data})
    explain_info = {
        "answered_by": service.answering(pred.features).answers,
        "enabled": explanations,
        "attributions_message": explainer.attributions_message if explanations else None,
        "reference_message": explainer.reference_message if explanations else None,
        "ood_flagged": None if ood is None else int(ood.sum()),
        "compound_column": compound_column,
        "n_compounds": 0 if calls is None or calls.empty else int(calls["compound"].nunique()),
    }
    return {"pred": pred, "summary": pred.summary(), "view": view, "base": base, "targets": service.targets,
            "page_panels": page_panels, "policy": REJECTION_POLICY, "explain": explain_info,
            "sets": {k: v for k, v in sets.items() if k not in ("moa_sets", "abstentions")},
            "calls": {k: v for k, v in confident.items() if k != "rows"}, "input_notes": input_notes(pred.features)}
