"""Dependencies (``Depends``) that hand the routers what ``create_app`` built: the served models (the default
one's service, or the one that answered a stored result), the settings, the result store, the job queue, the
page panels, and the request options validated against the settings."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from .options import ExplainOptions, PredictOptions, query_values
from ..services.registry import ServedModels
from ..pages.panels import Panels
from ..services.model_service import ModelService
from .jobs import JobQueue
from .settings import WebSettings
from .store import Prediction, ResultStore


def service_of(request: Request) -> ModelService:
    """The default model's service."""
    return request.app.state.service


def models_of(request: Request) -> ServedModels:
    return request.app.state.models


def settings_of(request: Request) -> WebSettings:
    return request.app.state.settings


def store_of(request: Request) -> ResultStore:
    return service_of(request).store


def jobs_of(request: Request) -> JobQueue:
    return request.app.state.jobs


def panels_of(request: Request) -> Panels:
    """The results page's panels (none for the explanations when the app was built without them)."""
    return request.app.state.panels


def explanations_on(request: Request) -> bool:
    return request.app.state.explanations


Service = Annotated[ModelService, Depends(service_of)]
Models = Annotated[ServedModels, Depends(models_of)]
Settings = Annotated[WebSettings, Depends(settings_of)]
Store = Annotated[ResultStore, Depends(store_of)]
Jobs = Annotated[JobQueue, Depends(jobs_of)]
PagePanels = Annotated[Panels, Depends(panels_of)]
Explanations = Annotated[bool, Depends(explanations_on)]


def stored(result_id: str, store: Store) -> Prediction:
    """The stored result a route is about; 404 (unknown) or 410 (expired) saying to upload again."""
    return store.require(result_id)


Stored = Annotated[Prediction, Depends(stored)]


def result_service(pred: Stored, models: Models) -> ModelService:
    """The service of the model that answered the stored result (410 when it is no longer served)."""
    return models.for_result(pred)


ResultService = Annotated[ModelService, Depends(result_service)]


def predict_options(request: Request, settings: Settings) -> PredictOptions:
    return PredictOptions.parse(query_values(request.query_params), settings)


def explain_query_options(request: Request, service: ResultService) -> ExplainOptions:
    """The explain options of a request that has them in its query string only (a stored result's)."""
    return ExplainOptions.parse(query_values(request.query_params), service.settings.explain, service.targets,
                                service.bundle.label_sets)
