"""The launcher: ``serve(bundle_path, host, port, max_upload_mb)``, used by ``moa serve`` and ``moa demo``."""

from __future__ import annotations

import errno
import os
import socket
import sys

from ..data.errors import DataError
from .app import create_app


def check_port(host: str, port: int) -> None:
    """Refuse a port another program holds, with the fix, before anything loads (uvicorn would only log
    its raw ``[Errno 98]`` after the bundle is loaded)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # SO_REUSEADDR as uvicorn sets it: a port left in TIME_WAIT by a stopped server is free to use
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise DataError(f"port {port} on {host} is already in use (another server, perhaps an earlier "
                                f"'moa serve' or 'make demo' still running). Stop it, or choose another port: "
                                f"'moa serve --port {port + 10}' or 'make demo PORT={port + 10}'.") from None
            if exc.errno == errno.EACCES:
                raise DataError(f"no permission to listen on port {port} (ports below 1024 need root). Choose "
                                f"another port: 'moa serve --port 8000' or 'make demo PORT=8000'.") from None
            raise DataError(f"cannot listen on {host}:{port} ({exc.strerror or exc}). Check --host, or choose "
                            "another port with --port.") from None


def serve(bundle_path: str | os.PathLike, host: str = "127.0.0.1", port: int = 8000,
          max_upload_mb: float | None = None, *, log_level: str = "info") -> None:
    """Load the bundle once and run the web app with uvicorn (one process, never debug or reload).

    Blocks until interrupted (Ctrl+C). Bad bundles raise DataError before anything starts; `max_upload_mb`
    defaults to the settings' limit."""
    import uvicorn

    check_port(host, port)
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
