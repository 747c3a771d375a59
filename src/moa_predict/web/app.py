"""The FastAPI application factory: ``create_app(bundle)``.

Pages (server-rendered Jinja2, no JS build step) and a JSON API over the same service; the model is loaded
once and used read-only, heavy work runs in the threadpool, uploads are size-limited while they stream and
spooled to temporary files by Starlette, and every error ends as a readable message (web/core/middleware.py).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from .. import __version__
from ..bundle import Bundle, load_bundle
from .core import middleware
from .core.auth import LoginRoute, TokenMiddleware
from .core.jobs import JobQueue
from .services.registry import ServedModels
from .core.options import query_parameters
from .pages.panels import Panels, explanation_panels
from .api import routes as api
from .pages import routes as pages
from .core.settings import WebSettings
from .core.store import ResultStore, open_store
from .pages.templating import STATIC_DIR

BundleSource = Bundle | str | os.PathLike


def create_app(bundle: BundleSource | Sequence[BundleSource], *, max_upload_mb: float | None = None,
               settings: WebSettings | None = None, store: ResultStore | None = None, panels: Panels | None = None,
               explanations: bool = True) -> FastAPI:
    """Build the app around one bundle, or several (a list; the first is the default and the others are
    chosen per upload by name, see ``web/services/registry.py``); each a loaded Bundle or a bundle directory (anything
    ``load_bundle`` takes), loaded once, read-only.

    `settings` hold every limit and option (default: :class:`WebSettings`); `max_upload_mb` overrides their
    upload limit (ValueError unless positive). Results and jobs are kept in `settings.data_dir` (or `store`);
    without either, in a temporary directory removed with the app. With `explanations` (default) the results
    page shows, per profile, the attribution charts, the similar reference profiles and the OOD warning;
    `panels` are added after them."""
    settings = settings or WebSettings()
    if max_upload_mb is not None:
        settings = settings.with_upload_mb(max_upload_mb)
    given = [bundle] if isinstance(bundle, (Bundle, str, os.PathLike)) else list(bundle)
    bundles = [b if isinstance(b, Bundle) else load_bundle(b) for b in given]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(app.state.service.store.flush)  # results answered but not yet on disk

    app = FastAPI(
        lifespan=lifespan,
        title="moa-predict",
        version=__version__,
        summary="Predict compounds' mechanisms of action (206 MoAs) from LISH-MoA gene-expression and "
                "cell-viability profiles. A research tool.",
        docs_url=None,  # FastAPI's Swagger/ReDoc pages load their JavaScript from a CDN: /docs is ours instead
        redoc_url=None,
        openapi_url="/openapi.json",
        debug=False,
    )
    if store is None and settings.data_dir is None:  # a library or test app: a store that goes with the app
        app.state.tempdir = tempfile.TemporaryDirectory(prefix="moa-predict-")
        settings = settings.replace(data_dir=app.state.tempdir.name)
    app.state.settings = settings
    app.state.models = ServedModels(bundles, settings, store if store is not None else open_store(settings))
    app.state.service = app.state.models.default
    app.state.jobs = JobQueue(app.state.service.store.db, app.state.models,
                              threshold_bytes=settings.job_threshold_bytes, workers=settings.job_workers)
    app.state.panels = (explanation_panels() if explanations else Panels()) + (panels or Panels())
    app.state.explanations = explanations

    app.include_router(api.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    _document_options(app, settings)
    app.add_middleware(LoginRoute, token=settings.token)
    if settings.token:
        app.add_middleware(TokenMiddleware, token=settings.token)
    middleware.install(app, max_body_bytes=settings.max_body_bytes, max_upload_bytes=settings.max_upload_bytes)
    return app


def _document_options(app: FastAPI, settings: WebSettings) -> None:
    """List the option models' query parameters (with this app's bounds) in /openapi.json and /docs: the routes
    read them through ``web/core/options.py``, where FastAPI cannot see them."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            for path, params in query_parameters(settings).items():
                for operation in schema["paths"].get(path, {}).values():
                    operation["parameters"] = [*operation.get("parameters", []), *params]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
