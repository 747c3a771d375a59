"""The FastAPI application: ``create_app(bundle)`` and ``serve(bundle_path, ...)``.

Pages (server-rendered Jinja2, no JS build step) and a JSON API over the same service; the
model is loaded once and used read-only, heavy work runs in the threadpool, uploads are
size-limited while they stream and spooled to temporary files by Starlette, and every error
ends as a readable message (4xx naming the row/column/problem; 5xx without a traceback).
"""

from __future__ import annotations

import logging
import os
import re
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from fastapi import FastAPI, Request
from markupsafe import Markup, escape
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from ..training.bundle import Bundle, load_bundle
from ..data.errors import DataError
from .service import ModelService
from .store import Prediction, ResultStore

log = logging.getLogger("moa_predict.web")

DEFAULT_MAX_UPLOAD_MB = 200
MULTIPART_SLACK = 64 * 1024
"""Allowance for multipart boundaries and part headers on top of the file-size limit."""

WEB_DIR = Path(str(resources.files("moa_predict.web")))
TEMPLATES_DIR = WEB_DIR / "templates"
STATIC_DIR = WEB_DIR / "static"

CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
       "font-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
"""No CDN, no inline script: Plotly's JavaScript and ours come from this server only."""


# ------------------------------------------------------------------------------------------------
# Extension points for panels on the results page (explanations, similar compounds, ...)
# ------------------------------------------------------------------------------------------------


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


# ------------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------------


class UploadTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"the upload is larger than the {limit / 1e6:.3g} MB limit")


def too_large_message(limit: int) -> str:
    mb = limit / 1e6
    return (f"the upload is larger than this server's {mb:.3g} MB limit. Split the profiles into smaller files "
            "(the results of each can be downloaded and joined), or restart the server with a higher "
            "--max-upload-mb.")


def error_body(message: str, **details: Any) -> dict[str, Any]:
    """The one JSON shape of every API error (DataError.to_dict() for bad data)."""
    return {"error": message, "file": None, "row": None, "line": None, "column": None, **details}


def is_api(request_or_scope: Request | Scope) -> bool:
    scope = request_or_scope.scope if isinstance(request_or_scope, Request) else request_or_scope
    path = scope.get("path", "")
    return path.startswith("/api/") or path == "/api" or path.endswith(".json")


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with 413: at once when Content-Length says so, otherwise
    as soon as the streamed body passes the limit (nothing beyond the limit is read)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                declared = -1
            if declared > limit:
                await self._reject(scope, send)
                return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise UploadTooLarge(limit)
            return message

        await self.app(scope, limited, send)

    async def _reject(self, scope: Scope, send: Send) -> None:
        limit = self.max_bytes - MULTIPART_SLACK
        if is_api(scope):
            response: Response = JSONResponse(error_body(too_large_message(limit)), status_code=413)
        else:
            response = HTMLResponse(render_error_page(too_large_message(limit), 413), status_code=413)
        response.headers["Connection"] = "close"
        await response({**scope, "type": "http"}, _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.disconnect"}


class SecurityHeadersMiddleware:
    """nosniff, no framing, no referrer, and a CSP that allows this server's scripts only."""

    HEADERS = [
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
        (b"content-security-policy", CSP.encode()),
    ]

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                message = {**message, "headers": list(message.get("headers", []))
                           + [(k, v) for k, v in self.HEADERS if k not in present]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


# ------------------------------------------------------------------------------------------------
# Templates
# ------------------------------------------------------------------------------------------------

_templates: Jinja2Templates | None = None


def templates() -> Jinja2Templates:
    global _templates
    if _templates is None:
        _templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
        env = _templates.env
        env.globals["version"] = __version__
        env.filters["thousands"] = lambda v: f"{v:,}" if isinstance(v, (int, float)) else v
        env.filters["mini_markdown"] = mini_markdown
        env.filters["wbr"] = lambda v: Markup(str(escape(v)).replace("_", "_<wbr>"))
        env.filters["pct"] = percent
        env.filters["pvalue"] = p_value_text
    return _templates


def mini_markdown(text: str) -> Markup:
    """Paragraphs, `code` and **bold** of the API docstrings, HTML-escaped first."""
    out = []
    for para in re.split(r"\n\s*\n", str(text or "")):
        html = str(escape(para.strip()))
        html = re.sub(r"`([^`]+)`", r"<code>\1</code>", html)
        html = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", html)
        if html:
            out.append(f"<p>{html}</p>")
    return Markup("\n".join(out))


def percent(p: Any) -> str:
    from .views import _pct

    return _pct(float(p)) if isinstance(p, (int, float)) else ""


def p_value_text(p: Any) -> str:
    """3 significant digits; scientific below 0.001 (1.2e-07)."""
    if not isinstance(p, (int, float)):
        return ""
    return f"{p:.2g}" if p < 1e-3 else f"{p:.3g}"


def render_error_page(message: str, status: int, card: dict | None = None) -> str:
    """A standalone error page (used where no request object is at hand, e.g. the body-limit middleware)."""
    return templates().env.get_template("error.html").render(
        message=message, status=status, root="", card=card or {}, request=None)


# ------------------------------------------------------------------------------------------------
# The application
# ------------------------------------------------------------------------------------------------


def create_app(bundle: Bundle | str | os.PathLike, *, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
               store: ResultStore | None = None, panels: Panels | None = None,
               explanations: bool = True) -> FastAPI:
    """Build the app around one bundle (a loaded Bundle or a bundle directory), loaded once, read-only.

    With `explanations` (default) the results page shows, per profile, the attribution charts, the similar
    reference profiles and the OOD warning (web/explain.py); `panels` are added after them."""
    if not isinstance(bundle, Bundle):
        bundle = load_bundle(bundle)
    if not max_upload_mb or max_upload_mb <= 0:
        raise ValueError("max_upload_mb must be positive")
    max_bytes = int(max_upload_mb * 1e6)
    service = ModelService(bundle, max_upload_bytes=max_bytes, store=store)

    app = FastAPI(
        title="moa-predict",
        version=__version__,
        summary="Predict compounds' mechanisms of action (206 MoAs) from LISH-MoA gene-expression and "
                "cell-viability profiles. A research tool.",
        docs_url=None,  # FastAPI's Swagger/ReDoc pages load their JavaScript from a CDN: /docs is ours instead
        redoc_url=None,
        openapi_url="/openapi.json",
        debug=False,
    )
    app.state.service = service
    panels = panels or Panels()
    if explanations:
        from .explain import default_panels  # noqa: PLC0415

        profile_panels, page_panels = default_panels()
        panels = Panels(profile=[*profile_panels, *panels.profile], page=[*page_panels, *panels.page])
    app.state.panels = panels
    app.state.explanations = explanations
    app.state.max_upload_bytes = max_bytes

    from . import api, pages  # noqa: PLC0415  (routes import this module's helpers)

    app.include_router(api.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")

    _install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_bytes + MULTIPART_SLACK)
    app.add_middleware(SecurityHeadersMiddleware)
    return app


def _install_error_handlers(app: FastAPI) -> None:
    def card(request: Request) -> dict:
        return request.app.state.service.card

    @app.exception_handler(DataError)
    async def data_error(request: Request, exc: DataError) -> Response:
        if is_api(request):
            return JSONResponse({**error_body(str(exc)), **exc.to_dict()}, status_code=422)
        return HTMLResponse(render_error_page(str(exc), 422, card(request)), status_code=422)

    @app.exception_handler(UploadTooLarge)
    async def upload_too_large(request: Request, exc: UploadTooLarge) -> Response:
        message = too_large_message(exc.limit - MULTIPART_SLACK)
        headers = {"Connection": "close"}
        if is_api(request):
            return JSONResponse(error_body(message), status_code=413, headers=headers)
        return HTMLResponse(render_error_page(message, 413, card(request)), status_code=413, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> Response:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "body", "path"))
            problems.append(f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg", "invalid")))
        message = "invalid request: " + "; ".join(problems)
        if is_api(request):
            return JSONResponse(error_body(message), status_code=422)
        return HTMLResponse(render_error_page(message, 422, card(request)), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404 and message == "Not Found":
            message = "not found: there is nothing at this address."
        if exc.status_code == 405:
            message = f"method {request.method} is not allowed here."
        headers = getattr(exc, "headers", None)
        if is_api(request):
            return JSONResponse(error_body(message), status_code=exc.status_code, headers=headers)
        return HTMLResponse(render_error_page(message, exc.status_code, card(request)),
                            status_code=exc.status_code, headers=headers)

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> Response:
        # Logged on the server only (uvicorn adds the traceback); the client gets a plain message.
        log.error("internal error on %s %s: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
        message = ("internal error: the server could not finish this request. Nothing was stored; the server is "
                   "still running. If it happens again, please report it with the file that caused it.")
        if is_api(request):
            return JSONResponse(error_body(message), status_code=500)
        return HTMLResponse(render_error_page(message, 500, card(request)), status_code=500)


def serve(bundle_path: str | os.PathLike, host: str = "127.0.0.1", port: int = 8000,
          max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB, *, log_level: str = "info") -> None:
    """Load the bundle once and run the web app with uvicorn (one process, never debug or reload).

    Blocks until interrupted (Ctrl+C). Bad bundles raise DataError before anything starts."""
    import uvicorn

    app = create_app(bundle_path, max_upload_mb=max_upload_mb)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    shown = f"[{shown}]" if ":" in shown else shown
    model = app.state.service.bundle.model_name
    print(f"moa-predict web app: open http://{shown}:{port}/ in a browser (model '{model}', uploads up to "
          f"{max_upload_mb:g} MB). Press Ctrl+C to stop.", file=sys.stderr, flush=True)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"note: listening on {host}: anyone who can reach this address can use the app (no login).",
              file=sys.stderr, flush=True)
    uvicorn.run(app, host=host, port=port, reload=False, workers=1, log_level=log_level, server_header=False,
                timeout_graceful_shutdown=5)
