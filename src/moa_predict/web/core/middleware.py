"""What wraps every request: security headers (CSP), the request-body limit, and the error handlers.

Every error ends as a readable message: JSON ``{"error", "file", "row", "line", "column"}`` under ``/api`` (and
for ``.json`` downloads), an error page elsewhere; 4xx name the row/column/problem, 5xx never show a traceback.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ...data.errors import DataError
from .deps import service_of
from .store import ResultUnavailable
from ..pages.templating import render_error_page

log = logging.getLogger("moa_predict.web")

CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
       "font-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
"""No CDN, no inline script: Plotly's JavaScript and ours come from this server only."""

INTERNAL_ERROR = ("internal error: the server could not finish this request. Nothing was stored; the server is "
                  "still running. If it happens again, please report it with the file that caused it.")


class UploadTooLarge(Exception):
    """Raised while a request body streams past the limit; `limit` is the file-size limit (bytes)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(too_large_message(limit))


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


def error_response(request_or_scope: Request | Scope, message: str, status: int, *, card: dict | None = None,
                   headers: dict | None = None, **details: Any) -> Response:
    """The error as JSON for the API, as an error page for the pages."""
    if is_api(request_or_scope):
        return JSONResponse(error_body(message, **details), status_code=status, headers=headers)
    return HTMLResponse(render_error_page(message, status, card), status_code=status, headers=headers)


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with 413: at once when Content-Length says so, otherwise
    as soon as the streamed body passes the limit (nothing beyond the limit is read). ``file_limit`` is the
    limit the messages name (``max_bytes`` less the multipart overhead)."""

    def __init__(self, app: ASGIApp, max_bytes: int, file_limit: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.file_limit = file_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                declared = -1
            if declared > self.max_bytes:
                response = error_response(scope, too_large_message(self.file_limit), 413,
                                          headers={"Connection": "close"})
                await response({**scope, "type": "http"}, _no_body, send)
                return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise UploadTooLarge(self.file_limit)
            return message

        await self.app(scope, limited, send)


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


def install(app: FastAPI, *, max_body_bytes: int, max_upload_bytes: int) -> None:
    """The error handlers, the body limit and the security headers (outermost)."""
    _install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes, file_limit=max_upload_bytes)
    app.add_middleware(SecurityHeadersMiddleware)


def _install_error_handlers(app: FastAPI) -> None:
    def card(request: Request) -> dict:
        return service_of(request).card

    @app.exception_handler(DataError)
    async def data_error(request: Request, exc: DataError) -> Response:
        return error_response(request, str(exc), 422, card=card(request), **exc.to_dict())

    @app.exception_handler(ResultUnavailable)
    async def result_unavailable(request: Request, exc: ResultUnavailable) -> Response:
        return error_response(request, exc.message, exc.status, card=card(request))

    @app.exception_handler(UploadTooLarge)
    async def upload_too_large(request: Request, exc: UploadTooLarge) -> Response:
        return error_response(request, str(exc), 413, card=card(request), headers={"Connection": "close"})

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> Response:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "body", "path"))
            problems.append(f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg", "invalid")))
        return error_response(request, "invalid request: " + "; ".join(problems), 422, card=card(request))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404 and message == "Not Found":
            message = "not found: there is nothing at this address."
        if exc.status_code == 405:
            message = f"method {request.method} is not allowed here."
        return error_response(request, message, exc.status_code, card=card(request),
                              headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> Response:
        # Logged on the server only (uvicorn adds the traceback); the client gets a plain message.
        log.error("internal error on %s %s: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
        return error_response(request, INTERNAL_ERROR, 500, card=card(request))
