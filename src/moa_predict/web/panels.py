"""Optional sections of the results page: the extension points and the built-in explanation panels.

A panel is computed only for the profiles of the page being shown; ``create_app(panels=...)`` adds panels
after the built-in ones (attribution charts, similar reference profiles).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Callable

from .service import ModelService
from .store import Prediction
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


def attribution_panel_batch(service: ModelService, pred: Prediction, rows: Sequence[int]) -> dict[int, Any]:
    """Per treated profile of the page: the MoAs whose attribution charts app.js will fetch and draw."""
    if service.explainer_for(pred.features).attributions_message is not None:
        return {}
    from ..explain.attributions import TOLERANCE_ABS, TOLERANCE_REL  # torch and captum: only when drawn

    top_moas = service.settings.explain.top_moas.default
    top_k = service.settings.explain.top_k.default
    out = {}
    for r in rows:
        if pred.is_control[r]:
            continue
        moas = [{"name": service.targets[j], "p": float(pred.proba[r, j]), "pct": percent_text(float(pred.proba[r, j]))}
                for j in pred.order[r, :top_moas].tolist()]
        out[int(r)] = {"moas": moas, "top_moas": top_moas, "top_k": top_k,
                       "tolerance_abs": TOLERANCE_ABS, "tolerance_rel": TOLERANCE_REL}
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
    out = {}
    for r in rows:
        if pred.is_control[r] or not found["rows"][r]:
            continue
        out[int(r)] = {"targets": [{**t, "pct": percent_text(t["probability"])} for t in found["rows"][r]],
                       "consistency": found["consistency"][r],
                       "call": None if found["calls"] is None else found["calls"][r],
                       "n_targets": found["n_targets"], "cv": found["cv"]}
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
