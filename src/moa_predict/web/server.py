"""The launcher: ``serve(bundles, host, port, max_upload_mb, ...)``, used by ``moa serve`` and ``moa demo``."""

from __future__ import annotations

import errno
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from ..data.errors import DataError
from .app import create_app
from .core.settings import MB, WebSettings

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def default_data_dir() -> Path:
    """Where ``moa serve`` keeps results without ``--data-dir``: the user's data directory
    (``$XDG_DATA_HOME/moa-predict`` or ``~/.local/share/moa-predict`` on Linux)."""
    import platformdirs

    return Path(platformdirs.user_data_dir("moa-predict", appauthor=False))


def serve_settings(*, max_upload_mb: float | None = None, data_dir: str | os.PathLike | None = None,
                   token: str | None = None, max_age_days: float | None = None, max_store_mb: float | None = None,
                   job_threshold_mb: float | None = None) -> WebSettings:
    """The settings of a served app: the defaults, with the options given (token: `token`, else ``MOA_TOKEN``)."""
    changes: dict = {"data_dir": str(Path(data_dir or default_data_dir()).expanduser().resolve()),
                     "token": token or os.environ.get("MOA_TOKEN") or None}
    if max_upload_mb is not None:
        changes["max_upload_bytes"] = int(max_upload_mb * MB)
    if max_age_days is not None:
        changes["max_age_days"] = max_age_days
    if max_store_mb is not None:
        changes["max_disk_bytes"] = int(max_store_mb * MB)
    if job_threshold_mb is not None:
        changes["job_threshold_bytes"] = int(job_threshold_mb * MB)
    return WebSettings().replace(**changes)


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


def serve(bundles: str | os.PathLike | Sequence[str | os.PathLike], host: str = "127.0.0.1", port: int = 8000,
          max_upload_mb: float | None = None, *, log_level: str = "info", **options) -> None:
    """Load the bundle(s) once and run the web app with uvicorn (one process, never debug or reload).

    `bundles`: one bundle, or a list of them (``moa serve --bundle A --bundle B``; the first is the default,
    the page and the API's ``model`` field choose another), each as ``load_bundle`` takes it. Blocks until
    interrupted (Ctrl+C). Bad bundles raise DataError before anything starts; `max_upload_mb` defaults to the
    settings' limit; `options` are :func:`serve_settings`'s (data_dir, token, retention, job threshold)."""
    import uvicorn

    check_port(host, port)
    settings = serve_settings(max_upload_mb=max_upload_mb, **options)
    given = [bundles] if isinstance(bundles, (str, os.PathLike)) else list(bundles)
    app = create_app(given, settings=settings)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    shown = f"[{shown}]" if ":" in shown else shown
    served = app.state.models
    if len(served) == 1:
        model = f"model '{served.default.bundle.model_name}'"
    else:
        model = "models " + ", ".join(f"'{name}'" for name in served.names) + f"; default '{served.default.name}'"
    print(f"moa-predict web app: open http://{shown}:{port}/ in a browser ({model}, uploads up to "
          f"{settings.max_upload_mb:g} MB; results kept {settings.max_age_days:g} days in {settings.data_dir}"
          f"{', access token required' if settings.token else ''}). Press Ctrl+C to stop.",
          file=sys.stderr, flush=True)
    if host not in LOOPBACK and not settings.token:
        print(f"warning: listening on {host} without an access token: anyone who can reach this address can use "
              "the app and open every result. Start it with --token (or MOA_TOKEN) on a shared network.",
              file=sys.stderr, flush=True)
    uvicorn.run(app, host=host, port=port, reload=False, workers=1, log_level=log_level, server_header=False,
                timeout_graceful_shutdown=5)
