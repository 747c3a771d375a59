"""The web app: upload profiles, see and download MoA predictions; a JSON API over the same service.

``create_app(bundle)`` builds the FastAPI app; ``serve(bundle_path, host, port, max_upload_mb)`` runs it
(``moa serve``; the end of ``moa demo``).
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:  # lazy: importing moa_predict.web must not import FastAPI
    if name in {"create_app", "serve", "Panels", "ProfilePanel", "PagePanel"}:
        from . import app

        return getattr(app, name)
    raise AttributeError(name)


__all__ = ["PagePanel", "Panels", "ProfilePanel", "create_app", "serve"]
