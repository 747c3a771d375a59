"""Optional sections of the results page: the extension points and the built-in explanation panels.

A panel is computed only for the profiles of the page being shown; ``create_app(panels=...)`` adds panels
after the built-in ones (attribution charts, similar reference profiles).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlencode

from ..services.model_service import ModelService
from ..core.store import Prediction
from .views import percent_text


@dataclass
class ProfilePanel:
    """A section added under each profile of the current results page.

    ``build(service, prediction, row)`` returns the template's ``panel_data`` for that profile, or None to
    leave the panel out; it runs only for the profiles of the page being shown. Or ``batch(service,
    prediction, rows)``: called once with the page's row positions, returns {row: panel_data} (rows left out
    get no panel); for work that is cheaper in one go (one search for the whole page). ``template`` is a
    partial in ``web/templates`` (it sees ``prof``, ``panel``, ``panel_data``, ``pred`` and ``root``).
    """

    name: str
    title: str
    template: str
    build: Callable[[ModelService, Prediction, int], Any] | None = None
    batch: Callable[[ModelService, Prediction, list[int]], dict[int, Any]] | None = None

    def __post_init__(self) -> None:
        if (self.build is None) == (self.batch is None):
            raise ValueError(f"panel {self.name!r}: give exactly one of build= and batch=")

    def data(self, service: ModelService, prediction: Prediction, rows: list[int]) -> dict[int, Any]:
        if self.batch is not None:
            return self.batch(service, prediction, rows) or {}
        return {r: self.build(service, prediction, r) for r in rows}


@dataclass
class PagePanel:
    """A section added to the results page once (e.g. a compound-level view), after the overview.

    ``build(service, prediction, view)`` gets the page's view model (see :func:`views.results_view`)."""

    name: str
    title: str
    template: str
    build: Callable[[ModelService, Prediction, dict], Any]


@dataclass
class Panels:
    profile: list[ProfilePanel] = field(default_factory=list)
    page: list[PagePanel] = field(default_factory=list)

    def __add__(self, other: "Panels") -> "Panels":
        return Panels(profile=[*self.profile, *other.profile], page=[*self.page, *other.page])


def attribution_data(sig_id: str, labels: Sequence[tuple[str, float]], top_k: int, **query: Any) -> dict[str, Any]:
    """What ``_attribution_charts.html`` needs to draw one profile's attribution charts for `labels` ((name,
    probability), MoAs or a label set's targets): the explain API's query string (``sig_ids``, `top_k`, no
    neighbours, plus `query`: ``top_moas`` or ``moas``, ``label_set``) and the completeness tolerances."""
    from ...explain.attributions import TOLERANCE_ABS, TOLERANCE_REL  # torch and captum: only when drawn

    params = {"sig_ids": sig_id, **query, "top_k": top_k, "neighbours": 0}
    return {"labels": [{"name": name, "p": p, "pct": percent_text(p)} for name, p in labels], "top_k": top_k,
            "query": urlencode(params, doseq=True), "tolerance_abs": TOLERANCE_ABS, "tolerance_rel": TOLERANCE_REL}


def attribution_panel_batch(service: ModelService, pred: Prediction, rows: Sequence[int]) -> dict[int, Any]:
    """Per treated profile of the page: the MoAs whose attribution charts app.js will fetch and draw."""
    if service.explainer_for(pred.features).attributions_message is not None:
        return {}
    top_moas = service.settings.explain.top_moas.default
    top_k = service.settings.explain.top_k.default
    out = {}
    for r in rows:
        if pred.is_control[r]:
            continue
        moas = [(service.targets[j], float(pred.proba[r, j])) for j in pred.order[r, :top_moas].tolist()]
        out[int(r)] = attribution_data(str(pred.sig_ids[r]), moas, top_k, top_moas=top_moas)
    return out


def neighbours_panel_batch(service: ModelService, pred: Prediction, rows: Sequence[int]) -> dict[int, Any]:
    """Per profile of the page: its similar reference profiles and the MoAs enriched among them."""
    found = service.explainer_for(pred.features).reference_rows(pred, rows)
    return {r: f for r, f in found.items() if f.get("neighbours")}


def targets_panel_batch(service: ModelService, pred: Prediction, rows: Sequence[int]) -> dict[int, Any]:
    """Per treated profile of the page: its most likely protein targets, the target call and whether they agree
    with the top MoA (models with a target label set only)."""
    found = service.protein_targets(pred)
    if not found["available"]:
        return {}
    label_set, explainer = found["label_set"], service.explainer_for(pred.features)
    explained = (label_set in explainer.bundle.label_sets
                 and explainer.label_set_attributions_message(label_set) is None)
    top_k = service.settings.explain.top_k.default
    out = {}
    for r in rows:
        if pred.is_control[r] or not found["rows"][r]:
            continue
        top = found["rows"][r][0]  # the genes behind the top target: the explain API on the target model
        out[int(r)] = {"targets": [{**t, "pct": percent_text(t["probability"])} for t in found["rows"][r]],
                       "consistency": found["consistency"][r],
                       "call": None if found["calls"] is None else found["calls"][r],
                       "n_targets": found["n_targets"], "cv": found["cv"],
                       "attributions": attribution_data(str(pred.sig_ids[r]), [(top["target"], top["probability"])],
                                                        top_k, label_set=label_set, moas=top["target"])
                       if explained else None}
    return out


def explanation_panels() -> Panels:
    """The panels every app gets unless ``create_app(..., explanations=False)``."""
    return Panels(profile=[
        ProfilePanel("targets", "Which proteins it may hit: protein targets", "_panel_targets.html",
                     batch=targets_panel_batch),
        ProfilePanel("attributions", "Why these MoAs: feature attributions", "_panel_attributions.html",
                     batch=attribution_panel_batch),
        ProfilePanel("neighbours", "Similar reference profiles", "_panel_neighbours.html",
                     batch=neighbours_panel_batch),
    ])
