"""The launcher: ``serve(bundle_path, host, port, max_upload_mb)``, used by ``moa serve`` and ``moa demo``."""

from __future__ import annotations

import os
import sys

from .app import create_app


def serve(bundle_path: str | os.PathLike, host: str = "127.0.0.1", port: int = 8000,
          max_upload_mb: float | None = None, *, log_level: str = "info") -> None:
    """Load the bundle once and run the web app with uvicorn (one process, never debug or reload).

    Blocks until interrupted (Ctrl+C). Bad bundles raise DataError before anything starts; `max_upload_mb`
    defaults to the settings' limit."""
    import uvicorn

    app = create_app(bundle_path, max_upload_mb=max_upload_mb)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    shown = f"[{shown}]" if ":" in shown else shown
    model = app.state.service.bundle.model_name
    print(f"moa-predict web app: open http://{shown}:{port}/ in a browser (model '{model}', uploads up to "
          f"{app.state.settings.max_upload_mb:g} MB). Press Ctrl+C to stop.", file=sys.stderr, flush=True)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"note: listening on {host}: anyone who can reach this address can use the app (no login).",
              file=sys.stderr, flush=True)
    uvicorn.run(app, host=host, port=port, reload=False, workers=1, log_level=log_level, server_header=False,
                timeout_graceful_shutdown=5)
