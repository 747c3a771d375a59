"""The optional access token (``moa serve --token`` or ``MOA_TOKEN``), for a server shared on a network.

With a token, every page and API call needs it: ``Authorization: Bearer <token>`` (scripts) or the cookie the
login form sets (browsers; the cookie holds an HMAC of the token, not the token). Open without it:
``/api/health`` (liveness checks from monitors), ``/login``, ``/static/`` and the favicon (the login page's
own style). Tokens are compared with ``secrets.compare_digest``. Without a token nothing is checked.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import secrets
from urllib.parse import parse_qs

from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from .middleware import error_response, is_api

COOKIE = "moa_session"
OPEN_PATHS = ("/api/health", "/login", "/favicon.ico")
OPEN_PREFIXES = ("/static/",)
NEEDS_TOKEN = "this server needs an access token: send 'Authorization: Bearer <token>' (ask whoever runs it)."


def session_value(token: str) -> str:
    """The cookie's value: an HMAC of the token (a stolen cookie does not reveal the token)."""
    return hmac.new(token.encode(), b"moa-predict session", hashlib.sha256).hexdigest()


class TokenMiddleware:
    """Answer 401 (JSON for the API, the login form for pages) to requests without the token."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token
        self.session = session_value(token)

    def allowed(self, scope: Scope) -> bool:
        path = scope.get("path", "")
        if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            return True
        headers = dict(scope.get("headers") or [])
        auth = headers.get(b"authorization", b"").decode("latin-1")
        if auth[:7].lower() == "bearer " and secrets.compare_digest(auth[7:].strip().encode(), self.token.encode()):
            return True
        cookie = _cookie(headers.get(b"cookie", b"").decode("latin-1"), COOKIE)
        return cookie is not None and secrets.compare_digest(cookie.encode(), self.session.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.allowed(scope):
            await self.app(scope, receive, send)
            return
        if is_api(scope):
            response = error_response(scope, NEEDS_TOKEN, 401, headers={"WWW-Authenticate": "Bearer"})
        else:
            target = scope.get("path", "/") + ("?" + scope["query_string"].decode("latin-1")
                                              if scope.get("query_string") else "")
            response = HTMLResponse(login_page(target), status_code=401, headers={"Cache-Control": "no-store"})
        await response(scope, receive, send)


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


def safe_next(target: str | None) -> str:
    """Only a path on this server (no scheme, no '//host'): the login form must not redirect elsewhere."""
    target = target or "/"
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def login_page(target: str, error: str | None = None) -> str:
    message = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>moa-predict: sign in</title>
<link rel="stylesheet" href="/static/style.css"></head>
<body><main class="container" style="max-width:28rem;margin:4rem auto">
<h1>moa-predict</h1><p>This server needs an access token. Ask whoever runs it.</p>{message}
<form method="post" action="/login">
<input type="hidden" name="next" value="{html.escape(safe_next(target))}">
<label for="token">Access token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<button type="submit">Sign in</button></form></main></body></html>"""


async def login(scope: Scope, receive: Receive, send: Send, token: str | None) -> None:
    """GET /login: the form; POST /login: check the token, set the cookie, go to `next` (303)."""
    if token is None:
        response: Response = RedirectResponse("/", status_code=303)
    elif scope["method"] == "POST":
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if len(body) > 16_384 or not message.get("more_body"):
                break
        fields = parse_qs(body[:16_384].decode("utf-8", "replace"))
        given = (fields.get("token") or [""])[-1]
        target = safe_next((fields.get("next") or ["/"])[-1])
        if secrets.compare_digest(given.encode(), token.encode()):
            response = RedirectResponse(target, status_code=303)
            response.set_cookie(COOKIE, session_value(token), httponly=True, samesite="strict",
                                secure=scope.get("scheme") == "https", path="/")
        else:
            response = HTMLResponse(login_page(target, "That token is not right."), status_code=401)
    else:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        response = HTMLResponse(login_page((query.get("next") or ["/"])[-1]))
    response.headers["Cache-Control"] = "no-store"
    await response(scope, receive, send)


class LoginRoute:
    """/login handled before the routers (it must work without the token, and it is not part of the API)."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path") == "/login" and scope["method"] in ("GET", "POST"):
            await login(scope, receive, send, self.token)
            return
        await self.app(scope, receive, send)
