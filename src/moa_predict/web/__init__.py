"""The web app: upload profiles, see and download MoA predictions; a JSON API over the same service.

``create_app(bundle)`` builds the FastAPI app (web/app.py); ``serve(bundle_path, host, port, max_upload_mb)``
runs it (web/server.py: ``moa serve``; the end of ``moa demo``).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {"create_app": "app", "serve": "server", "WebSettings": "core.settings", "Panels": "pages.panels",
            "ProfilePanel": "pages.panels", "PagePanel": "pages.panels"}


def __getattr__(name: str) -> Any:  # lazy: importing moa_predict.web must not import FastAPI
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(name)


__all__ = sorted(_EXPORTS)
